"""`olist-ml` command line: thin wiring over the pure step functions.

Each area registers its commands from `olist_ml.commands.<area>`; this module only builds
the Typer app, the global options (-> one `Settings`), and turns user errors into one line
on stderr with a non-zero exit code.
"""

from __future__ import annotations

import os
import signal
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
    help="Olist marketplace ML: ingest -> feature store -> ABT -> MLflow training -> champion "
    "-> scoring/serving/monitoring.",
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
    home: Optional[Path] = typer.Option(
        None, "--home", help="Working folder (env OLIST_ML_HOME, default ./.olist_ml)."
    ),
    warehouse: Optional[Path] = typer.Option(
        None, "--warehouse", help="DuckDB warehouse file (env OLIST_ML_WAREHOUSE)."
    ),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default sqlite under --home)."
    ),
    engine: Optional[str] = typer.Option(
        None,
        "--engine",
        help="duckdb (default) or spark (env OLIST_ML_ENGINE): spark keeps every table in the lake (--lake).",
    ),
    lake: Optional[str] = typer.Option(
        None,
        "--lake",
        help="Spark engine's table root: a URI (s3a://, abfss://, "
        "dbfs:/, file://) or folder (env OLIST_ML_LAKE; "
        "default <home>/lake).",
    ),
    registry_uri: Optional[str] = typer.Option(
        None, "--registry-uri", help="MLflow model registry URI (env MLFLOW_REGISTRY_URI; default the tracking URI)."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="When another olist-ml process writes the home, wait for it instead of exiting (code 2)."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Show MLflow's own output (run URLs, registry notices)."),
    sets: Optional[list[str]] = typer.Option(
        None,
        "--set",
        help="A problem setting, section.field=value (repeatable), e.g. churn.horizon_days=30 "
        "(env OLIST_ML_CHURN_HORIZON_DAYS; see docs/INTERFACES.md#settings).",
    ),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True),
) -> None:
    from .home import check_paths

    ctx.obj = Settings.from_env(
        sets=sets,
        home=home,
        warehouse_path=warehouse,
        tracking_uri=tracking_uri,
        engine=engine.strip().lower() if engine else None,
        registry_uri=registry_uri,
        verbose=verbose or None,
        spark_dir=lake,
    )
    if ctx.obj.engine not in ("duckdb", "spark"):
        from .errors import UnknownNameError

        raise UnknownNameError(f"unknown engine {ctx.obj.engine!r}: valid engines are duckdb, spark")
    if ctx.obj.engine == "spark":  # PySpark is an extra: say how to install it before doing anything
        from .spark.session import require_pyspark

        require_pyspark()
    ctx.meta["olist_ml.wait"] = wait
    check_paths(ctx.obj)


def _register_all() -> None:
    from .commands import REGISTRY

    for register in REGISTRY:
        register(app)


_register_all()


def _terminate(signum, frame):
    raise KeyboardInterrupt  # unwind: transactions roll back, MLflow runs end KILLED, the lock is released


def main(argv: list[str] | None = None) -> int:
    from .home import environment_fault, is_environment_error

    old = signal.signal(signal.SIGTERM, _terminate)
    try:
        rc = app(args=argv, standalone_mode=False)
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
    except Exception as e:  # click usage errors, machine faults
        from typer._click.exceptions import ClickException  # typer >= 0.29 vendors its own click

        if isinstance(e, ClickException):  # a usage error (bad option value, unknown option): one line too
            where = (
                f" (see `olist-ml {e.ctx.command_path.split(' ', 1)[-1]} --help`)" if getattr(e, "ctx", None) else ""
            )
            typer.secho(f"error: {e.format_message()}{where}", err=True, fg=typer.colors.RED)
            return e.exit_code
        if is_environment_error(e):
            fault = environment_fault(e)
            typer.secho(f"error: {fault}", err=True, fg=typer.colors.RED)
            return fault.exit_code
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
