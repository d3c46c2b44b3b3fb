"""CLI commands for the 'data' area (thin wiring: parse options, call step functions, print)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_cmd(
        ctx: typer.Context,
        source: Path = typer.Argument(..., help="Folder of Olist CSVs (.csv or .csv.gz) or the Kaggle zip."),
        strict: bool = typer.Option(
            False, "--strict", help="Fail (exit 2, warehouse unchanged) if any row is quarantined."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    ) -> None:
        """Validate the raw Olist CSVs and load them into the warehouse (stg_* tables), atomically."""
        from rich.console import Console

        from ..ingest import ingest
        from ._context import writer

        settings = writer(ctx, f"ingest {source}")
        console = Console(stderr=False)
        if settings.engine == "spark":  # engine dispatch: stg_* lake tables written by Spark
            from ..spark.ingest import ingest_spark as ingest
        report = ingest(source, settings, strict=strict, progress=progress and not as_json and console.is_terminal)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
            return
        _print_report(console, report)

    @app.command("summary")
    def summary_cmd(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Rows and date range of each stg_* table in the warehouse."""
        from rich.console import Console
        from rich.table import Table

        from ..ingest import last_run, summary
        from ._context import settings_of

        settings = settings_of(ctx)
        rows = summary(settings)
        derived, kept = derived_status(settings)
        if as_json:
            typer.echo(json.dumps({"stg": rows, "derived": derived, "records": kept}, indent=2, default=str))
            return
        t = Table(title=f"warehouse {settings.warehouse}")
        for col, just in (
            ("table", "left"),
            ("rows", "right"),
            ("date column", "left"),
            ("from", "left"),
            ("to", "left"),
            ("quarantined", "right"),
        ):
            t.add_column(col, justify=just)
        for r in rows:
            t.add_row(
                r["table"],
                f"{r['rows']:,}",
                r["date_column"] or "",
                str(r["min"] or ""),
                str(r["max"] or ""),
                str(r["quarantined"]),
            )
        console = Console()
        console.print(t)
        run = last_run(settings)
        if run:
            console.print(
                f"last ingest {run['finished_at']} from {run['source']} (sha256 {str(run['content_hash'])[:12]})"
            )
        if derived:
            d = Table(
                title="derived tables (lineage: recomputed by the next features build / train / predict / run "
                "when stale)"
            )
            for col, just in (("table", "left"), ("dt_refs", "right"), ("stale", "right"), ("status", "left")):
                d.add_column(col, justify=just)
            for r in derived:
                d.add_row(
                    r["table"],
                    "whole" if r["parts"] is None else f"{r['parts']:,}",
                    str(r["stale"]),
                    r["status"],
                    style=None if r["status"] == "current" else "yellow",
                )
            console.print(d)
        if kept:
            k = Table(title="score history (records: kept for good; `revised`: dt_refs scored from data revised since)")
            for col, just in (
                ("table", "left"),
                ("dt_refs", "right"),
                ("batches", "right"),
                ("rows", "right"),
                ("from", "left"),
                ("to", "left"),
                ("revised", "right"),
            ):
                k.add_column(col, justify=just)
            for r in kept:
                k.add_row(
                    r["table"],
                    f"{r['dt_refs']:,}",
                    f"{r['batches']:,}",
                    f"{r['rows']:,}",
                    str(r["first"] or ""),
                    str(r["last"] or ""),
                    str(r["revised"]),
                    style="yellow" if r["revised"] else None,
                )
            console.print(k)


def derived_status(settings) -> tuple[list[dict], list[dict]]:
    """(`olist_ml.pipeline.derived_status`, `records_status`) on a read-only connection (readers never
    take the writer lock)."""
    import duckdb

    from ..pipeline import derived_status as status
    from ..pipeline import records_status

    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return status(con, settings), records_status(con)
    finally:
        con.close()


def _print_report(console, report) -> None:
    from rich.table import Table

    t = Table(title=f"ingest {report.source} ({report.source_kind})")
    for col, just in (("table", "left"), ("loaded", "right"), ("quarantined", "right"), ("warnings", "right")):
        t.add_column(col, justify=just, no_wrap=True)
    for tr in report.tables:
        t.add_row(
            tr.stg,
            f"{tr.loaded:,}",
            str(tr.quarantined),
            str(len(tr.warnings)),
            style="red" if tr.quarantined else None,
        )
    for stg in report.skipped:
        t.add_row(f"{stg} (optional, not found)", "-", "-", "-", style="dim")
    console.print(t)
    for w in report.warnings:
        console.print(f"[yellow]warning[/yellow] {w}", highlight=False)
    if report.kept_tables:
        console.print(
            f"kept {len(report.kept_tables)} other table(s) from the previous warehouse: "
            f"{', '.join(report.kept_tables[:8])}{' ...' if len(report.kept_tables) > 8 else ''}"
        )
    q = report.quarantined
    console.print(
        f"{'[red]' if q else '[green]'}{sum(t.loaded for t in report.tables):,} rows loaded, {q} quarantined"
        f"{' (see table ingest_quarantine)' if q else ''}{'[/red]' if q else '[/green]'} -> {report.warehouse} "
        f"in {report.elapsed_s:.1f}s (sources sha256 {report.content_hash[:12]})",
        highlight=False,
    )
