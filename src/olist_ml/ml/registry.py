"""Model registry: champion loading, the champion rule's bookkeeping, manual promotion."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import InputError, MissingStepError, UnknownNameError
from . import tracking

CHAMPION = "champion"
CHALLENGER = "challenger"
REJECTED = "rejected"  # registered below its quality gate: no alias, never promoted by the champion rule


@dataclass
class Champion:
    """A registered model version loaded for scoring. `model` is the fitted Pipeline inside the
    artefact (`olist_ml.ml.artefact`): olist-ml scores with it directly, so its scores are exactly
    those of the artefact's pyfunc `predict` without MLflow's per-call input checks."""

    model: Any  # the fitted sklearn Pipeline
    model_name: str
    version: str
    run_id: str
    alias: str
    kind: str  # "binary" | "cluster"
    feature_names: list[str]
    tags: dict
    pyfunc: Any = None  # the loaded mlflow.pyfunc model (signature, metadata)

    def _check(self, df: pd.DataFrame) -> None:
        missing = [c for c in self.feature_names if c not in df.columns]
        if missing:
            from olist_ml_model import missing_columns_message

            raise InputError(f"{self.model_name} v{self.version}: {missing_columns_message(missing)}")

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """P(class 1) per row (binary problems)."""
        self._check(df)
        return np.asarray(self.model.predict_proba(df))[:, 1]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Class / cluster label per row."""
        self._check(df)
        return np.asarray(self.model.predict(df))

    def score(self, df: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(df) if self.kind == "binary" else self.predict(df)


def _missing(settings: Settings, model_name: str, alias: str) -> MissingStepError:
    problem = model_name.replace("seller_", "") if model_name.startswith("seller_") else model_name
    return MissingStepError(
        f"no model '{model_name}' with alias @{alias} in the registry at {settings.model_registry_uri}: "
        f"run `olist-ml train {problem}` first"
    )


def alias_version(settings: Settings, model_name: str, alias: str = CHAMPION, *, client=None, strict: bool = False):
    """The ModelVersion behind `alias`, or None. `strict`: None only when the model or the alias does
    not exist; other registry errors (an unreadable store) are raised (the server reports them)."""
    from mlflow.exceptions import MlflowException

    c = client or tracking.client(settings)
    try:
        return c.get_model_version_by_alias(model_name, alias)
    except MlflowException as e:
        not_found = getattr(e, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
        if strict and not (not_found and "not found" in str(e)):
            raise
        return None


def load_version(settings: Settings, model_name: str, version: str | int, alias: str = "") -> Champion:
    c = tracking.client(settings)
    mv = c.get_model_version(model_name, str(version))
    return _wrap(*_load(settings, f"models:/{model_name}/{mv.version}"), model_name, mv, alias)


def load_champion(settings: Settings, model_name: str, alias: str = CHAMPION) -> Champion:
    """Load `models:/<model_name>@<alias>`; a one-line MissingStepError if there is none."""
    mv = alias_version(settings, model_name, alias)
    if mv is None:
        raise _missing(settings, model_name, alias)
    return _wrap(*_load(settings, f"models:/{model_name}@{alias}"), model_name, mv, alias)


def _load(settings: Settings, uri: str):
    """(fitted Pipeline, pyfunc model) at `uri`, from Settings' registry."""
    from . import artefact

    tracking.configure(settings)
    pm, model = artefact.load(uri)
    return model, pm


def _wrap(model, pm, model_name, mv, alias) -> Champion:
    cast = model.named_steps.get("cast") if hasattr(model, "named_steps") else None
    names = [str(x) for x in getattr(cast, "feature_names_in_", getattr(model, "feature_names_in_", []))]
    tags = dict(mv.tags or {})
    kind = tags.get("kind") or ("binary" if hasattr(model, "predict_proba") else "cluster")
    return Champion(
        model=model,
        model_name=model_name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        alias=alias,
        kind=kind,
        feature_names=names,
        tags=tags,
        pyfunc=pm,
    )


def register(settings: Settings, model_name: str, model_uri: str, run_id: str | None, tags: dict[str, str]):
    """A new version of `model_name` from the logged model `model_uri` (created on first use), through
    the client API: quiet, unlike `mlflow.register_model`'s "Successfully registered model" / "Created
    version" lines, which only `--verbose` (Settings.verbose) prints. Links the version to its logged
    model as `mlflow.register_model` does. Returns the ModelVersion."""
    import json
    import sys

    from mlflow.exceptions import MlflowException

    c = tracking.client(settings)
    try:
        c.create_registered_model(model_name)
        if settings.verbose:
            print(f"Successfully registered model '{model_name}'.", file=sys.stderr)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    model_id = model_uri[len("models:/") :] if model_uri.startswith("models:/m-") else None
    mv = c.create_model_version(model_name, model_uri, run_id=run_id or None, tags=tags, model_id=model_id)
    if settings.verbose:
        print(f"Created version '{mv.version}' of model '{model_name}'.", file=sys.stderr)
    if model_id:
        try:
            lm = c.get_logged_model(model_id)
            links = json.loads(lm.tags.get("mlflow.modelVersions", "[]"))
            links.append({"name": model_name, "version": str(mv.version)})
            c.set_logged_model_tags(model_id, {"mlflow.modelVersions": json.dumps(links)})
        except MlflowException:  # the link is informative only (e.g. a registry in another workspace)
            pass
    return mv


@dataclass
class Decision:
    """What the registry made of a newly logged model: its version, the champion rule's decision and
    reason, and the champion it was measured against (None: there was none)."""

    version: str
    decision: str  # CHAMPION | CHALLENGER | REJECTED
    reason: str
    previous: str | None


def register_and_decide(
    settings: Settings,
    model_name: str,
    model_uri: str,
    run_id: str,
    *,
    kind: str,
    candidate: str,
    tags: dict[str, str],
    decide,
) -> Decision:
    """The one path from a logged model to a registry decision, for every problem: register a version
    (tags `run_id` + `tags`), ask the problem's rule `decide(version, current_champion)` (the current
    champion's ModelVersion or None) for (decision, reason) and record it (`record_decision`)."""
    c = tracking.client(settings)
    mv = register(settings, model_name, model_uri, run_id, {"kind": kind, "candidate": candidate})
    version = str(mv.version)
    for k, v in {"run_id": run_id, **tags}.items():
        c.set_model_version_tag(model_name, version, k, v)
    current = alias_version(settings, model_name, CHAMPION)
    decision, reason = decide(version, current)
    record_decision(settings, model_name, version, decision, reason)
    return Decision(version, decision, reason, str(current.version) if current else None)


def set_version_tag(settings: Settings, model_name: str, version: str | int, key: str, value: str) -> None:
    tracking.client(settings).set_model_version_tag(model_name, str(version), key, value)


def champion_rule(
    new: float,
    old: float,
    *,
    label: str,
    champion_version: str | int,
    on: str,
    lower_is_better: bool = False,
    min_delta: float = 0.0,
) -> tuple[str, str]:
    """(decision, reason) of the champion rule: the newcomer takes `champion` only when its score
    beats the current champion's score on the same rows (`on`) by more than `min_delta`; else it is
    the `challenger`. Scores print with 4 decimals, 6 when they tie at 4."""
    nd = 4 if f"{new:.4f}" != f"{old:.4f}" else 6
    sign = -1 if lower_is_better else 1
    verb = "beats" if sign * (new - old) > min_delta else "does not beat"
    reason = f"{label} {new:.{nd}f} {verb} champion v{champion_version} {old:.{nd}f} on {on}"
    return (CHAMPION if verb == "beats" else CHALLENGER), reason


def record_decision(settings: Settings, model_name: str, version: str | int, decision: str, reason: str) -> None:
    """Point the `decision` alias (champion / challenger) at `version` (no alias for `rejected`); the
    reason goes on the version."""
    c = tracking.client(settings)
    if decision != REJECTED:
        c.set_registered_model_alias(model_name, decision, str(version))
    c.set_model_version_tag(model_name, str(version), "decision", decision)
    c.set_model_version_tag(model_name, str(version), "decision_reason", reason)
    c.update_model_version(model_name, str(version), description=f"[train] {decision}: {reason}")


def promote(settings: Settings, model_name: str, version: str | int, reason: str, alias: str = CHAMPION) -> dict:
    """Move `alias` to `version` by hand; the reason is recorded on the version (tags + description)."""
    from mlflow.exceptions import MlflowException

    if not reason or not reason.strip():
        raise UnknownNameError("promote needs a non-empty --reason")
    c = tracking.client(settings)
    try:
        c.get_registered_model(model_name)
    except MlflowException:
        raise _missing(settings, model_name, alias) from None
    try:
        mv = c.get_model_version(model_name, str(version))
    except MlflowException:
        versions = sorted(int(v.version) for v in c.search_model_versions(f"name = '{model_name}'"))
        raise UnknownNameError(
            f"model '{model_name}' has no version {version}: versions are {', '.join(map(str, versions)) or 'none'}"
        ) from None
    previous = alias_version(settings, model_name, alias)
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    c.set_registered_model_alias(model_name, alias, mv.version)
    c.set_model_version_tag(model_name, mv.version, f"{alias}_reason", reason)
    c.set_model_version_tag(model_name, mv.version, f"{alias}_since", when)
    c.set_model_version_tag(model_name, mv.version, f"{alias}_set_by", "manual promote")
    desc = (mv.description or "").strip()
    line = f"[{when}] manual: alias @{alias} set (previously v{previous.version if previous else '-'}): {reason}"
    c.update_model_version(model_name, mv.version, description=(desc + "\n" + line).strip())
    return {
        "model_name": model_name,
        "alias": alias,
        "version": str(mv.version),
        "previous": str(previous.version) if previous else None,
        "reason": reason,
    }
