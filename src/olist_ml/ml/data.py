"""Loading an ABT, its lineage, the train | validation | test split and time-ordered group-disjoint CV folds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from ..errors import InputError, MissingStepError, NotReadyError
from ..warehouse import table_exists
from .problem import Problem


def load_abt(con, problem: Problem) -> pd.DataFrame:
    if not table_exists(con, problem.abt_table):
        raise MissingStepError(
            f"warehouse has no table {problem.abt_table}: run `olist-ml train {problem.name}` "
            f"after `olist-ml {problem.build_step}`"
        )
    order = ", ".join(dict.fromkeys([problem.time_column, *problem.key_columns]))
    df = con.execute(f"SELECT * FROM {problem.abt_table} ORDER BY {order}").df()
    if df.empty:
        raise MissingStepError(
            f"table {problem.abt_table} is empty: run `olist-ml {problem.build_step}` over a "
            f"longer date range, then `olist-ml train {problem.name}`"
        )
    df[problem.time_column] = pd.to_datetime(df[problem.time_column])
    return df


def data_end(con) -> date | None:
    """The exclusive end of the data in the warehouse (`olist_ml.warehouse.observed_end`), None without
    orders (a scratch warehouse holding only an ABT)."""
    from ..warehouse import observed_end, table_exists

    return observed_end(con) if table_exists(con, "stg_orders") else None


def content_hash(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Split:
    """Labelled rows cut in time: train | validation | test, purged by when labels became known.

    train: rows whose label was known by `validation_start` (tuning by CV, fitting the candidates).
    validation: rows of [validation_start, test_start) whose label was known by `test_start`
        (choosing the winner, fitting the calibrator).
    test: rows of [test_start, test_end] (measured once, by the winner fitted on `pretest`).
    pretest: rows before `test_start` whose label was known by then (train + validation + rows
        purged from train whose label arrived during the validation months).
    labelled: every labelled row (the refit of the registered artefact).
    *_known: `Problem.label_known_at` of the rows of the frame of the same name.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    pretest: pd.DataFrame
    labelled: pd.DataFrame
    validation_start: date
    test_start: date
    test_end: date
    purged: bool
    train_known: pd.Series
    labelled_known: pd.Series
    validation_end: date | None = None
    notes: list[str] = field(default_factory=list)


def _d(x) -> date:
    return pd.Timestamp(x).date()


def _month_start(d: date, months_back: int) -> date:
    return (pd.Timestamp(d) - pd.DateOffset(months=months_back)).date()


def _enough_from(df: pd.DataFrame, problem: Problem, settings, months: int) -> str:
    """When the ABT's rows will hold labels in `months` calendar months, as far as its rows tell (the
    first row of the `months`-th month of rows, labelled when its label is known whatever it is)."""
    t = pd.to_datetime(df[problem.time_column])
    per = sorted(t.dt.to_period("M").unique())
    if len(per) < months:
        return (
            f"its rows span {len(per)} month(s) so far: enough once the data holds {months} months of "
            "labelled rows (or build features over a longer range)"
        )
    rows = df[t.dt.to_period("M") == per[months - 1]]
    if problem.label_known_fn is not None:
        known = pd.to_datetime(pd.Series(problem.label_known_fn(rows, settings), index=rows.index))
    else:
        known = pd.to_datetime(rows[problem.time_column]) + pd.Timedelta(days=problem.split_of(settings).purge_gap())
    return f"enough from about {known.min().date()} (when the first row of {per[months - 1]} is labelled)"


