"""Validated ingestion of the raw Olist CSVs into the DuckDB warehouse (`stg_*` tables).

Pipeline (all set-based SQL in DuckDB, no Python row loops):

1. Resolve SOURCE: a folder of CSVs (plain `.csv` or `.csv.gz`, at the top level or one or two
   folders down) or the Kaggle zip (members at the root or in a subfolder; the matching members
   are extracted to a temporary folder, then read like a folder).
2. Pre-check every file in Python on its first 64 KiB: exists, not empty, valid gzip, text (not
   binary, not an HTML page), UTF-8, header has every column `schema.py` asks for (extra columns
   are a warning). Anything wrong is an `InputError` naming the file: nothing is changed.
3. Build the new warehouse in a temp file next to the target. Per table:
   - `read_csv(..., auto_detect=false)` with every column VARCHAR, explicit delimiter/quote/escape,
     strict mode and `store_rejects`: a malformed record (wrong number of fields, unterminated
     quote, bad UTF-8) goes to quarantine, not into a crash;
   - explicit `TRY_CAST` per column; a row with a value that cannot be typed (TRY_CAST is NULL
     while the raw value is not) or a NULL in a non-nullable column goes to quarantine;
   - primary key duplicates: the first occurrence (in file order) is kept, later ones go to
     quarantine;
   - the remaining rows are written to `stg_<table>` in file order.
4. Cross-table checks (counted, reported as warnings, never dropped): foreign keys from
   `schema.FOREIGN_KEYS`, duplicate review_id, orders without items / without payment,
   timestamps out of order.
5. `ingest_quarantine(file, line, column, reason, raw_value)` and a new row in `ingest_runs`.
6. Tables that are not produced by ingest (feature store, ABTs, scores, `ingest_runs` history,
   views) are copied from the previous warehouse (ATTACHed read-only) into the new one.
7. CHECKPOINT, close, `os.replace(temp, target)`. Any failure before that removes the temp file
   and leaves the previous warehouse untouched; `--strict` with quarantined rows fails here too.

Line numbers in `ingest_quarantine` are physical line numbers of the CSV (header = line 1): the
record index plus every newline embedded in quoted values of the records before it (the reviews
file has multi-line comments), plus the lines of malformed records (which DuckDB reports with
their own line). Blank lines, which DuckDB skips, are not counted.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from . import __version__
from .config import Settings
from .errors import InputError, MissingStepError, OlistMLError
from .schema import FOREIGN_KEYS, SOURCES, SOURCES_BY_KEY, SourceTable

# Tables that ingest (re)builds; everything else in an existing warehouse is carried over.
QUARANTINE_TABLE = "ingest_quarantine"
RUNS_TABLE = "ingest_runs"
_MAX_RAW = 1000  # raw_value is cut to this many characters in the quarantine
_HEAD_BYTES = 64 * 1024


# --------------------------------------------------------------------------------------------
# Report types
# --------------------------------------------------------------------------------------------
@dataclass
class TableReport:
    key: str
    stg: str
    file: str  # file name as found in SOURCE ("" when the optional file is absent)
    loaded: int = 0  # rows written to stg
    quarantined: int = 0  # rows left out (distinct records)
    warnings: list[str] = field(default_factory=list)
    sha256: str = ""


@dataclass
class IngestReport:
    source: str
    source_kind: str  # "folder" | "zip"
    warehouse: str
    content_hash: str
    run_id: str
    tables: list[TableReport]
    checks: dict[str, int]  # named cross-table counts (fk_*, orders_without_items, ...)
    warnings: list[str]  # every warning, one line each, table warnings included
    groups_loaded: list[str]  # "ecommerce", "geolocation", "marketing" (partial marketing noted in warnings)
    skipped: list[str]  # optional tables whose file was not found
    kept_tables: list[str]  # tables carried over from the previous warehouse
    elapsed_s: float = 0.0
    strict: bool = False

    @property
    def quarantined(self) -> int:
        return sum(t.quarantined for t in self.tables)

    @property
    def loaded(self) -> dict[str, int]:
        return {t.stg: t.loaded for t in self.tables}

    def table(self, key: str) -> TableReport:
        for t in self.tables:
            if t.key == key or t.stg == key:
                return t
        raise KeyError(key)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["quarantined"] = self.quarantined
        return d


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    """Quote an SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _first_line(msg: str) -> str:
    for line in str(msg).splitlines():
        if line.strip():
            return line.strip()
    return str(msg).strip()


