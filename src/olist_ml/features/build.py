"""Backfill of the feature tables: set-based, partition-idempotent, incremental, resumable.

One query per feature table computes every requested dt_ref at once (see the `.sql` files: facts
become +/- deltas on a per-seller time line, running sums are read at each dt_ref). In DuckDB a
table's dt_refs are replaced with DELETE + INSERT inside ONE transaction, and `fs_build_log`
records which (table, dt_ref) were built in that same transaction: a killed build leaves each
table either before or after a whole batch, never a half-written dt_ref, and the next
(incremental) run computes only the dt_refs still missing.

Memory: tables are built one after the other, and a long range is cut into batches of
consecutive dt_refs holding about `Settings.feature_chunk_rows` rows each (estimated from the sellers' activity),
so peak memory follows the batch, not the whole backfill. The connection runs with
`preserve_insertion_order = false` and a `memory_limit` (`Settings.memory_limit`, default 60 % of
the machine's RAM) so DuckDB spills to its temp directory instead of growing past it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field

import duckdb

from ..config import Settings
from ..errors import InputError, MissingStepError, UnknownNameError
from ..warehouse import connect, table_exists, transaction
from .catalog import FEATURE_TABLES, KEY_COLUMNS, catalog
from .progress import table_progress
from .render import render, statements

CADENCES = ("daily", "weekly", "monthly")
REQUIRED_STG = (
    "stg_orders",
    "stg_order_items",
    "stg_order_payments",
    "stg_order_reviews",
    "stg_customers",
    "stg_products",
)
READS = REQUIRED_STG  # what the feature store reads: its dt_refs are fingerprinted on exactly these (lineage)
BUILD_LOG = "fs_build_log"
EPOCH = dt.date(1970, 1, 1)
CHUNK_ROWS = Settings.feature_chunk_rows  # default rows per batch of dt_refs (OLIST_ML_FEATURE_CHUNK_ROWS)
DEFAULT_MEMORY_SHARE = 0.6  # of physical RAM, when Settings.memory_limit is unset


@dataclass
class TableBuild:
    table: str
    dt_refs: int  # dt_refs computed in this run
    rows: int  # rows written in this run
    seconds: float
    skipped: int = 0  # requested dt_refs already built and current (incremental)
    stale: int = 0  # of `dt_refs`: built before, recomputed because their data or settings changed
    dropped: int = 0  # stale dt_refs outside the requested range, removed (not recomputed)
    reason: str = ""  # why the stale ones were stale (olist_ml.lineage.why)

    @classmethod
    def of_plan(cls, table: str, plan, n_dates: int, rows: int, seconds: float) -> TableBuild:
        """What a build did with a table's plan (`plan_dates`) over `n_dates` requested dt_refs."""
        return cls(
            table,
            len(plan.todo),
            rows,
            seconds,
            skipped=n_dates - len(plan.todo),
            stale=plan.stale,
            dropped=len(plan.drop),
            reason=plan.reason,
        )


@dataclass
class BuildReport:
    engine: str
    cadence: str
    start: dt.date
    end: dt.date
    tables: list[TableBuild] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def dt_refs(self) -> int:
        return max((t.dt_refs for t in self.tables), default=0)


# ---- names, dates ------------------------------------------------------------------------
def resolve_tables(tables: list[str] | tuple[str, ...] | str | None) -> list[str]:
    if tables is None:
        return list(FEATURE_TABLES)
    if isinstance(tables, str):
        tables = [tables]
    out = []
    for t in tables:
        name = t if t.startswith("fs_seller_") else f"fs_seller_{t}"
        if name not in FEATURE_TABLES:
            raise UnknownNameError(f"unknown feature table {t!r}: valid tables are {', '.join(FEATURE_TABLES)}")
        if name not in out:
            out.append(name)
    return out


