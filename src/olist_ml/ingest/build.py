"""The atomic warehouse build (docs/ingest.md, steps 3-7): the new tables are loaded and checked in a
temp file next to the target; the first ingest swaps that file in with one rename, a later one writes
its tables into the existing warehouse in one transaction (`carry.merge_into`). Any failure before that
leaves the previous warehouse untouched (byte for byte); a failure inside the transaction rolls back."""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ..config import Settings
from ..errors import InputError, OlistMLError
from ..schema import SOURCES
from . import load, runs
from .carry import checkpoint_old, merge_into
from .files import Plan, content_hash, precheck, start_digests
from .report import QUARANTINE_TABLE, RUNS_TABLE, IngestReport, TableReport
from .rules import Rules, cross_checks
from .source import Source, resolve_source
from .text import first_line, lit

_TMP_RE = re.compile(r"^\.(?P<base>.+)\.ingest-(?P<pid>\d+)-[0-9a-f]+\.tmp(\.wal)?$")


def _clean_stale_temps(target: Path) -> None:
    """Remove temp files of ingests that were killed (their process is gone)."""
    for p in target.parent.glob(f".{target.name}.ingest-*.tmp*"):
        m = _TMP_RE.match(p.name)
        if not m or m.group("base") != target.name:
            continue
        pid = int(m.group("pid"))
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            with contextlib.suppress(OSError):
                p.unlink()


def _remove(path: Path) -> None:
    for p in (path, Path(str(path) + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def progress_bar(enabled: bool, total: int):
    """A transient rich progress bar for an ingest (both engines), or a null context when not `enabled`."""
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
    )


def _open_temp(tmp: Path, settings: Settings) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp))
    if settings.threads:
        con.execute(f"SET threads = {int(settings.threads)}")
    if settings.memory_limit:
        con.execute(f"SET memory_limit = {lit(settings.memory_limit)}")
    con.execute("SET preserve_insertion_order = true")
    con.execute(
        f'CREATE TABLE {QUARANTINE_TABLE} (file VARCHAR NOT NULL, line BIGINT, "column" VARCHAR, '
        "reason VARCHAR NOT NULL, raw_value VARCHAR)"
    )
    return con


def _load_all(con: duckdb.DuckDBPyConnection, src: Source, plan: Plan, bar, task) -> tuple[dict[str, int], Rules]:
    """Every table (orders first among those with dates: they anchor the date window), then the cross checks."""
    rules = Rules(tz_ok=load.tz_support(con))
    for spec in plan.order:
        if bar:
            bar.update(task, description=f"loading {spec.stg}")
        load.load_table(
            con, spec, src.files[spec.key], plan.headers[spec.key], src.display[spec.key], plan.reps[spec.key], rules
        )
        if bar:
            bar.advance(task)
    if bar:
        bar.update(task, description="checking relations")
    checks = _cross_checks(con, plan.reps)
    if bar:
        bar.advance(task)
    return checks, rules


def _cross_checks(con: duckdb.DuckDBPyConnection, reps: dict[str, TableReport]) -> dict[str, int]:
    return cross_checks(lambda sql: int(con.execute(sql).fetchall()[0][0]), reps)


def _check_strict(con: duckdb.DuckDBPyConnection, reps: dict[str, TableReport]) -> None:
    total_q = sum(r.quarantined for r in reps.values())
    if total_q:
        first = con.execute(
            f'SELECT file, line, "column", reason FROM {QUARANTINE_TABLE} ORDER BY file, line LIMIT 1'
        ).fetchall()[0]
        raise InputError(
            f"--strict: {total_q} row(s) would be quarantined; first: {first[0]} line {first[1]}, "
            f"column {first[2]}: {first[3]} (warehouse unchanged)"
        )


def _swap(con: duckdb.DuckDBPyConnection, tmp: Path, target: Path) -> None:
    """CHECKPOINT and close the temp warehouse, then move it over the target in one rename."""
    con.execute("CHECKPOINT")
    con.close()
    if Path(str(tmp) + ".wal").exists():  # never swap in a file whose data sits in a WAL
        raise OlistMLError(f"{tmp}: temp warehouse still has a WAL after checkpoint; not swapping it in")
    os.replace(tmp, target)
    with contextlib.suppress(FileNotFoundError):
        Path(str(target) + ".wal").unlink()


def ingest(source: Path, settings: Settings, *, strict: bool = False, progress: bool = False) -> IngestReport:
    """Load SOURCE (folder of Olist CSVs or the Kaggle zip) into `stg_*` tables, atomically.

    Raises InputError (one line naming the file and the problem) on bad input, in strict mode
    when any row would be quarantined, and when a non-empty table (orders, items, customers,
    sellers) keeps no row; in every case the existing warehouse is left unchanged.
    """
    t0 = time.perf_counter()
    started = datetime.now(UTC).replace(tzinfo=None)
    target = settings.warehouse
    source = Path(source)
    with resolve_source(source) as src:
        plan = precheck(src)
        digests = start_digests(src, plan.order)
        # ---- build aside ------------------------------------------------------------------------
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_temps(target)
        tmp = target.parent / f".{target.name}.ingest-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        run_id = uuid.uuid4().hex
        con = None
        try:
            con = _open_temp(tmp, settings)
            with progress_bar(progress, len(plan.order)) as bar:
                task = bar.add_task("ingest", total=len(plan.order) + 2) if bar else None
                checks, rules = _load_all(con, src, plan, bar, task)
                fingerprint = content_hash(plan.reps, digests)
                if strict:
                    _check_strict(con, plan.reps)
                if bar:
                    bar.update(task, description="writing into the warehouse")
                checkpoint_old(target)
                kept, dropped = [], []
                if bar:
                    bar.advance(task)

            reps = plan.reps
            report = IngestReport(
                source=str(source.absolute()),
                source_kind=src.kind,
                warehouse=str(target),
                content_hash=fingerprint,
                run_id=run_id,
                tables=[reps[s.key] for s in SOURCES if s.key in reps],
                checks=checks,
                warnings=plan.notes + [w for s in SOURCES if s.key in reps for w in reps[s.key].warnings],
                groups_loaded=sorted({s.group for s in plan.order}),
                skipped=plan.skipped,
                kept_tables=kept,
                strict=strict,
                date_window=list(rules.window or ()),
            )
            report.elapsed_s = round(time.perf_counter() - t0, 3)
            runs.record_run(con, report, started)
            if not target.exists():  # the first ingest: the temp warehouse becomes the warehouse
                _swap(con, tmp, target)
                con = None
            else:  # into the existing warehouse, in one transaction: the rest of the home stays in place
                con.execute("CHECKPOINT")
                con.close()
                con = None
                report.kept_tables, dropped, report.rewritten = merge_into(
                    target, tmp, RUNS_TABLE, threads=settings.threads, memory_limit=settings.memory_limit
                )
                report.warnings += [
                    f"view {v} was not carried over: it refers to a table the new warehouse does not have"
                    for v in dropped
                ]
                _remove(tmp)
        except BaseException as e:
            for fut in digests.values():
                fut.cancel()
            if con is not None:
                with contextlib.suppress(Exception):
                    con.close()
            _remove(tmp)
            if isinstance(e, duckdb.Error) and not isinstance(e, OlistMLError):
                raise OlistMLError(f"ingest of {source} failed: {first_line(e)} (warehouse unchanged)") from e
            raise
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    return report
