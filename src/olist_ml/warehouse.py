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


def replace_table_atomically(con: duckdb.DuckDBPyConnection, name: str, select_sql: str, params=None) -> int:
    """CREATE OR REPLACE inside one transaction: readers see the old table or the new one, never half."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS {select_sql}", params or [])
        n = con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return n


def warehouse_path(settings: Settings) -> Path:
    return settings.warehouse
