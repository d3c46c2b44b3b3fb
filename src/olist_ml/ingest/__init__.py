"""Validated ingestion of the raw Olist CSVs into the warehouse's `stg_*` tables.

What ingest guarantees, step by step, and why (the date window, line numbers, atomicity): see
docs/ingest.md. The modules follow its steps:

    source.py  SOURCE: a folder or the Kaggle zip (size and ratio caps)       -- both engines
    files.py   pre-checks of every file, the load plan, digests, content hash -- both engines
    rules.py   the plausibility contract: date window, value rules, cross checks -- both engines
    load.py    one table's load on DuckDB: typed rows, quarantine, stg table
    carry.py   copying the previous warehouse's other tables
    build.py   `ingest`: the atomic build (temp file, one rename)
    runs.py    the `ingest_runs` record, `summary`, `last_run`
    report.py  `IngestReport`, `TableReport`, the table names; text.py: quoting, one-line messages

The names below are the package's interface; the Spark ingest (`olist_ml.spark.ingest`) uses only
these.
"""

from __future__ import annotations

from .build import ingest, progress_bar
from .files import Plan, content_hash, precheck, start_digests
from .report import MAX_RAW, QUARANTINE_TABLE, RUNS_TABLE, IngestReport, TableReport
from .rules import (
    DATE_ANCHOR,
    DATE_FUTURE_MARGIN_DAYS,
    DATE_IQR_FACTOR,
    DATE_PAST_MARGIN_DAYS,
    LOCAL_TZ,
    ZONE_RE,
    Rules,
    ValueRule,
    cross_checks,
    value_rules,
    window_from_quartiles,
)
from .runs import RUN_COLUMNS, last_run, run_record, summary
from .source import ZIP_MAX_BYTES, ZIP_MAX_RATIO, Source, resolve_source
from .text import first_line

__all__ = [
    "DATE_ANCHOR",
    "DATE_FUTURE_MARGIN_DAYS",
    "DATE_IQR_FACTOR",
    "DATE_PAST_MARGIN_DAYS",
    "LOCAL_TZ",
    "MAX_RAW",
    "QUARANTINE_TABLE",
    "RUNS_TABLE",
    "RUN_COLUMNS",
    "ZIP_MAX_BYTES",
    "ZIP_MAX_RATIO",
    "ZONE_RE",
    "IngestReport",
    "Plan",
    "Rules",
    "Source",
    "TableReport",
    "ValueRule",
    "content_hash",
    "cross_checks",
    "first_line",
    "ingest",
    "last_run",
    "precheck",
    "progress_bar",
    "resolve_source",
    "run_record",
    "start_digests",
    "summary",
    "value_rules",
    "window_from_quartiles",
]
