"""Generic training: the evaluation protocol (DESIGN.md, principle 7).

    labelled rows --time--> train | validation | test   (purged by when each label became known)

1. Tune every candidate by time-ordered, group-disjoint CV inside train (Optuna, median pruning,
   optionally on a time-stratified sample: `SplitConfig.tune_rows`).
2. Fit every candidate on train; choose the winner on VALIDATION (never on test).
3. Calibrate the winner on validation (`olist_ml.ml.calibration`: none / sigmoid / isotonic by
   cross-fitted validation log loss).
4. Fit the winner's spec on train + validation (`Split.pretest`), apply the calibrator and measure
   the TEST period once: the problem's metrics, a clustered bootstrap 95 % CI, the problem's extra
   metrics, the baseline's metric on the same rows, ECE and reliability before/after calibration.
   Nothing is chosen on these numbers but the deployment decision below.
5. Refit the spec on EVERY labelled row and attach the same calibrator: the registered artefact.
   Its version carries trained_until, the validation/test periods and metrics and the spec.
6. Quality gate: below the problem's baseline on test -> registered, never promoted. Otherwise the
   champion rule: the current champion's SPEC (candidate + hyper-parameters, from its version
   tags) is fitted on the same train / pretest rows, calibrated the same way and measured on the
   same test rows; the newcomer takes `champion` only if it is better there. A registered artefact
   has seen every labelled row of its day, so it is never scored on test rows itself.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import InputError, NotReadyError
from ..warehouse import session
from . import artefact, explain, registry, tracking
from . import calibration as calib
from . import candidates as cands
from . import metrics as M
from .data import Split, content_hash, data_end, load_abt, split_protocol, time_group_folds, tuning_sample
from .problem import SETTINGS_TAG, Problem

# metrics where lower is better
_LOWER_IS_BETTER = {"log_loss", "brier", "davies_bouldin", "ece"}


@dataclass
class CandidateResult:
    name: str
    params: dict
    cv_score: float
    n_trials: int
    validation: dict[str, float]  # metrics on the validation rows of the fit on train (cluster: see train_fn)
    run_id: str
    model_uri: str = ""
    fit_seconds: float = 0.0


@dataclass
class TrainResult:
    problem: str
    experiment_id: str
    parent_run_id: str
    metric: str
    candidates: list[CandidateResult]
    winner: str
    model_version: str | None
    decision: str  # "champion" | "challenger" | "rejected" | "not registered"
    reason: str
    previous_champion: str | None
    lineage: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    extra_keys: list[str] = field(default_factory=list)  # metrics from Problem.extra_metrics / a train_fn
    test: dict[str, float] = field(default_factory=dict)  # the winner's spec fitted on pretest rows, on test
    baseline: dict[str, Any] = field(default_factory=dict)  # name, test_<metric> (+ CI) of the problem's baseline
    calibration: dict[str, Any] = field(default_factory=dict)  # method, cross-fitted validation log losses
    refit_run_id: str | None = None  # the run that logged the registered artefact

    def table(self) -> pd.DataFrame:
        """One row per candidate: CV score and VALIDATION metrics (what the winner was chosen on)."""
        shown = (
            "roc_auc",
            "pr_auc",
            "log_loss",
            "brier",
            "ks",
            "top_decile_lift",
            "top_decile_precision",
            "silhouette",
            "davies_bouldin",
            "n_clusters",
            *self.extra_keys,
        )
        rows = []
        for c in self.candidates:
            r = {"candidate": c.name, f"cv_{self.metric}": c.cv_score, "trials": c.n_trials}
            r.update({k: v for k, v in c.validation.items() if k in shown})
            rows.append(r)
        return pd.DataFrame(rows)


def _budget(settings: Settings, n_trials, timeout, names, cv_folds) -> tuple[int, float, Any, int | None]:
    """The tuning budget: the arguments, else `Settings.training` (OLIST_ML_TRIALS, ...)."""
    tr = settings.training
    n_trials = n_trials if n_trials is not None else tr.trials
    timeout = timeout if timeout is not None else tr.timeout
    names = names if names is not None else (list(tr.candidates) if tr.candidates else None)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    cv_folds = cv_folds if cv_folds is not None else tr.cv_folds
    return int(n_trials), float(timeout), names, (int(cv_folds) if cv_folds else None)


def _better(a: float, b: float, metric: str) -> bool:
    if b is None or np.isnan(b):
        return not np.isnan(a)
    if np.isnan(a):
        return False
    return a < b if metric in _LOWER_IS_BETTER else a > b


def _n_jobs(settings: Settings) -> int:
    return int(settings.threads or min(4, os.cpu_count() or 1))


def _fit(problem: Problem, model, df: pd.DataFrame):
    if problem.kind == "binary":
        y = df[problem.target].astype(int)
        if problem.weight_column:  # sample weights go to the estimator (the pipeline's last step)
            w = pd.to_numeric(df[problem.weight_column], errors="coerce").fillna(1.0).to_numpy(dtype=float)
            key = f"{model.steps[-1][0]}__sample_weight" if hasattr(model, "steps") else "sample_weight"
            return model.fit(df, y, **{key: w})
        return model.fit(df, y)
    return model.fit(df)


def evaluate(problem: Problem, model, df: pd.DataFrame) -> dict[str, float]:
    """Metrics of a fitted pipeline on labelled rows `df` (binary) or on rows `df` (cluster)."""
    if problem.kind == "binary":
        p = np.asarray(model.predict_proba(df))[:, 1]
        return M.binary_metrics(df[problem.target].to_numpy().astype(int), p)
    X = cluster_space(model, df)
    return M.cluster_metrics(X, np.asarray(model.predict(df)))


def extra_metrics(problem: Problem, df: pd.DataFrame, p: np.ndarray, settings: Settings) -> dict[str, float]:
    """`problem.extra_metrics(frame, y, p, settings)` of a binary model's predictions p for labelled rows `df`."""
    if problem.extra_metrics is None or problem.kind != "binary":
        return {}
    out = problem.extra_metrics(df, df[problem.target].to_numpy().astype(int), np.asarray(p, dtype=float), settings)
    return {str(k): float(v) for k, v in out.items()}


