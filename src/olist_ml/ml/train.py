"""Generic training: out-of-time split, Optuna-tuned candidates chosen by time-ordered
group-disjoint CV, OOT evaluation, MLflow tracking (parent run + nested run per candidate),
registration and the champion rule.

Decision on refitting: the registered model is the one fitted on the training period and
evaluated on the OOT period (no refit on all labelled data), so the metrics attached to a
version are exactly those of the artefact that scores. The champion rule re-scores the
current champion on THIS run's OOT rows and promotes the newcomer only if it is strictly
better on the problem's primary metric.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import InputError, NotReadyError
from ..warehouse import session
from . import candidates as cands
from . import metrics as M
from . import registry, tracking
from .data import Split, content_hash, load_abt, split_oot, time_group_folds
from .problem import Problem

DEFAULT_TRIALS = 4
DEFAULT_TIMEOUT_S = 60.0

# metrics where lower is better
_LOWER_IS_BETTER = {"log_loss", "brier", "davies_bouldin"}


@dataclass
class CandidateResult:
    name: str
    params: dict
    cv_score: float
    n_trials: int
    oot: dict[str, float]
    run_id: str
    model_uri: str
    fit_seconds: float


@dataclass
class TrainResult:
    problem: str
    experiment_id: str
    parent_run_id: str
    metric: str
    candidates: list[CandidateResult]
    winner: str
    model_version: str | None
    decision: str  # "champion" | "challenger" | "not registered"
    reason: str
    previous_champion: str | None
    lineage: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    extra_keys: list[str] = field(default_factory=list)  # OOT metrics from Problem.extra_metrics / a train_fn

    def table(self) -> pd.DataFrame:
        shown = ("roc_auc", "pr_auc", "log_loss", "brier", "ks", "top_decile_lift", "top_decile_precision",
                 "silhouette", "davies_bouldin", "n_clusters", *self.extra_keys)
        rows = []
        for c in self.candidates:
            r = {"candidate": c.name, f"cv_{self.metric}": c.cv_score, "trials": c.n_trials}
            r.update({k: v for k, v in c.oot.items() if k in shown})
            rows.append(r)
        return pd.DataFrame(rows)


def _budget(settings: Settings, n_trials, timeout, names, cv_folds) -> tuple[int, float, Any, int | None]:
    ex = settings.extra or {}
    n_trials = n_trials if n_trials is not None else ex.get("trials", DEFAULT_TRIALS)
    timeout = timeout if timeout is not None else ex.get("timeout", DEFAULT_TIMEOUT_S)
    names = names if names is not None else ex.get("candidates")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    cv_folds = cv_folds if cv_folds is not None else ex.get("cv_folds")
    return int(n_trials), float(timeout), names, (int(cv_folds) if cv_folds else None)


def _better(a: float, b: float, metric: str) -> bool:
    if b is None or np.isnan(b):
        return not np.isnan(a)
    if np.isnan(a):
        return False
    return a < b if metric in _LOWER_IS_BETTER else a > b


def _n_jobs(settings: Settings) -> int:
    return int(settings.threads or min(4, os.cpu_count() or 1))


def evaluate(problem: Problem, model, df: pd.DataFrame) -> dict[str, float]:
    """Metrics of a fitted pipeline on labelled rows `df` (binary) or on rows `df` (cluster)."""
    if problem.kind == "binary":
        p = np.asarray(model.predict_proba(df))[:, 1]
        return M.binary_metrics(df[problem.target].to_numpy().astype(int), p)
    X = _cluster_space(model, df)
    return M.cluster_metrics(X, np.asarray(model.predict(df)))


def extra_metrics(problem: Problem, model, df: pd.DataFrame, settings: Settings) -> dict[str, float]:
    """`problem.extra_metrics(y, p, settings)` on a binary model's predictions for labelled rows `df`."""
    if problem.extra_metrics is None or problem.kind != "binary":
        return {}
    p = np.asarray(model.predict_proba(df))[:, 1]
    out = problem.extra_metrics(df[problem.target].to_numpy().astype(int), p, settings)
    return {str(k): float(v) for k, v in out.items()}


def _cluster_space(model, df):
    X = model[:-1].transform(df)
    return np.asarray(X, dtype=float)


def _cv_score(problem, cand, cat, num, params, train, folds, seed, n_jobs) -> float:
    scores = []
    for tr, va in folds:
        m = cand.build(cat, num, params, seed, n_jobs)
        dtr, dva = train.iloc[tr], train.iloc[va]
        if problem.kind == "binary":
            m.fit(dtr, dtr[problem.target].astype(int))
        else:
            m.fit(dtr)
        scores.append(evaluate(problem, m, dva)[problem.metric])
    return float(np.nanmean(scores)) if scores else float("nan")