def check_cadence(cadence: str) -> str:
    if cadence not in CADENCES:
        raise UnknownNameError(f"unknown cadence {cadence!r}: valid cadences are {', '.join(CADENCES)}")
    return cadence


def dt_ref_spine(start: dt.date, end: dt.date, cadence: str = "daily") -> list[dt.date]:
    """dt_refs in [start, end]: every day, every Monday, or every first of the month."""
    check_cadence(cadence)
    days = [start + dt.timedelta(i) for i in range((end - start).days + 1)]
    if cadence == "weekly":
        return [d for d in days if d.weekday() == 0]
    if cadence == "monthly":
        return [d for d in days if d.day == 1]
    return days


def _as_date(v) -> dt.date | None:
    if v is None or isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v
    if isinstance(v, dt.datetime):
        return v.date()
    try:
        return dt.date.fromisoformat(str(v))
    except ValueError as e:
        raise InputError(f"bad date {v!r}: use YYYY-MM-DD") from e


def data_range(con: duckdb.DuckDBPyConnection) -> tuple[dt.datetime, dt.datetime]:
    """(first, last) order_purchase_timestamp; the last one is the observed data end."""
    missing = [t for t in REQUIRED_STG if not table_exists(con, t)]
    if missing:
        raise MissingStepError(f"warehouse has no table {', '.join(missing)}: run `olist-ml ingest SOURCE` first")
    lo, hi = con.execute(
        "SELECT min(order_purchase_timestamp), max(order_purchase_timestamp) FROM stg_orders"
    ).fetchall()[0]
    if lo is None:
        raise MissingStepError("stg_orders is empty: run `olist-ml ingest SOURCE` first")
    return lo, hi


def resolve_range(con, start=None, end=None, cadence: str = "daily") -> tuple[dt.date, dt.date, list[dt.date]]:
    """Requested dt_refs. Default end: `observed_end` (the first day after the complete data, so
    its features use every complete fact); an explicit end may go up to the day after the last
    purchase (the thin tail of stray orders)."""
    from ..warehouse import observed_end

    lo, hi = data_range(con)
    return range_of(lo, hi, lambda: observed_end(con), start, end, cadence)


def range_of(
    lo: dt.datetime, hi: dt.datetime, obs_end, start=None, end=None, cadence: str = "daily"
) -> tuple[dt.date, dt.date, list[dt.date]]:
    """`resolve_range` for any engine: the data's first/last purchase, `obs_end()` its observed end."""
    first, last = lo.date().replace(day=1), hi.date() + dt.timedelta(days=1)
    start = _as_date(start) or first
    end = _as_date(end) or min(obs_end(), last)
    if start > end:
        raise InputError(f"--start {start} is after --end {end}")
    if start < first or end > last:
        raise InputError(
            f"dt_ref range {start}..{end} is outside the data: it must lie within {first}..{last} "
            "(first purchase month .. the day after the last order_purchase_timestamp)"
        )
    dates = dt_ref_spine(start, end, cadence)
    if not dates:
        raise InputError(f"no {cadence} dt_ref between {start} and {end}")
    return start, end, dates


