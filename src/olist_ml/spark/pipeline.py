"""The whole pipeline on Spark (`olist-ml --engine spark run`): the same steps and the same
incremental rules as `olist_ml.pipeline`, every table in the lake.

    source (folder/zip, or synthetic) -> Spark ingest -> feature store (lake) -> per problem:
    ABT (lake) -> train on the driver (MLflow, champion rule) -> batch scores with spark_udf (lake)

Skipped when current: ingest when the source is unchanged since the lake's last ingest from this
pipeline; feature dt_refs whose lineage is current; ABT and training unless the retrain policy says
so (`olist_ml.ml.policy`, the same as on DuckDB).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import Settings
from ..steps import (
    PIPELINE_TIMEOUT_S,
    PIPELINE_TRIALS,
    PipelineReport,
    console,
    retrain_decision,
    score_allowed,
    source_fingerprint,
    start_report,
    train_step,
)


def _state_file(settings: Settings) -> Path:
    return settings.home.absolute() / "pipeline_state.spark.json"


def _source_is_current(settings: Settings, source: Path) -> bool:
    from .ingest import last_run

    f = _state_file(settings)
    if not f.exists():
        return False
    try:
        state = json.loads(f.read_text())
    except ValueError:
        return False
    if state.get("lake") != settings.lake_uri or state.get("source") != str(Path(source).absolute()):
        return False
    last = last_run(settings)
    return (
        state.get("fingerprint") == source_fingerprint(source)
        and last is not None
        and state.get("ingest_run_id") == last.get("run_id")
    )


def _remember_source(settings: Settings, source: Path, run_id: str) -> None:
    f = _state_file(settings)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(
        json.dumps(
            {
                "lake": settings.lake_uri,
                "source": str(Path(source).absolute()),
                "fingerprint": source_fingerprint(source),
                "ingest_run_id": run_id,
            }
        )
    )


def run_problem_spark(
    problem, settings: Settings, report: PipelineReport, *, force_train: bool = False, env=None, **budget
) -> None:
    """One problem's day on Spark, by the same policy as on DuckDB (`olist_ml.pipeline.run_problem`): ABT and
    training on the driver when due, scores with spark_udf appended to the lake's history. Realised
    performance is measured by `olist-ml monitor` on DuckDB homes only (the engine refactor brings it here)."""
    from ..ml import tracking
    from ..ml.data import content_hash, load_abt
    from ..ml.train import train
    from ..warehouse import session
    from . import lineage as L
    from . import ml as SM
    from .problems import SparkEnv, spark_problem
    from .warehouse import observed_end

    env = env or SparkEnv.open(settings, features=spark_problem(problem.name).needs_features)
    today = observed_end(env.spark)

    def asof(day):
        return L.asof_fingerprints(env.spark, [day], problem.reads)[day]

    decision = retrain_decision(problem, settings, today, force=force_train, signals=[], asof=asof)
    if decision.due:
        t0 = time.perf_counter()
        ref = SM.refresh_abt(env, problem, settings)
        table, note = SM.abt_to_driver(env, problem, settings)
        detail = f"{ref.rows} rows ({ref.reason})" if ref.rebuilt else f"current ({table.num_rows} rows)"
        report.add(f"{problem.name}: ABT", "done" if ref.rebuilt else "skipped", t0, f"{problem.abt_table}: {detail}")
        with SM.scratch_warehouse(settings, problem, table) as s2:
            with session(s2, read_only=True) as con:
                abt_hash = content_hash(load_abt(con, problem))

            def fit():
                res = train(problem, s2, build_abt=False, **budget)
                if problem.name == "seller_segments":
                    SM._copy_segment_outputs(env, problem, s2, settings)
                if note and res.parent_run_id:
                    tracking.client(settings).set_tag(res.parent_run_id, SM.SAMPLE_TAG, note)
                return res

            if not train_step(problem, settings, report, decision, abt_hash, today, fit, force=force_train, asof=asof):
                return
    elif not score_allowed(problem, settings, report, decision):
        return
    t0 = time.perf_counter()
    sr = SM.predict_spark(problem, settings, env=env)
    revised = f"; {sr.revised}" if sr.revised else ""
    report.add(
        f"{problem.name}: score",
        "done",
        t0,
        f"{sr.n_scored} rows at {sr.dt_ref} -> {sr.table} (v{sr.model_version}, spark_udf){revised}",
    )


def run_pipeline_spark(
    settings: Settings,
    *,
    data: Path | None = None,
    problems: list[str] | None = None,
    seed: int = 42,
    scale: float = 0.3,
    cadence: str = "daily",
    force_train: bool = False,
    progress: bool = False,
    **budget,
) -> PipelineReport:
    """`olist_ml.pipeline.run_pipeline` with every table in the lake (module docstring)."""
    from .. import problems as P
    from ..errors import NotReadyError, OlistMLError
    from .features import build_spark
    from .ingest import ingest_spark
    from .problems import SparkEnv

    chosen = [P.get(p) for p in problems] if problems else list(P.REGISTRY.values())
    budget.setdefault("n_trials", PIPELINE_TRIALS)
    budget.setdefault("timeout", PIPELINE_TIMEOUT_S)
    console.print(f"[bold]engine: spark[/] (master {settings.spark_master}), lake {settings.lake_uri}")
    report, source = start_report(settings, data, seed, scale)
    t0 = time.perf_counter()
    if _source_is_current(settings, source):
        report.add("ingest (spark)", "skipped", t0, "lake already holds this source")
    else:
        rep = ingest_spark(source, settings, progress=progress)
        _remember_source(settings, source, rep.run_id)
        loaded = sum(t.loaded for t in rep.tables)
        report.add(
            "ingest (spark)", "done", t0, f"{loaded:,} rows ({rep.quarantined} quarantined) into {rep.warehouse}"
        )

    t0 = time.perf_counter()
    fb = build_spark(settings, cadence=cadence, progress=progress)
    built = sum(t.dt_refs for t in fb.tables)
    stale = sum(t.stale for t in fb.tables)
    why = next((t.reason for t in fb.tables if t.reason), "")
    report.add(
        "feature store (spark)",
        "done" if built else "skipped",
        t0,
        f"{fb.start}..{fb.end} {cadence}: {built} table-dates computed"
        + (f" ({stale} stale: {why})" if stale else "")
        + f", {fb.rows} rows",
    )

    env = SparkEnv.open(settings)
    for problem in chosen:
        t0 = time.perf_counter()
        try:
            run_problem_spark(problem, settings, report, force_train=force_train, env=env, **budget)
        except NotReadyError as e:
            report.add(f"{problem.name}", "skipped", t0, str(e))
        except OlistMLError as e:
            report.add(f"{problem.name}", "failed", t0, str(e))
    return report
