"""The Settings a command runs with, read from the Typer context that `olist_ml.cli` fills.

Here, not in cli.py, so that the command modules never import the module that imports them
(cli -> commands, never back)."""

from __future__ import annotations

import typer

from ..config import Settings


def settings_of(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings.from_env()


def writer(ctx: typer.Context, command: str) -> Settings:
    """The settings of a command that WRITES the home, holding the home's writer lock until the command
    ends (`olist_ml.home.writer_lock`; `--wait` waits for another writer instead of failing)."""
    from ..home import writer_lock

    root = ctx.find_root()
    s = settings_of(ctx)
    root.with_resource(writer_lock(s, command, wait=bool(root.meta.get("olist_ml.wait"))))
    return s