def cluster_space(model, df):
    X = model[:-1].transform(df)
    return np.asarray(X, dtype=float)


def _cv_score(problem, cand, cat, num, params, train, folds, seed, n_jobs, trial=None) -> float:
    import optuna

    scores = []
    for i, (tr, va) in enumerate(folds):
        with warnings.catch_warnings():  # tiny tuning folds (e.g. activation) make estimators warn about their size
            warnings.simplefilter("ignore", UserWarning)
            m = _fit(problem, cand.build(cat, num, params, seed, n_jobs), train.iloc[tr])
        scores.append(evaluate(problem, m, train.iloc[va])[problem.metric])
        if trial is not None and i < len(folds) - 1:
            trial.report(float(np.nanmean(scores)), step=i)
            if trial.should_prune():
                raise optuna.TrialPruned()
    return float(np.nanmean(scores)) if scores else float("nan")


def _tune(problem, cand, cat, num, train, folds, n_trials, timeout, seed, n_jobs) -> tuple[dict, float, int]:
    if n_trials <= 0 or not folds:
        score = _cv_score(problem, cand, cat, num, cand.default, train, folds, seed, n_jobs) if folds else float("nan")
        return dict(cand.default), score, 0
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if problem.metric in _LOWER_IS_BETTER else "maximize"
    # a trial whose running CV mean after a fold is below the median of earlier trials at that fold
    # stops there (the first 2 trials always run every fold)
    study = optuna.create_study(
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    study.enqueue_trial(cand.default)  # the hand-picked defaults are always one of the trials

    def objective(trial):
        params = cand.space(trial)
        s = _cv_score(problem, cand, cat, num, params, train, folds, seed, n_jobs, trial)
        return s if not np.isnan(s) else (1e9 if direction == "minimize" else -1e9)

    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(ValueError,))
    done = [t for t in study.trials if t.value is not None]
    if not done:
        return dict(cand.default), float("nan"), 0
    params = {**cand.default, **study.best_params}
    return params, float(study.best_value), len(study.trials)


def _empty_features(train: pd.DataFrame, cat: list[str], num: list[str]) -> list[str]:
    """Feature columns with no value at all in the training rows: a model cannot learn them, and
    a column filled only at serving time would shift scores by its imputed constant."""
    return [c for c in cat + num if c in train.columns and train[c].isna().all()]


# ---- the spec: what a model is, independent of the rows it was fitted on -------------------------
@dataclass
class Spec:
    candidate: str
    params: dict
    categorical: list[str] | None = None  # None: the features of the run that refits it
    numeric: list[str] | None = None

    def key(self, cat: list[str], num: list[str]) -> str:
        return json.dumps(
            {
                "candidate": self.candidate,
                "params": self.params,
                "features": sorted(
                    set(self.categorical if self.categorical is not None else cat)
                    | set(self.numeric if self.numeric is not None else num)
                ),
            },
            sort_keys=True,
            default=str,
        )


@dataclass
class Fitted:
    """The protocol applied to one spec: fit on train -> validation; calibrate; fit on pretest -> test."""

    spec: Spec
    validation: dict[str, float]
    calibration: calib.Calibration | None
    test: dict[str, float]
    p_test_raw: np.ndarray | None = None
    p_test: np.ndarray | None = None
    pretest_model: Any = None


def _resolve(problem: Problem, name: str):
    return cands.resolve([name], problem.kind, problem.exposure_column)[0]


def _test_of(
    problem,
    spec: Spec,
    cat,
    num,
    split: Split,
    settings,
    n_jobs,
    *,
    train_model=None,
    cal: calib.Calibration | None = None,
) -> Fitted:
    """Steps 2-4 of the protocol for one spec (reusing a model already fitted on train)."""
    cand = _resolve(problem, spec.candidate)
    cat = spec.categorical if spec.categorical is not None else cat
    num = spec.numeric if spec.numeric is not None else num
    if train_model is None:
        train_model = _fit(problem, cand.build(cat, num, spec.params, settings.seed, n_jobs), split.train)
    val = evaluate(problem, train_model, split.validation)
    if problem.kind == "binary" and cal is None:
        y_val = split.validation[problem.target].to_numpy().astype(int)
        cl = split.validation[problem.cluster_column] if problem.cluster_column else None
        cal = calib.choose(
            calib.response(train_model, split.validation),
            np.asarray(train_model.predict_proba(split.validation))[:, 1],
            y_val,
            cl,
            seed=settings.seed,
        )
    pre = _fit(problem, cand.build(cat, num, spec.params, settings.seed, n_jobs), split.pretest)
    if problem.kind != "binary":
        return Fitted(spec, val, None, evaluate(problem, pre, split.test), pretest_model=pre)
    p_raw = np.asarray(pre.predict_proba(split.test))[:, 1]
    model = calib.attach(pre, cal)
    p = np.asarray(model.predict_proba(split.test))[:, 1]
    y = split.test[problem.target].to_numpy().astype(int)
    test = M.binary_metrics(y, p)
    return Fitted(spec, val, cal, test, p_raw, p, model)


