"""The home folder: checks that it can be used, and its one-writer lock.

Every command that writes (ingest, features build, train, predict, promote, run, monitor, synth into
the home) holds the home's lock (`filelock`, an OS-level lock released by the kernel when the process
dies, so a killed writer never leaves the home locked). A second writer gets one line naming the
holder (pid, command, since when) and exit code 2, or waits for it with `olist-ml --wait ...`.
Readers (serve, summary, problems, features list, report, ui) never take the lock.

Machine faults become one line too (`EnvironmentFault`, exit 2): the home or the warehouse path is of
the wrong kind, the home is read-only, the disk is full, the warehouse file is not a DuckDB file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from .config import Settings
from .errors import EnvironmentFault

LOCK_FILE = ".olist_ml.lock"
HOLDER_FILE = ".olist_ml.lock.json"


def check_paths(settings: Settings) -> None:
    """The home must be a folder (or not exist yet) and the warehouse path must not be a folder."""
    home = settings.home.absolute()
    if home.exists() and not home.is_dir():
        raise EnvironmentFault(f"--home {home} is a file, not a folder: point --home (OLIST_ML_HOME) at a folder")
    for parent in home.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EnvironmentFault(f"--home {home}: {parent} is a file, not a folder")
            break
    wh = settings.warehouse
    if wh.is_dir():
        raise EnvironmentFault(f"--warehouse {wh} is a folder: give the path of a .duckdb file")


def check_writable(settings: Settings) -> Path:
    """Create the home if needed and prove it is writable; returns it."""
    check_paths(settings)
    home = settings.home.absolute()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise environment_fault(e, f"home {home}") from None
    return home


def _holder(home: Path) -> str:
    try:
        h = json.loads((home / HOLDER_FILE).read_text())
        return f"pid {h['pid']} (`olist-ml {h['command']}`, since {h['since']}, host {h.get('host', '?')})"
    except (OSError, ValueError, KeyError):
        return "another olist-ml process"


@contextlib.contextmanager
def writer_lock(settings: Settings, command: str, *, wait: bool = False) -> Iterator[None]:
    """Hold the home's writer lock while the block runs (see module docstring)."""
    from filelock import FileLock, Timeout

    home = check_writable(settings)
    lock = FileLock(str(home / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise EnvironmentFault(
                f"home {home} is being written by {_holder(home)}: wait for it to finish, "
                f"or run again with `olist-ml --wait ...`"
            ) from None
        print(f"waiting for {_holder(home)} to release home {home} ...", file=sys.stderr, flush=True)
        lock.acquire()
    except OSError as e:
        raise environment_fault(e, f"home {home}") from None
    try:
        info = {
            "pid": os.getpid(),
            "command": command,
            "host": socket.gethostname(),
            "since": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S%z"),
        }
        with contextlib.suppress(OSError):
            (home / HOLDER_FILE).write_text(json.dumps(info))
        yield
    finally:
        with contextlib.suppress(OSError):
            (home / HOLDER_FILE).unlink()
        lock.release()


def holder(settings: Settings) -> str | None:
    """Who writes the home right now (one phrase), or None when nobody does."""
    from filelock import FileLock, Timeout

    home = settings.home.absolute()
    if not (home / LOCK_FILE).exists():
        return None
    try:
        lock = FileLock(str(home / LOCK_FILE))
        lock.acquire(timeout=0)
    except Timeout:
        return _holder(home)
    except OSError:
        return None
    lock.release()
    return None


_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def environment_fault(e: BaseException, where: str = "") -> EnvironmentFault:
    """One line for an OS / DuckDB I/O error that is the machine's fault, not the data's."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    code = getattr(e, "errno", None)
    low = msg.lower()
    target = where or getattr(e, "filename", None) or ""
    at = f"{target}: " if target else ""
    if code in _DISK or "no space left" in low or "file too large" in low or "disk quota" in low:
        return EnvironmentFault(
            f"{at}disk full or file size limit reached ({msg}); free space and re-run (nothing was half-written)"
        )
    if code in _READ_ONLY or "read-only file system" in low or "permission denied" in low:
        return EnvironmentFault(f"{at}not writable ({msg}): use a writable --home (OLIST_ML_HOME)")
    if code in (errno.ENOTDIR, errno.EISDIR):
        return EnvironmentFault(f"{at}a path has the wrong kind (file vs folder): {msg}")
    if "unable to open database file" in low:
        return EnvironmentFault(
            f"{at}the MLflow store cannot be opened or created (sqlite: unable to open database "
            "file): check that the home is writable and the tracking URI"
        )
    if "not a valid duckdb database" in low or "unable to open database" in low or "invalid file" in low:
        return EnvironmentFault(
            f"{at}not a DuckDB warehouse file ({msg}): point --warehouse at an olist-ml "
            "warehouse, or move the file away"
        )
    if "could not set lock" in low or "conflicting lock" in low:
        return EnvironmentFault(f"{at}the warehouse is open in another process ({msg}); retry when it finishes")
    return EnvironmentFault(f"{at}{msg}")


def is_environment_error(e: BaseException) -> bool:
    """OS errors and DuckDB I/O errors that `environment_fault` can put in one line."""
    if isinstance(e, OSError) and getattr(e, "errno", None) in (*_DISK, *_READ_ONLY, errno.ENOTDIR, errno.EISDIR):
        return True
    try:
        import duckdb
    except ImportError:  # pragma: no cover
        return False
    if isinstance(e, (duckdb.IOException, duckdb.PermissionException)):
        return True
    if type(e).__name__ == "OperationalError" and "unable to open database file" in str(e):
        return True  # sqlalchemy/sqlite: the MLflow store cannot be opened or created
    low = str(e).lower()
    return isinstance(e, duckdb.Error) and any(
        k in low
        for k in (
            "not a valid duckdb database",
            "no space left",
            "file too large",
            "disk quota",
            "read-only file system",
            "could not set lock",
            "permission denied",
        )
    )
