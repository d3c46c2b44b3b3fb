"""The whole pipeline as one incremental function.

    source (folder/zip, or synthetic) -> ingest -> feature store -> per problem:
    ABT -> train (MLflow, champion rule) -> batch scores

Every step is skipped when it is already up to date:
- synthetic data is generated once per (seed, scale) into <home>/synthetic;
- ingestion is skipped when the source's content hash equals the last ingested one;
- the feature store computes only missing dt_refs (incremental build);
- a problem is retrained only when its ABT content hash differs from the one the current
  champion was trained on (or there is no champion yet);
- scoring is idempotent per (dt_ref, model version).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from .config import Settings
from .steps import (  # noqa: F401 - re-exported: the pipeline's public names
    PIPELINE_TIMEOUT_S,
    PIPELINE_TRIALS,
    PipelineReport,
    StepResult,
    _decision_of,
    _remember_source,
    _source_is_current,
    _state_file,
    _trained_on,
    console,
    ensure_synthetic,
    monitor_step,
    retrain_decision,
    score_allowed,
    source_fingerprint,
    start_report,
    train_step,
)


def run_problem(problem, settings: Settings, report: PipelineReport, *, force_train: bool = False, **budget) -> None:
    """One problem's day: realised performance of its past scores -> ABT and training when the retrain
    policy says so (`olist_ml.ml.policy`) -> scores of today with the champion (appended to the history)."""
    from . import lineage
    from .ml import scoring
    from .ml.data import content_hash, load_abt
    from .ml.train import train
    from .warehouse import observed_end, session

    def asof(day):  # the problem's facts as known at `day` (the policy's "data revised" rule)
        with session(settings) as con:
            return lineage.asof_fingerprints(con, [day], problem.reads)[day]

    t0 = time.perf_counter()
    with session(settings) as con:
        today = observed_end(con)
        signals = monitor_step(con, settings, problem, report, t0)
    decision = retrain_decision(problem, settings, today, force=force_train, signals=signals, asof=asof)
    if decision.due:
        t0 = time.perf_counter()
        with session(settings) as con:
            ref = lineage.refresh_abt(con, problem, settings)
            abt_hash = content_hash(load_abt(con, problem))
        detail = f"{ref.rows} rows ({ref.reason})" if ref.rebuilt else "current"
        report.add(f"{problem.name}: ABT", "done" if ref.rebuilt else "skipped", t0, f"{problem.abt_table}: {detail}")
        fit = functools.partial(train, problem, settings, build_abt=False, **budget)
        if not train_step(problem, settings, report, decision, abt_hash, today, fit, force=force_train, asof=asof):
            return
    elif not score_allowed(problem, settings, report, decision):
        return
    t0 = time.perf_counter()
    sr = scoring.predict(problem, settings)
    revised = f"; {sr.revised}" if sr.revised else ""
    report.add(
        f"{problem.name}: score",
        "done",
        t0,
        f"{sr.n_scored} rows at {sr.dt_ref} -> {sr.table} (v{sr.model_version}){revised}",
    )


def run_pipeline(
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
    """ingest -> features -> (ABT -> train -> champion -> score) per problem; incremental."""
    if (settings.engine or "duckdb").lower() == "spark":  # engine dispatch: every table in the lake (olist_ml.spark)
        from .spark.pipeline import run_pipeline_spark

        return run_pipeline_spark(
            settings,
            data=data,
            problems=problems,
            seed=seed,
            scale=scale,
            cadence=cadence,
            force_train=force_train,
            progress=progress,
            **budget,
        )
    from . import features, ingest, lineage
    from . import problems as P
    from .errors import NotReadyError, OlistMLError

    chosen = [P.get(p) for p in problems] if problems else list(P.REGISTRY.values())
    # a pipeline run tunes lightly by default; `olist-ml train` (and --trials/--timeout) for more
    budget.setdefault("n_trials", PIPELINE_TRIALS)
    budget.setdefault("timeout", PIPELINE_TIMEOUT_S)
    report, source = start_report(settings, data, seed, scale)
    t0 = time.perf_counter()
    if _source_is_current(settings, source):
        report.add("ingest", "skipped", t0, "warehouse already holds this source")
    else:
        rep = ingest.ingest(source, settings, progress=progress)
        _remember_source(settings, source, rep.run_id)
        loaded = sum(t.loaded for t in rep.tables)
        report.add("ingest", "done", t0, f"{loaded:,} rows ({rep.quarantined} quarantined) into {settings.warehouse}")

    with lineage.stg_unchanged():  # from here on the stg tables stay as ingested: as-known facts computed once
        t0 = time.perf_counter()
        fb = features.build(settings, cadence=cadence, progress=progress)
        built = sum(t.dt_refs for t in fb.tables)
        stale = sum(t.stale for t in fb.tables)
        why = next((t.reason for t in fb.tables if t.reason), "")
        report.add(
            "feature store",
            "done" if built else "skipped",
            t0,
            f"{fb.start}..{fb.end} {cadence}: {built} table-dates computed"
            + (f" ({stale} stale: {why})" if stale else "")
            + f", {fb.rows} rows",
        )
        for problem in chosen:
            t0 = time.perf_counter()
            try:
                run_problem(problem, settings, report, force_train=force_train, **budget)
            except NotReadyError as e:  # nothing to learn yet, for a stated reason: not a failure
                report.add(f"{problem.name}", "skipped", t0, str(e))
            except OlistMLError as e:  # a step failed: say so, go on with the others; `run` exits 1
                report.add(f"{problem.name}", "failed", t0, str(e))
    return report


def problems_status(settings: Settings) -> list[dict]:
    """One row per declared problem: ABT rows, trained runs, champion version, last scored dt_ref."""
    from . import problems as P
    from .ml import registry, tracking
    from .warehouse import table_exists

    rows = []
    con = None
    if settings.warehouse.exists():
        import duckdb

        con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        mlflow = tracking.configure(settings)
        for p in P.REGISTRY.values():
            row = {
                "problem": p.name,
                "aliases": "/".join(p.aliases),
                "kind": p.kind,
                "abt_rows": None,
                "trained_runs": 0,
                "champion": None,
                "challenger": None,
                "last_scored": None,
                "scored_rows": None,
                "description": p.description,
            }
            if con is not None and table_exists(con, p.abt_table):
                row["abt_rows"] = con.execute(f"SELECT count(*) FROM {p.abt_table}").fetchall()[0][0]
            if con is not None and table_exists(con, p.scores_table):
                time_col = p.time_column if p.time_column in p.key_columns else "dt_ref"
                last = con.execute(f"SELECT max({time_col}) FROM {p.scores_table}").fetchall()[0][0]
                row["last_scored"] = str(last) if last is not None else None
                if last is not None:
                    row["scored_rows"] = con.execute(
                        f"SELECT count(*) FROM {p.scores_table} WHERE {time_col} = ?", [last]
                    ).fetchall()[0][0]
            exp = mlflow.get_experiment_by_name(p.name)
            if exp is not None:
                row["trained_runs"] = len(
                    mlflow.search_runs(
                        experiment_ids=[exp.experiment_id], filter_string="tags.role = 'parent'", output_format="list"
                    )
                )
            for alias in ("champion", "challenger"):
                mv = registry.alias_version(settings, p.name, alias)
                row[alias] = f"v{mv.version}" if mv is not None else None
            rows.append(row)
    finally:
        if con is not None:
            con.close()
    return rows


def derived_status(con, settings) -> list[dict]:
    """Per derived table in the warehouse (feature store, ABTs): how many parts it has, how many are
    stale, and why (`olist-ml summary`). Here, not in `olist_ml.lineage`, because it walks every problem
    and feature table: lineage itself sits below them (the feature store and the problems record through
    it). Score histories are records, not derived state: `records_status`."""
    from . import problems as P
    from .features.build import READS, logged_lineage, table_config_fp
    from .features.catalog import FEATURE_TABLES
    from .lineage import Staleness, abt_inputs_fp, asof_fingerprints, problem_config_fp, whole_table_staleness, why
    from .warehouse import table_exists

    rows: list[dict] = []
    windows = tuple(sorted(set(settings.feature_windows)))
    logged = {t: logged_lineage(con, t) for t in FEATURE_TABLES if table_exists(con, t)}
    parts: set = set().union(*logged.values()) if logged else set()
    asof = asof_fingerprints(con, parts, READS) if parts else {}

    def add(table: str, n: int | None, st: Staleness) -> None:
        rows.append(
            {
                "table": table,
                "parts": n,
                "stale": len([s for s in st.stale if s is not None]) or (1 if st.stale else 0),
                "status": "current" if st.current else f"stale: {st.reason}",
            }
        )

    for t, log in logged.items():
        cfg = table_config_fp(t, windows)
        stale = sorted(d for d, (dfp, cfp) in log.items() if (dfp, cfp) != (asof[d], cfg))
        reasons = [why(log[d], asof[d], cfg) for d in stale]
        add(t, len(log), Staleness(t, tuple(stale), max(set(reasons), key=reasons.count) if reasons else ""))
    data_fp = abt_inputs_fp(con)
    for p in P.REGISTRY.values():
        if table_exists(con, p.abt_table):
            add(p.abt_table, None, whole_table_staleness(con, p.abt_table, data_fp, problem_config_fp(p, settings)))
    return rows


def records_status(con) -> list[dict]:
    """Per score history (`scores_<problem>`, `seller_segments`): dt_refs, batches, rows, and the dt_refs
    whose batches were computed from data revised since (`olist_ml.records.status`; `olist-ml summary`)."""
    from . import problems as P
    from . import records
    from .warehouse import table_exists

    out = []
    for p in P.REGISTRY.values():
        if table_exists(con, p.scores_table):
            out.append(records.status(con, p.scores_table, p.reads, p.time_column))
    seg = P.REGISTRY.get("seller_segments")
    if seg is not None and table_exists(con, "seller_segments"):
        out.append(records.status(con, "seller_segments", seg.reads))
    return out