def _ci(problem: Problem, df: pd.DataFrame, p: np.ndarray, settings: Settings) -> tuple[float, float]:
    n_boot = int(settings.training.bootstrap)
    cl = df[problem.cluster_column] if problem.cluster_column and problem.cluster_column in df.columns else None
    lo, hi, _ = M.bootstrap_ci(
        df[problem.target].to_numpy().astype(int), p, cl, metric=problem.metric, n_boot=n_boot, seed=settings.seed
    )
    return lo, hi


def _baseline(problem: Problem, split: Split, settings: Settings) -> dict[str, Any]:
    """The problem's baseline: its rule's metric on the validation and test rows (+ test CI)."""
    gate = problem.quality_gate
    if gate is None:
        return {}
    out: dict[str, Any] = {"name": gate.name}
    if gate.ci_floor is not None:
        out["ci_floor"] = gate.ci_floor
    metric = problem.metric
    if gate.score is not None and metric in ("roc_auc", "pr_auc"):  # a rule's score ranks, it is no probability
        for part, df in (("validation", split.validation), ("test", split.test)):
            s = np.asarray(gate.score(df), dtype=float)
            s = np.where(np.isfinite(s), s, np.nanmedian(s) if np.isfinite(s).any() else 0.0)  # unknown: neutral
            y = df[problem.target].to_numpy().astype(int)
            out[f"{part}_{metric}"] = M.ranking_metric(metric, y, s)
            if part == "test":
                out[f"test_{metric}_ci_low"], out[f"test_{metric}_ci_high"] = _ci(problem, df, s, settings)
    return out


def _gate(problem: Problem, test: dict[str, float], base: dict[str, Any]) -> tuple[bool, str]:
    """(passed, why) of the quality gate on the test rows."""
    gate = problem.quality_gate
    if gate is None:
        return True, ""
    metric = problem.metric
    new = test.get(metric, float("nan"))
    lo, hi = test.get(f"{metric}_ci_low", float("nan")), test.get(f"{metric}_ci_high", float("nan"))
    why = []
    ok = True
    if gate.score is not None:
        b = base.get(f"test_{metric}", float("nan"))
        beats = _better(new, b, metric)
        ok &= bool(beats)
        why.append(
            f"test {metric} {new:.4f} {'beats' if beats else 'does not beat'} the baseline ({gate.name}) {b:.4f}"
        )
    if gate.ci_floor is not None:
        bound = hi if metric in _LOWER_IS_BETTER else lo
        clears = np.isfinite(bound) and _better(bound, gate.ci_floor, metric)
        ok &= bool(clears)
        why.append(
            f"test {metric} 95 % CI [{lo:.4f}, {hi:.4f}] {'clears' if clears else 'does not clear'} {gate.ci_floor}"
        )
    return ok, "; ".join(why)


def _lineage(problem: Problem, df: pd.DataFrame, split: Split, cat, num) -> dict[str, Any]:
    t = problem.time_column
    lab = split.labelled

    def rng(frame: pd.DataFrame) -> tuple[str, str]:
        return str(pd.Timestamp(frame[t].min()).date()), str(pd.Timestamp(frame[t].max()).date())

    known = split.labelled_known
    return {
        "abt_table": problem.abt_table,
        "abt_rows": int(len(df)),
        "abt_labelled_rows": int(len(lab)),
        "abt_dt_ref_min": str(df[t].min().date()),
        "abt_dt_ref_max": str(df[t].max().date()),
        "abt_content_hash": content_hash(df),
        # the rows the registered artefact is fitted on (every labelled row): trained_until is the
        # last reference date among them; monitoring takes them as its reference population
        "train_rows": int(len(lab)),
        "train_dt_ref_min": rng(lab)[0],
        "train_dt_ref_max": rng(lab)[1],
        "trained_until": rng(lab)[1],
        "labels_known_until": str(pd.Timestamp(known.max()).date()) if len(known) else "",
        # the protocol's periods
        "split_train_rows": int(len(split.train)),
        "split_train_dt_ref_min": rng(split.train)[0],
        "split_train_dt_ref_max": rng(split.train)[1],
        "validation_rows": int(len(split.validation)),
        "validation_start": str(split.validation_start),
        "validation_end": str(split.validation_end),
        "test_rows": int(len(split.test)),
        "test_start": str(split.test_start),
        "test_end": str(split.test_end),
        "pretest_rows": int(len(split.pretest)),
        "purged_by_label_known_at": bool(split.purged),
        "weight_column": problem.weight_column or "-",
        "n_features": len(cat) + len(num),
        "categorical_features": cat,
        "numeric_features": num,
    }


