"""CLI commands for the whole pipeline: `run` and `problems`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ._options import Candidates, Timeout, Trials


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        ctx: typer.Context,
        data: Optional[Path] = typer.Option(
            None, "--data", help="Folder or Kaggle zip of the Olist CSVs. Without it: seeded SYNTHETIC data."
        ),
        problem: Optional[list[str]] = typer.Option(
            None, "--problem", "-p", help="Only these problems (repeatable; default: all four)."
        ),
        seed: int = typer.Option(42, "--seed", help="Synthetic data seed."),
        scale: float = typer.Option(0.3, "--scale", help="Synthetic data scale (1 = about the real size)."),
        cadence: str = typer.Option("daily", "--cadence", help="Feature-store cadence: daily, weekly, monthly."),
        trials: Trials = None,
        timeout: Timeout = None,
        candidates: Candidates = None,
        force_train: bool = typer.Option(
            False,
            "--retrain",
            "--force-train",
            help="Retrain today whatever the retrain policy says (<problem>.retrain_every_days, monitoring).",
        ),
    ) -> None:
        """The whole pipeline, incremental: (synth) -> ingest -> features -> ABT -> train -> champion -> scores."""
        from ..pipeline import console, run_pipeline
        from ._context import writer

        if data is not None and not data.exists():
            from ..errors import InputError

            raise InputError(f"--data {data}: no such folder or zip")
        s = writer(ctx, "run")
        budget = {
            k: v for k, v in {"n_trials": trials, "timeout": timeout, "candidates": candidates}.items() if v is not None
        }
        rep = run_pipeline(
            s,
            data=data,
            problems=problem or None,
            seed=seed,
            scale=scale,
            cadence=cadence,
            force_train=force_train,
            progress=sys.stderr.isatty(),
            **budget,
        )
        total = sum(r.seconds for r in rep.steps)
        failed = [r.step for r in rep.steps if r.status == "failed"]
        kind = "SYNTHETIC data" if rep.synthetic else f"data from {rep.source}"
        where = f"lake {s.lake_uri}" if s.engine == "spark" else f"warehouse {s.warehouse}"
        console.print(f"[bold]pipeline finished in {total:.1f}s on {kind}[/]; {where}, MLflow {s.mlflow_uri}")
        console.print("next: `olist-ml problems`, `olist-ml report churn`, `olist-ml serve`, `olist-ml ui`")
        if failed:
            console.print(f"[red]failed steps: {', '.join(failed)}[/]")
            raise typer.Exit(1)

    @app.command("problems")
    def problems_cmd(ctx: typer.Context) -> None:
        """List the problems with their status: ABT, trained runs, champion/challenger, last scored."""
        from rich.console import Console
        from rich.table import Table

        from ..pipeline import problems_status
        from ._context import settings_of

        rows = problems_status(settings_of(ctx))
        t = Table(title="olist-ml problems")
        for c in (
            "problem",
            "aliases",
            "kind",
            "abt_rows",
            "trained_runs",
            "champion",
            "challenger",
            "last_scored",
            "scored_rows",
        ):
            t.add_column(c)
        for r in rows:
            t.add_row(
                *[
                    ("-" if r[c] is None else str(r[c]))
                    for c in (
                        "problem",
                        "aliases",
                        "kind",
                        "abt_rows",
                        "trained_runs",
                        "champion",
                        "challenger",
                        "last_scored",
                        "scored_rows",
                    )
                ]
            )
        Console(width=None if sys.stdout.isatty() else 160).print(t)
