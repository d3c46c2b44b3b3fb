"""Validated ingestion of the raw Olist CSVs into the DuckDB warehouse (`stg_*` tables).

Every step after ingest may assume `stg_*` is sane: typed, keyed, finite, inside the bounds of
`schema.py` and inside the date window below. Pipeline (set-based SQL in DuckDB, no row loops):

1. Resolve SOURCE: a folder of CSVs (plain `.csv` or `.csv.gz`, at the top level or one or two
   folders down) or the Kaggle zip (members at the root or in a subfolder; the matching members
   are extracted to a temporary folder, then read like a folder). Before anything is extracted
   the zip's directory is checked against two caps: the members' total uncompressed size
   (`ZIP_MAX_BYTES`, 1 GiB; env `OLIST_ML_ZIP_MAX_BYTES`) and each member's compression ratio
   (`ZIP_MAX_RATIO`, 100:1, for members of 1 MiB or more; env `OLIST_ML_ZIP_MAX_RATIO`). The real
   Kaggle data is 127 MB at 2:1 to 4:1 per member. Over a cap: an `InputError` naming the member.
2. Pre-check every file in Python on its first 64 KiB: exists, not empty, valid gzip, text (not
   binary, not an HTML page), UTF-8, header has every column `schema.py` asks for (extra columns
   are a warning). Anything wrong is an `InputError` naming the file: nothing is changed.
3. Build the new warehouse in a temp file next to the target. Per table:
   - `read_csv(..., auto_detect=false)` with every column VARCHAR, explicit delimiter/quote/escape,
     strict mode and `store_rejects`: a malformed record (wrong number of fields, unterminated
     quote, bad UTF-8) goes to quarantine, not into a crash;
   - explicit `TRY_CAST` per column. TIMESTAMP/DATE values with a zone (`+03:00`, `-0200`, `Z`,
     `UTC`, ...) are converted to America/Sao_Paulo local time and stored naive, like the rest of
     the Olist data (Brazilian local time); the count is a table warning. Where DuckDB has no
     time-zone support (ICU), such a value is quarantined instead; its zone is never dropped;
   - quarantine (`file, line, column, reason, raw_value`), one row per bad value:
     a value that cannot be typed, a NULL in a non-nullable column, a non-finite DOUBLE (NaN,
     inf, -inf in any spelling DuckDB reads, or a number too large for a double), a value outside
     the column's `min_value`/`max_value` in `schema.py` (negative money, installments,
     dimensions or weights; review score outside 1..5; ...), and a date outside the window;
   - primary key duplicates: the first occurrence (in file order) is kept, later ones go to
     quarantine ("first seen at line N");
   - the remaining rows are written to `stg_<table>` in file order. A table marked `nonempty`
     in `schema.py` (orders, order items, customers, sellers) that keeps no row (header only, or
     every row quarantined) fails the ingest with an `InputError` naming the file.
4. Cross-table checks (counted, reported as warnings, never dropped): foreign keys from
   `schema.FOREIGN_KEYS`, duplicate review_id, orders without items / without payment,
   timestamps out of order. This is also the policy for rows that depend on a quarantined row:
   the items, payments and reviews of a quarantined order stay in stg and are counted as
   `fk_*_not_in_orders` (the feature store joins items to orders, so they drop out there).
5. `ingest_quarantine(file, line, column, reason, raw_value)` and a new row in `ingest_runs`.
6. Tables that are not produced by ingest (feature store, ABTs, scores, `ingest_runs` history,
   views) are copied from the previous warehouse (ATTACHed read-only) into the new one.
7. CHECKPOINT, close, `os.replace(temp, target)`. Any failure before that removes the temp file
   and leaves the previous warehouse untouched; `--strict` with quarantined rows fails here too.

Date window. Plausible dates are anchored on the orders file's `order_purchase_timestamp`
(`DATE_ANCHOR`; the orders are loaded before every other table with dates): with Q1 and Q3 its
quartiles and IQR = Q3 - Q1, every TIMESTAMP/DATE value of every table must lie within
[Q1 - max(2 years, 2 IQR), Q3 + max(5 years, 2 IQR)] (whole days). Quartiles, not min/max, so a
few wild rows barely move it (they stay inside the good data while fewer than a quarter of the
rows are wild on one side). The 2 IQR term widens the window for a history longer than Olist's
two years. The past side is the tighter one because the feature store's default backfill starts
at the first purchase month (an accepted date adds at most about 2.5 years of dt_refs to it); the
future side only has to keep dates every later step can hold. On the real data the window is
2015-09-13..2023-05-04; its extremes are a purchase on 2016-09-04 and a shipping limit on
2020-04-09, so nothing real is quarantined, while 1900, 9999, `infinity` and `epoch` are. The
window is in `IngestReport.date_window` and in each quarantine reason.

Line numbers in every row message (quarantine, warnings, errors) are 1-based physical line
numbers of the CSV (header = line 1). A record's line is its index plus every newline embedded in
quoted values of the records before it (the reviews file has multi-line comments) plus the lines
of malformed records before it; a malformed record's own line comes from its byte position in
the (decompressed) file, since DuckDB's reject `line` counts records. Blank lines, which DuckDB
skips, are not counted for the rows after them.
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from . import __version__
from .config import Settings
from .errors import InputError, MissingStepError, OlistMLError
from .schema import FOREIGN_KEYS, SOURCES, SOURCES_BY_KEY, Column, SourceTable

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
    date_window: list[str] = field(default_factory=list)  # plausible dates [first, last] (ISO days), see module doc

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


# Zip extraction caps (defaults; the environment variables override them at each ingest).
ZIP_MAX_BYTES = 1 << 30  # OLIST_ML_ZIP_MAX_BYTES: total uncompressed bytes of the members read (real data: 127 MB)
ZIP_MAX_RATIO = 100.0  # OLIST_ML_ZIP_MAX_RATIO: uncompressed/compressed per member (real data: 2 to 4)
_ZIP_RATIO_FLOOR = 1 << 20  # a member that expands to less than 1 MiB is never refused for its ratio


def _zip_limits() -> tuple[int, float]:
    out = []
    for name, default in (("OLIST_ML_ZIP_MAX_BYTES", ZIP_MAX_BYTES), ("OLIST_ML_ZIP_MAX_RATIO", ZIP_MAX_RATIO)):
        raw = os.environ.get(name, "")
        if raw.strip() == "":
            out.append(default)
            continue
        try:
            value = float(raw.replace("_", ""))
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise InputError(f"{name}={raw!r}: not a positive number")
        out.append(int(value) if name.endswith("BYTES") else value)
    return out[0], out[1]


def _check_zip_sizes(source: Path, members: dict[str, zipfile.ZipInfo]) -> None:
    """Refuse a zip bomb before extracting anything.

    The sizes come from the zip's directory; Python's zipfile never returns more than a member's
    stated `file_size` (a member that expands further fails its CRC check), so the check is exact.
    """
    max_bytes, max_ratio = _zip_limits()
    total = 0
    for _key, info in sorted(members.items()):
        shown = f"{source.name}:{info.filename}"
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= _ZIP_RATIO_FLOOR and ratio > max_ratio:
            raise InputError(
                f"{shown}: compression ratio {ratio:,.0f}:1 ({info.file_size:,} bytes from {info.compress_size:,}) "
                f"is over the limit of {max_ratio:g}:1 (OLIST_ML_ZIP_MAX_RATIO={max_ratio:g}); nothing was extracted"
            )
        total += info.file_size
        if total > max_bytes:
            raise InputError(
                f"{shown}: expands to {info.file_size:,} bytes, taking the zip's members to {total:,} bytes, over the "
                f"limit of {max_bytes:,} (OLIST_ML_ZIP_MAX_BYTES={max_bytes}); nothing was extracted"
            )


def _zip_members(zf: zipfile.ZipFile, source: Path) -> dict[str, zipfile.ZipInfo]:
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
    return members


def _extract_zip(source: Path, tmp: Path) -> tuple[dict[str, Path], dict[str, str]]:
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(f"{source}: truncated or corrupt zip file ({_first_line(e)})") from None
    with zf:
        members = _zip_members(zf, source)
        _check_zip_sizes(source, members)
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
    return files, display


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
        raise InputError(
            f"{source}: not a folder or a zip file (SOURCE must be a folder of Olist CSVs or the Kaggle zip)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="olist-ingest-zip-"))
    try:
        files, display = _extract_zip(source, tmp)
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
        raise InputError(
            f"{shown}: not UTF-8 encoded text (invalid byte on line {line}); re-save it as UTF-8"
        ) from None
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
        raise InputError(
            f"{shown}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (header has: {have})"
        )
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
# Plausibility rules shared by the tables of one ingest
# --------------------------------------------------------------------------------------------
# Dates: the window is anchored on the middle half of the orders' purchase timestamps (the
# quartiles Q1..Q3 of the orders file: unlike min/max, a few wild rows barely move them).
DATE_ANCHOR = ("orders", "order_purchase_timestamp")
DATE_PAST_MARGIN_DAYS = 730  # lo = Q1 - max(2 years, 2 x IQR): bounds the feature store's default backfill
DATE_FUTURE_MARGIN_DAYS = 1826  # hi = Q3 + max(5 years, 2 x IQR): later dates only have to be holdable
DATE_IQR_FACTOR = 2
LOCAL_TZ = "America/Sao_Paulo"  # timestamps with a UTC offset are converted to this zone's local time
# "<time><optional space><anything that is not part of a time>": Z, +03:00, -0200, UTC, America/Sao_Paulo, ...
_ZONE_RE = r"[0-9]:[0-9]{2}(:[0-9]{2}(\.[0-9]*)?)?\s*[^0-9\s:.]"


@dataclass
class _Rules:
    """What every table of one ingest is checked against."""

    tz_ok: bool  # DuckDB can convert an offset to LOCAL_TZ (ICU time-zone data loaded)
    window: tuple[str, str] | None = None  # plausible dates, inclusive ISO days; set once the orders are typed


def _tz_support(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        con.execute(f"SELECT TIMESTAMPTZ '2017-01-01 00:00:00+00' AT TIME ZONE {_lit(LOCAL_TZ)}").fetchall()
        return True
    except duckdb.Error:
        return False


def _num(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


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


@dataclass
class _Load:
    """One table's load: its inputs and the names of its temp tables."""

    spec: SourceTable
    path: Path
    header: list[str]
    shown: str
    rep: TableReport

    def __post_init__(self) -> None:
        k = self.spec.key
        self.raw, self.typed, self.bad, self.rej, self.lines = (
            f"raw_{k}",
            f"typed_{k}",
            f"bad_{k}",
            f"rej_{k}",
            f"lines_{k}",
        )