def _plots(mlflow, problem: Problem, fitted: Fitted, final_model, split: Split, title: str) -> None:
    """evaluation/ artifacts of the registered version: test-period plots of the fit before the
    test period (calibrated), reliability before/after calibration, deciles, importances."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        if problem.kind == "binary":
            y = split.test[problem.target].to_numpy().astype(int)
            M.binary_plots(y, fitted.p_test, out, title)
            M.reliability_plot(y, fitted.p_test_raw, fitted.p_test, out, title)
            M.decile_table(y, fitted.p_test).to_csv(out / "deciles.csv", index=False)
            M.calibration_table(y, fitted.p_test).to_csv(out / "calibration.csv", index=False)
            M.calibration_table(y, fitted.p_test_raw).to_csv(out / "calibration_before.csv", index=False)
        else:
            from sklearn.decomposition import PCA

            X = cluster_space(fitted.pretest_model, split.test)
            labels = np.asarray(fitted.pretest_model.predict(split.test))
            X2 = PCA(n_components=2, random_state=0).fit_transform(X) if X.shape[1] >= 2 else np.c_[X, X]
            M.cluster_plot(X2, labels, out, title)
            pd.Series(labels).value_counts().sort_index().rename("n").to_csv(out / "cluster_sizes.csv")
        imp = cands.importances(final_model)
        if not imp.empty:
            M.importance_plot(imp, out, title)
            imp.rename("importance").to_csv(out / "feature_importance.csv", index_label="feature")
        mlflow.log_artifacts(str(out), artifact_path="evaluation")


@dataclass
class _Data:
    """The rows one training works on (`_prepare`): the ABT, its split, the feature lists, the
    tuning rows and folds, and the lineage every run and version records."""

    df: pd.DataFrame
    split: Split
    cat: list[str]
    num: list[str]
    empty: list[str]  # features dropped: empty in every training row
    tune_df: pd.DataFrame
    folds: list
    lineage: dict[str, Any]
    notes: list[str]


class _Steps:
    """The optional progress bar of `train` (no-op without `progress`)."""

    def __init__(self, enabled: bool, title: str, total: int):
        self.prog = None
        if enabled:
            from rich.progress import Progress

            self.prog = Progress(transient=True)
            self.prog.start()
            self.task = self.prog.add_task(title, total=total)

    def say(self, description: str) -> None:
        if self.prog:
            self.prog.update(self.task, description=description)

    def done(self) -> None:
        if self.prog:
            self.prog.advance(self.task)

    def stop(self) -> None:
        if self.prog:
            self.prog.stop()


def train(
    problem: Problem,
    settings: Settings,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    candidates: list[str] | str | None = None,
    cv_folds: int | None = None,
    test_months: int | None = None,
    validation_months: int | None = None,
    test_start: date | None = None,
    test_end: date | None = None,
    build_abt: bool = True,
    register: bool = True,
    min_delta: float = 0.0,
    progress: bool = False,
    **old,
) -> TrainResult:
    """Train `problem` by the protocol of this module's docstring, log it to MLflow, register the
    refit winner and apply the quality gate and the champion rule. Budget: n_trials / timeout
    (seconds) of tuning per candidate. `oot_months` / `oot_start` / `oot_end` are accepted as the
    older names of test_months / test_start / test_end.

    A problem with a `train_fn` hook (e.g. seller_segments) is trained by that hook instead,
    with the same keyword arguments; it returns a TrainResult too."""
    unknown = set(old) - {"oot_months", "oot_start", "oot_end"}
    if unknown:
        raise TypeError(f"train() got unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    test_months = test_months or old.get("oot_months")
    test_start = test_start or old.get("oot_start")
    test_end = test_end or old.get("oot_end")
    if problem.train_fn is not None:
        return problem.train_fn(
            problem,
            settings,
            n_trials=n_trials,
            timeout=timeout,
            candidates=candidates,
            cv_folds=cv_folds,
            test_months=test_months,
            validation_months=validation_months,
            test_start=test_start,
            test_end=test_end,
            build_abt=build_abt,
            register=register,
            min_delta=min_delta,
            progress=progress,
        )
    n_trials, timeout, names, cv_k = _budget(settings, n_trials, timeout, candidates, cv_folds)
    chosen = cands.resolve(names or problem.candidates, problem.kind, problem.exposure_column)
    data = _prepare(
        problem,
        settings,
        build_abt=build_abt,
        cv_k=cv_k,
        test_months=test_months,
        validation_months=validation_months,
        test_start=test_start,
        test_end=test_end,
    )
    lineage, notes, metric = data.lineage, data.notes, problem.metric
    n_jobs = _n_jobs(settings)

    mlflow = tracking.configure(settings)
    exp_id = tracking.experiment_id(settings, problem.name)
    steps = _Steps(progress, f"training {problem.name}", len(chosen) + 2)
    try:
        params = {
            "n_trials": n_trials,
            "timeout_s": timeout,
            "cv_folds": len(data.folds),
            "candidates": ",".join(c.name for c in chosen),
            "metric": metric,
            "seed": settings.seed,
            "tune_rows": len(data.tune_df),
            "dropped_empty_features": ",".join(data.empty) or "-",
        }
        with parent_run(mlflow, exp_id, problem, settings, lineage, notes, params) as parent:
            _log_dataset(mlflow, data.df, problem, lineage, notes)
            results, train_models, extra_keys = _fit_candidates(
                mlflow, exp_id, problem, settings, chosen, data, n_trials, timeout, n_jobs, steps
            )
            best = _winner(mlflow, results, metric)

            # ---- test, once, with the winner's spec fitted before the test period ------------------
            steps.say(f"{problem.name}: testing {best.name}")
            fitted, test, base, cal_info = _test_winner(problem, settings, best, data, train_models[best.name], n_jobs)
            _log_test(mlflow, metric, test, base, cal_info, best.validation)
            steps.done()

            version, decision, reason, prev, refit_run = None, "not registered", "register=False", None, None
            if register:
                steps.say(f"{problem.name}: refitting {best.name} on all labelled rows")
                version, decision, reason, prev, refit_run = _refit_and_register(
                    mlflow, exp_id, problem, settings, best, fitted, data, test, base, cal_info, min_delta, n_jobs
                )
            steps.done()
    finally:
        steps.stop()

    return TrainResult(
        problem=problem.name,
        experiment_id=exp_id,
        parent_run_id=parent.info.run_id,
        metric=metric,
        candidates=results,
        winner=best.name,
        model_version=version,
        decision=decision,
        reason=reason,
        previous_champion=prev,
        lineage=lineage,
        notes=notes,
        extra_keys=extra_keys,
        test=test,
        baseline=base,
        calibration=cal_info,
        refit_run_id=refit_run,
    )


def _load_labelled(problem: Problem, settings: Settings, build_abt: bool) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The ABT and its feature lists; a one-line error when there are no features or no labels to learn."""
    with session(settings) as con:
        if build_abt:
            problem.build_abt(con, settings)
        df = load_abt(con, problem)
        cat, num = problem.features_of(con)
        df.attrs["data_end"] = data_end(con)
    if not cat and not num:
        raise InputError(f"{problem.abt_table} has no feature columns: run `olist-ml {problem.build_step}` first")
    if problem.kind == "binary":
        vals = set(pd.unique(df[problem.target].dropna()))
        if not vals <= {0, 1}:
            raise InputError(f"{problem.abt_table}.{problem.target} must hold 0/1 labels (found {sorted(vals)[:5]})")
        if len(vals) < 2:
            why = problem.readiness(df, settings) if problem.readiness else None
            raise NotReadyError(
                why
                or f"{problem.abt_table} has no labelled rows with both classes yet "
                f"({int(df[problem.target].notna().sum())} labelled, classes {sorted(vals)}): "
                "nothing to learn until more labels mature"
            )
    return df, cat, num


