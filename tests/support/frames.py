"""Comparing a table built by two engines (DuckDB and Spark): the same columns and rows, numbers equal to a
tolerance, missing values (None / NaN / NaT / NA) alike on both sides, dates and timestamps compared as
timestamps (Spark returns datetime.date where DuckDB gives a pandas Timestamp)."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd


def _value(v):
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, dt.datetime)):
        return pd.Timestamp(v).to_pydatetime()
    if isinstance(v, dt.date):
        return pd.Timestamp(v).to_pydatetime()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return v


def _isna(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _same_json(x, y, tol: float) -> bool:
    """Two JSON values alike, numbers to `tol` (the scores' `reasons`: contributions computed from feature
    values that the engines round differently in the last digits)."""
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same_json(x[k], y[k], tol) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same_json(u, v, tol) for u, v in zip(x, y, strict=True))
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return math.isclose(float(x), float(y), rel_tol=tol, abs_tol=tol)
    return x == y


def assert_same(
    a: pd.DataFrame, b: pd.DataFrame, keys: list[str], what: str, tol: float = 1e-6, skip: tuple[str, ...] = ()
) -> None:
    """Every row and column of `a` equals `b` (rows matched by sorting on `keys`)."""
    cols = [c for c in a.columns if c not in skip]
    assert sorted(cols) == sorted(c for c in b.columns if c not in skip), what
    assert len(a) == len(b), (what, len(a), len(b))
    a = a[cols].map(_value) if len(a) else a[cols]
    b = b[cols].map(_value) if len(b) else b[cols]
    a = a.sort_values(keys, key=lambda s: s.astype(str)).reset_index(drop=True)
    b = b.sort_values(keys, key=lambda s: s.astype(str)).reset_index(drop=True)
    for c in cols:
        for i, (x, y) in enumerate(zip(a[c].tolist(), b[c].tolist(), strict=False)):
            if _isna(x) or _isna(y):  # None / NaN / NaT: missing on both sides
                assert _isna(x) and _isna(y), (what, c, i, x, y)
            elif isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
                assert math.isclose(float(x), float(y), rel_tol=tol, abs_tol=tol), (what, c, i, x, y)
            elif isinstance(x, str) and x.startswith("[{") and isinstance(y, str):  # reasons (JSON)
                assert _same_json(json.loads(x), json.loads(y), tol), (what, c, i, x, y)
            else:
                assert x == y, (what, c, i, x, y)
