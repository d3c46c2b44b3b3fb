"""Reasons for binary predictions, on the project side (the portable part: `olist_ml_model.explain`).

* `explainer_for(pipeline, frame, problem, settings)`: the `Explainer` logged with a model (training
  references and medians from the ABT, sentences from the feature catalog);
* `explain(champion, frame)`: the `Explanation` of some rows by a loaded champion (the explainer logged
  with it; an unfitted one for models registered before reasons existed);
* `reason_columns(champion, frame, k)`: the columns `olist-ml predict` adds to `scores_<problem>`:
  `reason_1..k` (feature names, largest |contribution| first) and `reasons` (JSON: the top-k reasons,
  each {feature, value, reference, contribution, text});
* `importance(explanation)`: global importance, mean |contribution| per original feature.

The sentences quote the feature catalog's units (`olist_ml.features.catalog`): "no sale for 38 days;
sellers median 6 days", "GMV R$ 1,234 in the last 180 days; sellers median R$ 310".
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from olist_ml_model.explain import Explainer, Explanation, explain_json

from ..config import Settings

__all__ = ["Explainer", "Explanation", "explain", "explainer_for", "feature_docs", "importance", "reason_columns"]

SCORE_REASONS = 3  # reasons per row in scores_<problem>

# sentences of a few features, by catalog key ({value} is formatted in the feature's unit)
TEMPLATES = {
    "days_since_last_sale": "no sale for {value}",
    "days_since_first_sale": "selling for {value}",
    "horizon_days_left": "{value} left in the no-sale window",
    "days_left": "{value} left to the promised date",
    "days_in_flight": "in flight for {value}",
    "n_orders": "{value} in the last {w} days",
    "gmv": "GMV {value} in the last {w} days",
    "n_sale_days": "sold on {value} in the last {w} days",
    "pct_orders_late": "{value} of orders late in the last {w} days",
}
_POPULATION = {"seller_id": "sellers", "order_id": "orders", "mql_id": "deals"}


def _unit_guess(name: str) -> str:
    if "_over_" in name or "ratio" in name or "accel" in name or "hhi" in name:
        return "ratio"
    if name.startswith(("pct_", "share_")) or "_share" in name:
        return "share"
    if name.startswith("p_"):
        return "probability"
    if "days" in name or name.endswith("_gap"):
        return "days"
    if name.startswith("n_orders"):
        return "orders"
    if "gmv" in name or "value" in name or "price" in name or "freight" in name:
        return "BRL"
    if name.startswith("n_"):
        return ""
    return ""


def _label(base: str, w: int | None) -> str:
    words = base
    for a, b in (("pct_", "share of "), ("avg_", "average "), ("n_", "number of "), ("gmv", "GMV")):
        if words.startswith(a):
            words = b + words[len(a) :]
    words = words.replace("_", " ")
    return f"{words} (last {w} days)" if w else words


def feature_docs(features: list[str], windows: tuple[int, ...] | None = None) -> dict[str, dict]:
    """feature -> {"label", "unit", "template"?}: catalog columns by their catalog entry, other ABT columns
    (the problems' own: horizon_days_left, days_left, ...) by their name."""
    from ..errors import UnknownNameError
    from ..features.catalog import column_doc

    out: dict[str, dict] = {}
    for f in features:
        m = re.match(r"^(.*)_(\d+)d$", f)
        base, w = (m.group(1), int(m.group(2))) if m else (f, None)
        try:
            unit = column_doc(f, windows).unit
        except UnknownNameError:
            unit = _unit_guess(f)
        entry = {"label": _label(base, w), "unit": unit}
        tmpl = TEMPLATES.get(base)  # a catalog entry's key is its name without the window suffix
        if tmpl and "{w}" in tmpl:
            tmpl = tmpl.replace("{w}", str(w)) if w else None
        if tmpl:
            entry["template"] = tmpl
        out[f] = entry
    return out


def population_of(problem) -> str:
    """What one row of the problem is, for the sentences ("sellers median 6 days")."""
    keys = [k for k in getattr(problem, "key_columns", ()) if k != getattr(problem, "time_column", None)]
    return _POPULATION.get(keys[-1] if keys else "", "training rows")


def explainer_for(pipeline, frame: pd.DataFrame, problem, settings: Settings | None = None) -> Explainer:
    """The explainer logged with a binary model: references and medians over (a sample of) `frame`."""
    from olist_ml_model.pyfunc import ChampionModel  # noqa: F401  (the wrapper that carries it)

    from .artefact import features_of

    windows = tuple((settings or Settings()).feature_windows)
    docs = feature_docs(features_of(pipeline), windows)
    seed = getattr(settings, "seed", 0) if settings is not None else 0
    return Explainer(docs, population_of(problem)).fit(pipeline, frame, seed=seed)


def explainer_of(champion) -> Explainer:
    """The explainer logged with a champion (cached on it); an unfitted one for older models."""
    cached = getattr(champion, "_explainer", None)
    if cached is not None:
        return cached
    ex = None
    pm = getattr(champion, "pyfunc", None)
    if pm is not None:
        try:
            ex = getattr(pm.unwrap_python_model(), "explainer", None)
        except Exception:  # noqa: BLE001 - an older flavour (sklearn): no explainer logged
            ex = None
    if ex is None:
        ex = Explainer(feature_docs(list(champion.feature_names)))
    champion._explainer = ex
    return ex


def explain(champion, frame: pd.DataFrame) -> Explanation:
    """The contributions of every feature to the margin of every row of `frame` (binary champions)."""
    if getattr(champion, "kind", "binary") != "binary":
        raise ValueError(f"{champion.model_name}: reasons exist for binary models only")
    champion._check(frame)
    return explainer_of(champion).explain(champion.model, frame)


def reason_columns(champion, frame: pd.DataFrame, k: int = SCORE_REASONS) -> pd.DataFrame:
    """`reason_1..k` and `reasons` (JSON) for every row of `frame`, on its index."""
    ex = explain(champion, frame)
    tops = ex.all_reasons(k)
    out = pd.DataFrame(index=frame.index)
    for i in range(k):
        out[f"reason_{i + 1}"] = [t[i]["feature"] if len(t) > i else None for t in tops]
    out["reasons"] = [explain_json(t) for t in tops]
    return out


def importance(ex: Explanation) -> pd.DataFrame:
    """Global importance: mean |contribution| of each original feature over the explained rows, its share
    of the total and its mean signed contribution; largest first."""
    a = np.abs(ex.contrib)
    mean_abs = a.mean(axis=0) if len(a) else np.zeros(len(ex.features))
    total = float(mean_abs.sum()) or 1.0
    df = pd.DataFrame(
        {
            "feature": ex.features,
            "mean_abs_contribution": mean_abs,
            "share": mean_abs / total,
            "mean_contribution": ex.contrib.mean(axis=0) if len(a) else 0.0,
        }
    )
    return df.sort_values(["mean_abs_contribution", "feature"], ascending=[False, True]).reset_index(drop=True)


def parse_reasons(text: str | None) -> list[dict]:
    """The `reasons` JSON of a scores row (empty list for NULL)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return json.loads(text)
