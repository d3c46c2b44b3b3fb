"""DuckDB warehouse access: connections, table checks, atomic table replacement."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb

from .config import Settings
from .errors import MissingStepError


def connect(settings: Settings, read_only: bool = False, must_exist: bool = True) -> duckdb.DuckDBPyConnection:
    path = settings.warehouse
    if must_exist and not path.exists():
        raise MissingStepError(f"no warehouse at {path}: run `olist-ml ingest SOURCE` (or `olist-ml run`) first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    if settings.threads:
        con.execute(f"SET threads = {int(settings.threads)}")
    if settings.memory_limit:
        con.execute(f"SET memory_limit = '{settings.memory_limit}'")
    return con


@contextlib.contextmanager
def session(
    settings: Settings, read_only: bool = False, must_exist: bool = True
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(settings, read_only=read_only, must_exist=must_exist)
    try:
        yield con
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'", [name]
    ).fetchall()
    return rows[0][0] > 0


def require_tables(con: duckdb.DuckDBPyConnection, names: list[str], step: str) -> None:
    missing = [n for n in names if not table_exists(con, n)]
    if missing:
        raise MissingStepError(f"warehouse has no table {', '.join(missing)}: run `olist-ml {step}` first")


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, or ROLLBACK on any exception (KeyboardInterrupt included), re-raised."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def replace_table_atomically(con: duckdb.DuckDBPyConnection, name: str, select_sql: str, params=None) -> int:
    """CREATE OR REPLACE inside one transaction: readers see the old table or the new one, never half."""
    with transaction(con):
        con.execute(f"CREATE OR REPLACE TABLE {name} AS {select_sql}", params or [])
        n = con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
    return n


OBSERVED_END_MIN_SHARE = 0.5  # a complete day has at least half the typical daily volume
_EVENT_COLUMNS = ("order_purchase_timestamp", "order_delivered_customer_date")


def observed_end(
    con: duckdb.DuckDBPyConnection, min_share: float = OBSERVED_END_MIN_SHARE, column: str = "order_purchase_timestamp"
):
    """Exclusive end of the observed data: the first day from which every later day's count of
    `column` events (default: orders, by purchase) stays below `min_share` of the median daily
    count of the 28 days before it ("the typical daily volume").

    i.e. the first day d with max(n over [d, end]) < min_share * median(n over [d-28, d)).
    The real Olist extract tails off: ~250 orders a day until 2018-08-21, then 187, 144 (23rd),
    99, 69, 73, 67, 44, 14, 4, 1 and a few stray (cancelled) orders until 2018-10-17. Taking
    `max(order_purchase_timestamp)` as the end would label every seller active in August 2018 as
    churned. A day counts as observed only with >= 50 % of the typical volume: a day with 10-30 %
    of it is a partial extract (its late orders are missing), and labels resting on it (churn:
    no sale; activation: no first sale) would read missing orders as no sales. On the real data
    this returns 2018-08-24 (the last complete day is 2018-08-23, 144 orders; with a 10 % share
    it was 2018-08-29, which kept 24-28 August at 18-40 % of normal volume). With
    column="order_delivered_customer_date" it is the end of the observed deliveries (real data:
    2018-08-31; deliveries run ~370 a weekday until 08-30, then 27, 6, 16 and a trickle to
    2018-10-17). Targets are only labelled where their horizon ends by this date. Falls back to
    max(column)+1 day.
    """
    if column not in _EVENT_COLUMNS:
        raise ValueError(f"observed_end: column must be one of {', '.join(_EVENT_COLUMNS)}")
    rows = con.execute(
        f"""
        WITH daily AS (
            SELECT CAST({column} AS DATE) AS d, count(*) AS n
            FROM stg_orders WHERE {column} IS NOT NULL GROUP BY 1
        ),
        cal AS (
            SELECT CAST(g.d AS DATE) AS d, coalesce(daily.n, 0) AS n
            FROM (SELECT range AS d FROM range(
                    (SELECT min(d) FROM daily), (SELECT max(d) FROM daily) + INTERVAL 1 DAY, INTERVAL 1 DAY)) g
            LEFT JOIN daily ON daily.d = CAST(g.d AS DATE)
        ),
        ref AS (
            SELECT d, n,
                   median(n) OVER (ORDER BY d ROWS BETWEEN 28 PRECEDING AND 1 PRECEDING) AS med_prev,
                   max(n) OVER (ORDER BY d ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS max_after
            FROM cal
        )
        SELECT min(d) FROM ref WHERE med_prev > 0 AND max_after < ? * med_prev
        """,
        [min_share],
    ).fetchall()
    end = rows[0][0] if rows else None
    if end is None:
        end = con.execute(f"SELECT CAST(max({column}) AS DATE) + INTERVAL 1 DAY FROM stg_orders").fetchall()[0][0]
    return end.date() if hasattr(end, "date") else end
