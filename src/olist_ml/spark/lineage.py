"""Lineage of the lake's derived tables: the rules of `olist_ml.lineage`, computed in Spark SQL.

What a fingerprint covers is the same as on DuckDB (see `olist_ml.lineage`): a dt_ref partition
depends on the data AS KNOWN strictly before dt_ref 00:00 (an order from its purchase, its approval /
hand-over / delivery from when they happened, its status once delivered, a review's answer from the
answer, deals and leads from their dates; the static tables as a whole), a whole table (ABT) on every
stg table plus the feature store's build log. Only the hash function differs (Spark's `xxhash64`
instead of DuckDB's `hash`), so the fingerprints are recorded per engine: the lake keeps its own
`fs_build_log` and `olist_ml_lineage` tables next to the data they describe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..lineage import STATIC_TABLES, _hex, why
from .lake import Lake
from .warehouse import read_meta, view_exists, write_meta

LINEAGE_TABLE = "olist_ml_lineage"
LINEAGE_COLUMNS = ["table_name", "part", "data_fp", "config_fp", "built_at"]
LINEAGE_SCHEMA = "table_name STRING, part DATE, data_fp STRING, config_fp STRING, built_at TIMESTAMP"


def _dn(col: str) -> str:
    """Day number of the first dt_ref at which a timestamp is known (ts < dt_ref 00:00)."""
    return f"(datediff(CAST({col} AS DATE), DATE '1970-01-01') + 1)"


def _known(ts: str) -> str:
    return f"CASE WHEN {_dn(ts)} <= u.k THEN {ts} END"


def _cols(spark, view: str, alias: str) -> str:
    return ", ".join(f"{alias}.`{c}`" for c in spark.table(view).columns)


def _versions_sql(spark) -> str:
    """(day k, signed hash delta) rows: from day k on, a row is known in a new version
    (`olist_ml.lineage._versions_sql`, in Spark SQL)."""
    h = "CAST(xxhash64({}) AS DECIMAL(38, 0))"
    parts = []
    if view_exists(spark, "stg_orders"):
        ts = (
            "order_purchase_timestamp",
            "order_approved_at",
            "order_delivered_carrier_date",
            "order_delivered_customer_date",
        )
        days = ", ".join(_dn("o." + c) for c in ts)
        status = f"CASE WHEN {_dn('o.order_delivered_customer_date')} <= u.k THEN o.order_status ELSE 'in flight' END"
        fields = (
            f"o.order_id, o.customer_id, o.order_purchase_timestamp, o.order_estimated_delivery_date, "
            f"{_known('o.order_approved_at')}, {_known('o.order_delivered_carrier_date')}, "
            f"{_known('o.order_delivered_customer_date')}, {status}"
        )
        parts.append(f"""
        SELECT u.k, {h.format(fields)} AS h, concat('o', o.order_id) AS rk
        FROM stg_orders o
        LATERAL VIEW explode(array_distinct(filter(array({days}), x -> x IS NOT NULL))) u AS k""")
        for t in ("stg_order_items", "stg_order_payments"):
            if view_exists(spark, t):
                parts.append(f"""
        SELECT {_dn("o.order_purchase_timestamp")} AS k, {h.format(_cols(spark, t, "x"))} AS h,
               CAST(NULL AS STRING) AS rk
        FROM {t} x JOIN stg_orders o ON o.order_id = x.order_id""")
    if view_exists(spark, "stg_order_reviews"):
        days = f"{_dn('r.review_creation_date')}, {_dn('r.review_answer_timestamp')}"
        parts.append(f"""
        SELECT u.k, CASE WHEN u.k = {_dn("r.review_answer_timestamp")}
                         THEN {h.format(_cols(spark, "stg_order_reviews", "r"))}
                         ELSE {h.format("r.review_id, r.order_id, r.review_creation_date")} END AS h,
               concat('r', r.review_id, '|', r.order_id) AS rk
        FROM stg_order_reviews r
        LATERAL VIEW explode(array_distinct(filter(array({days}), x -> x IS NOT NULL))) u AS k""")
    for t, col in (("stg_closed_deals", "won_date"), ("stg_marketing_qualified_leads", "first_contact_date")):
        if view_exists(spark, t):
            parts.append(
                f"SELECT {_dn('x.' + col)} AS k, {h.format(_cols(spark, t, 'x'))} AS h, "
                f"CAST(NULL AS STRING) AS rk FROM {t} x"
            )
    if not parts:
        return "SELECT CAST(NULL AS INT) AS k, CAST(NULL AS DECIMAL(38, 0)) AS d WHERE false"
    union = "\nUNION ALL\n".join(parts)
    return f"""
        WITH v AS ({union}),
        deltas AS (
            SELECT k, h - coalesce(lag(h) OVER (PARTITION BY rk ORDER BY k), CAST(0 AS DECIMAL(38, 0))) AS d
            FROM v WHERE rk IS NOT NULL
            UNION ALL
            SELECT k, h AS d FROM v WHERE rk IS NULL
        )
        SELECT k, sum(d) AS d FROM deltas WHERE k IS NOT NULL GROUP BY k"""


def _table_hashes(spark, tables: list[str]) -> dict[str, tuple[int, str]]:
    """{table: (rows, order-independent sum of row hashes)} for the given views, in ONE query."""
    if not tables:
        return {}
    parts = [
        f"SELECT '{t}' AS t, count(*) AS n, CAST(coalesce(sum(CAST(xxhash64({_cols(spark, t, 'x')}) "
        f"AS DECIMAL(38, 0))), 0) AS STRING) AS s FROM {t} x"
        for t in tables
    ]
    return {r[0]: (int(r[1]), str(r[2])) for r in spark.sql(" UNION ALL ".join(parts)).collect()}


def _static_fingerprint(spark) -> str:
    hashes = _table_hashes(spark, [t for t in STATIC_TABLES if view_exists(spark, t)])
    return _hex(f"{t}|{hashes[t][1]}" for t in STATIC_TABLES if t in hashes)


def asof_fingerprints(spark, dates: Iterable[dt.date]) -> dict[dt.date, str]:
    """{dt_ref: fingerprint of the data as known strictly before dt_ref 00:00} over the registered stg views."""
    dates = sorted({pd.Timestamp(d).date() for d in dates})
    if not dates:
        return {}
    static = _static_fingerprint(spark)
    cum = spark.sql(
        f"SELECT k, CAST(sum(d) OVER (ORDER BY k) AS STRING) AS cum FROM ({_versions_sql(spark)}) x"
    ).toPandas()
    cum = cum.sort_values("k")
    ks = cum["k"].to_numpy()
    vals = cum["cum"].tolist()
    out = {}
    for d in dates:  # as-of: the last k <= day number of dt_ref
        i = int(np.searchsorted(ks, (d - dt.date(1970, 1, 1)).days, side="right")) - 1
        out[d] = _hex([static, vals[i] if i >= 0 else "0"])
    return out


def data_fingerprint(spark, tables: Iterable[str]) -> str:
    """Fingerprint of every given stg view's full content (names, columns, every value)."""
    tables = sorted(tables)
    hashes = _table_hashes(spark, tables)
    return _hex(f"{t}|{','.join(spark.table(t).columns)}|{hashes[t][0]}|{hashes[t][1]}" for t in tables)


