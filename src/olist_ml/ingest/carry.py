"""Carrying over the previous warehouse's other tables (docs/ingest.md, step 6): every table,
sequence and view that ingest does not produce is copied from the old file (ATTACHed read-only)
into the new one."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..errors import InputError
from .report import QUARANTINE_TABLE
from .text import first_line, lit, q


def _is_ingest_table(schema: str, name: str) -> bool:
    return schema == "main" and (name.startswith("stg_") or name == QUARANTINE_TABLE)


def checkpoint_old(target: Path) -> None:
    """Fold a leftover WAL into the old file so ATTACH read-only sees everything and no stale WAL survives."""
    wal = Path(str(target) + ".wal")
    if not wal.exists():
        return
    try:
        c = duckdb.connect(str(target))
        try:
            c.execute("CHECKPOINT")
        finally:
            c.close()
    except duckdb.Error as e:
        raise InputError(f"{target}: cannot open the existing warehouse ({first_line(e)})") from None


def carry_over(con: duckdb.DuckDBPyConnection, target: Path) -> tuple[list[str], list[str]]:
    """Copy every non-ingest table, sequence and view of the old warehouse; returns (kept, views dropped)."""
    dropped: list[str] = []
    if not target.exists():
        return [], dropped
    try:
        con.execute(f"ATTACH {lit(str(target))} AS old_wh (READ_ONLY)")
    except duckdb.Error as e:
        msg = first_line(e)
        if "lock" in msg.lower():
            raise InputError(f"{target}: warehouse is in use by another process; close it and retry ({msg})") from None
        raise InputError(
            f"{target}: the existing warehouse cannot be opened ({msg}); move it away to ingest afresh"
        ) from None
    kept: list[str] = []
    try:
        for (schema,) in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'old_wh' AND NOT internal ORDER BY 1"
        ).fetchall():
            if schema != "main":
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
        for name, start, inc, minv, maxv, cycle, last in con.execute(
            "SELECT sequence_name, start_value, increment_by, min_value, max_value, cycle, last_value "
            "FROM duckdb_sequences() WHERE database_name = 'old_wh' AND schema_name = 'main' ORDER BY 1"
        ).fetchall():
            nxt = start if last is None else last + inc
            con.execute(
                f"CREATE SEQUENCE {q(name)} START WITH {nxt} INCREMENT BY {inc} MINVALUE {minv} MAXVALUE {maxv}"
                f"{' CYCLE' if cycle else ''}"
            )
        tables = con.execute(
            "SELECT schema_name, table_name, sql FROM duckdb_tables() WHERE database_name = 'old_wh' AND NOT temporary "
            "ORDER BY schema_name, table_name"
        ).fetchall()
        for schema, name, sql in tables:
            if _is_ingest_table(schema, name):
                continue
            con.execute(sql)  # same DDL (types, constraints, defaults) in the new file
            con.execute(f"INSERT INTO {q(schema)}.{q(name)} SELECT * FROM old_wh.{q(schema)}.{q(name)}")
            kept.append(name if schema == "main" else f"{schema}.{name}")
        views = con.execute(
            "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE database_name = 'old_wh' AND NOT internal "
            "AND NOT temporary ORDER BY schema_name, view_name"
        ).fetchall()
        pending = [v for v in views if not _is_ingest_table(v[0], v[1])]
        while pending:  # views over views: retry until no more can be created
            failed = []
            for schema, name, sql in pending:
                try:
                    con.execute(sql)
                    kept.append(name if schema == "main" else f"{schema}.{name}")
                except duckdb.Error:
                    failed.append((schema, name, sql))
            if len(failed) == len(pending):
                # views over something that no longer exists would not work in the old warehouse either
                dropped += [n if sch == "main" else f"{sch}.{n}" for sch, n, _ in failed]
                break
            pending = failed
    finally:
        con.execute("DETACH old_wh")
    return kept, dropped
