"""CLI commands for the 'serving' area: `serve`, `monitor`, `report` (thin wiring)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _problem_names(values: list[str] | None) -> tuple[str, ...]:
    from ..serving.state import CHURN, DELAY

    if not values:
        return (CHURN, DELAY)
    aliases = {"churn": CHURN, "delay": DELAY, CHURN: CHURN, DELAY: DELAY}
    out = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part not in aliases:
                from ..errors import UnknownNameError

                raise UnknownNameError(f"--problem {part}: the API serves churn (seller_churn) and delay (order_delay)")
            out.append(aliases[part])
    return tuple(dict.fromkeys(out))


ALERT_EXIT = 3  # `olist-ml monitor`: realised performance below the quality gate


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default loopback only)."),
        port: int = typer.Option(8000, "--port", min=1, max=65535),
        poll_seconds: float = typer.Option(
            5.0,
            "--poll-seconds",
            min=0.0,
            help="How often to check the registry's champion alias and the warehouse for changes (0: never).",
        ),
        problem: Optional[list[str]] = typer.Option(
            None, "--problem", help="Problems to serve: churn, delay (repeat or comma-separate; default both)."
        ),
        log_level: str = typer.Option("info", "--log-level"),
        max_body_bytes: Optional[int] = typer.Option(
            None,
            "--max-body-bytes",
            min=1,
            envvar="OLIST_ML_API_MAX_BODY_BYTES",
            show_default="10485760 (10 MiB)",
            help="Largest request body in bytes: over it, 413 before the body is read.",
        ),
        max_batch: Optional[int] = typer.Option(
            None,
            "--max-batch",
            min=1,
            envvar="OLIST_ML_API_MAX_BATCH",
            show_default="10000",
            help="Most seller ids / orders in one batch request: over it, 422.",
        ),
    ) -> None:
        """Serve champion scores over HTTP (FastAPI + uvicorn; docs at /docs; token from OLIST_ML_API_TOKEN).

        Binding beyond loopback (e.g. --host 0.0.0.0) without OLIST_ML_API_TOKEN prints a warning."""
        from ..serving.api import serve
        from ._context import settings_of

        serve(
            settings_of(ctx),
            host=host,
            port=port,
            poll_seconds=poll_seconds,
            problems=_problem_names(problem),
            log_level=log_level,
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
        )

    @app.command("actions")
    def actions_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="churn (sellers by expected GMV at risk) or delay (open orders)."),
        dt_ref: Optional[str] = typer.Option(None, "--dt-ref", help="Scoring date (default: the latest scored)."),
        top: int = typer.Option(20, "--top", min=0, help="How many rows to print (the table keeps them all)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write the whole list to FILE.csv / .parquet."),
    ) -> None:
        """Ranked action list from the current scores at a date -> actions_<problem> (+ --out).

        churn: active sellers by expected GMV at risk = P(churn) x expected GMV over the horizon if
        retained, with segment and top reasons; delay: orders open at the date by P(late), with days
        left, carrier status and reasons."""
        from ..serving import actions
        from ._context import writer
        from .ml import _date

        s = writer(ctx, f"actions {problem}")
        al = actions.build(problem, s, _date(dt_ref, "--dt-ref"), out)
        typer.echo(
            f"{al.problem}: {len(al.rows)} rows at {al.dt_ref} (model v{al.model_version}) -> {al.table}"
            + (f", {al.exported}" if al.exported else "")
        )
        for line in actions.lines(al, top):
            typer.echo(line)

    @app.command("monitor")
    def monitor_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias (churn, delay, activation...)."),
    ) -> None:
        """Drift (PSI of every feature and of the score), realised performance of past scores as their labels
        mature, served predictions; exit 3 when the champion's realised performance is below its quality gate."""
        import pandas as pd
        from rich.console import Console
        from rich.table import Table

        from ..serving.monitor import monitor
        from ._context import writer

        res = monitor(problem, writer(ctx, f"monitor {problem}"))
        con = Console()
        t = Table(
            title=f"drift of {res.problem} (champion v{res.model_version}: reference "
            f"{res.reference_start}..{res.reference_end} vs scored {res.current_dt_ref})"
        )
        for c in ("feature", "kind", "psi", "flag"):
            t.add_column(c)
        for r in res.drift.sort_values("psi", ascending=False, na_position="last").itertuples():
            t.add_row(r.feature, r.kind, f"{r.psi:.4f}", "DRIFT" if r.flag else "")
        con.print(t)
        perf = res.performance[res.performance["source"] == "batch"] if len(res.performance) else res.performance
        if len(perf):
            p = Table(title=f"realised performance of past scores ({res.problem}; labels as they mature)")
            for c in ("dt_ref", "version", "scored", "matured", "base_rate", "roc_auc (95 % CI)", "baseline", "gate"):
                p.add_column(c)
            for r in perf.sort_values("dt_ref").tail(30).itertuples():
                auc = (
                    f"{r.roc_auc:.3f} ({r.roc_auc_ci_low:.3f}-{r.roc_auc_ci_high:.3f})"
                    if r.roc_auc == r.roc_auc
                    else "-"
                )
                base = f"{r.baseline_roc_auc:.3f}" if r.baseline_roc_auc == r.baseline_roc_auc else "-"
                rate = f"{r.base_rate:.3f}" if r.base_rate == r.base_rate else "-"
                p.add_row(
                    str(pd.Timestamp(r.dt_ref).date()),
                    f"v{r.model_version}",
                    str(r.n_scored),
                    str(r.n),
                    rate,
                    auc,
                    base,
                    "BELOW" if r.below_gate else ("final" if r.final else ""),
                )
            con.print(p)
            con.print(f"realised performance: {res.realised_line}")
        else:
            con.print("realised performance: no past scores yet")
        for n in res.notes:
            con.print(n)
        if res.served:
            sv = res.served
            line = f"served: {sv['rows']:,} rows in {sv['requests']:,} requests ({sv['first']}..{sv['last']})"
            if "served_vs_batch" in sv:
                c = sv["served_vs_batch"]
                line += f"; vs batch: {c['n_compared']:,} rows compared, max |diff| {c['max_abs_diff']:.2e}"
            if "psi_vs_batch" in sv:
                line += f"; score PSI vs the latest batch {sv['psi_vs_batch']['score']:.3f}"
            con.print(line)
        con.print(
            f"{res.n_flagged} of {len(res.drift)} columns drifted (PSI > 0.2); stored in monitor_drift / "
            f"monitor_performance, MLflow run {res.mlflow_run_id}"
        )
        for a in res.alerts:
            con.print(f"[bold red]ALERT[/] {a}")
        if res.alerts:
            raise typer.Exit(ALERT_EXIT)

    @app.command("report")
    def report_cmd(
        ctx: typer.Context,
        problem: str = typer.Argument(..., help="Problem name or alias."),
        out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default <home>/reports/<problem>.html)."),
    ) -> None:
        """Write a self-contained HTML model report (champion vs challengers, plots, features, drift)."""
        from ..home import check_writable
        from ..serving.report import report
        from ._context import settings_of

        s = settings_of(ctx)
        if out is None or out.absolute().is_relative_to(s.home.absolute()):
            check_writable(s)  # the report is written into the home
        path = report(problem, s, out=out)
        typer.echo(str(path))
