"""Monitoring of a problem's champion: drift and realised performance.

* **Drift**: the PSI of every champion feature and of the score, between the reference
  population (the champion's training rows: the ABT rows whose reference date lies in the
  training period recorded in the training run's lineage params `train_dt_ref_min` /
  `train_dt_ref_max`) and the latest scored population (the rows of `scores_<problem>` at its
  latest reference date, joined to the problem's scoring frame at that date for the features).
  Binning: see `olist_ml.serving.metrics` (reference deciles, NULL bin, epsilon 1e-4 for
  empty bins). PSI > 0.2 is flagged.
* **Realised performance** (`realised`), as labels mature: every past batch of `scores_<problem>`
  (one per scored dt_ref and model version) against its rows' labels as known now
  (`Problem.outcomes`: delay once the promise has passed, churn once the no-sale window closed,
  activation once the 90 days passed; a row counts when its label is known WHATEVER it turns out to
  be, so maturing never selects on the outcome): n scored, n matured, ROC AUC with its DeLong 95 %
  interval, top-decile lift, and the quality gate's baseline on the same rows (the rule's score is
  kept with every score row, `baseline_score`). Stored as one row per (problem, dt_ref, model
  version, source) in `monitor_performance`, recomputed until every row of the batch has matured
  (`final`). A batch at or above `monitoring.min_rows` matured rows that falls below the problem's
  quality gate (the baseline's AUC on the same rows, or a CI at or below 0.5 for the chance gate)
  raises an alert: one line, exit code 3 from `olist-ml monitor`, and a retrain in the daily run
  (`olist_ml.ml.policy`). Served predictions (the API's log, `olist_ml.serving.served_log`) are
  measured the same way (source `served`), and compared with the batch scores.
* **Score drift since deployment** (`score_drift`): PSI of the champion's scores at its first scored
  dt_ref vs its latest; above `monitoring.drift_psi` it makes a retrain due.

Drift rows are appended to `monitor_drift` (one `run_ts` per `olist-ml monitor` run) and the run is
logged as a `monitor` run in the problem's MLflow experiment.
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
from .metrics import EPSILON, PSI_FLAG, psi, top_decile_lift

DRIFT_TABLE = "monitor_drift"
PERF_TABLE = "monitor_performance"

_DRIFT_DDL = f"""CREATE TABLE IF NOT EXISTS {DRIFT_TABLE} (
    problem VARCHAR, run_ts TIMESTAMP, mlflow_run_id VARCHAR, model_name VARCHAR, model_version VARCHAR,
    reference_start DATE, reference_end DATE, current_dt_ref DATE, feature VARCHAR, kind VARCHAR,
    psi DOUBLE, flag BOOLEAN, n_reference BIGINT, n_current BIGINT, null_reference BIGINT, null_current BIGINT,
    bins VARCHAR)"""
PERF_COLUMNS = {
    "problem": "VARCHAR",
    "dt_ref": "DATE",
    "model_version": "VARCHAR",
    "source": "VARCHAR",  # batch (scores_<problem>) | served (the API's log)
    "n_scored": "BIGINT",
    "n": "BIGINT",  # rows whose label is known whatever it turns out to be (matured)
    "n_decided": "BIGINT",  # rows whose label is known already (matured, or decided early: churn's sale)
    "n_positive": "BIGINT",
    "base_rate": "DOUBLE",
    "roc_auc": "DOUBLE",
    "roc_auc_ci_low": "DOUBLE",
    "roc_auc_ci_high": "DOUBLE",
    "lift_top_decile": "DOUBLE",
    "baseline": "VARCHAR",
    "baseline_roc_auc": "DOUBLE",
    "final": "BOOLEAN",  # every row matured: not recomputed any more
    "below_gate": "BOOLEAN",
    "computed_at": "TIMESTAMP",
}
_PERF_DDL = f"CREATE TABLE IF NOT EXISTS {PERF_TABLE} ({', '.join(f'{c} {t}' for c, t in PERF_COLUMNS.items())})"


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
    performance: pd.DataFrame  # monitor_performance rows of the problem (`realised`)
    mlflow_run_id: str | None = None
    notes: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # realised performance below the quality gate
    realised_line: str = ""
    served: dict = field(default_factory=dict)  # the API's log: rows, drift vs batch, served vs batch

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
    """The current scores of every dt_ref (its latest batch: `olist_ml.records`)."""
    from ..records import latest_batch_sql
    from ..warehouse import table_exists

    if not table_exists(con, problem.scores_table):
        raise MissingStepError(
            f"warehouse has no table {problem.scores_table}: run `olist-ml predict {problem.name}` first"
        )
    return con.execute(latest_batch_sql(problem.scores_table, problem.time_column)).df()


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


# ---- realised performance as labels mature -------------------------------------------------------
@dataclass
class Realised:
    """`realised`'s result: the rows of `monitor_performance` of one problem, and its alerts."""

    problem: str
    table: pd.DataFrame
    computed: int  # (dt_ref, version) batches (re)computed in this call
    alerts: list[str] = field(default_factory=list)

    def latest(self, version: str | None = None, source: str = "batch") -> pd.Series | None:
        """The most recent scored dt_ref's row (of `version`) with matured rows."""
        t = self.table[(self.table["source"] == source) & (self.table["n"] > 0)]
        if version is not None:
            t = t[t["model_version"] == str(version)]
        return t.sort_values("dt_ref").iloc[-1] if len(t) else None

    def line(self) -> str:
        r = self.latest()
        if r is None:
            n_dt = int((self.table["source"] == "batch").sum()) if len(self.table) else 0
            return f"no matured labels yet ({n_dt} scored dt_ref(s) waiting)"
        base = f", baseline {r.baseline_roc_auc:.3f}" if pd.notna(r.baseline_roc_auc) else ""
        auc = (
            f"ROC AUC {r.roc_auc:.3f} (95 % CI {r.roc_auc_ci_low:.3f}-{r.roc_auc_ci_high:.3f}){base}"
            if pd.notna(r.roc_auc)
            else "one class so far"
        )
        day = pd.Timestamp(r.dt_ref).date()
        return f"dt_ref {day} v{r.model_version}: {int(r.n)} of {int(r.n_scored)} labels matured, {auc}"