# ---- DuckDB engine ------------------------------------------------------------------------
def prepare(
    con: duckdb.DuckDBPyConnection, dates: list[dt.date], windows: tuple[int, ...], events: bool = True
) -> None:
    """Register `fs_dates(dt_ref, dn, mi)` and (with `events`) the event tables on a DuckDB connection.

    The `ev_*` views of `_events.sql` are materialised as temp tables once (every feature query
    reads them).
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE fs_dates AS SELECT CAST(d AS DATE) AS dt_ref, "
        "CAST(date_diff('day', DATE '1970-01-01', CAST(d AS DATE)) AS INTEGER) AS dn, "
        "CAST(year(d) * 12 + month(d) AS INTEGER) AS mi FROM (SELECT unnest(?::DATE[]) AS d)",
        [sorted(set(dates))],
    )
    if not events:
        return
    for st in statements(render("_events", windows, "duckdb")):
        if "VIEW ev_" in st:
            st = st.replace("TEMPORARY VIEW", "TEMPORARY TABLE", 1)
        con.execute(st)


def compute(con: duckdb.DuckDBPyConnection, table: str, dates: list[dt.date], windows: tuple[int, ...] | None = None):
    """The rows of one feature table for `dates` as a pandas DataFrame (nothing is written)."""
    windows = tuple(windows or Settings().feature_windows)
    prepare(con, dates, windows)
    return con.execute(f"SELECT * FROM ({render(table, windows, 'duckdb')}) ORDER BY dt_ref, seller_id").df()


def expected_columns(table: str, windows: tuple[int, ...]) -> list[str]:
    return list(KEY_COLUMNS) + [d.name for d in catalog(windows, table)]


def _ensure_log(con) -> None:
    """The build log: one row per (table, dt_ref) built, with its lineage (`olist_ml.lineage`): the
    fingerprint of the data as known at dt_ref and of the table's SQL/windows."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {BUILD_LOG} (table_name VARCHAR, dt_ref DATE, n_rows BIGINT, built_at TIMESTAMP, "
        "data_fp VARCHAR, config_fp VARCHAR)"
    )
    for col in ("data_fp", "config_fp"):  # a log from before lineage: its rows count as stale
        con.execute(f"ALTER TABLE {BUILD_LOG} ADD COLUMN IF NOT EXISTS {col} VARCHAR")


def built_dt_refs(con, table: str) -> set[dt.date]:
    return set(logged_lineage(con, table))


def logged_lineage(con, table: str) -> dict[dt.date, tuple[str | None, str | None]]:
    """{dt_ref: (data_fp, config_fp)} of the dt_refs of `table` in the build log."""
    if not table_exists(con, BUILD_LOG) or not table_exists(con, table):
        return {}
    cols = {r[0] for r in con.execute(f"DESCRIBE {BUILD_LOG}").fetchall()}
    fp = "data_fp, config_fp" if "data_fp" in cols else "NULL, NULL"
    return {
        r[0]: (r[1], r[2])
        for r in con.execute(f"SELECT dt_ref, {fp} FROM {BUILD_LOG} WHERE table_name = ?", [table]).fetchall()
    }


def table_config_fp(table: str, windows: tuple[int, ...]) -> str:
    """What shapes a feature table besides the data: its SQL (with the shared prelude) for these windows."""
    from ..lineage import config_fingerprint

    return config_fingerprint(
        table=table,
        windows=list(windows),
        sql=render(table, windows, "duckdb"),
        events=render("_events", windows, "duckdb"),
    )