def _prepare(
    problem: Problem,
    settings: Settings,
    *,
    build_abt: bool,
    cv_k: int | None,
    test_months,
    validation_months,
    test_start,
    test_end,
) -> _Data:
    """Step 0: load the ABT, split it (train | validation | test), drop features empty in training,
    take the tuning sample and its time-ordered folds, and compute the lineage."""
    notes: list[str] = []
    df, cat, num = _load_labelled(problem, settings, build_abt)
    split = split_protocol(
        df,
        problem,
        settings,
        test_months=test_months,
        validation_months=validation_months,
        test_start=test_start,
        test_end=test_end,
    )
    notes += split.notes
    if problem.kind == "binary":
        for part, frame in (("training", split.train), ("validation", split.validation)):
            if frame[problem.target].nunique() < 2:
                raise NotReadyError(
                    f"{problem.abt_table}: the {part} period has only one class of {problem.target}: "
                    "nothing to learn until more labels mature (or choose other --test-months / "
                    "--validation-months)"
                )
    empty = _empty_features(split.train, cat, num)
    if empty:
        keep = [c for c in empty if c == problem.exposure_column]
        empty = [c for c in empty if c not in keep]
        cat = [c for c in cat if c not in empty]
        num = [c for c in num if c not in empty]
        notes.append(f"dropped {len(empty)} feature(s) empty in every training row: {', '.join(empty)}")
    tune_df, tune_known = tuning_sample(
        split.train, problem, split.train_known, problem.split_of(settings).tune_rows, settings.seed
    )
    if len(tune_df) < len(split.train):
        notes.append(f"tuning on a time-stratified sample of {len(tune_df)} of {len(split.train)} training rows")
    folds, fold_note = time_group_folds(
        tune_df, problem, cv_k or problem.split_of(settings).cv_folds, seed=settings.seed, known=tune_known
    )
    if fold_note:
        notes.append(fold_note)
    lineage = _lineage(problem, df, split, cat, num)
    lineage["dropped_empty_features"] = empty
    if df.attrs.get("data_end"):
        lineage["data_end"] = str(df.attrs["data_end"])
    return _Data(df, split, cat, num, empty, tune_df, folds, lineage, notes)


@contextmanager
def parent_run(
    mlflow,
    exp_id: str,
    problem: Problem,
    settings: Settings,
    lineage: dict[str, Any],
    notes: list[str],
    params: dict[str, Any],
    tags: dict[str, str] | None = None,
):
    """The parent run of one training, for every problem (`train` and a `train_fn` such as segments'):
    owner tags, problem / kind / role / ABT hash tags, the settings, the lineage (params and
    lineage.json) and the run's own `params`."""
    with mlflow.start_run(
        experiment_id=exp_id, run_name=f"{problem.name}-{time.strftime('%Y%m%d-%H%M%S')}", tags=tracking.owner_tags()
    ) as run:
        mlflow.set_tags(
            {
                "problem": problem.name,
                "kind": problem.kind,
                "role": "parent",
                **(tags or {}),
                "abt_content_hash": lineage["abt_content_hash"],
            }
        )
        log_settings(mlflow, problem, settings)
        mlflow.log_params({k: v for k, v in lineage.items() if not isinstance(v, list)})
        mlflow.log_params(params)
        mlflow.log_dict({**lineage, "notes": notes}, "lineage.json")
        yield run


