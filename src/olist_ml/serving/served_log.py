"""What the API answered, kept: every served prediction appended to a log under the home.

One JSON line per scored row (request id, time, problem, model name and version, the scoring date,
the row's key, the feature values the model saw, the score, the endpoint), in files
`<home>/served/<problem>/<YYYY-MM-DD>/<pid>-<n>.jsonl`, a new file per day, per process and every
`max_bytes`. Writing never blocks a request nor the home's writer lock: requests put their rows on
a bounded in-memory queue that a background thread drains to the files (a full queue drops the
rows and counts them, `ServedLog.dropped`); each process writes its own files, so readers
(`olist-ml monitor`) read them while the server runs.

`olist-ml monitor` reads the log (`read`): realised performance of served rows as their labels
mature (source `served` in `monitor_performance`), the drift of served rows against the batch
population, and served vs batch scores of the same row (`summary`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import queue
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Settings

FOLDER = "served"
MAX_BYTES = 32 * 2**20
QUEUE_ROWS = 100_000


def folder(settings: Settings, problem: str | None = None) -> Path:
    root = settings.home.absolute() / FOLDER
    return root / problem if problem else root


def _plain(v: Any) -> Any:
    """A JSON value: numpy scalars as Python, NaN / NaT / NA as null, dates as ISO text."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) or math.isinf(float(v)) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (dt.date, dt.datetime, pd.Timestamp)):
        return v.isoformat()
    return v