def _configure(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Bounded memory for big builds: a memory limit (spill beyond it) and no insertion-order bookkeeping."""
    con.execute("SET preserve_insertion_order = false")
    if not settings.memory_limit:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            return
        con.execute(f"SET memory_limit = '{int(total * DEFAULT_MEMORY_SHARE) // 2**20}MB'")


def active_sellers(con: duckdb.DuckDBPyConnection, dates: list[dt.date], windows: tuple[int, ...]) -> list[int]:
    """Rows each dt_ref will have: sellers with an order in [dt_ref - max window, dt_ref) (needs `ev_seller_orders`)."""
    w = max(windows)
    rows = con.execute(
        f"""
        WITH sd AS (SELECT DISTINCT seller_id, pdn FROM ev_seller_orders),
        dl AS (  -- a sale day p makes the seller active for p+1 .. p+{w}; count each active day once
          SELECT pdn + 1 AS day, 1 AS v FROM (
            SELECT pdn, lag(pdn) OVER (PARTITION BY seller_id ORDER BY pdn) AS prv FROM sd) a
          WHERE prv IS NULL OR pdn - prv > {w}
          UNION ALL
          SELECT pdn + {w} + 1, -1 FROM (
            SELECT pdn, lead(pdn) OVER (PARTITION BY seller_id ORDER BY pdn) AS nxt FROM sd) b
          WHERE nxt IS NULL OR nxt - pdn > {w}
        ),
        cum AS (SELECT day, sum(sum(v)) OVER (ORDER BY day) AS n FROM dl GROUP BY day)
        SELECT f.dn, c.n FROM fs_dates f ASOF LEFT JOIN cum c ON f.dn >= c.day ORDER BY f.dn
        """
    ).fetchall()
    return [int(r[1] or 0) for r in rows]


def _batches(dates: list[dt.date], sizes: list[int], chunk_rows: int) -> list[list[dt.date]]:
    """Consecutive dt_refs cut into batches of about `chunk_rows` rows (at least one dt_ref each)."""
    out: list[list[dt.date]] = [[]]
    n = 0
    for d, k in zip(sorted(dates), sizes, strict=False):
        if out[-1] and n + k > chunk_rows:
            out.append([])
            n = 0
        out[-1].append(d)
        n += k
    return out


def _write_duckdb(
    con,
    table: str,
    todo: list[dt.date],
    windows: tuple[int, ...],
    lineage_of: dict[dt.date, str] | None = None,
    config_fp: str | None = None,
) -> int:
    """Compute `todo` dt_refs of one table and replace them (and their build-log rows, with their
    lineage: `lineage_of[dt_ref]` data fingerprint, `config_fp`) in ONE transaction."""
    prepare(con, todo, windows, events=False)
    query = render(table, windows, "duckdb")
    lineage_of = lineage_of or {}
    con.execute(
        "CREATE OR REPLACE TEMP TABLE fs_fps AS SELECT unnest(?::DATE[]) AS dt_ref, unnest(?::VARCHAR[]) AS data_fp",
        [list(todo), [lineage_of.get(d) for d in todo]],
    )
    with transaction(con):
        if not table_exists(con, table):
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM ({query}) q")
            n = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        else:
            con.execute(f"DELETE FROM {table} WHERE dt_ref IN (SELECT dt_ref FROM fs_dates)").fetchall()
            n = con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM ({query}) q").fetchall()[0][0]
        con.execute(
            f"DELETE FROM {BUILD_LOG} WHERE table_name = ? AND dt_ref IN (SELECT dt_ref FROM fs_dates)", [table]
        )
        con.execute(
            f"INSERT INTO {BUILD_LOG} (table_name, dt_ref, n_rows, built_at, data_fp, config_fp) "
            "SELECT ?, s.dt_ref, coalesce(t.n, 0), now(), f.data_fp, ? FROM fs_dates s "
            f"LEFT JOIN (SELECT dt_ref, count(*) AS n FROM {table} WHERE dt_ref IN (SELECT dt_ref FROM fs_dates) "
            "GROUP BY dt_ref) t ON t.dt_ref = s.dt_ref LEFT JOIN fs_fps f ON f.dt_ref = s.dt_ref",
            [table, config_fp],
        )
    return int(n)


def _drop_if_reshaped(con, table: str, windows: tuple[int, ...]) -> bool:
    """Drop a table built with other columns (feature windows changed) and its log rows; True if dropped."""
    if not table_exists(con, table):
        return False
    have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    if have == set(expected_columns(table, windows)):
        return False
    with transaction(con):
        con.execute(f"DROP TABLE {table}")
        con.execute(f"DELETE FROM {BUILD_LOG} WHERE table_name = ?", [table])
    return True


def _drop_dt_refs(con, table: str, dates: list[dt.date]) -> None:
    """Remove stale dt_refs (rows and log rows) that this build does not recompute, in one transaction."""
    with transaction(con):
        con.execute(f"DELETE FROM {table} WHERE dt_ref IN (SELECT unnest(?::DATE[]))", [sorted(dates)])
        con.execute(
            f"DELETE FROM {BUILD_LOG} WHERE table_name = ? AND dt_ref IN (SELECT unnest(?::DATE[]))",
            [table, sorted(dates)],
        )


@dataclass
class _Plan:
    todo: list[dt.date]  # to compute
    stale: int  # of todo: built before but stale
    drop: list[dt.date]  # stale, outside the requested range
    reason: str


def _plan(con, name: str, dates: list[dt.date], windows, full: bool, asof: dict[dt.date, str]) -> _Plan:
    """Which dt_refs of `name` to compute: missing ones, and built ones whose lineage (data as known at
    the dt_ref, SQL/windows) changed; `full` recomputes the whole range."""
    reshaped = _drop_if_reshaped(con, name, windows)
    return plan_dates(dates, logged_lineage(con, name), asof, table_config_fp(name, windows), full, reshaped)


def plan_dates(
    dates: list[dt.date],
    logged: dict[dt.date, tuple],
    asof: dict[dt.date, str],
    cfg: str,
    full: bool,
    reshaped: bool = False,
) -> _Plan:
    """The incremental plan of one table for any engine: `logged` {dt_ref: (data_fp, config_fp)} as
    built, `asof` {dt_ref: data fingerprint now}, `cfg` the table's config fingerprint now."""
    from ..lineage import why

    wanted = set(dates)
    reasons = {d: why(logged[d], asof[d], cfg) for d in logged}
    todo = [d for d in dates if full or d not in logged or reasons[d]]
    stale = [d for d in todo if reasons.get(d)]
    drop = sorted(d for d, r in reasons.items() if r and d not in wanted)
    why_ = "feature windows changed" if reshaped else ""
    if not why_ and (stale or drop):
        rs = [reasons[d] for d in stale + drop]
        why_ = max(set(rs), key=rs.count)
    return _Plan(todo, len(stale) + (len(todo) if reshaped else 0), drop, why_)


def build(
    settings: Settings,
    *,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    cadence: str = "daily",
    tables: list[str] | None = None,
    full: bool = False,
    progress: bool = False,
) -> BuildReport:
    """Build the feature tables for every `cadence` dt_ref in [start, end] (default: the data's range).

    Incremental by default (only dt_refs not built yet); `full=True` recomputes the range.
    DuckDB; `olist_ml.features.build` chooses the engine (`settings.engine`).
    """
    t0 = time.perf_counter()
    check_cadence(cadence)
    names = resolve_tables(tables)
    windows = tuple(sorted(set(settings.feature_windows)))
    con = connect(settings)
    try:
        start_d, end_d, dates = resolve_range(con, start, end, cadence)
        report = BuildReport(engine="duckdb", cadence=cadence, start=start_d, end=end_d)
        from ..lineage import asof_fingerprints

        _ensure_log(con)
        _configure(con, settings)
        chunk_rows = int(settings.feature_chunk_rows)
        prepared = False
        logged = set().union(*(built_dt_refs(con, n) for n in names))
        asof = asof_fingerprints(con, set(dates) | logged, READS)
        with table_progress(progress, len(names)) as advance:
            for name in names:
                t1 = time.perf_counter()
                plan = _plan(con, name, dates, windows, full, asof)
                if plan.drop:
                    _drop_dt_refs(con, name, plan.drop)
                rows = 0
                if plan.todo:
                    if not prepared:
                        prepare(con, dates, windows)
                        sizes = dict(zip(sorted(dates), active_sellers(con, dates, windows), strict=False))
                        prepared = True
                    cfg = table_config_fp(name, windows)
                    for batch in _batches(plan.todo, [sizes[d] for d in sorted(plan.todo)], chunk_rows):
                        rows += _write_duckdb(con, name, batch, windows, asof, cfg)
                report.tables.append(TableBuild.of_plan(name, plan, len(dates), rows, time.perf_counter() - t1))
                advance(name)
    finally:
        con.close()
    report.seconds = time.perf_counter() - t0
    return report