def _load_table(
    con: duckdb.DuckDBPyConnection,
    spec: SourceTable,
    path: Path,
    header: list[str],
    shown: str,
    rep: TableReport,
    rules: _Rules,
) -> None:
    """Read, type and check one file, write its clean rows to stg_<table> and the rest to the quarantine."""
    t = _Load(spec, path, header, shown, rep)
    _read_raw(con, t)
    _type_rows(con, t, rules)
    if spec.key == DATE_ANCHOR[0]:
        rules.window = _date_window(con, t.typed, DATE_ANCHOR[1])
    _find_bad_values(con, t, rules)
    _find_duplicates(con, t)
    rejects = _rejects(con, t)
    n_bad = con.execute(f"SELECT count(DISTINCT _rec) FROM {t.bad}").fetchall()[0][0]
    if n_bad:
        _fill_lines(con, t, rejects)
    rep.quarantined = n_bad + len(rejects)
    if rejects:
        con.executemany(
            f"INSERT INTO {t.bad} VALUES (NULL, ?, ?, ?, ?, NULL)",
            [(line, col, reason, value) for line, _span, col, reason, value in rejects],
        )
        rep.warnings.append(
            f"{shown}: {len(rejects)} malformed CSV record(s) quarantined (first at line {rejects[0][0]})"
        )
    _write_stg(con, t)
    _require_rows(con, t)
    _write_quarantine(con, t, n_bad)
    _note_offsets(con, t, rules)
    for name in (t.raw, t.typed, t.bad, t.lines):
        con.execute(f"DROP TABLE IF EXISTS {name}")