def _observed(y: np.ndarray, s: np.ndarray) -> tuple[float, float, float]:
    from ..ml.metrics import auc_delong

    return auc_delong(y, s) if len(y) > 1 else (float("nan"),) * 3


def _neutral(b: np.ndarray) -> np.ndarray:
    """A rule's score with its unknowns at the median (as the quality gate scores them in training)."""
    b = np.asarray(b, dtype=float)
    return np.where(np.isfinite(b), b, np.nanmedian(b) if np.isfinite(b).any() else 0.0)


def batch_metrics(problem, g: pd.DataFrame, min_rows: int) -> dict:
    """The realised metrics of one batch (rows: score, baseline_score, label, matured, decided); below the
    gate only with at least `min_rows` matured rows."""
    m = g[g["matured"]]
    y = m["label"].astype(int).to_numpy()
    sc = m["score"].astype(float).to_numpy()
    auc, lo, hi = _observed(y, sc) if len(m) else (float("nan"),) * 3
    gate = problem.quality_gate
    base_auc = float("nan")
    if gate is not None and gate.score is not None and len(m) and "baseline_score" in m.columns:
        b = m["baseline_score"].astype(float).to_numpy()
        if np.isfinite(b).any():
            base_auc = _observed(y, _neutral(b))[0]
    below = False
    if len(m) >= min_rows and np.isfinite(auc) and gate is not None and problem.metric == "roc_auc":
        if gate.score is not None and np.isfinite(base_auc):
            below = auc <= base_auc
        if gate.ci_floor is not None:
            below = below or lo <= gate.ci_floor
    return {
        "n_scored": len(g),
        "n": len(m),
        "n_decided": int(g["decided"].sum()),
        "n_positive": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "roc_auc": auc,
        "roc_auc_ci_low": lo,
        "roc_auc_ci_high": hi,
        "lift_top_decile": top_decile_lift(y, sc) if len(y) else float("nan"),
        "baseline": gate.name if gate is not None else None,
        "baseline_roc_auc": base_auc,
        "final": bool(len(m) == len(g)),
        "below_gate": bool(below),
    }


def _stored(con, problem) -> pd.DataFrame:
    from ..warehouse import table_exists

    if not table_exists(con, PERF_TABLE):
        return pd.DataFrame(columns=list(PERF_COLUMNS))
    have = {r[0] for r in con.execute(f"DESCRIBE {PERF_TABLE}").fetchall()}
    if set(PERF_COLUMNS) - have:  # the table of an earlier format (one row per monitor run): recomputed
        con.execute(f"DROP TABLE {PERF_TABLE}")
        return pd.DataFrame(columns=list(PERF_COLUMNS))
    return con.execute(f"SELECT * FROM {PERF_TABLE} WHERE problem = ?", [problem.name]).df()


