"""SQL quoting and one-line messages, shared by the ingest modules (and the Spark ingest)."""

from __future__ import annotations


def q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """Quote an SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def first_line(msg: str) -> str:
    for line in str(msg).splitlines():
        if line.strip():
            return line.strip()
    return str(msg).strip()
