"""Monitoring of a problem's champion: drift and realised performance.

* **Drift**: the PSI of every champion feature and of the score, between the reference
  population (the champion's training rows: the ABT rows whose reference date lies in the
  training period recorded in the training run's lineage params `train_dt_ref_min` /
  `train_dt_ref_max`) and the latest scored population (the rows of `scores_<problem>` at its
  latest reference date, joined to the problem's scoring frame at that date for the features).
  Binning: see `olist_ml.serving.metrics` (reference deciles, NULL bin, epsilon 1e-4 for
  empty bins). PSI > 0.2 is flagged.
* **Realised performance**: past scores in `scores_<problem>` joined on the key columns to the
  ABT's now-known targets (rows whose label has not matured are NULL in the ABT and left out),
  per (reference date, model version): ROC AUC and top-decile lift.

Results are appended to the warehouse tables `monitor_drift` and `monitor_performance`
(one `run_ts` per monitoring run) and logged as a `monitor` run in the problem's MLflow
experiment.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import MissingStepError
from ..warehouse import transaction
from .metrics import EPSILON, PSI_FLAG, psi, realised_performance

DRIFT_TABLE = "monitor_drift"
PERF_TABLE = "monitor_performance"

_DRIFT_DDL = f"""CREATE TABLE IF NOT EXISTS {DRIFT_TABLE} (
    problem VARCHAR, run_ts TIMESTAMP, mlflow_run_id VARCHAR, model_name VARCHAR, model_version VARCHAR,
    reference_start DATE, reference_end DATE, current_dt_ref DATE, feature VARCHAR, kind VARCHAR,
    psi DOUBLE, flag BOOLEAN, n_reference BIGINT, n_current BIGINT, null_reference BIGINT, null_current BIGINT,
    bins VARCHAR)"""
_PERF_DDL = f"""CREATE TABLE IF NOT EXISTS {PERF_TABLE} (
    problem VARCHAR, run_ts TIMESTAMP, mlflow_run_id VARCHAR, dt_ref DATE, model_version VARCHAR,
    n BIGINT, n_positive BIGINT, base_rate DOUBLE, roc_auc DOUBLE, lift_top_decile DOUBLE)"""


@dataclass
class MonitorResult:
    problem: str
    run_ts: datetime
    model_name: str
    model_version: str
    reference_start: date
    reference_end: date
    current_dt_ref: date
    n_reference: int
    n_current: int
    drift: pd.DataFrame
    performance: pd.DataFrame
    mlflow_run_id: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_flagged(self) -> int:
        return int(self.drift["flag"].sum()) if len(self.drift) else 0


def _problem(problem):
    if isinstance(problem, str):
        from ..problems import get

        return get(problem)
    return problem


def _run_params(client, run_id: str) -> dict[str, str]:
    """Params of the run and of its parent (training lineage is logged on the parent run)."""
    run = client.get_run(run_id)
    params = dict(run.data.params)
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent:
        params = {**dict(client.get_run(parent).data.params), **params}
    return params


def training_range(settings: Settings, champion) -> tuple[date, date]:
    """(first, last) reference date of the champion's training rows, from its run's lineage."""
    from ..ml import tracking

    params = _run_params(tracking.client(settings), champion.run_id)
    lo, hi = params.get("train_dt_ref_min"), params.get("train_dt_ref_max")
    if not lo or not hi:
        raise MissingStepError(
            f"run {champion.run_id} of {champion.model_name} v{champion.version} has no train_dt_ref_min/max lineage "
            f"params: retrain it with `olist-ml train {champion.model_name}`"
        )
    return date.fromisoformat(lo[:10]), date.fromisoformat(hi[:10])


def _scores(con, problem) -> pd.DataFrame:
    from ..warehouse import table_exists

    if not table_exists(con, problem.scores_table):
        raise MissingStepError(
            f"warehouse has no table {problem.scores_table}: run `olist-ml predict {problem.name}` first"
        )
    return con.execute(f"SELECT * FROM {problem.scores_table}").df()


def _as_date(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.date


def _latest_population(con, settings: Settings, problem, scores: pd.DataFrame) -> tuple[date, pd.DataFrame]:
    t = problem.time_column
    if scores.empty:
        raise MissingStepError(f"{problem.scores_table} is empty: run `olist-ml predict {problem.name}` first")
    sc = scores.copy()
    sc[t] = _as_date(sc[t])
    latest = max(sc[t])
    cur = sc[sc[t] == latest]
    # several model versions may have scored that date: keep the most recent scoring
    if "scored_at" in cur.columns and cur["model_version"].nunique() > 1:
        last_version = cur.sort_values("scored_at")["model_version"].iloc[-1]
        cur = cur[cur["model_version"] == last_version]
    frame = problem.scoring_frame(con, settings, latest)
    if frame is None or frame.empty:
        raise MissingStepError(f"no {problem.name} population at {latest}: run `olist-ml features build` for it")
    frame = frame.copy()
    frame[t] = _as_date(frame[t])
    keys = list(problem.key_columns)
    merged = cur[[*keys, "score", "model_version"]].merge(
        frame.drop(columns=["score"], errors="ignore"), on=keys, how="inner"
    )
    return latest, merged


def drift_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    ref_score,
    cur_score,
    *,
    categorical_score: bool = False,
    epsilon: float = EPSILON,
) -> pd.DataFrame:
    """PSI rows for every feature (kind 'feature') and for the score (kind 'score')."""
    rows = []
    for f in features:
        if f not in reference.columns or f not in current.columns:
            continue
        r = psi(reference[f], current[f], epsilon=epsilon)
        rows.append(
            {
                "feature": f,
                "kind": "feature",
                "psi": r.psi,
                "flag": bool(r.flag),
                "n_reference": r.n_ref,
                "n_current": r.n_cur,
                "null_reference": r.null_ref,
                "null_current": r.null_cur,
                "bins": json.dumps({"bins": r.bins, "reference": r.ref_share, "current": r.cur_share}),
            }
        )
    rs, cs = pd.Series(np.asarray(ref_score)), pd.Series(np.asarray(cur_score))
    if categorical_score:
        rs, cs = rs.astype(str), cs.astype(str)
    r = psi(rs, cs, epsilon=epsilon)
    rows.append(
        {
            "feature": "score",
            "kind": "score",
            "psi": r.psi,
            "flag": bool(r.flag),
            "n_reference": r.n_ref,
            "n_current": r.n_cur,
            "null_reference": r.null_ref,
            "null_current": r.null_cur,
            "bins": json.dumps({"bins": r.bins, "reference": r.ref_share, "current": r.cur_share}),
        }
    )
    return pd.DataFrame(rows)


def performance_table(con, problem, scores: pd.DataFrame) -> pd.DataFrame:
    """Realised ROC AUC / top-decile lift of past scores against the ABT's matured targets."""
    if problem.kind != "binary" or not problem.target:
        return pd.DataFrame(
            columns=["dt_ref", "model_version", "n", "n_positive", "base_rate", "roc_auc", "lift_top_decile"]
        )
    t = problem.time_column
    keys = list(problem.key_columns)
    cols = ", ".join(dict.fromkeys([*keys, problem.target]))
    abt = con.execute(f"SELECT {cols} FROM {problem.abt_table} WHERE {problem.target} IS NOT NULL").df()
    abt[t] = _as_date(abt[t])
    sc = scores[[*keys, "score", "model_version"]].copy()
    sc[t] = _as_date(sc[t])
    joined = sc.merge(abt, on=keys, how="inner")
    perf = realised_performance(joined, group_cols=[t, "model_version"], target_col=problem.target, score_col="score")
    return perf.rename(columns={t: "dt_ref"})