def _batches_to_measure(con, problem, stored: pd.DataFrame, full: bool) -> pd.DataFrame:
    """The latest batch of every (dt_ref, model version) of the score history not measured final yet."""
    t = problem.time_column
    keys = ", ".join(problem.key_columns)
    have = {r[0] for r in con.execute(f"DESCRIBE {problem.scores_table}").fetchall()}
    base = "baseline_score" if "baseline_score" in have else "CAST(NULL AS DOUBLE) AS baseline_score"
    df = con.execute(
        f"SELECT {keys}, score, {base}, model_version FROM {problem.scores_table} "
        f"QUALIFY scored_at IS NOT DISTINCT FROM max(scored_at) OVER (PARTITION BY CAST({t} AS DATE), model_version)"
    ).df()
    df[t] = _as_date(df[t])
    if full or stored.empty:
        return df
    done = stored[(stored["source"] == "batch") & stored["final"].astype(bool)]
    final = set(zip(_as_date(done["dt_ref"]), done["model_version"].astype(str), strict=True))
    keep = [(d, str(v)) not in final for d, v in zip(df[t], df["model_version"], strict=True)]
    return df[keep]


def measure(con, settings: Settings, problem, scored: pd.DataFrame, source: str) -> pd.DataFrame:
    """Realised metrics per (dt_ref, model_version) of scored rows (key columns, score, baseline_score,
    model_version) against `Problem.outcomes`."""
    t = problem.time_column
    cols = ["dt_ref", "model_version", "source", *[c for c in PERF_COLUMNS if c not in _KEYS]]
    if scored.empty:
        return pd.DataFrame(columns=cols)
    keys = list(problem.key_columns)
    outcomes = problem.outcomes or _abt_outcomes(problem)
    out = outcomes(con, settings, scored[keys].drop_duplicates())
    out[t] = _as_date(out[t])
    if "decided" not in out.columns:
        out["decided"] = out["label"].notna()
    j = scored.merge(out, on=keys, how="left")
    j["matured"] = j["label"].notna()
    j["decided"] = j["decided"].fillna(False).astype(bool) | j["matured"]
    rows = []
    for (d, v), g in j.groupby([t, "model_version"], sort=True):
        metrics = batch_metrics(problem, g, int(settings.monitoring.min_rows))
        rows.append({"dt_ref": d, "model_version": str(v), "source": source, **metrics})
    return pd.DataFrame(rows)[cols]


_KEYS = ("problem", "dt_ref", "model_version", "source", "computed_at")


def _abt_outcomes(problem):
    """The outcomes of a problem without an `outcomes` hook: its ABT's target on the same key (a panel
    problem whose ABT holds every scored dt_ref; NULL while not labelled)."""

    def outcomes(con, settings: Settings, scored: pd.DataFrame) -> pd.DataFrame:
        from ..warehouse import table_exists

        keys = list(problem.key_columns)
        if not table_exists(con, problem.abt_table):
            return scored.assign(label=pd.NA)
        abt = con.execute(
            f"SELECT {', '.join(keys)}, {problem.target} AS label FROM {problem.abt_table} "
            f"WHERE {problem.target} IS NOT NULL"
        ).df()
        abt[problem.time_column] = _as_date(abt[problem.time_column])
        s = scored.copy()
        s[problem.time_column] = _as_date(s[problem.time_column])
        return s.merge(abt, on=keys, how="left")

    return outcomes


def realised(con, settings: Settings, problem, *, full: bool = False, served: bool = True) -> Realised:
    """Measure every scored batch of `problem` whose labels are still maturing (all with `full`) and the
    served rows, store them in `monitor_performance` and return the problem's rows with the alerts (module
    doc). Needs a writable connection; a clustering problem, or one not scored yet, measures nothing."""
    from ..ml import registry
    from ..warehouse import table_exists

    problem = _problem(problem)
    if problem.kind != "binary" or not problem.target or not table_exists(con, problem.scores_table):
        return Realised(problem.name, pd.DataFrame(columns=list(PERF_COLUMNS)), 0)
    stored = _stored(con, problem)
    todo = _batches_to_measure(con, problem, stored, full)
    new = measure(con, settings, problem, todo, "batch")
    if served:
        from . import served_log

        sv = served_log.scored_rows(settings, problem)
        if len(sv):
            new = pd.concat([new, measure(con, settings, problem, sv, "served")], ignore_index=True)
    if len(new):
        new.insert(0, "problem", problem.name)
        new["computed_at"] = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        with transaction(con):
            con.execute(_PERF_DDL)
            con.register("_olist_perf", new[list(PERF_COLUMNS)])
            con.execute(
                f"DELETE FROM {PERF_TABLE} WHERE problem = ? AND (dt_ref, model_version, source) IN "
                "(SELECT (dt_ref, model_version, source) FROM _olist_perf)",
                [problem.name],
            )
            con.execute(f"INSERT INTO {PERF_TABLE} BY NAME SELECT * FROM _olist_perf")
            con.unregister("_olist_perf")
    table = (
        con.execute(
            f"SELECT * FROM {PERF_TABLE} WHERE problem = ? ORDER BY source, dt_ref, model_version", [problem.name]
        ).df()
        if table_exists(con, PERF_TABLE)
        else pd.DataFrame(columns=list(PERF_COLUMNS))
    )
    res = Realised(problem.name, table, int(len(new)))
    champ = registry.alias_version(settings, problem.name)
    if champ is not None:
        res.alerts += _gate_alerts(problem, table, str(champ.version), int(settings.monitoring.min_rows))
    return res


