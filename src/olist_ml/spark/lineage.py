"""Lineage of the lake's derived tables: the rules of `olist_ml.lineage`, computed in Spark SQL.

What a fingerprint covers is the same as on DuckDB, by the same SQL (`olist_ml.lineage.asof_facts_sql`,
rendered for Spark): a dt_ref partition depends on the facts it reads AS KNOWN strictly before dt_ref
00:00, a whole table (ABT) on every stg table plus the feature store's build log. Only the hash function
differs (Spark's `xxhash64` instead of DuckDB's `hash`), so the fingerprints are recorded per engine:
the lake keeps its own `fs_build_log` and `olist_ml_lineage` tables next to the data they describe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd

from .. import lineage
from ..lineage import _hex, why
from .lake import Lake
from .warehouse import STG_TABLES, read_meta, view_exists, write_meta

LINEAGE_TABLE = "olist_ml_lineage"
LINEAGE_COLUMNS = ["table_name", "part", "data_fp", "config_fp", "built_at"]
LINEAGE_SCHEMA = "table_name STRING, part DATE, data_fp STRING, config_fp STRING, built_at TIMESTAMP"


def _cols(spark, view: str, alias: str) -> str:
    return ", ".join(f"{alias}.`{c}`" for c in spark.table(view).columns)


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


def asof_fingerprints(spark, dates: Iterable[dt.date], reads: Iterable[str] | None = None) -> dict[dt.date, str]:
    """{dt_ref: fingerprint of the facts of `reads` as known strictly before dt_ref 00:00} over the registered
    stg views: the rule of `olist_ml.lineage.asof_facts_sql`, the same SQL rendered for Spark."""
    dates = sorted({pd.Timestamp(d).date() for d in dates})
    if not dates:
        return {}
    columns = {t: list(spark.table(t).columns) for t in STG_TABLES if view_exists(spark, t)}
    static_tables = lineage.static_tables(columns, reads)
    hashes = _table_hashes(spark, static_tables)
    static = _hex(f"{t}|{hashes[t][1]}" for t in static_tables)
    rows = [(r[0], r[1]) for r in spark.sql(lineage.asof_facts_sql(columns, "spark", reads)).collect()]
    return lineage.cumulate(rows, dates, static)


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
