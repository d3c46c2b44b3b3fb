"""Batch scoring: load `models:/<name>@champion`, score the problem's population at a reference
date, append the batch to the score history `scores_<name>` (`olist_ml.records`: kept for good,
idempotent per (reference date, model version, data))."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from .. import records
from ..config import Settings
from ..errors import InputError, MissingStepError
from ..warehouse import session
from . import explain, registry
from .problem import Problem


@dataclass
class ScoreReport:
    problem: str
    table: str
    dt_ref: date
    n_scored: int
    model_name: str
    model_version: str
    run_id: str
    distribution: dict[str, float] = field(default_factory=dict)
    top: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    revised: str = ""  # earlier batches whose data was revised since (kept and marked), one line


def deciles(scores: np.ndarray) -> np.ndarray:
    """Decile 1 = the highest-scoring 10% of rows, 10 = the lowest (ties broken by order)."""
    n = len(scores)
    if n == 0:
        return np.array([], dtype=int)
    rank = np.empty(n, dtype=int)
    rank[np.argsort(-np.asarray(scores, dtype=float), kind="stable")] = np.arange(n)
    return (rank * 10 // n + 1).astype(int)


def _create_sql(problem: Problem, frame: pd.DataFrame) -> str:
    cols = []
    for k in problem.key_columns:
        if k == problem.time_column:
            cols.append(f"{k} DATE")
        elif pd.api.types.is_integer_dtype(frame[k]):
            cols.append(f"{k} BIGINT")
        else:
            cols.append(f"{k} VARCHAR")
    score_type = "DOUBLE" if problem.kind == "binary" else "INTEGER"
    cols += [
        f"score {score_type}",
        "decile INTEGER",
        "model_name VARCHAR",
        "model_version VARCHAR",
        "run_id VARCHAR",
        "scored_at TIMESTAMP",
        "baseline_score DOUBLE",
    ]
    # extra columns a score_fn adds (e.g. segment_name): VARCHAR
    known = set(problem.key_columns) | {"score", "decile", "model_name", "model_version", "run_id", "scored_at"}
    known |= {"baseline_score", *records.RECORD_COLUMNS}
    cols += [f"{c} VARCHAR" for c in frame.columns if c not in known]
    cols += [f"{c} {t}" for c, t in records.RECORD_COLUMNS.items()]
    return f"CREATE TABLE IF NOT EXISTS {problem.scores_table} ({', '.join(cols)})"


def score_date(problem: Problem, frame: pd.DataFrame, as_of: date | None = None) -> date:
    """The one scoring date of a scoring frame (the convention of `Problem.time_column`)."""
    t = problem.time_column
    dts = pd.to_datetime(frame[t]).dt.date.unique()
    if len(dts) != 1:
        raise InputError(
            f"scoring frame of {problem.name} spans {len(dts)} values of {t}; by convention "
            f"(Problem.time_column) it must hold the one scoring date on every row"
        )
    d = dts[0]
    if as_of is not None and d != pd.Timestamp(as_of).date():
        raise InputError(
            f"scoring frame of {problem.name} at {pd.Timestamp(as_of).date()} holds {t} {d}: by "
            f"convention (Problem.time_column) it must hold the scoring date"
        )
    ev = problem.event_time_column
    if ev and ev in frame.columns:
        late = pd.to_datetime(frame[ev]) >= pd.Timestamp(d)
        if late.any():
            row = frame.loc[late].iloc[0]
            raise InputError(
                f"scoring frame of {problem.name} at {d}: {ev} {row[ev]} of "
                f"{', '.join(f'{k}={row[k]}' for k in problem.key_columns if k != t)} is not before "
                f"the scoring date"
            )
    return d


def write_scores(con, problem: Problem, out: pd.DataFrame, dt_ref: date, model_version: str) -> int:
    """Append the batch `out` of (dt_ref, model_version) to the score history `scores_<name>` in one
    transaction, with the fingerprint of the data it was computed from (`olist_ml.records`; a batch of
    the same dt_ref, version and data is replaced: idempotent).

    `out` holds the key columns, score, decile, model_name, model_version, run_id, scored_at and
    optionally baseline_score and extra (text) columns."""
    from .. import lineage

    d = pd.Timestamp(dt_ref).date()
    data_fp = lineage.asof_fingerprints(con, [d], problem.reads)[d]
    return records.write_batch(
        con,
        problem.scores_table,
        out,
        _create_sql(problem, out),
        dt_ref=d,
        model_version=str(model_version),
        data_fp=data_fp,
        time_column=problem.time_column,
    )


def mark_revised_scores(con, problem: Problem) -> records.Revision:
    """Mark the batches of `scores_<name>` whose data as known at their dt_ref changed since (kept)."""
    return records.mark_revised(con, problem.scores_table, problem.reads, problem.time_column)


def baseline_scores(problem: Problem, frame: pd.DataFrame) -> np.ndarray | None:
    """The quality gate's rule score of every row (None when the gate has no rule): kept beside the
    model's score, so realised performance can show the baseline on the same rows."""
    gate = problem.quality_gate
    if gate is None or gate.score is None:
        return None
    try:
        return np.asarray(gate.score(frame), dtype=float)
    except KeyError:  # a frame without the rule's column (an ad-hoc problem): no baseline
        return None