def _fit_candidates(
    mlflow,
    exp_id: str,
    problem: Problem,
    settings: Settings,
    chosen,
    data: _Data,
    n_trials: int,
    timeout: float,
    n_jobs: int,
    steps: _Steps,
) -> tuple[list[CandidateResult], dict[str, Any], list[str]]:
    """Steps 1-2: tune each candidate by CV inside train, fit it on train, measure it on validation;
    one nested run each. Returns the results, the fitted models and the extra metric names."""
    split, cat, num, lineage, metric = data.split, data.cat, data.num, data.lineage, problem.metric
    results: list[CandidateResult] = []
    train_models: dict[str, Any] = {}
    extra_keys: list[str] = []
    for cand in chosen:
        steps.say(f"{problem.name}: tuning {cand.name}")
        t0 = time.perf_counter()
        params, cv_score, n_done = _tune(
            problem, cand, cat, num, data.tune_df, data.folds, n_trials, timeout, settings.seed, n_jobs
        )
        model = _fit(problem, cand.build(cat, num, params, settings.seed, n_jobs), split.train)
        val = evaluate(problem, model, split.validation)
        if problem.kind == "binary":
            extra = extra_metrics(
                problem, split.validation, np.asarray(model.predict_proba(split.validation))[:, 1], settings
            )
            val.update(extra)
            extra_keys.extend(k for k in extra if k not in extra_keys)
        secs = time.perf_counter() - t0
        with mlflow.start_run(experiment_id=exp_id, run_name=cand.name, nested=True) as child:
            mlflow.set_tags(
                {"problem": problem.name, "kind": problem.kind, "candidate": cand.name, "role": "candidate"}
            )
            mlflow.log_params({f"hp_{k}": v for k, v in params.items()})
            mlflow.log_params(
                {
                    "candidate": cand.name,
                    "trials_done": n_done,
                    "validation_start": lineage["validation_start"],
                    "validation_end": lineage["validation_end"],
                    "abt_content_hash": lineage["abt_content_hash"],
                }
            )
            mlflow.log_metric(f"cv_{metric}", cv_score)
            mlflow.log_metrics({f"validation_{k}": float(v) for k, v in val.items()})
            mlflow.log_metric("fit_seconds", secs)
        results.append(CandidateResult(cand.name, params, cv_score, n_done, val, child.info.run_id, "", secs))
        train_models[cand.name] = model
        steps.done()
    return results, train_models, extra_keys


def _winner(mlflow, results: list[CandidateResult], metric: str) -> CandidateResult:
    """The candidate best on VALIDATION (the first on ties); logged on the parent run."""
    best = results[0]
    for r in results[1:]:
        if _better(r.validation[metric], best.validation[metric], metric):
            best = r
    mlflow.set_tag("winner", best.name)
    mlflow.log_metric(f"best_validation_{metric}", best.validation[metric])
    mlflow.log_text(
        pd.DataFrame([{"candidate": r.name, "cv": r.cv_score, **r.validation} for r in results]).to_csv(index=False),
        "candidates.csv",
    )
    return best


def _test_winner(
    problem: Problem, settings: Settings, best: CandidateResult, data: _Data, train_model, n_jobs: int
) -> tuple[Fitted, dict, dict[str, Any], dict[str, Any]]:
    """Steps 3-4: calibrate the winner on validation, fit its spec on pretest and measure the test
    period once (+ CI, ECE, extra metrics, the baseline). Returns (fitted, test, baseline, calibration)."""
    split, metric = data.split, problem.metric
    fitted = _test_of(
        problem, Spec(best.name, best.params), data.cat, data.num, split, settings, n_jobs, train_model=train_model
    )
    test = dict(fitted.test)
    base: dict[str, Any] = {}
    cal_info: dict[str, Any] = {}
    if problem.kind == "binary":
        test[f"{metric}_ci_low"], test[f"{metric}_ci_high"] = _ci(problem, split.test, fitted.p_test, settings)
        y = split.test[problem.target].to_numpy().astype(int)
        test["ece"] = M.expected_calibration_error(y, fitted.p_test)
        test["ece_uncalibrated"] = M.expected_calibration_error(y, fitted.p_test_raw)
        test["log_loss_uncalibrated"] = M.binary_metrics(y, fitted.p_test_raw)["log_loss"]
        test.update(extra_metrics(problem, split.test, fitted.p_test, settings))
        base = _baseline(problem, split, settings)
        cal = fitted.calibration
        cal_info = {
            "method": cal.method,
            "note": cal.note,
            **{f"validation_log_loss_{k}": v for k, v in cal.log_loss.items()},
        }
        if cal.note:
            data.notes.append(cal.note)
    return fitted, test, base, cal_info


