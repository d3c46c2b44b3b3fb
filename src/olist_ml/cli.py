"""`olist-ml` command line: thin wiring over the pure step functions.

Each area registers its commands from `olist_ml.commands.<area>`; this module only builds
the Typer app, the global options (-> one `Settings`), and turns user errors into one line
on stderr with a non-zero exit code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .config import Settings
from .errors import OlistMLError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

app = typer.Typer(
    name="olist-ml",
    help="Olist marketplace ML: ingest -> feature store -> ABT -> MLflow training -> champion -> scoring/serving/monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"olist-ml {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    home: Optional[Path] = typer.Option(None, "--home", help="Working folder (env OLIST_ML_HOME, default ./.olist_ml)."),
    warehouse: Optional[Path] = typer.Option(None, "--warehouse", help="DuckDB warehouse file (env OLIST_ML_WAREHOUSE)."),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default sqlite under --home)."
    ),
    engine: Optional[str] = typer.Option(None, "--engine", help="Feature engine: duckdb (default) or spark."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True),
) -> None:
    ctx.obj = Settings.from_env(home=home, warehouse_path=warehouse, tracking_uri=tracking_uri, engine=engine)


def settings_of(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings.from_env()


def _register_all() -> None:
    from .commands import REGISTRY

    for register in REGISTRY:
        register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=False)
    except OlistMLError as e:
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.secho("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        return 130
    except Exception as e:  # click usage errors and friends
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