class ServedLog:
    """The API's writer of the log (module doc). `record` never blocks."""

    def __init__(self, settings: Settings, *, max_bytes: int = MAX_BYTES, queue_rows: int = QUEUE_ROWS):
        self.root = folder(settings)
        self.max_bytes = int(max_bytes)
        self.dropped = 0
        self.written = 0
        self._q: queue.Queue = queue.Queue(maxsize=int(queue_rows))
        self._files: dict[str, tuple[Any, Path, str]] = {}  # problem -> (handle, path, day)
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="olist-ml-served-log", daemon=True)
        self._thread.start()

    # ---- request side ------------------------------------------------------------------------
    def record(
        self,
        problem: str,
        *,
        model_name: str,
        model_version: str | None,
        dt_ref,
        keys: list[dict],
        features: Callable[[], list[dict]] | list[dict] | None,
        scores,
        endpoint: str,
        request_id: str | None = None,
    ) -> str:
        """Queue one answer's rows (keys[i], features[i], scores[i]); returns the request id. `features`
        may be a callable: it runs on the writer thread, off the request's path."""
        rid = request_id or uuid.uuid4().hex
        ts = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
        entry = {
            "request_id": rid,
            "ts": ts,
            "problem": problem,
            "model_name": model_name,
            "model_version": None if model_version is None else str(model_version),
            "dt_ref": dt_ref,
            "keys": keys,
            "features": features,
            "scores": list(scores),
            "endpoint": endpoint,
        }
        try:
            self._q.put_nowait(entry)
        except queue.Full:
            self.dropped += len(keys)
        return rid

    @staticmethod
    def _rows(entry: dict) -> list[dict]:
        feats = entry["features"]
        feats = feats() if callable(feats) else feats
        feats = feats or [None] * len(entry["keys"])
        head = {k: entry[k] for k in ("request_id", "ts", "problem", "model_name", "model_version", "endpoint")}
        head["dt_ref"] = _plain(entry["dt_ref"])
        return [
            {
                **head,
                "key": {a: _plain(b) for a, b in k.items()},
                "features": None if f is None else {a: _plain(b) for a, b in f.items()},
                "score": _plain(s),
            }
            for k, f, s in zip(entry["keys"], feats, entry["scores"], strict=True)
        ]

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the writer thread."""
        with contextlib.suppress(queue.Full):
            self._q.put(None, timeout=timeout)
        self._thread.join(timeout=timeout)
        for fh, _, _ in self._files.values():
            with contextlib.suppress(OSError):
                fh.close()
        self._files.clear()

    # ---- writer thread -------------------------------------------------------------------------
    def _handle(self, problem: str, day: str):
        cur = self._files.get(problem)
        if cur is not None and (cur[2] != day or cur[1].stat().st_size >= self.max_bytes):
            cur[0].close()
            cur = None
        if cur is None:
            d = self.root / problem / day
            d.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            path = d / f"{os.getpid()}-{self._seq:05d}.jsonl"
            cur = (path.open("a", encoding="utf-8"), path, day)
            self._files[problem] = cur
        return cur[0]

    def _run(self) -> None:
        while True:
            row = self._q.get()
            batch = [row]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 5000:
                    batch.append(self._q.get_nowait())
            stop = any(r is None for r in batch)
            touched = set()
            for entry in batch:
                if entry is None:
                    continue
                try:
                    rows = self._rows(entry)
                    fh = self._handle(entry["problem"], entry["ts"][:10])
                    fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
                    touched.add(fh)
                    self.written += len(rows)
                except Exception:  # noqa: BLE001 - a full disk, an unreadable row: lost and counted, never raised
                    self.dropped += len(entry["keys"])
            for fh in touched:
                with contextlib.suppress(OSError):
                    fh.flush()
            if stop:
                return


# ---- readers (monitor) ------------------------------------------------------------------------
def read(settings: Settings, problem: str) -> pd.DataFrame:
    """Every logged row of `problem` (empty when nothing was served); key and features flattened."""
    files = sorted(folder(settings, problem).rglob("*.jsonl"))
    rows = []
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:  # a line cut by a killed server: skipped
                    continue
    if not rows:
        return pd.DataFrame()
    df = pd.json_normalize(rows, sep=".")
    return df


def scored_rows(settings: Settings, problem) -> pd.DataFrame:
    """The served rows as a score batch (key columns, score, model_version; one row per key and version,
    the latest answer): what realised performance measures as source `served`."""
    df = read(settings, problem.name)
    if df.empty:
        return df
    keys = [k for k in problem.key_columns if k != problem.time_column]
    cols = {f"key.{k}": k for k in keys}
    if any(c not in df.columns for c in cols):
        return pd.DataFrame()
    out = df.rename(columns=cols)
    out[problem.time_column] = pd.to_datetime(out["dt_ref"]).dt.date
    out = out.dropna(subset=["score", "model_version", problem.time_column])
    out = out.sort_values("ts").drop_duplicates([problem.time_column, *keys, "model_version"], keep="last")
    out["baseline_score"] = np.nan
    return out[[*problem.key_columns, "score", "baseline_score", "model_version"]].reset_index(drop=True)


def summary(settings: Settings, problem, batch: pd.DataFrame, current: pd.DataFrame, features: list[str]) -> dict:
    """What `olist-ml monitor` shows of the log: rows and requests served, served vs batch scores of the
    same (dt_ref, key, version), the PSI of the served scores (and numeric features) against the latest
    batch population (`current`: its scoring frame)."""
    from .metrics import psi

    df = read(settings, problem.name)
    if df.empty:
        return {}
    out: dict[str, Any] = {
        "rows": int(len(df)),
        "requests": int(df["request_id"].nunique()),
        "first": str(df["ts"].min()),
        "last": str(df["ts"].max()),
        "versions": sorted(str(v) for v in df["model_version"].dropna().unique()),
    }
    served = scored_rows(settings, problem)
    t = problem.time_column
    if len(served) and len(batch):
        b = batch[[*problem.key_columns, "score", "model_version"]].copy()
        b[t] = pd.to_datetime(b[t]).dt.date
        b["model_version"] = b["model_version"].astype(str)
        j = served.merge(b, on=[*problem.key_columns, "model_version"], suffixes=("_served", "_batch"))
        diff = (j["score_served"].astype(float) - j["score_batch"].astype(float)).abs()
        out["served_vs_batch"] = {
            "n_compared": int(len(j)),
            "max_abs_diff": float(diff.max()) if len(j) else float("nan"),
            "n_different": int((diff > 1e-9).sum()),
        }
    if len(current) and "score" in current.columns:
        drift = {"score": psi(current["score"].astype(float).reset_index(drop=True), df["score"].astype(float)).psi}
        for f in features:
            col = f"features.{f}"
            if col in df.columns and f in current.columns and pd.api.types.is_numeric_dtype(current[f]):
                vals = pd.to_numeric(df[col], errors="coerce")
                drift[f] = psi(pd.to_numeric(current[f], errors="coerce").reset_index(drop=True), vals).psi
        out["psi_vs_batch"] = {k: float(v) for k, v in drift.items()}
    return out