def _processing_order() -> list[SourceTable]:
    # the translation must be loaded before products (stg_products joins it)
    order = [s for s in SOURCES if s.key == "category_translation"]
    order += [s for s in SOURCES if s.key != "category_translation"]
    return order


# --------------------------------------------------------------------------------------------
# Source resolution (folder or zip)
# --------------------------------------------------------------------------------------------
@dataclass
class _Source:
    root: Path  # folder holding the files (the extraction folder for a zip)
    kind: str
    files: dict[str, Path]  # table key -> file
    display: dict[str, str]  # table key -> name shown in messages (zip member path for zips)


def _match_key(name: str) -> str | None:
    base = name[:-3] if name.endswith(".gz") else name
    for s in SOURCES:
        if s.file == base:
            return s.key
    return None


def _find_in_folder(folder: Path, max_depth: int = 2) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}

    def walk(d: Path, depth: int) -> None:
        try:
            entries = sorted(d.iterdir())
        except OSError as e:
            raise InputError(f"{d}: cannot list folder ({e.strerror or e})") from None
        for p in entries:
            if p.name.startswith((".", "__MACOSX")):
                continue
            if p.is_dir():
                if depth < max_depth:
                    walk(p, depth + 1)
            elif p.is_file():
                key = _match_key(p.name)
                if key:
                    found.setdefault(key, []).append(p)

    walk(folder, 0)
    return found


def _pick(found: dict[str, list], where: str, show=str) -> dict:
    out = {}
    for key, cands in found.items():
        if len(cands) > 1:
            names = ", ".join(show(c) for c in cands)
            raise InputError(f"{where}: {SOURCES_BY_KEY[key].file} is there more than once ({names}); keep one")
        out[key] = cands[0]
    return out


def _check_required(files: dict, where: str) -> None:
    missing = [s.file for s in SOURCES if s.required and s.key not in files]
    if missing:
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise InputError(f"{where}: missing required file {missing[0]} (or {missing[0]}.gz){more}")


@contextlib.contextmanager
def _resolve(source: Path) -> Iterator[_Source]:
    source = Path(source).expanduser()
    if not source.exists():
        raise InputError(f"{source}: no such file or folder (SOURCE must be a folder of Olist CSVs or the Kaggle zip)")
    if source.is_dir():
        files = _pick(_find_in_folder(source), str(source))
        _check_required(files, str(source))
        yield _Source(source, "folder", files, {k: str(p.relative_to(source)) for k, p in files.items()})
        return
    if not zipfile.is_zipfile(source):
        if source.suffix.lower() == ".zip":
            raise InputError(f"{source}: truncated or corrupt zip file (no zip central directory)")
        raise InputError(f"{source}: not a folder or a zip file (SOURCE must be a folder of Olist CSVs or the Kaggle zip)")
    tmp = Path(tempfile.mkdtemp(prefix="olist-ingest-zip-"))
    try:
        try:
            zf = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise InputError(f"{source}: truncated or corrupt zip file ({_first_line(e)})") from None
        with zf:
            found: dict[str, list[zipfile.ZipInfo]] = {}
            for info in zf.infolist():
                if info.is_dir():
                    continue
                parts = info.filename.replace("\\", "/").split("/")
                if any(p.startswith((".", "__MACOSX")) for p in parts):
                    continue
                key = _match_key(parts[-1])
                if key:
                    found.setdefault(key, []).append(info)
            members = _pick(found, str(source), show=lambda i: i.filename)
            _check_required(members, f"{source} (zip)")
            files, display = {}, {}
            for key, info in sorted(members.items()):
                dest = tmp / Path(info.filename).name
                display[key] = f"{source.name}:{info.filename}"
                try:
                    with zf.open(info) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except (zipfile.BadZipFile, EOFError, zlib.error, OSError, RuntimeError, NotImplementedError) as e:
                    raise InputError(f"{display[key]}: truncated or corrupt zip member ({_first_line(e)})") from None
                files[key] = dest
        yield _Source(tmp, "zip", files, display)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# File pre-checks (header, encoding, binary/HTML, gzip)