def _gate_alerts(problem, table: pd.DataFrame, version: str, min_rows: int) -> list[str]:
    """The alert of the champion's most recent batch with enough matured rows, when below the gate."""
    t = table[(table["source"] == "batch") & (table["model_version"] == version) & (table["n"] >= min_rows)]
    if t.empty:
        return []
    r = t.sort_values("dt_ref").iloc[-1]
    if not bool(r.below_gate):
        return []
    bar = (
        f"the baseline ({r.baseline}) {r.baseline_roc_auc:.3f} on the same rows"
        if pd.notna(r.baseline_roc_auc)
        else f"its gate ({r.baseline})"
    )
    return [
        f"{problem.name} v{version}: realised ROC AUC {r.roc_auc:.3f} (95 % CI {r.roc_auc_ci_low:.3f}-"
        f"{r.roc_auc_ci_high:.3f}) on the {int(r.n)} matured rows scored at {pd.Timestamp(r.dt_ref).date()} is not "
        f"above {bar}"
    ]


def score_drift(con, settings: Settings, problem, version: str | None = None) -> tuple[float, str]:
    """(PSI, line) of the champion's (or `version`'s) scores: its first scored dt_ref vs its latest;
    NaN while it scored one dt_ref only."""
    from ..ml import registry
    from ..warehouse import table_exists

    problem = _problem(problem)
    if version is None:
        mv = registry.alias_version(settings, problem.name)
        version = str(mv.version) if mv is not None else None
    if version is None or not table_exists(con, problem.scores_table):
        return float("nan"), ""
    t = problem.time_column
    df = con.execute(
        f"SELECT CAST({t} AS DATE) AS d, score FROM {problem.scores_table} WHERE model_version = ? "
        f"QUALIFY scored_at IS NOT DISTINCT FROM max(scored_at) OVER (PARTITION BY CAST({t} AS DATE))",
        [version],
    ).df()
    days = sorted(set(df["d"]))
    if len(days) < 2:
        return float("nan"), ""
    first, last = df[df["d"] == days[0]]["score"], df[df["d"] == days[-1]]["score"]
    if problem.kind != "binary":
        first, last = first.astype(str), last.astype(str)
    r = psi(first.reset_index(drop=True), last.reset_index(drop=True))
    first_day, last_day = pd.Timestamp(days[0]).date(), pd.Timestamp(days[-1]).date()
    return r.psi, f"score PSI {r.psi:.3f} of v{version} between {first_day} and {last_day}"


def signals(con, settings: Settings, problem, realised_res: Realised | None = None) -> list[str]:
    """What makes the daily run retrain before its due date (`olist_ml.ml.policy`): the realised-performance
    alerts and score drift above `monitoring.drift_psi`."""
    out = list(realised_res.alerts) if realised_res is not None else []
    value, line = score_drift(con, settings, problem)
    if np.isfinite(value) and value > float(settings.monitoring.drift_psi):
        out.append(f"{line} above {settings.monitoring.drift_psi}")
    return out


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
        metrics["n_alerts"] = float(len(res.alerts))
        mlflow.log_metrics(metrics)
        perf = res.performance[res.performance["source"] == "batch"] if len(res.performance) else res.performance
        for r in perf.sort_values("dt_ref").itertuples():
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


def _store(con, problem, res: MonitorResult) -> None:
    """Append this monitoring run's drift rows to monitor_drift (realised performance is stored by `realised`)."""
    with transaction(con):
        con.execute(_DRIFT_DDL)
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


def monitor(problem, settings: Settings, *, log_to_mlflow: bool = True) -> MonitorResult:
    """Drift + realised performance of `problem`'s champion; stored and logged (see module doc)."""
    from ..ml import registry
    from ..warehouse import require_tables, session
    from . import served_log

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
        real = realised(con, settings, problem, full=True)
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
            performance=real.table,
            alerts=real.alerts,
            realised_line=real.line(),
        )
        value, line = score_drift(con, settings, problem, str(champ.version))
        if np.isfinite(value):
            due = " (above monitoring.drift_psi: a retrain is due)" if value > settings.monitoring.drift_psi else ""
            res.notes.append(line + due)
        res.served = served_log.summary(settings, problem, scores, current, features)
        if log_to_mlflow:
            res.mlflow_run_id = _log_mlflow(settings, problem, res)
        _store(con, problem, res)
    return res
