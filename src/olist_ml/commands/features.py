"""CLI commands for the 'features' area (thin wiring: parse options, call step functions, print)."""

from __future__ import annotations

import sys
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    fapp = typer.Typer(help="Point-in-time seller feature store (fs_seller_* tables).", no_args_is_help=True)
    app.add_typer(fapp, name="features")

    @fapp.command("build")
    def build_cmd(
        ctx: typer.Context,
        start: Optional[str] = typer.Option(
            None, "--start", help="First dt_ref (YYYY-MM-DD); default: first purchase month."
        ),
        end: Optional[str] = typer.Option(None, "--end", help="Last dt_ref (YYYY-MM-DD); default: observed data end."),
        cadence: str = typer.Option("daily", "--cadence", help="daily | weekly (Mondays) | monthly (1st)."),
        table: Optional[list[str]] = typer.Option(None, "--table", help="Only this table (repeatable)."),
        full: bool = typer.Option(
            False, "--full", help="Recompute every dt_ref of the range (default: only missing ones)."
        ),
        engine: Optional[str] = typer.Option(None, "--engine", help="duckdb (default) or spark."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ) -> None:
        """Backfill the feature tables for every dt_ref in [--start, --end]."""
        from rich.console import Console
        from rich.table import Table

        from ..features import build
        from ._context import writer

        settings = writer(ctx, "features build").with_(engine=engine)
        rep = build(
            settings, start=start, end=end, cadence=cadence, tables=table or None, full=full, progress=not no_progress
        )
        t = Table(title=f"features {rep.cadence} {rep.start}..{rep.end} on {rep.engine} in {rep.seconds:.1f}s")
        for c in ("table", "dt_refs built", "of which stale", "already current", "rows", "seconds"):
            t.add_column(c, justify="left" if c == "table" else "right", no_wrap=c == "table")
        for tb in rep.tables:
            t.add_row(tb.table, str(tb.dt_refs), str(tb.stale), str(tb.skipped), f"{tb.rows:,}", f"{tb.seconds:.2f}")
        console = Console(width=None if sys.stdout.isatty() else 120)
        console.print(t)
        for line in stale_lines(rep):
            console.print(line)

    @fapp.command("list")
    def list_cmd(
        ctx: typer.Context,
        table: Optional[str] = typer.Option(None, "--table", help="Only this table."),
    ) -> None:
        """Print the feature catalog: every column with its meaning, window and unit."""
        from rich.console import Console
        from rich.table import Table

        from ..features import catalog, resolve_tables
        from ._context import settings_of

        settings = settings_of(ctx)
        name = resolve_tables(table)[0] if table else None
        docs = catalog(settings.feature_windows, table=name)
        t = Table(title=f"feature catalog ({len(docs)} columns)")
        for c in ("table", "feature", "window", "unit", "description"):
            t.add_column(c)
        for d in docs:
            t.add_row(
                d.table, d.name, f"{d.window_days}d" if d.window_days else "lifetime/point", d.unit, d.description
            )
        Console(width=200).print(t)


def stale_lines(rep) -> list[str]:
    """One line per feature table that recomputed or dropped dt_refs because their inputs changed."""
    out = []
    for tb in rep.tables:
        if tb.stale or tb.dropped:
            dropped = f", {tb.dropped} stale dt_ref(s) outside the range removed" if tb.dropped else ""
            out.append(f"{tb.table}: {tb.stale} dt_ref(s) recomputed ({tb.reason}){dropped}")
    return out
