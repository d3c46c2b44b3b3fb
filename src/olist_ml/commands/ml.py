"""CLI commands for the 'ml' area: train, predict, promote, ui (thin wiring over olist_ml.ml)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date, datetime
from typing import Optional

import typer

from ..errors import InputError
from ._options import Candidates, Timeout, Trials, check_alias


def _date(s: Optional[str], flag: str) -> Optional[date]:
    if not s:
        return None
    try:
        return datetime.strptime(s, "%Y-%m-%d").date()
    except ValueError:
        raise InputError(f"{flag} {s!r} is not a date: use YYYY-MM-DD") from None


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias, e.g. churn / seller_churn."),
        trials: Trials = None,
        timeout: Timeout = None,
        candidates: Candidates = None,
        cv_folds: Optional[int] = typer.Option(None, "--cv-folds", help="Time-ordered, seller-grouped CV folds."),
        oot_months: Optional[int] = typer.Option(None, "--oot-months", help="Labelled months held out (default 6)."),
        oot_start: Optional[str] = typer.Option(None, "--oot-start", help="First OOT dt_ref (YYYY-MM-DD)."),
        oot_end: Optional[str] = typer.Option(None, "--oot-end", help="Last OOT dt_ref (YYYY-MM-DD)."),
        reuse_abt: bool = typer.Option(False, "--reuse-abt", help="Train on the existing ABT instead of rebuilding it."),
    ) -> None:
        """Build the problem's ABT, tune and compare candidates, log to MLflow, apply the champion rule."""
        from ..cli import writer
        from ..ml.train import train
        from ..problems import get

        s = writer(ctx, f"train {problem}")
        p = get(problem)
        if s.engine == "spark":  # engine dispatch: the lake's ABT, trained on the driver (olist_ml.spark.ml)
            from ..spark.ml import train_spark as train
        res = train(p, s, n_trials=trials, timeout=timeout, candidates=candidates, cv_folds=cv_folds,
                    oot_months=oot_months, oot_start=_date(oot_start, "--oot-start"), oot_end=_date(oot_end, "--oot-end"),
                    build_abt=not reuse_abt, progress=sys.stderr.isatty())
        lin = res.lineage
        if p.kind == "cluster":  # no labels, no out-of-time set: one population at one date
            typer.echo(f"{p.name}: ABT {lin.get('abt_table')} {lin.get('abt_rows')} rows at "
                       f"{lin.get('abt_dt_ref_max')}, {lin.get('n_features')} features")
        else:
            typer.echo(f"{p.name}: ABT {lin['abt_table']} {lin['abt_rows']} rows ({lin['abt_labelled_rows']} labelled), "
                       f"train {lin['train_dt_ref_min']}..{lin['train_dt_ref_max']} ({lin['train_rows']}), "
                       f"OOT {lin['oot_dt_ref_min']}..{lin['oot_dt_ref_max']} ({lin['oot_rows']}), "
                       f"{lin['n_features']} features")
        for n in res.notes:
            typer.echo(f"note: {n}")
        typer.echo(res.table().to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        typer.echo(f"winner: {res.winner} -> {p.name} v{res.model_version} is {res.decision}: {res.reason}")
        typer.echo(f"mlflow run {res.parent_run_id} (experiment {res.experiment_id}) at {s.mlflow_uri}")

    @app.command("predict")
    def predict_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias."),
        dt_ref: Optional[str] = typer.Option(None, "--dt-ref", help="Reference date (default: latest available)."),
        top: int = typer.Option(10, "--top", help="How many highest-score rows to print."),
    ) -> None:
        """Score the population at a reference date with models:/<problem>@champion into scores_<problem>."""
        from ..cli import writer
        from ..ml.scoring import predict
        from ..problems import get

        s = writer(ctx, f"predict {problem}")
        p = get(problem)
        if s.engine == "spark":  # engine dispatch: mlflow.pyfunc.spark_udf over the lake (olist_ml.spark.ml)
            from ..spark.ml import predict_spark as predict
        r = predict(p, s, _date(dt_ref, "--dt-ref"), top_n=top)
        typer.echo(f"{r.problem}: scored {r.n_scored} rows at dt_ref {r.dt_ref} with {r.model_name} v{r.model_version} "
                   f"(run {r.run_id}) -> {r.table} in {r.seconds:.1f}s")
        typer.echo("score distribution: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r.distribution.items()))
        if r.top:
            typer.echo(f"top {len(r.top)}:")
            for row in r.top:
                typer.echo("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items()))

    @app.command("promote")
    def promote_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias."),
        version: str = typer.Option(..., "--version", help="Registered model version to promote."),
        reason: str = typer.Option(..., "--reason", help="Why (recorded on the model version)."),
        alias: str = typer.Option("champion", "--alias", help="Alias to move (champion or challenger)."),
    ) -> None:
        """Move an alias (default champion) to a model version by hand, recording the reason."""
        from ..cli import writer
        from ..ml.registry import promote
        from ..problems import get

        check_alias(alias)
        s = writer(ctx, f"promote {problem}")
        p = get(problem)
        out = promote(s, p.name, version, reason, alias=alias)
        typer.echo(f"{out['model_name']}@{out['alias']}: v{out['previous'] or '-'} -> v{out['version']} ({out['reason']})")

    @app.command("ui")
    def ui_cmd(
        ctx: typer.Context,
        port: int = typer.Option(5000, "--port", help="Port for the MLflow UI."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    ) -> None:
        """Start the MLflow UI on the local tracking store (Ctrl-C to stop)."""
        from ..cli import settings_of

        s = settings_of(ctx)
        uri = s.mlflow_uri
        if uri.startswith(("http://", "https://")):
            typer.echo(f"tracking server {uri} serves its own UI: open it in a browser")
            return
        s.artifacts.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--default-artifact-root", s.artifacts.as_uri(), "--host", host, "--port", str(port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        typer.echo(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C to stop")
        proc = subprocess.Popen(cmd, env=env)

        def _stop(signum, frame):
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, _stop)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            rc = 0
        finally:
            signal.signal(signal.SIGTERM, old)
        raise typer.Exit(rc)