def _read_raw(con: duckdb.DuckDBPyConnection, t: _Load) -> None:
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {t.raw} AS SELECT * FROM {_read_csv_sql(t.path, t.header, t.rej)}")
    except duckdb.Error as e:
        msg = _first_line(e)
        if "gzip" in msg.lower() or "GZIP" in str(e):
            raise InputError(f"{t.shown}: truncated or corrupt gzip file ({msg})") from None
        raise InputError(f"{t.shown}: cannot read as CSV ({msg})") from None


def _type_rows(con: duckdb.DuckDBPyConnection, t: _Load, rules: _Rules) -> None:
    """Typed view of every record, keeping the raw text of cast columns.

    TIMESTAMP/DATE values that carry a zone (`+03:00`, `Z`, `UTC`, ...) are converted to LOCAL_TZ
    local time (`_tz_<column>` marks them); the plain cast would silently drop the offset.
    """
    sel = ["rowid AS _rec"]
    for c in t.spec.columns:
        src = _q(c.source)
        if c.type == "VARCHAR":
            sel.append(f"{src} AS {_q(c.name)}")
            continue
        sel.append(f"{src} AS {_q('_raw_' + c.name)}")
        if c.type in ("TIMESTAMP", "DATE"):
            tz = _q("_tz_" + c.name)
            conv = (
                (
                    f"CAST(TRY_CAST(regexp_replace(trim({src}), '\\s+([+-][0-9])', '\\1') AS TIMESTAMPTZ) "
                    f"AT TIME ZONE {_lit(LOCAL_TZ)} AS {c.type})"
                )
                if rules.tz_ok
                else f"NULL::{c.type}"
            )
            sel.append(f"coalesce(regexp_matches({src}, {_lit(_ZONE_RE)}), false) AS {tz}")
            sel.append(f"CASE WHEN {tz} THEN {conv} ELSE TRY_CAST({src} AS {c.type}) END AS {_q(c.name)}")
        else:
            sel.append(f"TRY_CAST({src} AS {c.type}) AS {_q(c.name)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {t.typed} AS SELECT {', '.join(sel)} FROM {t.raw}")


