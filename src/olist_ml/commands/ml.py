"""CLI commands for the 'ml' area: train, predict, promote, ui (thin wiring over olist_ml.ml)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date, datetime
from typing import Optional

import numpy as np
import typer

from ..errors import InputError, MissingStepError
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


def summary_lines(p, res, uri: str = "") -> list[str]:
    """What `olist-ml train` prints: periods, candidates on validation, the test of the winner with
    its CI next to the baseline, calibration, extra metrics and the registry decision."""
    lin = res.lineage
    out = []
    if p.kind == "cluster" and "validation_start" not in lin:  # no labels, no periods: one population at one date
        out.append(
            f"{p.name}: ABT {lin.get('abt_table')} {lin.get('abt_rows')} rows at "
            f"{lin.get('abt_dt_ref_max')}, {lin.get('n_features')} features"
        )
    else:
        out.append(
            f"{p.name}: ABT {lin['abt_table']} {lin['abt_rows']} rows ({lin['abt_labelled_rows']} labelled), "
            f"{lin['n_features']} features"
        )
        out.append(
            f"  train {lin['split_train_dt_ref_min']}..{lin['split_train_dt_ref_max']} "
            f"({lin['split_train_rows']}) | validation {lin['validation_start']}..{lin['validation_end']} "
            f"({lin['validation_rows']}) | test {lin['test_start']}..{lin['test_end']} ({lin['test_rows']})"
            f"{', purged by when labels became known' if lin.get('purged_by_label_known_at') else ''}; "
            f"registered artefact refit on {lin['train_rows']} labelled rows through {lin['trained_until']}"
        )
    for n in res.notes:
        out.append(f"note: {n}")
    out.append("candidates (cv and VALIDATION metrics; the winner is chosen on validation):")
    out.append(res.table().to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    m = res.metric
    t = res.test
    if t:
        ci = (
            f" (95 % CI {t[m + '_ci_low']:.4f}-{t[m + '_ci_high']:.4f})"
            if np.isfinite(t.get(m + "_ci_low", np.nan))
            else ""
        )
        line = f"test (winner {res.winner} fitted before {lin.get('test_start')}, measured once): {m} {t[m]:.4f}{ci}"
        b = res.baseline
        if b.get(f"test_{m}") is not None:
            line += (
                f"; baseline {b['name']} {b[f'test_{m}']:.4f} (95 % CI {b.get(f'test_{m}_ci_low', np.nan):.4f}-"
                f"{b.get(f'test_{m}_ci_high', np.nan):.4f})"
            )
        elif b.get("name"):
            line += f"; gate: {b['name']}"
        out.append(line)
        if "ece" in t:
            cal = res.calibration
            out.append(
                f"calibration: {cal.get('method')} (chosen on validation log loss); test log loss "
                f"{t.get('log_loss_uncalibrated', np.nan):.4f} -> {t.get('log_loss', np.nan):.4f}, ECE "
                f"{t.get('ece_uncalibrated', np.nan):.4f} -> {t['ece']:.4f}"
            )
        extra = [k for k in res.extra_keys if k in t and k.startswith(m)]
        if extra:
            out.append("test " + ", ".join(f"{k} {_fmt(t[k])}" for k in extra))
    out.append(f"winner: {res.winner} -> {p.name} v{res.model_version} is {res.decision}: {res.reason}")
    out.append(f"mlflow run {res.parent_run_id} (experiment {res.experiment_id}){' at ' + uri if uri else ''}")
    return out


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias, e.g. churn / seller_churn."),
        trials: Trials = None,
        timeout: Timeout = None,
        candidates: Candidates = None,
        cv_folds: Optional[int] = typer.Option(None, "--cv-folds", help="Time-ordered, seller-grouped CV folds."),
        test_months: Optional[int] = typer.Option(
            None,
            "--test-months",
            "--oot-months",
            help="Last labelled months measured once as the test set (default: the problem's, e.g. 3 for churn).",
        ),
        validation_months: Optional[int] = typer.Option(
            None,
            "--validation-months",
            help="Months before the test set that choose the winner and fit the calibrator (default: the problem's).",
        ),
        test_start: Optional[str] = typer.Option(
            None, "--test-start", "--oot-start", help="First test dt_ref (YYYY-MM-DD)."
        ),
        test_end: Optional[str] = typer.Option(None, "--test-end", "--oot-end", help="Last test dt_ref (YYYY-MM-DD)."),
        reuse_abt: bool = typer.Option(
            False, "--reuse-abt", help="Train on the existing ABT instead of rebuilding it."
        ),
    ) -> None:
        """Build the ABT; tune by CV in train, choose on validation, calibrate, test once, refit on all
        labelled rows, register; quality gate and champion rule."""
        from ..ml.train import train
        from ..problems import get
        from ._context import writer

        s = writer(ctx, f"train {problem}")
        p = get(problem)
        if s.engine == "spark":  # engine dispatch: the lake's ABT, trained on the driver (olist_ml.spark.ml)
            from ..spark.ml import train_spark as train
        res = train(
            p,
            s,
            n_trials=trials,
            timeout=timeout,
            candidates=candidates,
            cv_folds=cv_folds,
            test_months=test_months,
            validation_months=validation_months,
            test_start=_date(test_start, "--test-start"),
            test_end=_date(test_end, "--test-end"),
            build_abt=not reuse_abt,
            progress=sys.stderr.isatty(),
        )
        for line in summary_lines(p, res, s.mlflow_uri):
            typer.echo(line)

    @app.command("predict")
    def predict_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias."),
        dt_ref: Optional[str] = typer.Option(None, "--dt-ref", help="Reference date (default: latest available)."),
        top: int = typer.Option(10, "--top", help="How many highest-score rows to print."),
    ) -> None:
        """Score the population at a reference date with models:/<problem>@champion into scores_<problem>."""
        from ..ml.scoring import predict
        from ..problems import get
        from ._context import writer

        s = writer(ctx, f"predict {problem}")
        p = get(problem)
        if s.engine == "spark":  # engine dispatch: mlflow.pyfunc.spark_udf over the lake (olist_ml.spark.ml)
            from ..spark.ml import predict_spark as predict
        r = predict(p, s, _date(dt_ref, "--dt-ref"), top_n=top)
        typer.echo(
            f"{r.problem}: scored {r.n_scored} rows at dt_ref {r.dt_ref} with {r.model_name} v{r.model_version} "
            f"(run {r.run_id}) -> {r.table} in {r.seconds:.1f}s"
        )
        typer.echo("score distribution: " + ", ".join(f"{k} {_fmt(v)}" for k, v in r.distribution.items()))
        if r.top:
            typer.echo(f"top {len(r.top)}:")
            for row in r.top:
                typer.echo("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items()))

    sapp = typer.Typer(
        help="The score history scores_<problem> (records: kept until deleted here).", no_args_is_help=True
    )
    app.add_typer(sapp, name="scores")

    @sapp.command("list")
    def scores_list_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias."),
        last: int = typer.Option(20, "--last", min=1, help="How many of the latest batches to show."),
    ) -> None:
        """The batches of the score history: dt_ref, model version, rows, scored_at, revised."""
        import duckdb

        from ..problems import get
        from ..warehouse import table_exists
        from ._context import settings_of

        s, p = settings_of(ctx), get(problem)
        if not s.warehouse.exists():
            raise MissingStepError(f"no warehouse at {s.warehouse}: run `olist-ml run` first")
        con = duckdb.connect(str(s.warehouse), read_only=True)
        try:
            if not table_exists(con, p.scores_table):
                raise MissingStepError(f"warehouse has no table {p.scores_table}: run `olist-ml predict {problem}`")
            have = {r[0] for r in con.execute(f"DESCRIBE {p.scores_table}").fetchall()}
            rev = "max(data_revised_at)" if "data_revised_at" in have else "NULL"
            rows = con.execute(
                f"SELECT CAST({p.time_column} AS DATE) AS dt_ref, model_version, count(*) AS n, max(scored_at), "
                f"{rev} FROM {p.scores_table} GROUP BY ALL ORDER BY 1 DESC, 4 DESC LIMIT ?",
                [last],
            ).fetchall()
        finally:
            con.close()
        typer.echo(f"{p.scores_table}: the {len(rows)} latest batches")
        for d, v, n, at, revised in rows:
            typer.echo(f"  {d}  v{v}  {n:>7,} rows  scored {at}" + (f"  data revised {revised}" if revised else ""))

    @sapp.command("delete")
    def scores_delete_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias."),
        dt_ref: Optional[str] = typer.Option(None, "--dt-ref", help="Only this scoring date."),
        before: Optional[str] = typer.Option(None, "--before", help="Only scoring dates before this one."),
        version: Optional[str] = typer.Option(None, "--version", help="Only this model version."),
        revised: bool = typer.Option(False, "--revised", help="Only batches computed from data revised since."),
        yes: bool = typer.Option(False, "--yes", help="Really delete (history cannot be recomputed)."),
    ) -> None:
        """Remove score history explicitly: the only way it is ever deleted."""
        from .. import records
        from ..problems import get
        from ..warehouse import session
        from ._context import writer

        if not (dt_ref or before or version or revised):
            raise InputError("scores delete needs a filter: --dt-ref, --before, --version or --revised")
        if not yes:
            raise InputError("scores delete removes what was predicted for good: add --yes to confirm")
        s = writer(ctx, f"scores delete {problem}")
        p = get(problem)
        tables = [p.scores_table] + (["seller_segments"] if p.name == "seller_segments" else [])
        with session(s) as con:
            for t in tables:
                n = records.delete(
                    con,
                    t,
                    dt_ref=_date(dt_ref, "--dt-ref"),
                    before=_date(before, "--before"),
                    version=version,
                    revised_only=revised,
                    time_column=p.time_column,
                )
                typer.echo(f"{t}: {n:,} rows deleted")

    @app.command("promote")
    def promote_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias."),
        version: str = typer.Option(..., "--version", help="Registered model version to promote."),
        reason: str = typer.Option(..., "--reason", help="Why (recorded on the model version)."),
        alias: str = typer.Option("champion", "--alias", help="Alias to move (champion or challenger)."),
    ) -> None:
        """Move an alias (default champion) to a model version by hand, recording the reason."""
        from ..ml.registry import promote
        from ..problems import get
        from ._context import writer

        check_alias(alias)
        s = writer(ctx, f"promote {problem}")
        p = get(problem)
        out = promote(s, p.name, version, reason, alias=alias)
        typer.echo(
            f"{out['model_name']}@{out['alias']}: v{out['previous'] or '-'} -> v{out['version']} ({out['reason']})"
        )

    @app.command("ui")
    def ui_cmd(
        ctx: typer.Context,
        port: int = typer.Option(5000, "--port", help="Port for the MLflow UI."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    ) -> None:
        """Start the MLflow UI on the local tracking store (Ctrl-C to stop)."""
        from ._context import settings_of

        s = settings_of(ctx)
        uri = s.mlflow_uri
        if uri.startswith(("http://", "https://")):
            typer.echo(f"tracking server {uri} serves its own UI: open it in a browser")
            return
        s.artifacts.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--default-artifact-root",
            s.artifacts.as_uri(),
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ]
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
