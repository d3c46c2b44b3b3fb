"""Resolving SOURCE: a folder of Olist CSVs (plain or .gz, up to two folders down) or the Kaggle zip,
whose members are checked against the size and ratio caps before anything is extracted
(docs/ingest.md, step 1). Shared by both engines (`resolve_source`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..schema import SOURCES, SOURCES_BY_KEY, SourceTable
from .text import first_line


def processing_order() -> list[SourceTable]:
    # the translation must be loaded before products (stg_products joins it)
    order = [s for s in SOURCES if s.key == "category_translation"]
    order += [s for s in SOURCES if s.key != "category_translation"]
    return order


@dataclass
class Source:
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
        raise InputError(f"{source}: truncated or corrupt zip file ({first_line(e)})") from None
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
                raise InputError(f"{display[key]}: truncated or corrupt zip member ({first_line(e)})") from None
            files[key] = dest
    return files, display


@contextlib.contextmanager
def resolve_source(source: Path) -> Iterator[Source]:
    source = Path(source).expanduser()
    if not source.exists():
        raise InputError(f"{source}: no such file or folder (SOURCE must be a folder of Olist CSVs or the Kaggle zip)")
    if source.is_dir():
        files = _pick(_find_in_folder(source), str(source))
        _check_required(files, str(source))
        yield Source(source, "folder", files, {k: str(p.relative_to(source)) for k, p in files.items()})
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
        yield Source(tmp, "zip", files, display)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