def _log_mlflow(settings: Settings, problem, res: MonitorResult) -> str | None:
    from ..ml import tracking

    mlflow = tracking.configure(settings)
    exp_id = tracking.experiment_id(settings, problem.name)
    name = f"monitor-{res.run_ts:%Y%m%d-%H%M%S}"
    with mlflow.start_run(experiment_id=exp_id, run_name=name) as run:
        mlflow.set_tags({"problem": problem.name, "role": "monitor", "champion_version": res.model_version})
        mlflow.log_params(
            {
                "reference_start": str(res.reference_start),
                "reference_end": str(res.reference_end),
                "current_dt_ref": str(res.current_dt_ref),
                "n_reference": res.n_reference,
                "n_current": res.n_current,
                "psi_flag": PSI_FLAG,
                "psi_epsilon": EPSILON,
                "model_version": res.model_version,
            }
        )
        metrics = {}
        for r in res.drift.itertuples():
            if np.isfinite(r.psi):
                metrics["psi_score" if r.kind == "score" else f"psi_{r.feature}"] = float(r.psi)
        metrics["n_drifted"] = float(res.n_flagged)
        mlflow.log_metrics(metrics)
        for _i, r in enumerate(res.performance.sort_values("dt_ref").itertuples()):
            step = int(pd.Timestamp(r.dt_ref).strftime("%Y%m%d"))
            if np.isfinite(r.roc_auc):
                mlflow.log_metric("realised_roc_auc", float(r.roc_auc), step=step)
            if np.isfinite(r.lift_top_decile):
                mlflow.log_metric("realised_lift_top_decile", float(r.lift_top_decile), step=step)
        with tempfile.TemporaryDirectory() as d:
            res.drift.drop(columns=["bins"]).to_csv(Path(d) / "drift.csv", index=False)
            res.performance.to_csv(Path(d) / "performance.csv", index=False)
            mlflow.log_artifacts(d, artifact_path="monitoring")
        return run.info.run_id


