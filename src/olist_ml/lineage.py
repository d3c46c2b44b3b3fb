"""Lineage of derived tables: what each one was computed from, and whether it is still current.

Every derived table (fs_seller_*, abt_*, scores_*, seller_segments, monitor_*) records two
fingerprints when it is written:

- a DATA fingerprint of the stg tables it reads, and
- a CONFIG fingerprint of the settings and code that shape it (feature windows, horizons,
  cadence, the SQL text, the problem's code).

When either differs from what the warehouse holds now, the table (or the part of it) is stale and
the next `features build` / `train` / `predict` / `run` recomputes it, saying so in one line;
`olist-ml summary` shows per derived table whether it is current (`olist_ml.pipeline.derived_status`).

Granularity (chosen for speed and for history):
- Tables partitioned by `dt_ref` (feature store, scores, segment assignments) use the data
  AS KNOWN STRICTLY BEFORE each dt_ref (`asof_fingerprints`), the same cut as the point-in-time
  contract and its truncation test: an order exists from its purchase, its approval / hand-over /
  delivery timestamps from when they happened, a review from its answer (the survey from its
  creation), a deal from its won date, a lead from its first contact; the order status is only
  seen once the order is delivered (before that it is "in flight"). So appending new data (the
  normal daily case) leaves past partitions current: the feature store recomputes only the dt_refs
  the new facts reach, and past scores (the history monitoring needs) survive. Rewriting history
  (other prices, another data set) makes every partition it touches stale.
- Whole tables (ABTs, monitoring) use the fingerprint of ALL the data (`data_fingerprint`):
  targets look into the future, so any change is a change. An ABT also depends on the feature
  store's build log (which dt_refs exist, from which data).

Fingerprints are order-independent sums of DuckDB row hashes: cheap (one scan per table), exact
for any change of any value, and stable for the same DuckDB version (a DuckDB upgrade may change
them once: everything is then recomputed, never silently kept).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .warehouse import table_exists

LINEAGE_TABLE = "olist_ml_lineage"

# stg tables without a time of their own: any change to them changes every dt_ref
STATIC_TABLES = (
    "stg_customers",
    "stg_sellers",
    "stg_products",
    "stg_product_category_name_translation",
    "stg_geolocation",
)


def _hex(parts: Iterable) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]


def config_fingerprint(**parts) -> str:
    """Fingerprint of the settings/code that shape a table (any JSON-able values)."""
    return _hex([json.dumps(parts, sort_keys=True, default=str)])


def code_fingerprint(*paths: Path) -> str:
    """Fingerprint of source files (a folder: every .py/.sql file in it, recursively)."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files += sorted(x for x in p.rglob("*") if x.suffix in (".py", ".sql")) if p.is_dir() else [p]
    return _hex(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files)


def _stg_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_name LIKE "
            "'stg\\_%' "
            "ESCAPE '\\' ORDER BY 1"
        ).fetchall()
    ]


def data_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """Fingerprint of every stg table's full content (names, columns, every value)."""
    parts = []
    for t in _stg_tables(con):
        n, s = con.execute(f"SELECT count(*), CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) FROM {t} t").fetchall()[0]
        cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
        parts.append(f"{t}|{','.join(cols)}|{n}|{s}")
    return _hex(parts)


def _static_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    parts = []
    for t in STATIC_TABLES:
        if table_exists(con, t):
            parts.append(
                f"{t}|{con.execute(f'SELECT CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) FROM {t} t').fetchall()[0][0]}"
            )
    return _hex(parts)


def _dn(col: str) -> str:
    """Day number of the first dt_ref at which a timestamp is known (ts < dt_ref 00:00)."""
    return f"(date_diff('day', DATE '1970-01-01', CAST({col} AS DATE)) + 1)"


def _known(ts: str, at: str = "k") -> str:
    return f"CASE WHEN {_dn(ts)} <= {at} THEN {ts} END"