def _date_window(con: duckdb.DuckDBPyConnection, typed: str, col: str) -> tuple[str, str] | None:
    """Plausible dates: [Q1 - max(2 y, 2 IQR), Q3 + max(5 y, 2 IQR)] of the anchor column (see module doc)."""
    c = _q(col)
    row = con.execute(
        f"SELECT quantile_disc({c}, 0.25), quantile_disc({c}, 0.75) FROM {typed} WHERE isfinite({c})"
    ).fetchall()
    return window_from_quartiles(row[0][0], row[0][1]) if row and row[0][0] is not None else None


# --------------------------------------------------------------------------------------------
# The value rules of the contract, shared by the DuckDB ingest (here) and the Spark ingest
# (olist_ml.spark.ingest): each engine turns a rule into its own condition; the rules, their
# order (the first that applies names the reason) and the reasons' text live only here.
# --------------------------------------------------------------------------------------------
def window_from_quartiles(q1, q3) -> tuple[str, str]:
    """The plausible-date window from the anchor's quartiles (DATE_* constants; whole days)."""
    import datetime as _dt

    d1, d3 = _dt.date(q1.year, q1.month, q1.day), _dt.date(q3.year, q3.month, q3.day)
    spread = DATE_IQR_FACTOR * (d3 - d1).days
    try:
        lo = d1 - _dt.timedelta(days=max(DATE_PAST_MARGIN_DAYS, spread))
    except OverflowError:
        lo = _dt.date.min
    try:
        hi = d3 + _dt.timedelta(days=max(DATE_FUTURE_MARGIN_DAYS, spread))
    except OverflowError:
        hi = _dt.date.max
    return lo.isoformat(), hi.isoformat()


@dataclass(frozen=True)
class ValueRule:
    """One check of one column. kind: missing | zone | cast | nonfinite | min | max | window;
    bound: the limit of min/max, the (lo, hi) ISO days of window."""

    kind: str
    reason: str
    bound: object = None


def value_rules(c: Column, window: tuple[str, str] | None, tz_ok: bool = True) -> list[ValueRule]:
    """The checks of one column, in the order the reason is chosen."""
    out = []
    if not c.nullable:
        out.append(ValueRule("missing", "missing value in non-nullable column"))
    if c.type == "VARCHAR":
        return out
    if c.type in ("TIMESTAMP", "DATE"):
        out.append(
            ValueRule(
                "zone",
                f"cannot convert the time zone to {LOCAL_TZ} local time"
                if tz_ok
                else f"has a time zone, and DuckDB's time-zone support (ICU) is not available to convert "
                f"it to {LOCAL_TZ}",
            )
        )
    out.append(ValueRule("cast", f"cannot cast to {c.type}"))
    if c.type == "DOUBLE":
        out.append(ValueRule("nonfinite", "not a finite number (NaN or infinity)"))
    if c.min_value is not None:
        why = "negative value (must be >= 0)" if c.min_value == 0 else f"below the minimum {_num(c.min_value)}"
        out.append(ValueRule("min", why, c.min_value))
    if c.max_value is not None:
        out.append(ValueRule("max", f"above the maximum {_num(c.max_value)}", c.max_value))
    if c.type in ("TIMESTAMP", "DATE") and window:
        out.append(ValueRule("window", f"date outside the plausible window {window[0]}..{window[1]}", window))
    return out