def distribution(problem: Problem, scores: pd.Series) -> dict[str, float]:
    s = scores.astype(float)
    dist = {
        "mean": float(s.mean()),
        "min": float(s.min()),
        "p10": float(s.quantile(0.1)),
        "p50": float(s.quantile(0.5)),
        "p90": float(s.quantile(0.9)),
        "max": float(s.max()),
    }
    if problem.kind == "binary":
        dist["share_ge_0.5"] = float((s >= 0.5).mean())
    else:
        dist.update({f"cluster_{k}": float(v) for k, v in scores.value_counts(normalize=True).sort_index().items()})
    return dist


now_utc = records.now_utc


def predict(problem: Problem, settings: Settings, as_of: date | None = None, *, top_n: int = 10) -> ScoreReport:
    """Score every row of `problem.scoring_frame` at `as_of` (default: the problem's default
    scoring date) with the champion. A problem with a `score_fn` hook is scored by it."""
    if problem.score_fn is not None:
        return problem.score_fn(problem, settings, as_of, top_n=top_n)
    t0 = time.perf_counter()
    champ = registry.load_champion(settings, problem.name)
    # a champion trained with other horizon / windows would score inputs it never saw
    problem.check_champion(champ, settings)
    with session(settings) as con:
        revised = mark_revised_scores(con, problem)
        frame = problem.scoring_frame(con, settings, as_of)
        if frame is None or frame.empty:
            raise MissingStepError(
                f"nothing to score for {problem.name} at {as_of or 'the default scoring date'}: "
                f"run `olist-ml {problem.build_step}` for that date"
            )
        t = problem.time_column
        dt_ref = score_date(problem, frame, as_of)
        scores = champ.score(frame)
        out = frame[list(problem.key_columns)].copy()
        out[t] = pd.to_datetime(out[t]).dt.date
        out["score"] = scores.astype(float) if problem.kind == "binary" else scores.astype(int)
        out["decile"] = (
            pd.array(deciles(scores), dtype="Int64")
            if problem.kind == "binary"
            else pd.array([pd.NA] * len(out), dtype="Int64")
        )
        out["model_name"] = champ.model_name
        out["model_version"] = str(champ.version)
        out["run_id"] = champ.run_id
        out["scored_at"] = now_utc()
        base = baseline_scores(problem, frame)
        if base is not None:
            out["baseline_score"] = base
        if problem.kind == "binary":  # the top-3 reasons: reason_1..3 + reasons (JSON), olist_ml.ml.explain
            out = out.join(explain.reason_columns(champ, frame))
        out = out.sort_values(
            ["score"] + [k for k in problem.key_columns if k != t],
            ascending=[False] + [True] * (len(problem.key_columns) - 1),
        ).reset_index(drop=True)
        write_scores(con, problem, out, dt_ref, str(champ.version))
    top = out.head(top_n)[list(problem.key_columns) + ["score", "decile"]].to_dict("records")
    return ScoreReport(
        problem=problem.name,
        table=problem.scores_table,
        dt_ref=dt_ref,
        n_scored=int(len(out)),
        model_name=champ.model_name,
        model_version=str(champ.version),
        run_id=champ.run_id,
        distribution=distribution(problem, out["score"]),
        top=top,
        seconds=time.perf_counter() - t0,
        revised=revised.line(),
    )
