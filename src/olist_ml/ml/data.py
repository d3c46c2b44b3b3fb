"""Loading an ABT, its lineage, the out-of-time split and time-ordered group-disjoint CV folds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from ..errors import InputError, MissingStepError, NotReadyError
from ..warehouse import table_exists
from .problem import Problem


def load_abt(con, problem: Problem) -> pd.DataFrame:
    if not table_exists(con, problem.abt_table):
        raise MissingStepError(f"warehouse has no table {problem.abt_table}: run `olist-ml train {problem.name}` "
                               f"after `olist-ml {problem.build_step}`")
    order = ", ".join(dict.fromkeys([problem.time_column, *problem.key_columns]))
    df = con.execute(f"SELECT * FROM {problem.abt_table} ORDER BY {order}").df()
    if df.empty:
        raise MissingStepError(f"table {problem.abt_table} is empty: run `olist-ml {problem.build_step}` over a "
                               f"longer date range, then `olist-ml train {problem.name}`")
    df[problem.time_column] = pd.to_datetime(df[problem.time_column])
    return df


def content_hash(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Split:
    train: pd.DataFrame
    oot: pd.DataFrame
    oot_start: date
    oot_end: date
    purge_days: int
    note: str = ""
    folds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    fold_note: str = ""


def _d(x) -> date:
    return pd.Timestamp(x).date()


def split_oot(df: pd.DataFrame, problem: Problem, *, oot_months: int, purge_days: int,
              oot_start: date | None = None, oot_end: date | None = None) -> Split:
    """Out-of-time split: the last `oot_months` calendar months of (labelled) rows are held out.

    The training side keeps only rows whose label horizon ends before the OOT period starts
    (time + purge_days <= oot_start), as it would be at deployment time.
    """
    t = df[problem.time_column]
    lab = df[df[problem.target].notna()] if problem.target else df
    if lab.empty:
        raise NotReadyError(f"{problem.abt_table} has no labelled rows ({problem.target} is NULL everywhere): "
                               f"the observed data is too short for the label horizon; ingest more history")
    t = lab[problem.time_column]
    note = ""
    if oot_start is None:
        months = sorted(t.dt.to_period("M").unique())
        n = oot_months
        if len(months) < n + 2:
            n = max(1, len(months) // 3)
            note = f"only {len(months)} labelled months: OOT shrunk from {oot_months} to {n} month(s)"
        if len(months) < 2:
            raise InputError(f"{problem.abt_table} has labelled rows in only {len(months)} month(s): need at least 2 "
                             f"for an out-of-time split; build features over a longer range")
        oot_start = months[-n].start_time.date()
    oot_end = oot_end or _d(t.max())
    start_ts, end_ts = pd.Timestamp(oot_start), pd.Timestamp(oot_end)
    oot = lab[(t >= start_ts) & (t <= end_ts)]
    train = lab[t + pd.Timedelta(days=purge_days) <= start_ts]
    if train.empty or oot.empty:
        raise InputError(f"{problem.abt_table}: out-of-time split at {oot_start} leaves "
                         f"{len(train)} training and {len(oot)} test rows; choose another --oot-months/--oot-start")
    return Split(train=train.reset_index(drop=True), oot=oot.reset_index(drop=True), oot_start=oot_start,
                 oot_end=oot_end, purge_days=purge_days, note=note)


def _group_bucket(values: pd.Series, k: int, seed: int) -> np.ndarray:
    h = pd.util.hash_pandas_object(values.astype(str), index=False, hash_key=f"olistml{seed % 10**9:09d}")
    return (h.to_numpy() % np.uint64(k)).astype(int)


def time_group_folds(train: pd.DataFrame, problem: Problem, k: int, purge_days: int,
                     seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Time-ordered, group-disjoint folds over the training rows.

    Distinct reference dates are cut into k+1 contiguous blocks; fold i trains on blocks
    0..i (minus rows whose label horizon reaches the validation block) of the groups NOT in
    bucket i, and validates on block i+1 of the groups in bucket i. So earlier dates train,
    later dates validate, and no group (seller) sits on both sides of a fold.
    """
    t = train[problem.time_column]
    times = np.array(sorted(t.unique()))
    groups = (_group_bucket(train[problem.group_column], max(k, 2), seed) if problem.group_column
              else np.arange(len(train)) % max(k, 2))
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    note = ""
    k_eff = min(k, len(times) - 1)
    if k_eff >= 1:
        blocks = np.array_split(times, k_eff + 1)
        for i in range(k_eff):
            vstart, vend = blocks[i + 1][0], blocks[i + 1][-1]
            bucket = i % max(k, 2)
            tr = (t + pd.Timedelta(days=purge_days) <= vstart) & (groups != bucket)
            va = (t >= vstart) & (t <= vend) & (groups == bucket)
            tr_idx, va_idx = np.flatnonzero(tr.to_numpy()), np.flatnonzero(va.to_numpy())
            if len(tr_idx) and len(va_idx) and _both_classes(train, problem, tr_idx, va_idx):
                folds.append((tr_idx, va_idx))
    if not folds:
        note = f"only {len(times)} training date(s): group-disjoint folds without time order"
        for i in range(max(k, 2)):
            tr_idx, va_idx = np.flatnonzero(groups != i), np.flatnonzero(groups == i)
            if len(tr_idx) and len(va_idx) and _both_classes(train, problem, tr_idx, va_idx):
                folds.append((tr_idx, va_idx))
    return folds, note


def _both_classes(df, problem, tr, va) -> bool:
    if problem.kind != "binary":
        return True
    y = df[problem.target].to_numpy()
    return len(np.unique(y[tr])) == 2 and len(np.unique(y[va])) == 2
