"""CLI commands for the 'data' area (thin wiring: parse options, call step functions, print)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