def split_protocol(
    df: pd.DataFrame,
    problem: Problem,
    settings,
    *,
    test_months: int | None = None,
    validation_months: int | None = None,
    test_start: date | None = None,
    test_end: date | None = None,
) -> Split:
    """train | validation | test in time (see `Split`). By default the test set is the last
    `test_months` labelled calendar months and validation the `validation_months` before them
    (`SplitConfig.months`); `test_start` / `test_end` place the test period by hand. With too few
    labelled months the periods shrink (noted), down to one month each."""
    t_col = problem.time_column
    lab = df[df[problem.target].notna()] if problem.target else df
    if lab.empty:
        raise NotReadyError(
            f"{problem.abt_table} has no labelled rows ({problem.target} is NULL everywhere): "
            f"the observed data is too short for the label horizon; ingest more history"
        )
    lab = lab.reset_index(drop=True)
    t = pd.to_datetime(lab[t_col])
    cfg = problem.split_of(settings)
    n_test, n_val = cfg.months(settings)
    n_test, n_val = int(test_months or n_test), int(validation_months or (test_months or n_val))
    notes: list[str] = []
    months = sorted(t.dt.to_period("M").unique())
    if test_start is None:
        if len(months) < 3:
            raise NotReadyError(
                f"{problem.abt_table} has labelled rows in only {len(months)} month(s): need at least 3 "
                f"for a train | validation | test split; {_enough_from(df, problem, settings, 3)}"
            )
        want = (n_test, n_val)
        while n_test + n_val + 2 > len(months) and (n_test > 1 or n_val > 1):
            if n_val >= n_test and n_val > 1:
                n_val -= 1
            else:
                n_test -= 1
        if (n_test, n_val) != want:
            notes.append(
                f"only {len(months)} labelled months: test {want[0]} -> {n_test}, validation "
                f"{want[1]} -> {n_val} month(s)"
            )
        test_start = months[-n_test].start_time.date()
    test_end = test_end or _d(t.max())
    val_start = _month_start(test_start, n_val)
    if cfg.purge:
        known = problem.label_known_at(lab, settings)
    else:
        known = t
    ts, vs, te = pd.Timestamp(test_start), pd.Timestamp(val_start), pd.Timestamp(test_end)
    tr_m = (t < vs) & (known <= vs)
    va_m = (t >= vs) & (t < ts) & (known <= ts)
    te_m = (t >= ts) & (t <= te)
    pre_m = (t < ts) & (known <= ts)
    train, val, test = lab[tr_m], lab[va_m], lab[te_m]
    if train.empty or val.empty or test.empty:
        raise InputError(
            f"{problem.abt_table}: test from {test_start} with {n_val} validation month(s) leaves "
            f"{len(train)} training, {len(val)} validation and {len(test)} test rows; choose other "
            f"--test-months / --validation-months / --test-start"
        )
    sp = Split(
        train=train.reset_index(drop=True),
        validation=val.reset_index(drop=True),
        test=test.reset_index(drop=True),
        pretest=lab[pre_m].reset_index(drop=True),
        labelled=lab,
        validation_start=val_start,
        test_start=test_start,
        test_end=test_end,
        purged=bool(cfg.purge),
        train_known=known[tr_m].reset_index(drop=True),
        labelled_known=known,
        validation_end=_d(val[t_col].max()),
        notes=notes,
    )
    return sp


def tuning_sample(
    train: pd.DataFrame, problem: Problem, known: pd.Series, max_rows: int | None, seed: int
) -> tuple[pd.DataFrame, pd.Series]:
    """At most `max_rows` training rows for tuning, the same share of every calendar month (so the
    time-ordered CV folds keep their shape); all rows when `max_rows` is None or not exceeded."""
    if not max_rows or len(train) <= max_rows:
        return train, known
    frac = max_rows / len(train)
    month = pd.to_datetime(train[problem.time_column]).dt.to_period("M")
    rng = np.random.default_rng(seed)
    u = pd.Series(rng.random(len(train)), index=train.index)
    # per month, the rows with the smallest random keys: exactly round(frac x month size) of each
    rank = u.groupby(month).rank(method="first")
    size = month.map(month.value_counts())
    keep = (rank <= np.maximum(1, np.round(frac * size))).to_numpy()
    return train[keep].reset_index(drop=True), known[keep].reset_index(drop=True)


def _group_bucket(values: pd.Series, k: int, seed: int) -> np.ndarray:
    h = pd.util.hash_pandas_object(values.astype(str), index=False, hash_key=f"olistml{seed % 10**9:09d}")
    return (h.to_numpy() % np.uint64(k)).astype(int)


def time_group_folds(
    train: pd.DataFrame, problem: Problem, k: int, purge_days: int = 0, seed: int = 0, known: pd.Series | None = None
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Time-ordered, group-disjoint folds over the training rows.

    Distinct reference dates are cut into k+1 contiguous blocks; fold i trains on the rows of
    blocks 0..i whose label was known when block i+1 starts (`known`, aligned with `train`;
    default: time + purge_days) of the groups NOT in bucket i, and validates on block i+1 of the
    groups in bucket i. So earlier dates train, later dates validate, and no group (seller) sits
    on both sides of a fold.
    """
    t = pd.to_datetime(train[problem.time_column])
    known = (t + pd.Timedelta(days=purge_days)) if known is None else pd.to_datetime(known).set_axis(train.index)
    times = np.array(sorted(t.unique()))
    groups = (
        _group_bucket(train[problem.group_column], max(k, 2), seed)
        if problem.group_column
        else np.arange(len(train)) % max(k, 2)
    )
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    note = ""
    k_eff = min(k, len(times) - 1)
    if k_eff >= 1:
        blocks = np.array_split(times, k_eff + 1)
        for i in range(k_eff):
            vstart, vend = blocks[i + 1][0], blocks[i + 1][-1]
            bucket = i % max(k, 2)
            tr = (t < vstart) & (known <= vstart) & (groups != bucket)
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