def _value_checks(c: Column, rules: _Rules) -> list[tuple[str, str]]:
    """(condition, reason) pairs for one column, in the order the reason is chosen (DuckDB SQL)."""
    v = _q(c.name)
    rawc = v if c.type == "VARCHAR" else _q("_raw_" + c.name)
    cast_fail = f"{rawc} IS NOT NULL AND {v} IS NULL"
    out = []
    for r in value_rules(c, rules.window, rules.tz_ok):
        if r.kind == "missing":
            cond = f"{rawc} IS NULL"
        elif r.kind == "zone":
            cond = f"{cast_fail} AND {_q('_tz_' + c.name)}"
        elif r.kind == "cast":
            cond = cast_fail
        elif r.kind == "nonfinite":
            cond = f"NOT isfinite({v})"
        elif r.kind == "min":
            cond = f"{v} < {r.bound!r}"
        elif r.kind == "max":
            cond = f"{v} > {r.bound!r}"
        else:
            lo, hi = r.bound
            cond = f"({v} < CAST({_lit(lo)} AS DATE) OR {v} >= CAST({_lit(hi)} AS DATE) + 1)"
        out.append((cond, _lit(r.reason)))
    return out


def _find_bad_values(con: duckdb.DuckDBPyConnection, t: _Load, rules: _Rules) -> None:
    """Quarantine: untypable values, NULLs in non-nullable columns, implausible values."""
    parts = []
    for c in t.spec.columns:
        checks = _value_checks(c, rules)
        if checks:
            rawc = _q(c.name) if c.type == "VARCHAR" else _q("_raw_" + c.name)
            reason = "CASE " + " ".join(f"WHEN {cond} THEN {why}" for cond, why in checks) + " END"
            where = " OR ".join(f"({cond})" for cond, _ in checks)
            parts.append(
                f"SELECT _rec, NULL::BIGINT AS line, {_lit(c.name)} AS col, {reason} AS reason, "
                f"{rawc} AS raw_value, NULL::BIGINT AS ref_rec FROM {t.typed} WHERE {where}"
            )
    if not parts:
        parts.append(
            "SELECT NULL::BIGINT AS _rec, NULL::BIGINT AS line, NULL::VARCHAR AS col, NULL::VARCHAR AS reason, "
            "NULL::VARCHAR AS raw_value, NULL::BIGINT AS ref_rec WHERE false"
        )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {t.bad} AS {' UNION ALL '.join(parts)}")


def _find_duplicates(con: duckdb.DuckDBPyConnection, t: _Load) -> None:
    """Primary key duplicates among the rows that typed cleanly: keep the first, quarantine the rest
    (`ref_rec` = the first occurrence; its line goes into the reason once lines are known)."""
    key = t.spec.primary_key
    if not key:
        return
    pk = ", ".join(_q(k) for k in key)
    names = ",".join(key)
    key_text = " || ',' || ".join(f"CAST({_q(k)} AS VARCHAR)" for k in key)
    con.execute(
        f"""INSERT INTO {t.bad}
        SELECT _rec, NULL, {_lit(names)}, {_lit(f"duplicate primary key ({names})")}, {key_text}, first_rec
        FROM (SELECT _rec, {pk}, row_number() OVER (PARTITION BY {pk} ORDER BY _rec) AS rn,
                     min(_rec) OVER (PARTITION BY {pk}) AS first_rec
              FROM {t.typed} WHERE _rec NOT IN (SELECT _rec FROM {t.bad}))
        WHERE rn > 1"""
    )


def _write_stg(con: duckdb.DuckDBPyConnection, t: _Load) -> None:
    """The stg table: clean rows in file order."""
    spec = t.spec
    cols = [(c.name, c.type, c.nullable) for c in spec.columns]
    select = ", ".join(f"t.{_q(n)}" for n, _, _ in cols)
    join = ""
    if spec.extra.get("translated"):
        cols.append(("product_category_name_english", "VARCHAR", True))
        select += ", tr.product_category_name_english"
        join = (
            "LEFT JOIN stg_product_category_name_translation tr ON tr.product_category_name = t.product_category_name"
        )
    ddl = ", ".join(f"{_q(n)} {ty}{'' if nullable else ' NOT NULL'}" for n, ty, nullable in cols)
    con.execute(f"CREATE TABLE {spec.stg} ({ddl})")
    con.execute(
        f"INSERT INTO {spec.stg} SELECT {select} FROM {t.typed} t {join} "
        f"WHERE t._rec NOT IN (SELECT _rec FROM {t.bad} WHERE _rec IS NOT NULL) ORDER BY t._rec"
    )
    t.rep.loaded = con.execute(f"SELECT count(*) FROM {spec.stg}").fetchall()[0][0]


def _first_bad(con: duckdb.DuckDBPyConnection, t: _Load, records_only: bool = False) -> tuple:
    where = "WHERE _rec IS NOT NULL" if records_only else ""
    return con.execute(f"SELECT line, col, reason FROM {t.bad} {where} ORDER BY line, col LIMIT 1").fetchall()[0]