def _refit_and_register(
    mlflow,
    exp_id: str,
    problem: Problem,
    settings: Settings,
    best: CandidateResult,
    fitted: Fitted,
    data: _Data,
    test: dict,
    base: dict,
    cal_info: dict,
    min_delta: float,
    n_jobs: int,
) -> tuple[str, str, str, str | None, str]:
    """Steps 5-6: refit the winner's spec on every labelled row (+ the calibrator), log it in a nested
    run, register it and apply the quality gate and the champion rule.
    Returns (version, decision, reason, previous champion, refit run id)."""
    split, cat, num, lineage, metric = data.split, data.cat, data.num, data.lineage, problem.metric
    spec = Spec(best.name, best.params)
    final = _fit(
        problem, _resolve(problem, best.name).build(cat, num, best.params, settings.seed, n_jobs), split.labelled
    )
    if problem.kind == "binary":
        final = calib.attach(final, fitted.calibration)
    tags = _version_tags(problem, lineage, spec, best, test, base, cal_info)
    tags[SETTINGS_TAG] = problem.settings_json(settings)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{best.name} (refit)", nested=True) as rr:
        mlflow.set_tags({"problem": problem.name, "kind": problem.kind, "candidate": best.name, "role": "refit"})
        mlflow.set_tags({k: v for k, v in tags.items() if k not in ("params",)})
        mlflow.log_params(problem.settings_record(settings))
        mlflow.log_params({f"hp_{k}": v for k, v in best.params.items()})
        mlflow.log_params(
            {
                k: lineage[k]
                for k in (
                    "train_rows",
                    "train_dt_ref_min",
                    "train_dt_ref_max",
                    "trained_until",
                    "validation_start",
                    "validation_end",
                    "test_start",
                    "test_end",
                    "abt_content_hash",
                )
            }
        )
        mlflow.log_params({"candidate": best.name, "calibration": cal_info.get("method", "-")})
        _log_test(mlflow, metric, test, base, cal_info, best.validation)
        _plots(
            mlflow,
            problem,
            fitted,
            final,
            split,
            f"{problem.name} / {best.name} (test {lineage['test_start']}..{lineage['test_end']})",
        )
        explainer = explain.explainer_for(final, data.df, problem, settings) if problem.kind == "binary" else None
        if explainer is not None:
            _log_reasons(mlflow, problem, final, explainer, split)
        info = artefact.log_model(mlflow, final, problem.kind, data.df, explainer=explainer)
    refit_run = rr.info.run_id
    best.model_uri = info.model_uri
    gate_ok, gate_why = _gate(problem, test, base)
    version, decision, reason, prev = _register(
        settings,
        problem,
        best,
        info.model_uri,
        refit_run,
        tags,
        test,
        gate_ok,
        gate_why,
        split,
        cat,
        num,
        min_delta,
        n_jobs,
        mlflow,
    )
    mlflow.set_tags({"registered_version": version, "decision": decision, "decision_reason": reason})
    return version, decision, reason, prev, refit_run


