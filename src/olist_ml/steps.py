"""What every engine's pipeline shares (`olist_ml.pipeline` on DuckDB, `olist_ml.spark.pipeline` on
Spark): the report types, `olist-ml run`'s tuning budget, synthetic data, the source fingerprint and
state, and what counts as "already trained on this ABT"."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from .config import Settings

console = Console(width=None if sys.stdout.isatty() else 140)


@dataclass
class StepResult:
    step: str
    status: str  # "done" | "skipped" | "failed"
    seconds: float
    detail: str = ""


@dataclass
class PipelineReport:
    source: str
    synthetic: bool
    steps: list[StepResult] = field(default_factory=list)

    def add(self, step: str, status: str, t0: float, detail: str = "") -> None:
        r = StepResult(step, status, time.perf_counter() - t0, detail)
        self.steps.append(r)
        colour = {"done": "green", "skipped": "cyan", "failed": "red"}.get(status, "white")
        console.print(f"[{colour}]{status:>7}[/] {step:<32} {r.seconds:7.1f}s  {detail}")


PIPELINE_TRIALS = 2  # Optuna trials per candidate in `olist-ml run` (besides the hand-picked defaults)
PIPELINE_TIMEOUT_S = 30.0  # tuning budget per candidate in `olist-ml run`


def ensure_synthetic(settings: Settings, seed: int, scale: float) -> tuple[Path, bool]:
    """Generate synthetic Olist CSVs once per (seed, scale); returns (folder, generated now)."""
    from . import synth

    out = settings.synthetic_dir
    marker = out / ".olist_ml_synth.json"
    want = {"seed": seed, "scale": scale}
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == want:
                return out, False
        except ValueError:
            pass
    out.mkdir(parents=True, exist_ok=True)
    synth.generate(out, seed=seed, scale=scale)
    marker.write_text(json.dumps(want))
    return out, True


def start_report(settings: Settings, data: Path | str | None, seed: int, scale: float) -> tuple[PipelineReport, Path]:
    """A run's report and its source folder: `data`, or synthetic data generated once per (seed, scale)
    when none is given, which the run says plainly."""
    synthetic = data is None
    if synthetic:
        console.print(
            f"[bold yellow]No --data given: running on SYNTHETIC Olist data[/] (seed={seed}, scale={scale}) "
            f"generated into {settings.synthetic_dir}. Pass --data <folder or zip of the Olist CSVs> for the real "
            "thing."
        )
    report = PipelineReport(source=str(data or settings.synthetic_dir), synthetic=synthetic)
    if not synthetic:
        return report, Path(data)
    t0 = time.perf_counter()
    source, generated = ensure_synthetic(settings, seed, scale)
    report.add("synthetic data", "done" if generated else "skipped", t0, str(source))
    return report, source


def source_fingerprint(source: Path) -> str:
    """Cheap fingerprint of a source folder/zip: names, sizes and mtimes of its files."""
    import hashlib

    source = Path(source)
    h = hashlib.sha256()
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        h.update(
            f"{p.relative_to(source.parent if source.is_file() else source)}|{st.st_size}|{st.st_mtime_ns}\n".encode()
        )
    return h.hexdigest()[:16]


def _state_file(settings: Settings) -> Path:
    return settings.home.absolute() / "pipeline_state.json"


def _source_is_current(settings: Settings, source: Path) -> bool:
    """True when the warehouse's LAST ingest is the pipeline's ingest of this unchanged source (an
    `olist-ml ingest` of anything else in between makes it not current)."""
    from .ingest import last_run

    f = _state_file(settings)
    if not settings.warehouse.exists() or not f.exists():
        return False
    try:
        state = json.loads(f.read_text())
    except ValueError:
        return False
    last = last_run(settings)
    return (
        state.get("source") == str(Path(source).absolute())
        and state.get("fingerprint") == source_fingerprint(source)
        and last is not None
        and state.get("ingest_run_id") == last.get("run_id")
    )


def _remember_source(settings: Settings, source: Path, run_id: str) -> None:
    f = _state_file(settings)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(
        json.dumps(
            {"source": str(Path(source).absolute()), "fingerprint": source_fingerprint(source), "ingest_run_id": run_id}
        )
    )


def _trained_on(settings: Settings, problem, abt_hash: str) -> str | None:
    """The parent run id of an earlier training of `problem` on exactly this ABT content that is DONE:
    its MLflow run FINISHED and it registered a model version. A run killed during training stays
    RUNNING (marked FAILED at the next start by `tracking.reap_dead_runs`) and never counts."""
    from .ml import tracking

    mlflow = tracking.configure(settings)
    exp = mlflow.get_experiment_by_name(problem.name)
    if exp is None:
        return None
    runs = mlflow.search_runs(
        experiment_ids=[exp.experiment_id],
        filter_string=f"tags.role = 'parent' AND tags.abt_content_hash = '{abt_hash}' "
        "AND attributes.status = 'FINISHED'",
        max_results=50,
        output_format="list",
    )
    done = [r for r in runs if r.data.tags.get("registered_version") not in (None, "", "None")]
    return done[0].info.run_id if done else None


def _decision_of(settings: Settings, run_id: str) -> str | None:
    from .ml import tracking

    return tracking.client(settings).get_run(run_id).data.tags.get("decision")


# ---- one problem's day, shared by the engines' pipelines ----------------------------------------------
def monitor_step(con, settings: Settings, problem, report: PipelineReport, t0: float) -> list[str]:
    """Realised performance of the past scores as their labels mature (stored in `monitor_performance`)
    and what monitoring says about retraining (`olist_ml.serving.monitor.signals`); alerts are printed."""
    from .serving import monitor

    if problem.kind != "binary":
        return monitor.signals(con, settings, problem)
    real = monitor.realised(con, settings, problem)
    if len(real.table):
        report.add(f"{problem.name}: realised", "done", t0, real.line())
    for alert in real.alerts:
        console.print(f"[bold red]  ALERT[/] {alert}")
    return monitor.signals(con, settings, problem, real)


def retrain_decision(problem, settings: Settings, today, *, force: bool, signals: list[str], asof=None):
    """`olist_ml.ml.policy.decide`, after marking runs left RUNNING by a dead process FAILED."""
    from .ml import policy, tracking

    reaped = tracking.reap_dead_runs(settings, problem.name)
    if reaped:
        console.print(f"        {problem.name}: {len(reaped)} run(s) left RUNNING by a dead process marked FAILED")
    return policy.decide(problem, settings, today, force=force, monitoring=signals, asof=asof)


def score_allowed(problem, settings: Settings, report: PipelineReport, decision) -> bool:
    """A day that is not due: say when the retrain is due; score only when there is a champion."""
    from .ml import registry

    t0 = time.perf_counter()
    report.add(f"{problem.name}: train", "skipped", t0, decision.reason)
    if registry.alias_version(settings, problem.name) is None:
        report.add(
            f"{problem.name}: score",
            "skipped",
            t0,
            f"no champion: v{decision.latest_version} is below its quality gate; {decision.reason}",
        )
        return False
    return True


def train_step(
    problem, settings: Settings, report: PipelineReport, decision, abt_hash: str, today, fit, *, force: bool, asof=None
) -> bool:
    """Train (through `fit()`) on a due day, unless a finished run already trained on exactly this ABT;
    record the data's end (and, with `asof(day)`, the fingerprint of the facts known then) on the new
    version: the policy counts from them. True when scoring may follow."""
    from .ml import policy, registry

    t0 = time.perf_counter()
    policy.note_monitoring_attempt(settings, problem, decision, today)
    has_champion = registry.alias_version(settings, problem.name) is not None
    earlier = None if force else _trained_on(settings, problem, abt_hash)
    if earlier:  # nothing new to learn from: the same ABT (a model below its gate is not retrained on it either)
        rejected = not has_champion and _decision_of(settings, earlier) == registry.REJECTED
        report.add(f"{problem.name}: train", "skipped", t0, f"already trained on this ABT (run {earlier[:8]})")
        if rejected:
            report.add(
                f"{problem.name}: score",
                "skipped",
                time.perf_counter(),
                "no champion: the model trained on this ABT is below its quality gate",
            )
        return not rejected
    res = fit()
    if res.model_version is not None and today is not None:
        registry.set_version_tag(settings, problem.name, res.model_version, policy.DATA_END_TAG, str(today))
        if asof is not None:
            registry.set_version_tag(settings, problem.name, res.model_version, policy.DATA_FP_TAG, asof(today))
    best = next(c for c in res.candidates if c.name == res.winner)
    part, metric = (
        ("test", res.test[res.metric])
        if res.metric in res.test
        else ("", best.validation.get(res.metric, float("nan")))
    )
    report.add(
        f"{problem.name}: train",
        "done",
        t0,
        f"{decision.reason}: winner {res.winner} {part + ' ' if part else ''}{res.metric}={metric:.3f} -> "
        f"v{res.model_version} {res.decision}",
    )
    if res.decision == registry.REJECTED and not has_champion:
        report.add(f"{problem.name}: score", "skipped", time.perf_counter(), f"no champion: {res.reason}")
        return False
    return True