def _require_rows(con: duckdb.DuckDBPyConnection, t: _Load) -> None:
    """A table every later step needs (`SourceTable.nonempty`) must keep at least one row."""
    rep = t.rep
    if rep.loaded:
        return
    if not t.spec.nonempty:
        if rep.quarantined == 0:
            rep.warnings.append(f"{t.shown}: header only, no data rows")
        return
    if rep.quarantined == 0:
        raise InputError(f"{t.shown}: no data rows (header only); {t.spec.stg} must not be empty (warehouse unchanged)")
    line, col, reason = _first_bad(con, t)
    raise InputError(
        f"{t.shown}: all {rep.quarantined} row(s) quarantined (first: line {line}, column {col}: {reason}); "
        f"{t.spec.stg} must not be empty (warehouse unchanged)"
    )


def _write_quarantine(con: duckdb.DuckDBPyConnection, t: _Load, n_bad: int) -> None:
    con.execute(
        f"INSERT INTO {QUARANTINE_TABLE} SELECT {_lit(t.rep.file)}, line, col, reason, left(raw_value, {_MAX_RAW}) "
        f"FROM {t.bad} ORDER BY line, col"
    )
    if n_bad:
        line, col, reason = _first_bad(con, t, records_only=True)
        t.rep.warnings.append(f"{t.shown}: {n_bad} row(s) quarantined (first: line {line}, column {col}: {reason})")


def _note_offsets(con: duckdb.DuckDBPyConnection, t: _Load, rules: _Rules) -> None:
    """Say how many zoned timestamps were converted: the conversion is never silent."""
    cols = [c.name for c in t.spec.columns if c.type in ("TIMESTAMP", "DATE")]
    if not cols or not rules.tz_ok:
        return
    counts = con.execute(
        "SELECT " + ", ".join(f"count_if({_q('_tz_' + c)} AND {_q(c)} IS NOT NULL)" for c in cols) + f" FROM {t.typed}"
    ).fetchall()[0]
    hit = [(c, n) for c, n in zip(cols, counts, strict=False) if n]
    if hit:
        t.rep.warnings.append(
            f"{t.shown}: {sum(n for _, n in hit)} timestamp(s) with a UTC offset converted to {LOCAL_TZ} local time "
            f"({', '.join(f'{c}: {n}' for c, n in hit)})"
        )


