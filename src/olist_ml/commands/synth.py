"""CLI commands for the synthetic data generator."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        ctx: typer.Context,
        out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <home>/synthetic)."),
        seed: int = typer.Option(42, "--seed", help="Random seed: same seed + scale -> identical files."),
        scale: float = typer.Option(1.0, "--scale", help="Size relative to the real Olist data (1.0 ~ 100k orders)."),
        gzip: bool = typer.Option(False, "--gzip", help="Write .csv.gz files instead of plain .csv."),
        compare_with: Optional[Path] = typer.Option(
            None,
            "--compare-with",
            help="After generating, print real-vs-synthetic statistics against this Olist folder.",
        ),
    ) -> None:
        """Generate SYNTHETIC Olist CSVs (exact Kaggle schema, seeded, calibrated on the real data)."""
        from ..synth import generate
        from ._context import settings_of, writer

        settings = settings_of(ctx)
        out_dir = out or settings.synthetic_dir
        if out_dir.absolute().is_relative_to(settings.home.absolute()):
            writer(ctx, "synth")
        rows = generate(out_dir, seed=seed, scale=scale, gzip=gzip, progress=True)
        typer.echo(f"SYNTHETIC Olist data (not real customers or sellers): seed={seed} scale={scale} -> {out_dir}")
        width = max(len(k) for k in rows)
        for name, n in rows.items():
            typer.echo(f"  {name:<{width}}  {n:>10,}")
        if compare_with is not None:
            from ..synth.calibration import calibration_table, to_markdown

            typer.echo("")
            typer.echo(to_markdown(calibration_table(compare_with, out_dir)))