def _versions_sql(con: duckdb.DuckDBPyConnection) -> str:
    """(day k, signed hash delta) rows: from day k on, a row is known in a new version."""
    parts = []
    if table_exists(con, "stg_orders"):
        ts = (
            "order_purchase_timestamp",
            "order_approved_at",
            "order_delivered_carrier_date",
            "order_delivered_customer_date",
        )
        parts.append(f"""
        SELECT k, hash(o.order_id, o.customer_id, o.order_purchase_timestamp, o.order_estimated_delivery_date,
                       {_known("o.order_approved_at")}, {_known("o.order_delivered_carrier_date")},
                       {_known("o.order_delivered_customer_date")},
                       CASE WHEN {_dn("o.order_delivered_customer_date")} <= k THEN o.order_status
                            ELSE 'in flight' END) AS h,
               'o' || o.order_id AS rk
        FROM stg_orders o, unnest(list_distinct(list_filter([{", ".join(_dn("o." + c) for c in ts)}],
                                                            lambda x: x IS NOT NULL))) AS u(k)
        """)
        for t in ("stg_order_items", "stg_order_payments"):
            if table_exists(con, t):
                parts.append(f"""
        SELECT {_dn("o.order_purchase_timestamp")} AS k, hash(x) AS h, NULL AS rk
        FROM {t} x JOIN stg_orders o USING (order_id)""")
    if table_exists(con, "stg_order_reviews"):
        parts.append(f"""
        SELECT k, CASE WHEN k = {_dn("r.review_answer_timestamp")} THEN hash(r)
                       ELSE hash(r.review_id, r.order_id, r.review_creation_date) END AS h,
               'r' || r.review_id || '|' || r.order_id AS rk
        FROM stg_order_reviews r, unnest(list_distinct(list_filter(
            [{_dn("r.review_creation_date")}, {_dn("r.review_answer_timestamp")}], lambda x: x IS NOT NULL))) AS u(k)
        """)
    for t, col in (("stg_closed_deals", "won_date"), ("stg_marketing_qualified_leads", "first_contact_date")):
        if table_exists(con, t):
            parts.append(f"SELECT {_dn('x.' + col)} AS k, hash(x) AS h, NULL AS rk FROM {t} x")
    if not parts:
        return "SELECT CAST(NULL AS BIGINT) AS k, CAST(NULL AS HUGEINT) AS d WHERE false"
    union = "\nUNION ALL\n".join(parts)
    # a row seen in several versions contributes h(v_i) - h(v_{i-1}) at each version's day
    return f"""
        WITH v AS ({union}),
        deltas AS (
            SELECT k, CAST(h AS HUGEINT) - coalesce(CAST(lag(h) OVER (PARTITION BY rk ORDER BY k) AS HUGEINT), 0) AS d
            FROM v WHERE rk IS NOT NULL
            UNION ALL
            SELECT k, CAST(h AS HUGEINT) FROM v WHERE rk IS NULL
        )
        SELECT k, sum(d) AS d FROM deltas WHERE k IS NOT NULL GROUP BY k
    """


def asof_fingerprints(con: duckdb.DuckDBPyConnection, dates: Iterable[dt.date]) -> dict[dt.date, str]:
    """{dt_ref: fingerprint of the data as known strictly before dt_ref 00:00} (module docstring)."""
    dates = sorted(
        {
            d if isinstance(d, dt.date) and not isinstance(d, dt.datetime) else dt.date.fromisoformat(str(d)[:10])
            for d in dates
        }
    )
    if not dates:
        return {}
    static = _static_fingerprint(con)
    rows = con.execute(
        f"""
        WITH c AS (SELECT k, sum(d) OVER (ORDER BY k) AS cum FROM ({_versions_sql(con)}) x),
        q AS (SELECT CAST(unnest(?::DATE[]) AS DATE) AS dt_ref)
        SELECT q.dt_ref, CAST(coalesce(c.cum, 0) AS VARCHAR)
        FROM q ASOF LEFT JOIN c ON date_diff('day', DATE '1970-01-01', q.dt_ref) >= c.k
        """,
        [dates],
    ).fetchall()
    return {r[0]: _hex([static, r[1]]) for r in rows}