def _rejects(con: duckdb.DuckDBPyConnection, t: _Load) -> list[tuple]:
    """Malformed records DuckDB's reader rejected: (physical line, lines spanned, column, reason, raw record).

    DuckDB's own `line` counts records, not the newlines inside quoted values, so the physical
    line comes from the record's byte position in the (decompressed) file.
    """
    try:
        rows = con.execute(
            f"SELECT line, line_byte_position, csv_line, column_name, error_type, error_message FROM {t.rej}_err "
            "ORDER BY line, column_idx"
        ).fetchall()
    except duckdb.CatalogException:
        return []
    finally:
        for suffix in ("_err", "_scan"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {t.rej}{suffix}")
    first: dict[int, tuple] = {}
    for rec, pos, csv_line, col, etype, emsg in rows:  # a record with several errors: quarantined once
        first.setdefault(rec, (int(pos), csv_line, col, etype, emsg))
    if not first:
        return []
    at = _lines_at(t.path, [v[0] for v in first.values()], t.shown)
    out = []
    for pos, csv_line, col, etype, emsg in first.values():
        text = (csv_line or "").strip("\r\n")
        out.append(
            (
                at[pos],
                text.count("\n") + 1,
                col or "",
                f"malformed CSV record: {etype}: {_first_line(emsg)}",
                text[:_MAX_RAW],
            )
        )
    return sorted(out)


def _lines_at(path: Path, positions: list[int], shown: str) -> dict[int, int]:
    """Physical line (1-based) of each byte position: newlines in the bytes before it, plus one.

    DuckDB's line_byte_position points at the record's first byte, or at the '\\n' of a '\\r\\n'
    before it; either way the bytes up to that position hold exactly the record's preceding newlines.
    """
    want = sorted(set(positions))
    out: dict[int, int] = {}
    i, off, nl = 0, 0, 0
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
            while i < len(want):
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                end = off + len(chunk)
                while i < len(want) and want[i] <= end:
                    out[want[i]] = nl + chunk[: want[i] - off].count(b"\n") + 1
                    i += 1
                nl += chunk.count(b"\n")
                off = end
    except (OSError, EOFError, zlib.error) as e:  # DuckDB does not check the gzip CRC; gzip.open does
        what = "truncated or corrupt gzip file" if path.name.endswith(".gz") else "cannot read the file"
        raise InputError(f"{shown}: {what} ({_first_line(e)})") from None
    for p in want[i:]:
        out[p] = nl + 1
    return out


def _fill_lines(con: duckdb.DuckDBPyConnection, t: _Load, rejects: list[tuple]) -> None:
    """Physical line numbers for the quarantined records, and for the first occurrence a duplicate refers to.

    A record's line is 2 + its index + the newlines inside quoted values of the records before it,
    shifted by the lines of the malformed records before it (which are not in the raw table).
    """
    nl = " + ".join(f"coalesce(length({_q(h)}) - length(replace({_q(h)}, chr(10), '')), 0)" for h in t.header)
    thr, shift = [], 0
    for line, span, *_ in rejects:
        thr.append((line - shift, shift + span))
        shift += span
    shift_sql = "0"
    if thr:
        values = ", ".join(f"({a}, {b})" for a, b in thr)
        shift_sql = f"coalesce((SELECT max(s) FROM (VALUES {values}) v(t, s) WHERE v.t <= base), 0)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {t.lines} AS
            SELECT _rec, base + {shift_sql} AS line FROM (
              SELECT rowid AS _rec,
                     2 + rowid + coalesce(sum({nl}) OVER (
                       ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS base
              FROM {t.raw})
            WHERE _rec IN (SELECT _rec FROM {t.bad} UNION ALL SELECT ref_rec FROM {t.bad} WHERE ref_rec IS NOT NULL)"""
    )
    con.execute(f"UPDATE {t.bad} SET line = m.line FROM {t.lines} m WHERE {t.bad}._rec = m._rec")
    con.execute(
        f"UPDATE {t.bad} SET reason = reason || ' first seen at line ' || m.line FROM {t.lines} m "
        f"WHERE {t.bad}.ref_rec = m._rec"
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
    return cross_checks(lambda sql: int(con.execute(sql).fetchall()[0][0]), reps)


def cross_checks(count, reps: dict[str, TableReport], anti: str = "ANTI JOIN") -> dict[str, int]:
    """The cross-table checks for any engine: `count(sql) -> int` runs a query over the stg tables;
    `anti` is the engine's anti-join keyword (Spark: LEFT ANTI JOIN). Warnings go to `reps`."""
    checks: dict[str, int] = {}

    def warn(key: str, msg: str) -> None:
        reps[key].warnings.append(f"{reps[key].file}: {msg}")

    for child, ccols, parent, pcols in FOREIGN_KEYS:
        if child not in reps or parent not in reps:
            continue
        c, p = SOURCES_BY_KEY[child], SOURCES_BY_KEY[parent]
        on = " AND ".join(f"c.{_q(a)} = p.{_q(b)}" for a, b in zip(ccols, pcols, strict=False))
        notnull = " AND ".join(f"c.{_q(a)} IS NOT NULL" for a in ccols)
        n = count(f"SELECT count(*) FROM {c.stg} c {anti} {p.stg} p ON {on} WHERE {notnull}")
        name = f"fk_{child}_{'_'.join(ccols)}_not_in_{parent}"
        checks[name] = n
        if n:
            warn(child, f"{n} row(s) whose {','.join(ccols)} is not in {p.stg} (kept)")
    if "order_reviews" in reps:
        n = count(
            "SELECT count(*) FROM (SELECT review_id FROM stg_order_reviews GROUP BY review_id HAVING count(*) > 1) x"
        )
        checks["duplicate_review_ids"] = n
        if n:
            warn("order_reviews", f"{n} review_id(s) appear on more than one order (kept; key is review_id, order_id)")
    if "orders" in reps and "order_items" in reps:
        n = count(f"SELECT count(*) FROM stg_orders o {anti} stg_order_items i ON i.order_id = o.order_id")
        checks["orders_without_items"] = n
        if n:
            warn("orders", f"{n} order(s) without items (kept)")
    if "orders" in reps and "order_payments" in reps:
        n = count(f"SELECT count(*) FROM stg_orders o {anti} stg_order_payments p ON p.order_id = o.order_id")
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
        raise InputError(
            f"{target}: the existing warehouse cannot be opened ({msg}); move it away to ingest afresh"
        ) from None
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

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
    )


@dataclass
class _Plan:
    """What the pre-checks found: the files to load in order, their headers, report rows and notes."""

    order: list[SourceTable]
    headers: dict[str, list[str]]
    reps: dict[str, TableReport]
    skipped: list[str]
    notes: list[str]


def _plan(src: _Source) -> _Plan:
    """Pre-check every file (header, encoding, columns) before anything is written."""
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
    return _Plan(order, headers, reps, skipped, notes)


def _start_digests(src: _Source, order: list[SourceTable]) -> dict[str, Future]:
    """Hash (and for .gz verify) every file in a background thread while DuckDB loads."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="olist-ingest-digest")
    digests = {s.key: pool.submit(_digest, src.files[s.key], src.display[s.key]) for s in order}
    pool.shutdown(wait=False)
    return digests


def _open_temp(tmp: Path, settings: Settings) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp))
    if settings.threads:
        con.execute(f"SET threads = {int(settings.threads)}")
    if settings.memory_limit:
        con.execute(f"SET memory_limit = {_lit(settings.memory_limit)}")
    con.execute("SET preserve_insertion_order = true")
    con.execute(
        f'CREATE TABLE {QUARANTINE_TABLE} (file VARCHAR NOT NULL, line BIGINT, "column" VARCHAR, '
        "reason VARCHAR NOT NULL, raw_value VARCHAR)"
    )
    return con


def _load_all(con: duckdb.DuckDBPyConnection, src: _Source, plan: _Plan, bar, task) -> tuple[dict[str, int], _Rules]:
    """Every table (orders first among those with dates: they anchor the date window), then the cross checks."""
    rules = _Rules(tz_ok=_tz_support(con))
    for spec in plan.order:
        if bar:
            bar.update(task, description=f"loading {spec.stg}")
        _load_table(
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


def _content_hash(reps: dict[str, TableReport], digests: dict[str, Future]) -> str:
    for key, fut in digests.items():
        reps[key].sha256 = fut.result()  # raises InputError for a corrupt .gz
    return hashlib.sha256(
        "".join(f"{SOURCES_BY_KEY[k].file}:{reps[k].sha256}\n" for k in sorted(reps)).encode()
    ).hexdigest()


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
    with _resolve(source) as src:
        plan = _plan(src)
        digests = _start_digests(src, plan.order)
        # ---- build aside ------------------------------------------------------------------------
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_temps(target)
        tmp = target.parent / f".{target.name}.ingest-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        run_id = uuid.uuid4().hex
        con = None
        try:
            con = _open_temp(tmp, settings)
            with _progress(progress, len(plan.order)) as bar:
                task = bar.add_task("ingest", total=len(plan.order) + 2) if bar else None
                checks, rules = _load_all(con, src, plan, bar, task)
                content_hash = _content_hash(plan.reps, digests)
                if strict:
                    _check_strict(con, plan.reps)
                if bar:
                    bar.update(task, description="carrying over other tables")
                _checkpoint_old(target)
                kept, dropped = _carry_over(con, target)
                plan.notes += [
                    f"view {v} was not carried over: it refers to a table the new warehouse does not have"
                    for v in dropped
                ]
                if bar:
                    bar.advance(task)

            reps = plan.reps
            report = IngestReport(
                source=str(source.absolute()),
                source_kind=src.kind,
                warehouse=str(target),
                content_hash=content_hash,
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
            _record_run(con, report, started)
            _swap(con, tmp, target)
            con = None
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
        t.stg: {
            "file": t.file,
            "loaded": t.loaded,
            "quarantined": t.quarantined,
            "warnings": len(t.warnings),
            "sha256": t.sha256,
        }
        for t in rep.tables
    }
    con.execute(
        f"INSERT INTO {RUNS_TABLE} BY NAME SELECT ? AS run_id, ? AS started_at, ? AS finished_at, ? AS source, "
        "? AS source_kind, ? AS content_hash, ? AS strict, ? AS rows_loaded, ? AS rows_quarantined, ? AS table_counts, "
        "? AS checks, ? AS warnings, ? AS skipped, ? AS olist_ml_version",
        [
            rep.run_id,
            started,
            datetime.now(UTC).replace(tzinfo=None),
            rep.source,
            rep.source_kind,
            rep.content_hash,
            rep.strict,
            sum(t.loaded for t in rep.tables),
            rep.quarantined,
            json.dumps(counts, sort_keys=True),
            json.dumps(rep.checks, sort_keys=True),
            json.dumps(rep.warnings),
            json.dumps(rep.skipped),
            __version__,
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
                n, lo, hi = con.execute(
                    f"SELECT count(*), min({_q(dcol)}), max({_q(dcol)}) FROM {spec.stg}"
                ).fetchall()[0]
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