def _tune(problem, cand, cat, num, train, folds, n_trials, timeout, seed, n_jobs) -> tuple[dict, float, int]:
    if n_trials <= 0 or not folds:
        score = _cv_score(problem, cand, cat, num, cand.default, train, folds, seed, n_jobs) if folds else float("nan")
        return dict(cand.default), score, 0
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if problem.metric in _LOWER_IS_BETTER else "maximize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(cand.default)  # the hand-picked defaults are always one of the trials

    def objective(trial):
        params = cand.space(trial)
        s = _cv_score(problem, cand, cat, num, params, train, folds, seed, n_jobs)
        return s if not np.isnan(s) else (1e9 if direction == "minimize" else -1e9)

    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(ValueError,))
    done = [t for t in study.trials if t.value is not None]
    if not done:
        return dict(cand.default), float("nan"), 0
    params = {**cand.default, **study.best_params}
    return params, float(study.best_value), len(done)


def pip_requirements() -> list[str]:
    """Pinned requirements logged with every model (skips MLflow's slow inference)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("scikit-learn", "lightgbm", "xgboost", "xgboost-cpu", "pandas", "numpy", "scipy", "cloudpickle"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pass
    return reqs


_pip_requirements = pip_requirements  # old private name, still used by problems.segments


def _log_model(mlflow, problem, model, example: pd.DataFrame):
    from mlflow.models import infer_signature

    import mlflow.sklearn

    if problem.kind == "binary":
        sig = infer_signature(example, np.asarray(model.predict_proba(example)))
        fn = "predict_proba"
    else:
        sig = infer_signature(example, np.asarray(model.predict(example)))
        fn = "predict"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.sklearn.log_model(
            model, name="model", signature=sig, input_example=example, pip_requirements=pip_requirements(),
            serialization_format="cloudpickle", pyfunc_predict_fn=fn,
        )


def _example(df: pd.DataFrame, cat: list[str], num: list[str]) -> pd.DataFrame:
    ex = cands.cast_frame(df.head(5), cat, num)
    for c in cat:  # JSON-friendly example: missing categories as None
        ex[c] = ex[c].where(ex[c].notna(), None)
    return ex


def _log_plots(mlflow, problem, model, oot: pd.DataFrame, title: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        if problem.kind == "binary":
            y = oot[problem.target].to_numpy().astype(int)
            p = np.asarray(model.predict_proba(oot))[:, 1]
            M.binary_plots(y, p, out, title)
            dec = M.decile_table(y, p)
            dec.to_csv(out / "deciles.csv", index=False)
            M.calibration_table(y, p).to_csv(out / "calibration.csv", index=False)
        else:
            from sklearn.decomposition import PCA

            X = _cluster_space(model, oot)
            labels = np.asarray(model.predict(oot))
            X2 = PCA(n_components=2, random_state=0).fit_transform(X) if X.shape[1] >= 2 else np.c_[X, X]
            M.cluster_plot(X2, labels, out, title)
            pd.Series(labels).value_counts().sort_index().rename("n").to_csv(out / "cluster_sizes.csv")
        imp = cands.importances(model)
        if not imp.empty:
            M.importance_plot(imp, out, title)
            imp.rename("importance").to_csv(out / "feature_importance.csv", index_label="feature")
        mlflow.log_artifacts(str(out), artifact_path="evaluation")


def _lineage(problem: Problem, df: pd.DataFrame, split: Split, cat, num) -> dict[str, Any]:
    t = problem.time_column
    lab = df[df[problem.target].notna()] if problem.target else df
    return {
        "abt_table": problem.abt_table,
        "abt_rows": int(len(df)),
        "abt_labelled_rows": int(len(lab)),
        "abt_dt_ref_min": str(df[t].min().date()),
        "abt_dt_ref_max": str(df[t].max().date()),
        "abt_content_hash": content_hash(df),
        "train_rows": int(len(split.train)),
        "train_dt_ref_min": str(split.train[t].min().date()),
        "train_dt_ref_max": str(split.train[t].max().date()),
        "oot_rows": int(len(split.oot)),
        "oot_dt_ref_min": str(split.oot[t].min().date()),
        "oot_dt_ref_max": str(split.oot[t].max().date()),
        "purge_days": split.purge_days,
        "n_features": len(cat) + len(num),
        "categorical_features": cat,
        "numeric_features": num,
    }


def train(problem: Problem, settings: Settings, *, n_trials: int | None = None, timeout: float | None = None,
          candidates: list[str] | str | None = None, cv_folds: int | None = None, oot_months: int | None = None,
          oot_start: date | None = None, oot_end: date | None = None, build_abt: bool = True,
          register: bool = True, min_delta: float = 0.0, progress: bool = False) -> TrainResult:
    """Train every candidate of `problem`, log them to MLflow, register the best by OOT metric
    and apply the champion rule. Budget: n_trials / timeout (seconds) per candidate.

    A problem with a `train_fn` hook (e.g. seller_segments) is trained by that hook instead,
    with the same keyword arguments; it returns a TrainResult too."""
    if problem.train_fn is not None:
        return problem.train_fn(problem, settings, n_trials=n_trials, timeout=timeout, candidates=candidates,
                                cv_folds=cv_folds, oot_months=oot_months, oot_start=oot_start, oot_end=oot_end,
                                build_abt=build_abt, register=register, min_delta=min_delta, progress=progress)
    n_trials, timeout, names, cv_k = _budget(settings, n_trials, timeout, candidates, cv_folds)
    chosen = cands.resolve(names or problem.candidates, problem.kind, problem.exposure_column)
    notes: list[str] = []

    with session(settings) as con:
        if build_abt:
            problem.build_abt(con, settings)
        df = load_abt(con, problem)
        cat, num = problem.features_of(con)
    if not cat and not num:
        raise InputError(f"{problem.abt_table} has no feature columns: run `olist-ml {problem.build_step}` first")
    if problem.kind == "binary":
        vals = set(pd.unique(df[problem.target].dropna()))
        if not vals <= {0, 1, True, False}:
            raise InputError(f"{problem.abt_table}.{problem.target} must hold 0/1 labels (found {sorted(vals)[:5]})")
        if len(vals) < 2:
            why = problem.readiness(df, settings) if problem.readiness else None
            raise NotReadyError(why or f"{problem.abt_table} has no labelled rows with both classes yet "
                                       f"({int(df[problem.target].notna().sum())} labelled, classes {sorted(vals)}): "
                                       "nothing to learn until more labels mature")

    purge = problem.split.purge(settings)
    split = split_oot(df, problem, oot_months=oot_months or problem.split.oot_months or settings.oot_months,
                      purge_days=purge, oot_start=oot_start, oot_end=oot_end)
    if split.note:
        notes.append(split.note)
    if problem.kind == "binary" and split.train[problem.target].nunique() < 2:
        raise NotReadyError(f"{problem.abt_table}: the training period before {split.oot_start} has only one class: "
                            "nothing to learn until more labels mature")
    folds, fold_note = time_group_folds(split.train, problem, cv_k or problem.split.cv_folds, purge, settings.seed)
    if fold_note:
        notes.append(fold_note)
    lineage = _lineage(problem, df, split, cat, num)
    n_jobs = _n_jobs(settings)

    mlflow = tracking.configure(settings)
    exp_id = tracking.experiment_id(settings, problem.name)
    results: list[CandidateResult] = []
    extra_keys: list[str] = []
    example = _example(split.train, cat, num)

    prog = None
    if progress:
        from rich.progress import Progress

        prog = Progress(transient=True)
        prog.start()
        task = prog.add_task(f"training {problem.name}", total=len(chosen))
    try:
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{problem.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                              tags=tracking.owner_tags()) as parent:
            mlflow.set_tags({"problem": problem.name, "kind": problem.kind, "role": "parent",
                             "abt_content_hash": lineage["abt_content_hash"]})
            mlflow.log_params({k: v for k, v in lineage.items() if not isinstance(v, list)})
            mlflow.log_params({"n_trials": n_trials, "timeout_s": timeout, "cv_folds": len(folds),
                               "candidates": ",".join(c.name for c in chosen), "metric": problem.metric,
                               "seed": settings.seed})
            mlflow.log_dict({**lineage, "notes": notes}, "lineage.json")
            try:
                import mlflow.data

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = mlflow.data.from_pandas(df, name=problem.abt_table, digest=lineage["abt_content_hash"],
                                                 targets=problem.target)
                    mlflow.log_input(ds, context="abt")
            except Exception as e:  # lineage via dataset entity is best-effort; params above carry it too
                notes.append(f"dataset lineage not logged: {type(e).__name__}")

            for cand in chosen:
                if prog:
                    prog.update(task, description=f"{problem.name}: tuning {cand.name}")
                t0 = time.perf_counter()
                params, cv_score, n_done = _tune(problem, cand, cat, num, split.train, folds, n_trials, timeout,
                                                 settings.seed, n_jobs)
                model = cand.build(cat, num, params, settings.seed, n_jobs)
                if problem.kind == "binary":
                    model.fit(split.train, split.train[problem.target].astype(int))
                else:
                    model.fit(split.train)
                oot_m = evaluate(problem, model, split.oot)
                extra = extra_metrics(problem, model, split.oot, settings)
                oot_m.update(extra)
                extra_keys.extend(k for k in extra if k not in extra_keys)
                secs = time.perf_counter() - t0
                with mlflow.start_run(experiment_id=exp_id, run_name=cand.name, nested=True) as child:
                    mlflow.set_tags({"problem": problem.name, "kind": problem.kind, "candidate": cand.name,
                                     "role": "candidate"})
                    mlflow.log_params({f"hp_{k}": v for k, v in params.items()})
                    mlflow.log_params({"candidate": cand.name, "trials_done": n_done,
                                       "oot_dt_ref_min": lineage["oot_dt_ref_min"],
                                       "oot_dt_ref_max": lineage["oot_dt_ref_max"],
                                       "abt_content_hash": lineage["abt_content_hash"]})
                    mlflow.log_metric(f"cv_{problem.metric}", cv_score)
                    mlflow.log_metrics({f"oot_{k}": float(v) for k, v in oot_m.items()})
                    mlflow.log_metric("fit_seconds", secs)
                    _log_plots(mlflow, problem, model, split.oot, f"{problem.name} / {cand.name} (OOT)")
                    info = _log_model(mlflow, problem, model, example)
                results.append(CandidateResult(cand.name, params, cv_score, n_done, oot_m, child.info.run_id,
                                               info.model_uri, secs))
                if prog:
                    prog.advance(task)

            metric = problem.metric
            best = results[0]
            for r in results[1:]:
                if _better(r.oot[metric], best.oot[metric], metric):
                    best = r
            mlflow.set_tag("winner", best.name)
            mlflow.log_metric(f"best_oot_{metric}", best.oot[metric])
            for k in extra_keys:
                if k in best.oot:
                    mlflow.log_metric(f"best_oot_{k}", float(best.oot[k]))
            mlflow.log_text(pd.DataFrame([{"candidate": r.name, "cv": r.cv_score, **r.oot} for r in results])
                            .to_csv(index=False), "candidates.csv")

            version, decision, reason, prev = None, "not registered", "register=False", None
            if register:
                version, decision, reason, prev = _register(settings, problem, best, split, metric, min_delta, mlflow)
                mlflow.set_tags({"registered_version": version, "decision": decision, "decision_reason": reason})
    finally:
        if prog:
            prog.stop()

    return TrainResult(problem=problem.name, experiment_id=exp_id, parent_run_id=parent.info.run_id, metric=metric,
                       candidates=results, winner=best.name, model_version=version, decision=decision, reason=reason,
                       previous_champion=prev, lineage=lineage, notes=notes, extra_keys=extra_keys)


def _register(settings, problem, best: CandidateResult, split: Split, metric: str, min_delta: float, mlflow):
    c = tracking.client(settings)
    mv = mlflow.register_model(best.model_uri, problem.name, tags={"kind": problem.kind, "candidate": best.name})
    version = str(mv.version)
    new_score = best.oot[metric]
    c.set_model_version_tag(problem.name, version, "run_id", best.run_id)
    c.set_model_version_tag(problem.name, version, f"oot_{metric}", f"{new_score:.6f}")
    c.set_model_version_tag(problem.name, version, "oot_range",
                            f"{split.oot[problem.time_column].min().date()}..{split.oot[problem.time_column].max().date()}")

    current = registry.alias_version(settings, problem.name, registry.CHAMPION)
    prev = str(current.version) if current else None
    if current is None:
        decision, reason = registry.CHAMPION, f"first champion (OOT {metric} {new_score:.4f})"
    else:
        try:
            champ = registry.load_version(settings, problem.name, current.version, registry.CHAMPION)
            champ_score = evaluate(problem, champ.model, split.oot)[metric]
        except Exception as e:  # the old champion cannot score today's ABT (features changed...)
            champ_score = float("nan")
            why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            notes_reason = f"current champion v{current.version} cannot score this OOT set ({why})"
        else:
            notes_reason = None
        c.set_model_version_tag(problem.name, version, f"champion_v{current.version}_oot_{metric}", f"{champ_score:.6f}")
        if notes_reason:
            decision, reason = registry.CHAMPION, notes_reason + ": newcomer promoted"
        else:
            decision, reason = registry.champion_rule(new_score, champ_score, label=f"OOT {metric}",
                                                      champion_version=current.version, on="the same OOT rows",
                                                      lower_is_better=metric in _LOWER_IS_BETTER, min_delta=min_delta)
    registry.record_decision(settings, problem.name, version, decision, reason)
    return version, decision, reason, prev