# ---- the lineage table ----------------------------------------------------------------------
def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {LINEAGE_TABLE} (table_name VARCHAR NOT NULL, part DATE, "
        "data_fp VARCHAR NOT NULL, config_fp VARCHAR NOT NULL, built_at TIMESTAMP)"
    )


def record(
    con: duckdb.DuckDBPyConnection, table: str, data_fp: str, config_fp: str, part: dt.date | None = None
) -> None:
    """Remember what `table` (or its `part` = dt_ref partition) was computed from. Call it inside the
    transaction that writes the table, so the record and the rows change together."""
    ensure_table(con)
    if part is None:
        con.execute(f"DELETE FROM {LINEAGE_TABLE} WHERE table_name = ?", [table])
    else:
        con.execute(f"DELETE FROM {LINEAGE_TABLE} WHERE table_name = ? AND part = ?", [table, part])
    con.execute(f"INSERT INTO {LINEAGE_TABLE} VALUES (?, ?, ?, ?, now())", [table, part, data_fp, config_fp])


def recorded(con: duckdb.DuckDBPyConnection, table: str) -> dict[dt.date | None, tuple[str, str]]:
    """{part (None for a whole table): (data_fp, config_fp)} as recorded for `table`."""
    if not table_exists(con, LINEAGE_TABLE):
        return {}
    return {
        r[0]: (r[1], r[2])
        for r in con.execute(
            f"SELECT part, data_fp, config_fp FROM {LINEAGE_TABLE} WHERE table_name = ?", [table]
        ).fetchall()
    }


def forget(con: duckdb.DuckDBPyConnection, table: str, parts: Iterable[dt.date] | None = None) -> None:
    if not table_exists(con, LINEAGE_TABLE):
        return
    if parts is None:
        con.execute(f"DELETE FROM {LINEAGE_TABLE} WHERE table_name = ?", [table])
    else:
        con.execute(
            f"DELETE FROM {LINEAGE_TABLE} WHERE table_name = ? AND part IN (SELECT unnest(?::DATE[]))",
            [table, sorted(parts)],
        )


@dataclass(frozen=True)
class Staleness:
    """Which recorded parts of a table no longer match their inputs, and why."""

    table: str
    stale: tuple[dt.date | None, ...]
    reason: str  # "" when current

    @property
    def current(self) -> bool:
        return not self.stale

    def line(self) -> str:
        what = "whole table" if self.stale == (None,) else f"{len(self.stale)} dt_ref(s)"
        return f"{self.table}: {what} stale ({self.reason})" if self.stale else f"{self.table}: current"


def why(old: tuple[str, str] | None, data_fp: str, config_fp: str) -> str:
    if old is None:
        return "no lineage recorded"
    if old[0] != data_fp and old[1] != config_fp:
        return "data and settings/code changed"
    if old[0] != data_fp:
        return "data changed"
    if old[1] != config_fp:
        return "settings/code changed"
    return ""


def stale_parts(
    con: duckdb.DuckDBPyConnection,
    table: str,
    parts: Iterable[dt.date],
    config_fp: str,
    asof: dict[dt.date, str] | None = None,
) -> Staleness:
    """The dt_ref partitions of `table` whose recorded lineage differs from the data as known at
    each dt_ref (`asof_fingerprints`) or from `config_fp`."""
    parts = sorted(set(parts))
    rec = recorded(con, table)
    asof = asof if asof is not None else asof_fingerprints(con, parts)
    stale, reasons = [], []
    for p in parts:
        r = why(rec.get(p), asof[p], config_fp)
        if r:
            stale.append(p)
            reasons.append(r)
    reason = max(set(reasons), key=reasons.count) if reasons else ""
    return Staleness(table, tuple(stale), reason)


