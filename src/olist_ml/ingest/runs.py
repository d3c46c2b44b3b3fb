"""The record of each ingest (`ingest_runs`), and what a warehouse holds (`summary`, `last_run`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb

from .. import __version__
from ..config import Settings
from ..errors import MissingStepError
from ..schema import SOURCES, SourceTable
from .report import QUARANTINE_TABLE, RUNS_TABLE, IngestReport
from .text import q

# the columns of `ingest_runs` (both engines), in order, with their DuckDB types
RUN_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP",
    "source": "VARCHAR",
    "source_kind": "VARCHAR",
    "content_hash": "VARCHAR",
    "strict": "BOOLEAN",
    "rows_loaded": "BIGINT",
    "rows_quarantined": "BIGINT",
    "table_counts": "VARCHAR",
    "checks": "VARCHAR",
    "warnings": "VARCHAR",
    "skipped": "VARCHAR",
    "olist_ml_version": "VARCHAR",
}


def run_record(rep: IngestReport, started: datetime) -> dict:
    """The `ingest_runs` row of one ingest (RUN_COLUMNS; finished now), on either engine."""
    counts = {
        t.stg: {
            "file": t.file,
            "loaded": t.loaded,
            "quarantined": t.quarantined,
            "warnings": len(t.warnings),
            "sha256": t.sha256,
        }
        for t in rep.tables
    }
    return {
        "run_id": rep.run_id,
        "started_at": started,
        "finished_at": datetime.now(UTC).replace(tzinfo=None),
        "source": rep.source,
        "source_kind": rep.source_kind,
        "content_hash": rep.content_hash,
        "strict": rep.strict,
        "rows_loaded": sum(t.loaded for t in rep.tables),
        "rows_quarantined": rep.quarantined,
        "table_counts": json.dumps(counts, sort_keys=True),
        "checks": json.dumps(rep.checks, sort_keys=True),
        "warnings": json.dumps(rep.warnings),
        "skipped": json.dumps(rep.skipped),
        "olist_ml_version": __version__,
    }


def record_run(con: duckdb.DuckDBPyConnection, rep: IngestReport, started: datetime) -> None:
    """Append this ingest's row to `ingest_runs` (created when absent) in the temp warehouse."""
    ddl = ", ".join(f"{c} {t}" for c, t in RUN_COLUMNS.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS {RUNS_TABLE} ({ddl})")
    row = run_record(rep, started)
    select = ", ".join(f"? AS {c}" for c in row)
    con.execute(f"INSERT INTO {RUNS_TABLE} BY NAME SELECT {select}", list(row.values()))


def _date_column(spec: SourceTable) -> str | None:
    for c in spec.columns:
        if c.type in ("TIMESTAMP", "DATE"):
            return c.name
    return None


def summary(settings: Settings) -> list[dict]:
    """One row per stg table in the warehouse: rows, main date column and its range, quarantined rows."""
    path = settings.warehouse
    if not path.exists():
        raise MissingStepError(f"no warehouse at {path}: run `olist-ml ingest SOURCE` first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = "
                "'main'"
            ).fetchall()
        }
        if not any(t.startswith("stg_") for t in tables):
            raise MissingStepError(f"warehouse {path} has no stg_* tables: run `olist-ml ingest SOURCE` first")
        quarantined: dict[str, int] = {}
        if QUARANTINE_TABLE in tables:
            rows = con.execute(
                f"SELECT file, count(DISTINCT coalesce(line, -1)) FROM {QUARANTINE_TABLE} GROUP BY file"
            ).fetchall()
            for f, n in rows:
                base = f[:-3] if f.endswith(".gz") else f
                quarantined[base] = n
        out = []
        for spec in SOURCES:
            if spec.stg not in tables:
                continue
            dcol = _date_column(spec)
            if dcol:
                n, lo, hi = con.execute(f"SELECT count(*), min({q(dcol)}), max({q(dcol)}) FROM {spec.stg}").fetchall()[
                    0
                ]
            else:
                n, lo, hi = con.execute(f"SELECT count(*) FROM {spec.stg}").fetchall()[0][0], None, None
            out.append(
                {
                    "table": spec.stg,
                    "file": spec.file,
                    "rows": int(n),
                    "date_column": dcol,
                    "min": lo,
                    "max": hi,
                    "quarantined": quarantined.get(spec.file, 0),
                }
            )
        return out
    finally:
        con.close()


def last_run(settings: Settings) -> dict | None:
    """The latest `ingest_runs` row as a dict, or None."""
    path = settings.warehouse
    if not path.exists():
        return None
    con = duckdb.connect(str(path), read_only=True)
    try:
        try:
            cur = con.execute(f"SELECT * FROM {RUNS_TABLE} ORDER BY finished_at DESC LIMIT 1")
        except duckdb.CatalogException:
            return None
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
        return dict(zip(cols, rows[0], strict=False)) if rows else None
    finally:
        con.close()