# ---- the lineage table -----------------------------------------------------------------------------
def recorded(lake: Lake, table: str) -> dict[dt.date | None, tuple[str, str]]:
    df = read_meta(lake, LINEAGE_TABLE, LINEAGE_COLUMNS)
    df = df[df["table_name"] == table]
    return {_part(p): (d, c) for p, d, c in zip(df["part"], df["data_fp"], df["config_fp"], strict=False)}


def _part(p) -> dt.date | None:
    return None if p is None or pd.isna(p) else pd.Timestamp(p).date()


def record(
    lake: Lake, table: str, entries: dict[dt.date | None, tuple[str, str]], *, replace_all: bool = False
) -> None:
    """Remember what `table` (its dt_ref parts, or None = whole table) was computed from."""
    df = read_meta(lake, LINEAGE_TABLE, LINEAGE_COLUMNS)
    drop = df["table_name"] == table
    if not replace_all:
        keys = set(entries)
        drop &= df["part"].map(lambda p: _part(p) in keys)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime().replace(microsecond=0)
    new = pd.DataFrame(
        [
            {"table_name": table, "part": p, "data_fp": d, "config_fp": c, "built_at": now}
            for p, (d, c) in entries.items()
        ],
        columns=LINEAGE_COLUMNS,
    )
    out = pd.concat([df[~drop], new], ignore_index=True) if len(df[~drop]) else new
    write_meta(lake, LINEAGE_TABLE, out, LINEAGE_SCHEMA)


def forget(lake: Lake, table: str, parts: Iterable[dt.date] | None = None) -> None:
    df = read_meta(lake, LINEAGE_TABLE, LINEAGE_COLUMNS)
    drop = df["table_name"] == table
    if parts is not None:
        keys = set(parts)
        drop &= df["part"].map(lambda p: _part(p) in keys)
    if drop.any():
        write_meta(lake, LINEAGE_TABLE, df[~drop], LINEAGE_SCHEMA)


def whole_table_reason(lake: Lake, table: str, data_fp: str, config_fp: str) -> str:
    """Why `table` must be rebuilt ("" when its recorded lineage matches)."""
    return why(recorded(lake, table).get(None), data_fp, config_fp)
