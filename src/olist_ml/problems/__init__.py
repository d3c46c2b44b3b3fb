"""The problems declared on the shared ML machinery (`olist_ml.ml`).

Each module below declares one `olist_ml.ml.problem.Problem` at module level (conventionally
named `PROBLEM`); the registry collects them by name. Aliases come from `Problem.aliases`.
"""

from __future__ import annotations

import importlib

from ..errors import UnknownNameError
from ..ml.problem import Problem

# modules that declare problems; one that does not exist (yet) is skipped
_MODULES = ("churn", "order_delay", "activation", "segments")


def _collect() -> dict[str, Problem]:
    found: dict[str, Problem] = {}
    for mod in _MODULES:
        full = f"{__name__}.{mod}"
        try:
            m = importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name == full:
                continue
            raise
        declared = [v for v in vars(m).values() if isinstance(v, Problem)]
        if isinstance(getattr(m, "PROBLEM", None), Problem):
            declared = [m.PROBLEM]
        for p in declared:
            found.setdefault(p.name, p)
    return found


REGISTRY: dict[str, Problem] = _collect()


def get(name_or_alias: str) -> Problem:
    """A problem by name (`seller_churn`) or alias (`churn`); UnknownNameError lists the valid ones."""
    key = (name_or_alias or "").strip().lower()
    if key in REGISTRY:
        return REGISTRY[key]
    for p in REGISTRY.values():
        if key in p.aliases:
            return p
    valid = ", ".join(f"{p.name} ({'/'.join(p.aliases)})" if p.aliases else p.name for p in REGISTRY.values())
    raise UnknownNameError(f"unknown problem '{name_or_alias}': choose from {valid}")


def names() -> list[str]:
    return list(REGISTRY)