def _log_reasons(mlflow, problem: Problem, model, explainer, split: Split, n_examples: int = 5) -> None:
    """evaluation/reasons_importance.csv (mean |contribution| per original feature over the test rows,
    by the registered model), its plot, and reasons_examples.csv (the test rows with the highest, median
    and lowest scores and their top-3 reasons)."""
    rows = split.test if len(split.test) else split.labelled
    if len(rows) > 20_000:
        rows = rows.sample(20_000, random_state=0)
    ex = explainer.explain(model, rows)
    imp = explain.importance(ex)
    p = np.asarray(model.predict_proba(rows), dtype=float)[:, 1]
    order = np.argsort(-p, kind="stable")
    pick = list(dict.fromkeys([*order[:3], order[len(order) // 2], order[-1]]))[:n_examples] if len(order) else []
    keys = [k for k in problem.key_columns if k in rows.columns]
    examples = []
    for i in pick:
        rec = {k: str(rows.iloc[i][k]) for k in keys}
        rec["score"] = float(p[i])
        for r, reason in enumerate(ex.reasons(int(i), 3)):
            rec[f"reason_{r + 1}"] = reason["text"]
            rec[f"reason_{r + 1}_contribution"] = reason["contribution"]
        examples.append(rec)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        imp.to_csv(out / "reasons_importance.csv", index=False)
        pd.DataFrame(examples).to_csv(out / "reasons_examples.csv", index=False)
        M.importance_plot(
            imp.set_index("feature")["mean_abs_contribution"],
            out,
            f"mean |contribution| to the {ex.scale} margin, test rows",
            name="reasons_importance.png",
            xlabel="mean |contribution|",
        )
        mlflow.log_artifacts(str(out), artifact_path="evaluation")


def log_settings(mlflow, problem: Problem, settings: Settings) -> None:
    """The settings that shaped this run (`Problem.settings_record`): one param each + the `settings` tag."""
    mlflow.log_params(problem.settings_record(settings))
    mlflow.set_tag(SETTINGS_TAG, problem.settings_json(settings))


def _log_dataset(mlflow, df, problem, lineage, notes) -> None:
    try:
        import mlflow.data

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = mlflow.data.from_pandas(
                df, name=problem.abt_table, digest=lineage["abt_content_hash"], targets=problem.target
            )
            # the column schema from a sample: inferring it over the whole ABT takes ~13 s on the real
            # order-delay ABT (96 k x 222); rows, digest and profile still describe the whole frame
            ds.__dict__["schema"] = mlflow.data.from_pandas(df.head(2000)).schema
            mlflow.log_input(ds, context="abt")
    except Exception as e:  # noqa: BLE001 - lineage via dataset entity is best-effort; params above carry it too
        notes.append(f"dataset lineage not logged: {type(e).__name__}")


def _finite(d: dict) -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and np.isfinite(v):
            out[k] = float(v)
    return out


def _log_test(mlflow, metric: str, test: dict, base: dict, cal: dict, validation: dict) -> None:
    mlflow.log_metrics({f"test_{k}": v for k, v in _finite(test).items()})
    mlflow.log_metrics({f"validation_{k}": v for k, v in _finite(validation).items()})
    mlflow.log_metrics({f"baseline_{k}": v for k, v in _finite(base).items() if k != "ci_floor"})
    mlflow.log_metrics({f"calibration_{k}": v for k, v in _finite(cal).items()})
    if base.get("name"):
        mlflow.set_tag("baseline", base["name"])
    if cal.get("method"):
        mlflow.set_tag("calibration", cal["method"])


def _version_tags(problem, lineage, spec: Spec, best: CandidateResult, test, base, cal) -> dict[str, str]:
    metric = problem.metric
    tags = {
        "kind": problem.kind,
        "candidate": spec.candidate,
        "params": json.dumps(spec.params, sort_keys=True, default=str),
        "trained_until": lineage["trained_until"],
        "labels_known_until": lineage["labels_known_until"],
        "validation_start": lineage["validation_start"],
        "validation_end": lineage["validation_end"],
        f"validation_{metric}": f"{best.validation[metric]:.6f}",
        "test_start": lineage["test_start"],
        "test_end": lineage["test_end"],
        f"test_{metric}": f"{test.get(metric, float('nan')):.6f}",
        "abt_content_hash": lineage["abt_content_hash"],
    }
    if lineage.get("data_end"):  # the retrain policy counts the days since (olist_ml.ml.policy)
        tags["data_end"] = lineage["data_end"]
    for k in (f"{metric}_ci_low", f"{metric}_ci_high", "ece", "ece_uncalibrated"):
        if k in test:
            tags[f"test_{k}"] = f"{test[k]:.6f}"
    if cal.get("method"):
        tags["calibration"] = cal["method"]
    if base.get("name"):
        tags["baseline"] = base["name"]
        if f"test_{metric}" in base:
            tags[f"baseline_test_{metric}"] = f"{base[f'test_{metric}']:.6f}"
    return tags


def _spec_of(settings: Settings, problem: Problem, mv, columns) -> Spec | None:
    """The spec of a registered version: candidate + hyper-parameters from its tags, the feature
    lists from its artefact's first step. None when it records no spec (trained before this
    protocol). InputError when a feature it used is not in the ABT any more."""
    tags = dict(mv.tags or {})
    if "candidate" not in tags or "params" not in tags:
        return None
    try:
        params = json.loads(tags["params"])
    except ValueError:
        return None
    model = registry.load_version(settings, problem.name, mv.version).model
    cast = model.named_steps.get("cast") if hasattr(model, "named_steps") else None
    if cast is None:
        return None
    cat, num = list(cast.categorical or []), list(cast.numeric or [])
    missing = [c for c in cat + num if c not in set(columns)]
    if missing:
        raise InputError(f"its feature(s) {', '.join(missing[:5])} are not in {problem.abt_table} any more")
    return Spec(tags["candidate"], params, cat, num)


def _register(
    settings,
    problem,
    best: CandidateResult,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
    test: dict,
    gate_ok: bool,
    gate_why: str,
    split: Split,
    cat,
    num,
    min_delta: float,
    n_jobs: int,
    mlflow,
):
    """Register the refit winner and decide (`registry.register_and_decide`) by the quality gate, then
    the champion rule: the champion's spec refit on the same rows, measured on the same test rows."""
    metric = problem.metric
    new_score = test.get(metric, float("nan"))
    on = (
        f"the same {len(split.test)} test rows {split.test_start}..{split.test_end}, both specs fitted on the "
        f"same {len(split.pretest)} rows labelled before {split.test_start}"
    )

    def decide(version: str, current) -> tuple[str, str]:
        if not gate_ok:
            reason = f"below its quality gate ({gate_why}): registered, not promoted"
            if current is not None:
                reason += f"; champion v{current.version} stays"
            return registry.REJECTED, reason
        if current is None:
            return registry.CHAMPION, f"first champion (test {metric} {new_score:.4f}; {gate_why})"
        champ_score, why, spec = float("nan"), "", None
        try:
            spec = _spec_of(settings, problem, current, split.labelled.columns)
        except Exception as e:  # noqa: BLE001 - features gone, artefact unreadable
            why = (
                f"champion v{current.version}'s spec cannot be refit on these rows "
                f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
            )
        if spec is None and not why:
            why = f"champion v{current.version} records no spec (candidate + params) to refit on these rows"
        elif spec is not None and spec.key(cat, num) == Spec(best.name, best.params).key(cat, num):
            champ_score = new_score  # the same model: nothing to refit
        elif spec is not None:
            try:
                champ_score = _test_of(problem, spec, cat, num, split, settings, n_jobs).test[metric]
            except Exception as e:  # noqa: BLE001 - e.g. its candidate is not one this problem can build any more
                why = (
                    f"champion v{current.version}'s spec {spec.candidate} cannot be refit on these rows "
                    f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
                )
        if why:
            return registry.CHAMPION, f"{why}: newcomer promoted (test {metric} {new_score:.4f})"
        registry.set_version_tag(
            settings, problem.name, version, f"champion_v{current.version}_test_{metric}", f"{champ_score:.6f}"
        )
        return registry.champion_rule(
            new_score,
            champ_score,
            label=f"test {metric}",
            champion_version=current.version,
            on=on,
            lower_is_better=metric in _LOWER_IS_BETTER,
            min_delta=min_delta,
        )

    d = registry.register_and_decide(
        settings, problem.name, model_uri, run_id, kind=problem.kind, candidate=best.name, tags=tags, decide=decide
    )
    return d.version, d.decision, d.reason, d.previous