def _store(con, problem, res: MonitorResult, settings: Settings) -> None:
    """Append this monitoring run to monitor_drift / monitor_performance with its lineage (the data and
    settings it describes, `olist_ml.lineage`: `olist-ml summary` shows when newer data makes it stale)."""
    from .. import lineage

    data_fp, cfg = lineage.abt_inputs_fp(con), lineage.problem_config_fp(problem, settings)
    with transaction(con):
        for table in (DRIFT_TABLE, PERF_TABLE):
            lineage.record(con, f"{table}/{problem.name}", data_fp, cfg)
        con.execute(_DRIFT_DDL)
        con.execute(_PERF_DDL)
        d = res.drift.copy()
        d.insert(0, "problem", problem.name)
        d.insert(1, "run_ts", res.run_ts)
        d.insert(2, "mlflow_run_id", res.mlflow_run_id)
        d.insert(3, "model_name", res.model_name)
        d.insert(4, "model_version", res.model_version)
        d.insert(5, "reference_start", res.reference_start)
        d.insert(6, "reference_end", res.reference_end)
        d.insert(7, "current_dt_ref", res.current_dt_ref)
        con.register("_monitor_drift", d)
        con.execute(f"INSERT INTO {DRIFT_TABLE} BY NAME SELECT * FROM _monitor_drift")
        con.unregister("_monitor_drift")
        if len(res.performance):
            p = res.performance.copy()
            p.insert(0, "problem", problem.name)
            p.insert(1, "run_ts", res.run_ts)
            p.insert(2, "mlflow_run_id", res.mlflow_run_id)
            p["model_version"] = p["model_version"].astype(str)
            con.register("_monitor_perf", p)
            con.execute(f"INSERT INTO {PERF_TABLE} BY NAME SELECT * FROM _monitor_perf")
            con.unregister("_monitor_perf")


def monitor(problem, settings: Settings, *, log_to_mlflow: bool = True) -> MonitorResult:
    """Drift + realised performance of `problem`'s champion; stored and logged (see module doc)."""
    from ..ml import registry
    from ..warehouse import require_tables, session

    problem = _problem(problem)
    champ = registry.load_champion(settings, problem.name)
    problem.check_champion(champ, settings)  # it scores the current population: same settings as trained
    ref_start, ref_end = training_range(settings, champ)
    run_ts = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    t = problem.time_column
    with session(settings) as con:
        require_tables(con, [problem.abt_table], f"train {problem.name}")
        from .. import lineage

        lineage.refresh_abt(con, problem, settings)  # the reference rows must describe today's data
        reference = con.execute(
            f"SELECT * FROM {problem.abt_table} WHERE CAST({t} AS DATE) BETWEEN ? AND ?", [ref_start, ref_end]
        ).df()
        if reference.empty:
            raise MissingStepError(
                f"{problem.abt_table} has no rows in the champion's training period "
                f"{ref_start}..{ref_end}: rebuild it with `olist-ml train {problem.name}`"
            )
        scores = _scores(con, problem)
        current_dt, current = _latest_population(con, settings, problem, scores)
        features = list(champ.feature_names)
        ref_score = champ.score(reference) if hasattr(champ, "score") else champ.predict_proba(reference)
        drift = drift_table(
            reference, current, features, ref_score, current["score"], categorical_score=problem.kind != "binary"
        )
        perf = performance_table(con, problem, scores)
        res = MonitorResult(
            problem=problem.name,
            run_ts=run_ts,
            model_name=champ.model_name,
            model_version=str(champ.version),
            reference_start=ref_start,
            reference_end=ref_end,
            current_dt_ref=current_dt,
            n_reference=len(reference),
            n_current=len(current),
            drift=drift,
            performance=perf,
        )
        if log_to_mlflow:
            res.mlflow_run_id = _log_mlflow(settings, problem, res)
        _store(con, problem, res, settings)
    return res