def whole_table_staleness(con: duckdb.DuckDBPyConnection, table: str, data_fp: str, config_fp: str) -> Staleness:
    r = why(recorded(con, table).get(None), data_fp, config_fp)
    return Staleness(table, (None,) if r else (), r)


# ---- problems: ABTs and scores ----------------------------------------------------------------
def problem_config_fp(problem, settings) -> str:
    """What shapes a problem's ABT and scores besides the data: its typed settings that shape them
    (`Problem.settings_record` of the `inputs` and `abt` fields: feature windows, horizon, eligibility,
    cadence...; not the training protocol) and the code of `olist_ml.problems` (its SQL included) and
    of the feature store's retrieval."""
    from .config import ABT, INPUTS

    here = Path(__file__).parent
    return config_fingerprint(
        problem=problem.name,
        settings=problem.settings_record(settings, shapes=(INPUTS, ABT)),
        code=code_fingerprint(here / "problems", here / "geo.py", here / "features" / "retrieval.py"),
    )


def _build_log_digest(con: duckdb.DuckDBPyConnection) -> str:
    if not table_exists(con, "fs_build_log"):
        return "none"
    cols = {r[0] for r in con.execute("DESCRIBE fs_build_log").fetchall()}
    fp = "data_fp, config_fp" if "data_fp" in cols else "NULL, NULL"
    n, s = con.execute(
        f"SELECT count(*), CAST(coalesce(sum(hash(table_name, dt_ref, {fp})), 0) AS VARCHAR) FROM fs_build_log"
    ).fetchall()[0]
    return f"{n}|{s}"


def abt_inputs_fp(con: duckdb.DuckDBPyConnection) -> str:
    """An ABT's data inputs: every stg table and the feature store's build log (which dt_refs exist,
    from which data and SQL)."""
    return _hex([data_fingerprint(con), _build_log_digest(con)])


@dataclass(frozen=True)
class AbtRefresh:
    table: str
    rows: int | None  # rows written, None when it was current and kept
    reason: str  # why it was (re)built; "" when kept

    @property
    def rebuilt(self) -> bool:
        return self.rows is not None


def refresh_abt(con: duckdb.DuckDBPyConnection, problem, settings, *, force: bool = False) -> AbtRefresh:
    """Build `problem`'s ABT unless it exists and its lineage matches the current data, feature
    store and settings/code; record the lineage of what was built."""
    data_fp, cfg = abt_inputs_fp(con), problem_config_fp(problem, settings)
    st = whole_table_staleness(con, problem.abt_table, data_fp, cfg)
    if st.current and not force and table_exists(con, problem.abt_table):
        return AbtRefresh(problem.abt_table, None, "")
    rows = problem.build_abt(con, settings)
    record(con, problem.abt_table, data_fp, cfg)
    reason = "forced" if force else ("not built yet" if st.reason == "no lineage recorded" else st.reason)
    return AbtRefresh(problem.abt_table, int(rows), reason)


def purge_stale_partitions(
    con: duckdb.DuckDBPyConnection, table: str, config_fp: str, time_column: str = "dt_ref"
) -> Staleness:
    """Delete the dt_ref partitions of a partitioned output table (scores, segment assignments)
    whose data or settings changed since they were written; returns what was removed."""
    if not table_exists(con, table):
        return Staleness(table, (), "")
    parts = [r[0] for r in con.execute(f"SELECT DISTINCT CAST({time_column} AS DATE) FROM {table}").fetchall()]
    st = stale_parts(con, table, parts, config_fp)
    if st.stale:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                f"DELETE FROM {table} WHERE CAST({time_column} AS DATE) IN (SELECT unnest(?::DATE[]))", [list(st.stale)]
            )
            forget(con, table, st.stale)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return st