# --------------------------------------------------------------------------------------------
def _read_head(path: Path, shown: str) -> bytes:
    if path.stat().st_size == 0:
        raise InputError(f"{shown}: empty file (0 bytes)")
    if path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                return f.read(_HEAD_BYTES)
        except gzip.BadGzipFile:
            raise InputError(f"{shown}: not a valid gzip file (named .gz but not gzip-compressed)") from None
        except (EOFError, zlib.error, OSError) as e:
            raise InputError(f"{shown}: truncated or corrupt gzip file ({_first_line(e)})") from None
    with open(path, "rb") as f:
        return f.read(_HEAD_BYTES)


def _header(path: Path, shown: str) -> list[str]:
    head = _read_head(path, shown)
    if not head.strip():
        raise InputError(f"{shown}: empty file (no header line)")
    if head[:2] == b"\x1f\x8b":
        raise InputError(f"{shown}: gzip-compressed data in a file not named .gz (rename it to {path.name}.gz)")
    if head[:4] == b"PK\x03\x04":
        raise InputError(f"{shown}: a zip archive, not a CSV file")
    if b"\x00" in head:
        raise InputError(f"{shown}: not a CSV file (binary content)")
    try:
        text = head.decode("utf-8-sig") if len(head) < _HEAD_BYTES else _decode_prefix(head)
    except UnicodeDecodeError as e:
        line = head[: e.start].count(b"\n") + 1
        raise InputError(f"{shown}: not UTF-8 encoded text (invalid byte on line {line}); re-save it as UTF-8") from None
    low = text.lstrip().lower()
    if low.startswith(("<!doctype html", "<html", "<?xml", "<head", "<body")):
        raise InputError(f"{shown}: an HTML/XML page, not a CSV file (a failed download?)")
    first = text.splitlines()[0] if text.splitlines() else ""
    try:
        header = next(csv.reader(io.StringIO(first)))
    except (csv.Error, StopIteration):
        raise InputError(f"{shown}: cannot parse the CSV header line") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise InputError(f"{shown}: empty header line")
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise InputError(f"{shown}: duplicate column {dups[0]} in the header")
    return header


def _decode_prefix(head: bytes) -> str:
    # a 64 KiB prefix may end in the middle of a UTF-8 sequence: decode incrementally
    dec = __import__("codecs").getincrementaldecoder("utf-8-sig")()
    return dec.decode(head, final=False)


def _check_columns(spec: SourceTable, header: list[str], shown: str) -> list[str]:
    missing = [c for c in spec.source_names if c not in header]
    if missing:
        have = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
        raise InputError(f"{shown}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (header has: {have})")
    extra = [h for h in header if h not in spec.source_names]
    return [f"{shown}: extra column{'s' if len(extra) > 1 else ''} ignored: {', '.join(extra)}"] if extra else []


def _digest(path: Path, shown: str) -> str:
    """sha256 of the file's bytes; a .gz file is also decompressed to the end to check its CRC and length.

    DuckDB's gzip reader notices a truncated stream but not corrupted bytes (it does not check the
    CRC), so this runs alongside the load (zlib releases the GIL) and a bad file fails the ingest.
    """
    h = hashlib.sha256()
    gz = path.name.endswith(".gz")
    d = zlib.decompressobj(31) if gz else None
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                while d is not None and chunk:
                    d.decompress(chunk, 1 << 22)
                    chunk = d.unconsumed_tail
                    if d.eof and d.unused_data:  # multi-member gzip: next member
                        rest = d.unused_data + chunk
                        d = zlib.decompressobj(31)
                        chunk = rest
        if d is not None and not d.eof:
            raise EOFError("unexpected end of gzip stream")
    except (zlib.error, EOFError) as e:
        raise InputError(f"{shown}: truncated or corrupt gzip file ({e})") from None
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Per-table load: raw VARCHAR -> typed -> quarantine -> stg
# --------------------------------------------------------------------------------------------
def _read_csv_sql(path: Path, header: list[str], rejects: str) -> str:
    cols = ", ".join(f"{_lit(h)}: 'VARCHAR'" for h in header)
    return (
        f"read_csv({_lit(str(path))}, header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
        f"strict_mode=true, columns={{{cols}}}, store_rejects=true, "
        f"rejects_table={_lit(rejects + '_err')}, rejects_scan={_lit(rejects + '_scan')}, "
        f"compression={_lit('gzip' if path.name.endswith('.gz') else 'none')})"
    )


