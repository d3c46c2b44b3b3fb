"""Options shared by several commands, declared once, validated once (a bad value is one line, exit 2)."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer


def _candidates(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise typer.BadParameter(
            "is empty: give a comma list of candidates, e.g. logreg,lightgbm "
            "(or leave the option out for every candidate of the problem)"
        )
    return ",".join(names)


Trials = Annotated[
    Optional[int],
    typer.Option(
        "--trials",
        envvar="OLIST_ML_TRIALS",
        min=0,
        help="Optuna trials per candidate besides the hand-picked defaults (0 = defaults only).",
    ),
]
Timeout = Annotated[
    Optional[float],
    typer.Option(
        "--timeout", envvar="OLIST_ML_TRIAL_TIMEOUT", min=0.0, help="Tuning time budget per candidate, seconds."
    ),
]
Candidates = Annotated[
    Optional[str],
    typer.Option(
        "--candidates",
        envvar="OLIST_ML_CANDIDATES",
        callback=_candidates,
        help="Comma list: logreg,random_forest,lightgbm,xgboost; hazard_glm for churn "
        "(default: every candidate of the problem).",
    ),
]

# MLflow's rule for registered-model aliases (mlflow.utils.validation): letters, digits, '_' and '-',
# at most 255 characters; 'latest' and version-like names ('v3') are reserved.
_ALIAS = re.compile(r"^[\w\-]{1,255}$")


def check_alias(alias: str) -> str:
    from ..errors import InputError

    if not _ALIAS.match(alias or "") or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise InputError(
            f"--alias {alias!r}: an alias is 1-255 letters, digits, '_' or '-', and not 'latest' "
            "or a version name like 'v3' (MLflow's rule)"
        )
    return alias
