"""Pre-checks of every file before anything is written (docs/ingest.md, step 2): exists, not empty,
valid gzip, text, UTF-8, the columns `schema.py` asks for; then the plan of the load (`precheck`) and
the files' digests, computed in a background thread while the engine loads (`start_digests`,
`content_hash`). Shared by both engines."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..schema import SOURCES, SOURCES_BY_KEY, SourceTable
from .report import TableReport
from .source import Source, processing_order
from .text import first_line

_HEAD_BYTES = 64 * 1024


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
            raise InputError(f"{shown}: truncated or corrupt gzip file ({first_line(e)})") from None
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


@dataclass
class Plan:
    """What the pre-checks found: the files to load in order, their headers, report rows and notes."""

    order: list[SourceTable]
    headers: dict[str, list[str]]
    reps: dict[str, TableReport]
    skipped: list[str]
    notes: list[str]


def precheck(src: Source) -> Plan:
    """Pre-check every file (header, encoding, columns) before anything is written."""
    order = [s for s in processing_order() if s.key in src.files]
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
    return Plan(order, headers, reps, skipped, notes)


def start_digests(src: Source, order: list[SourceTable]) -> dict[str, Future]:
    """Hash (and for .gz verify) every file in a background thread while DuckDB loads."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="olist-ingest-digest")
    digests = {s.key: pool.submit(_digest, src.files[s.key], src.display[s.key]) for s in order}
    pool.shutdown(wait=False)
    return digests


def content_hash(reps: dict[str, TableReport], digests: dict[str, Future]) -> str:
    for key, fut in digests.items():
        reps[key].sha256 = fut.result()  # raises InputError for a corrupt .gz
    return hashlib.sha256(
        "".join(f"{SOURCES_BY_KEY[k].file}:{reps[k].sha256}\n" for k in sorted(reps)).encode()
    ).hexdigest()