def _load_table(
    con: duckdb.DuckDBPyConnection, spec: SourceTable, path: Path, header: list[str], shown: str, rep: TableReport
) -> None:
    raw, typed, bad, rej = f"raw_{spec.key}", f"typed_{spec.key}", f"bad_{spec.key}", f"rej_{spec.key}"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS SELECT * FROM {_read_csv_sql(path, header, rej)}")
    except duckdb.Error as e:
        msg = _first_line(e)
        if "gzip" in msg.lower() or "GZIP" in str(e):
            raise InputError(f"{shown}: truncated or corrupt gzip file ({msg})") from None
        raise InputError(f"{shown}: cannot read as CSV ({msg})") from None

    # 1. typed view of every record, keeping the raw text of cast columns
    sel = ["rowid AS _rec"]
    for c in spec.columns:
        if c.type == "VARCHAR":
            sel.append(f"{_q(c.source)} AS {_q(c.name)}")
        else:
            sel.append(f"{_q(c.source)} AS {_q('_raw_' + c.name)}")
            sel.append(f"TRY_CAST({_q(c.source)} AS {c.type}) AS {_q(c.name)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {typed} AS SELECT {', '.join(sel)} FROM {raw}")

    # 2. quarantine: untypable values, NULLs in non-nullable columns
    parts = []
    for c in spec.columns:
        rawc = _q(c.name) if c.type == "VARCHAR" else _q("_raw_" + c.name)
        conds, reasons = [], []
        if not c.nullable:
            conds.append(f"{rawc} IS NULL")
            reasons.append(f"WHEN {rawc} IS NULL THEN 'missing value in non-nullable column'")
        if c.type != "VARCHAR":
            conds.append(f"({rawc} IS NOT NULL AND {_q(c.name)} IS NULL)")
            reasons.append(f"WHEN {_q(c.name)} IS NULL THEN 'cannot cast to {c.type}'")
        if conds:
            parts.append(
                f"SELECT _rec, NULL::BIGINT AS line, {_lit(c.name)} AS col, CASE {' '.join(reasons)} END AS reason, "
                f"{rawc} AS raw_value FROM {typed} WHERE {' OR '.join(conds)}"
            )
    if not parts:
        parts.append(
            "SELECT NULL::BIGINT AS _rec, NULL::BIGINT AS line, NULL::VARCHAR AS col, NULL::VARCHAR AS reason, "
            "NULL::VARCHAR AS raw_value WHERE false"
        )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {bad} AS {' UNION ALL '.join(parts)}")

    # 3. primary key duplicates among the rows that typed cleanly: keep the first, quarantine the rest
    if spec.primary_key:
        pk = ", ".join(_q(k) for k in spec.primary_key)
        key_text = " || ',' || ".join(f"CAST({_q(k)} AS VARCHAR)" for k in spec.primary_key)
        con.execute(
            f"""INSERT INTO {bad}
            SELECT _rec, NULL, {_lit(','.join(spec.primary_key))},
                   'duplicate primary key (' || {_lit(','.join(spec.primary_key))} || ') first seen at record ' || first_rec,
                   {key_text}
            FROM (SELECT _rec, {pk}, row_number() OVER (PARTITION BY {pk} ORDER BY _rec) AS rn,
                         min(_rec) OVER (PARTITION BY {pk}) AS first_rec
                  FROM {typed} WHERE _rec NOT IN (SELECT _rec FROM {bad}))
            WHERE rn > 1"""
        )

    # 4. physical line numbers for quarantined records (only when there are some)
    n_bad = con.execute(f"SELECT count(DISTINCT _rec) FROM {bad}").fetchall()[0][0]
    rejects = _rejects(con, rej)
    if n_bad:
        _fill_lines(con, raw, bad, header, rejects)
    rep.quarantined = n_bad + len(rejects)
    if rejects:
        con.executemany(
            f"INSERT INTO {bad} VALUES (NULL, ?, ?, ?, ?)",
            [(line, col, reason, value) for line, _span, col, reason, value in rejects],
        )
        rep.warnings.append(f"{shown}: {len(rejects)} malformed CSV record(s) quarantined (first at line {rejects[0][0]})")

    # 5. the stg table: clean rows in file order
    cols = [(c.name, c.type, c.nullable) for c in spec.columns]
    select = ", ".join(f"t.{_q(n)}" for n, _, _ in cols)
    join = ""
    if spec.extra.get("translated"):
        cols.append(("product_category_name_english", "VARCHAR", True))
        select += ", tr.product_category_name_english"
        join = "LEFT JOIN stg_product_category_name_translation tr ON tr.product_category_name = t.product_category_name"
    ddl = ", ".join(f"{_q(n)} {t}{'' if nullable else ' NOT NULL'}" for n, t, nullable in cols)
    con.execute(f"CREATE TABLE {spec.stg} ({ddl})")
    con.execute(
        f"INSERT INTO {spec.stg} SELECT {select} FROM {typed} t {join} "
        f"WHERE t._rec NOT IN (SELECT _rec FROM {bad} WHERE _rec IS NOT NULL) ORDER BY t._rec"
    )
    rep.loaded = con.execute(f"SELECT count(*) FROM {spec.stg}").fetchall()[0][0]
    if rep.loaded == 0 and rep.quarantined == 0:
        rep.warnings.append(f"{shown}: header only, no data rows")

    # 6. into the quarantine
    con.execute(
        f"INSERT INTO {QUARANTINE_TABLE} SELECT {_lit(rep.file)}, line, col, reason, left(raw_value, {_MAX_RAW}) "
        f"FROM {bad} ORDER BY line, col"
    )
    if n_bad:
        first = con.execute(
            f"SELECT line, col, reason FROM {bad} WHERE _rec IS NOT NULL ORDER BY line, col LIMIT 1"
        ).fetchall()[0]
        rep.warnings.append(f"{shown}: {n_bad} row(s) quarantined (first: line {first[0]}, column {first[1]}: {first[2]})")
    for t in (raw, typed, bad):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _rejects(con: duckdb.DuckDBPyConnection, rej: str) -> list[tuple]:
    """Malformed records DuckDB's reader rejected: (line, span, column, reason, raw line)."""
    try:
        rows = con.execute(
            f"SELECT line, csv_line, column_name, error_type, error_message FROM {rej}_err ORDER BY line, column_idx"
        ).fetchall()
    except duckdb.CatalogException:
        return []
    finally:
        for suffix in ("_err", "_scan"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {rej}{suffix}")
    out, seen = [], set()
    for line, csv_line, col, etype, emsg in rows:
        if line in seen:  # one record can have several errors: quarantine it once per error, count once
            continue
        seen.add(line)
        text = csv_line or ""
        span = text.rstrip("\r\n").count("\n") + 1
        out.append((int(line), span, col or "", f"malformed CSV record: {etype}: {_first_line(emsg)}", text[:_MAX_RAW]))
    return out


def _fill_lines(con: duckdb.DuckDBPyConnection, raw: str, bad: str, header: list[str], rejects: list[tuple]) -> None:
    nl = " + ".join(f"coalesce(length({_q(h)}) - length(replace({_q(h)}, chr(10), '')), 0)" for h in header)
    # lines of malformed (rejected) records shift every later record: thresholds T_k / shifts S_k
    thr, shift = [], 0
    for line, span, *_ in rejects:
        thr.append((line - shift, shift + span))
        shift += span
    shift_sql = "0"
    if thr:
        values = ", ".join(f"({t}, {s})" for t, s in thr)
        shift_sql = f"coalesce((SELECT max(s) FROM (VALUES {values}) v(t, s) WHERE v.t <= base), 0)"
    con.execute(
        f"""UPDATE {bad} SET line = m.line FROM (
              SELECT _rec, base + {shift_sql} AS line FROM (
                SELECT rowid AS _rec,
                       2 + rowid + coalesce(sum({nl}) OVER (ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS base
                FROM {raw})
              WHERE _rec IN (SELECT _rec FROM {bad})) m
            WHERE {bad}._rec = m._rec"""
    )


# --------------------------------------------------------------------------------------------
# Cross-table checks (counted, never dropped)
# --------------------------------------------------------------------------------------------
_TS_ORDER_CHECKS = (
    ("orders", "orders_approved_before_purchase", "order_approved_at < order_purchase_timestamp"),
    ("orders", "orders_carrier_before_approved", "order_delivered_carrier_date < order_approved_at"),
    ("orders", "orders_delivered_before_carrier", "order_delivered_customer_date < order_delivered_carrier_date"),
    ("orders", "orders_delivered_before_purchase", "order_delivered_customer_date < order_purchase_timestamp"),
    ("order_reviews", "reviews_answered_before_created", "review_answer_timestamp < review_creation_date"),
)


def _cross_checks(con: duckdb.DuckDBPyConnection, reps: dict[str, TableReport]) -> dict[str, int]:
    checks: dict[str, int] = {}

    def count(sql: str) -> int:
        return int(con.execute(sql).fetchall()[0][0])

    def warn(key: str, msg: str) -> None:
        reps[key].warnings.append(f"{reps[key].file}: {msg}")

    for child, ccols, parent, pcols in FOREIGN_KEYS:
        if child not in reps or parent not in reps:
            continue
        c, p = SOURCES_BY_KEY[child], SOURCES_BY_KEY[parent]
        on = " AND ".join(f"c.{_q(a)} = p.{_q(b)}" for a, b in zip(ccols, pcols))
        notnull = " AND ".join(f"c.{_q(a)} IS NOT NULL" for a in ccols)
        n = count(f"SELECT count(*) FROM {c.stg} c ANTI JOIN {p.stg} p ON {on} WHERE {notnull}")
        name = f"fk_{child}_{'_'.join(ccols)}_not_in_{parent}"
        checks[name] = n
        if n:
            warn(child, f"{n} row(s) whose {','.join(ccols)} is not in {p.stg} (kept)")
    if "order_reviews" in reps:
        n = count(
            "SELECT count(*) FROM (SELECT review_id FROM stg_order_reviews GROUP BY review_id HAVING count(*) > 1)"
        )
        checks["duplicate_review_ids"] = n
        if n:
            warn("order_reviews", f"{n} review_id(s) appear on more than one order (kept; key is review_id, order_id)")
    if "orders" in reps and "order_items" in reps:
        n = count("SELECT count(*) FROM stg_orders o ANTI JOIN stg_order_items i ON i.order_id = o.order_id")
        checks["orders_without_items"] = n
        if n:
            warn("orders", f"{n} order(s) without items (kept)")
    if "orders" in reps and "order_payments" in reps:
        n = count("SELECT count(*) FROM stg_orders o ANTI JOIN stg_order_payments p ON p.order_id = o.order_id")
        checks["orders_without_payment"] = n
        if n:
            warn("orders", f"{n} order(s) without payment (kept)")
    for key, name, cond in _TS_ORDER_CHECKS:
        if key in reps:
            n = count(f"SELECT count(*) FROM {SOURCES_BY_KEY[key].stg} WHERE {cond}")
            checks[name] = n
            if n:
                warn(key, f"{n} row(s) with timestamps out of order: {cond} (kept)")
    return checks


# --------------------------------------------------------------------------------------------
# Carrying over the previous warehouse's other tables
# --------------------------------------------------------------------------------------------
def _is_ingest_table(schema: str, name: str) -> bool:
    return schema == "main" and (name.startswith("stg_") or name == QUARANTINE_TABLE)


def _checkpoint_old(target: Path) -> None:
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
        raise InputError(f"{target}: cannot open the existing warehouse ({_first_line(e)})") from None


def _carry_over(con: duckdb.DuckDBPyConnection, target: Path) -> tuple[list[str], list[str]]:
    """Copy every non-ingest table, sequence and view of the old warehouse; returns (kept, views dropped)."""
    dropped: list[str] = []
    if not target.exists():
        return [], dropped
    try:
        con.execute(f"ATTACH {_lit(str(target))} AS old_wh (READ_ONLY)")
    except duckdb.Error as e:
        msg = _first_line(e)
        if "lock" in msg.lower():
            raise InputError(f"{target}: warehouse is in use by another process; close it and retry ({msg})") from None
        raise InputError(f"{target}: the existing warehouse cannot be opened ({msg}); move it away to ingest afresh") from None
    kept: list[str] = []
    try:
        for (schema,) in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'old_wh' AND NOT internal ORDER BY 1"
        ).fetchall():
            if schema != "main":
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
        for name, start, inc, minv, maxv, cycle, last in con.execute(
            "SELECT sequence_name, start_value, increment_by, min_value, max_value, cycle, last_value "
            "FROM duckdb_sequences() WHERE database_name = 'old_wh' AND schema_name = 'main' ORDER BY 1"
        ).fetchall():
            nxt = start if last is None else last + inc
            con.execute(
                f"CREATE SEQUENCE {_q(name)} START WITH {nxt} INCREMENT BY {inc} MINVALUE {minv} MAXVALUE {maxv}"
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
            con.execute(f"INSERT INTO {_q(schema)}.{_q(name)} SELECT * FROM old_wh.{_q(schema)}.{_q(name)}")
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


# --------------------------------------------------------------------------------------------
# Atomic build
# --------------------------------------------------------------------------------------------
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


def _progress(enabled: bool, total: int):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), transient=True)


