"""DuckDB warehouse access: connections, table checks, atomic table replacement."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

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
def session(settings: Settings, read_only: bool = False, must_exist: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
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


def warehouse_path(settings: Settings) -> Path:
    return settings.warehouse


def observed_end(con: duckdb.DuckDBPyConnection, min_share: float = 0.10):
    """Exclusive end of the observed data: the first day from which every later day's order
    count stays below `min_share` of the median daily count of the 28 days before it.

    i.e. the first day d with max(n over [d, end]) < min_share * median(n over [d-28, d)).
    The real Olist extract tails off: ~250 orders a day until 2018-08-22, then 14, 4, 1 and a
    few stray (cancelled) orders until 2018-10-17. Taking `max(order_purchase_timestamp)` as the
    end would label every seller active in August 2018 as churned. Targets are only labelled
    where their horizon ends before this date. Falls back to max(purchase)+1 day.
    """
    rows = con.execute(
        """
        WITH daily AS (
            SELECT CAST(order_purchase_timestamp AS DATE) AS d, count(*) AS n
            FROM stg_orders GROUP BY 1
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
        end = con.execute("SELECT CAST(max(order_purchase_timestamp) AS DATE) + INTERVAL 1 DAY FROM stg_orders").fetchall()[0][0]
    return end.date() if hasattr(end, "date") else end
