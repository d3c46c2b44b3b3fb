"""CLI commands for the synthetic data generator."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