def ingest(source: Path, settings: Settings, *, strict: bool = False, progress: bool = False) -> IngestReport:
    """Load SOURCE (folder of Olist CSVs or the Kaggle zip) into `stg_*` tables, atomically.

    Raises InputError (one line naming the file and the problem) on bad input, and in strict mode
    when any row would be quarantined; in both cases the existing warehouse is left unchanged.
    """
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    target = settings.warehouse
    source = Path(source)
    with _resolve(source) as src:
        # ---- pre-checks: every file, before anything is written -------------------------------
        order = [s for s in _processing_order() if s.key in src.files]
        headers: dict[str, list[str]] = {}
        reps: dict[str, TableReport] = {}
        for spec in order:
            shown = src.display[spec.key]
            headers[spec.key] = _header(src.files[spec.key], shown)
            reps[spec.key] = TableReport(spec.key, spec.stg, src.files[spec.key].name)
            reps[spec.key].warnings += _check_columns(spec, headers[spec.key], shown)
        skipped = [s.stg for s in SOURCES if not s.required and s.key not in src.files]
        notes: list[str] = []
        mk = [s.key for s in SOURCES if s.group == "marketing"]
        have_mk = [k for k in mk if k in src.files]
        if have_mk and len(have_mk) < len(mk):
            notes.append(
                f"marketing funnel is partial: loaded {', '.join(SOURCES_BY_KEY[k].file for k in have_mk)}, "
                f"missing {', '.join(SOURCES_BY_KEY[k].file for k in mk if k not in src.files)}"
            )
        # hash (and for .gz verify) every file in a background thread while DuckDB loads
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="olist-ingest-digest")
        digests = {s.key: pool.submit(_digest, src.files[s.key], src.display[s.key]) for s in order}
        pool.shutdown(wait=False)

        # ---- build aside ------------------------------------------------------------------------
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_temps(target)
        tmp = target.parent / f".{target.name}.ingest-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        run_id = uuid.uuid4().hex
        con = None
        try:
            con = duckdb.connect(str(tmp))
            if settings.threads:
                con.execute(f"SET threads = {int(settings.threads)}")
            if settings.memory_limit:
                con.execute(f"SET memory_limit = {_lit(settings.memory_limit)}")
            con.execute("SET preserve_insertion_order = true")
            con.execute(
                f"CREATE TABLE {QUARANTINE_TABLE} (file VARCHAR NOT NULL, line BIGINT, \"column\" VARCHAR, "
                "reason VARCHAR NOT NULL, raw_value VARCHAR)"
            )
            with _progress(progress, len(order)) as bar:
                task = bar.add_task("ingest", total=len(order) + 2) if bar else None
                for spec in order:
                    if bar:
                        bar.update(task, description=f"loading {spec.stg}")
                    _load_table(con, spec, src.files[spec.key], headers[spec.key], src.display[spec.key], reps[spec.key])
                    if bar:
                        bar.advance(task)
                if bar:
                    bar.update(task, description="checking relations")
                checks = _cross_checks(con, reps)
                if bar:
                    bar.advance(task)
                for key, fut in digests.items():
                    reps[key].sha256 = fut.result()  # raises InputError for a corrupt .gz
                content_hash = hashlib.sha256(
                    "".join(f"{SOURCES_BY_KEY[k].file}:{reps[k].sha256}\n" for k in sorted(reps)).encode()
                ).hexdigest()
                total_q = sum(r.quarantined for r in reps.values())
                if strict and total_q:
                    first = con.execute(
                        f"SELECT file, line, \"column\", reason FROM {QUARANTINE_TABLE} ORDER BY file, line LIMIT 1"
                    ).fetchall()[0]
                    raise InputError(
                        f"--strict: {total_q} row(s) would be quarantined; first: {first[0]} line {first[1]}, "
                        f"column {first[2]}: {first[3]} (warehouse unchanged)"
                    )
                if bar:
                    bar.update(task, description="carrying over other tables")
                _checkpoint_old(target)
                kept, dropped = _carry_over(con, target)
                notes += [f"view {v} was not carried over: it refers to a table the new warehouse does not have"
                          for v in dropped]
                if bar:
                    bar.advance(task)

            report = IngestReport(
                source=str(source.absolute()),
                source_kind=src.kind,
                warehouse=str(target),
                content_hash=content_hash,
                run_id=run_id,
                tables=[reps[s.key] for s in SOURCES if s.key in reps],
                checks=checks,
                warnings=notes + [w for s in SOURCES if s.key in reps for w in reps[s.key].warnings],
                groups_loaded=sorted({s.group for s in order}),
                skipped=skipped,
                kept_tables=kept,
                strict=strict,
            )
            report.elapsed_s = round(time.perf_counter() - t0, 3)
            _record_run(con, report, started)
            con.execute("CHECKPOINT")
            con.close()
            con = None
            if Path(str(tmp) + ".wal").exists():  # never swap in a file whose data sits in a WAL
                raise OlistMLError(f"{tmp}: temp warehouse still has a WAL after checkpoint; not swapping it in")
            os.replace(tmp, target)
            with contextlib.suppress(FileNotFoundError):
                Path(str(target) + ".wal").unlink()
        except BaseException as e:
            for fut in digests.values():
                fut.cancel()
            if con is not None:
                with contextlib.suppress(Exception):
                    con.close()
            _remove(tmp)
            if isinstance(e, duckdb.Error) and not isinstance(e, OlistMLError):
                raise OlistMLError(f"ingest of {source} failed: {_first_line(e)} (warehouse unchanged)") from e
            raise
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    return report


def _record_run(con: duckdb.DuckDBPyConnection, rep: IngestReport, started: datetime) -> None:
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
            run_id VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, source VARCHAR, source_kind VARCHAR,
            content_hash VARCHAR, strict BOOLEAN, rows_loaded BIGINT, rows_quarantined BIGINT,
            table_counts VARCHAR, checks VARCHAR, warnings VARCHAR, skipped VARCHAR, olist_ml_version VARCHAR)"""
    )
    counts = {
        t.stg: {"file": t.file, "loaded": t.loaded, "quarantined": t.quarantined, "warnings": len(t.warnings), "sha256": t.sha256}
        for t in rep.tables
    }
    con.execute(
        f"INSERT INTO {RUNS_TABLE} BY NAME SELECT ? AS run_id, ? AS started_at, ? AS finished_at, ? AS source, "
        "? AS source_kind, ? AS content_hash, ? AS strict, ? AS rows_loaded, ? AS rows_quarantined, ? AS table_counts, "
        "? AS checks, ? AS warnings, ? AS skipped, ? AS olist_ml_version",
        [
            rep.run_id, started, datetime.now(timezone.utc).replace(tzinfo=None), rep.source, rep.source_kind,
            rep.content_hash, rep.strict, sum(t.loaded for t in rep.tables), rep.quarantined,
            json.dumps(counts, sort_keys=True), json.dumps(rep.checks, sort_keys=True), json.dumps(rep.warnings),
            json.dumps(rep.skipped), __version__,
        ],
    )


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------
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
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()}
        if not any(t.startswith("stg_") for t in tables):
            raise MissingStepError(f"warehouse {path} has no stg_* tables: run `olist-ml ingest SOURCE` first")
        quarantined: dict[str, int] = {}
        if QUARANTINE_TABLE in tables:
            rows = con.execute(f"SELECT file, count(DISTINCT coalesce(line, -1)) FROM {QUARANTINE_TABLE} GROUP BY file").fetchall()
            for f, n in rows:
                base = f[:-3] if f.endswith(".gz") else f
                quarantined[base] = n
        out = []
        for spec in SOURCES:
            if spec.stg not in tables:
                continue
            dcol = _date_column(spec)
            if dcol:
                n, lo, hi = con.execute(f"SELECT count(*), min({_q(dcol)}), max({_q(dcol)}) FROM {spec.stg}").fetchall()[0]
            else:
                n, lo, hi = con.execute(f"SELECT count(*) FROM {spec.stg}").fetchall()[0][0], None, None
            out.append({
                "table": spec.stg,
                "file": spec.file,
                "rows": int(n),
                "date_column": dcol,
                "min": lo,
                "max": hi,
                "quarantined": quarantined.get(spec.file, 0),
            })
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
        return dict(zip(cols, rows[0])) if rows else None
    finally:
        con.close()
