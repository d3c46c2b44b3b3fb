"""Reasons for a binary prediction: exact additive contributions to the model's margin, by ORIGINAL feature.

Portable like the rest of `olist_ml_model` (numpy, pandas, scikit-learn; lightgbm / xgboost only when the
model holds one): a registered model answers `predict(rows, params={"explain": k})` with these reasons in
an environment without olist-ml.

For every row, `margin = base + sum(contributions)` exactly (floating point, ~1e-12), where the margin is
the uncalibrated model's own additive scale:

  * logistic regression: the log-odds `decision_function`; a contribution is coefficient x (transformed
    value - reference), the reference being the mean of that transformed column over the training rows
    (so the base is the log-odds of the "average" row); the transformed columns of one feature (its
    imputed, signed-log, standardised value and its missing-value indicator; the one-hot columns of a
    category) are summed back to the feature;
  * hazard GLM (`HazardGLM`): minus the log of the expected number of events in the window,
    -(log rate + log exposure), signed so that a positive contribution raises P(class 1) (for churn:
    fewer expected sales, more churn); coefficient x (value - reference) as above, the log exposure's
    term belonging to the exposure feature (its offset, coefficient 1);
  * LightGBM / XGBoost: their built-in TreeSHAP (`pred_contrib=True` / `pred_contribs=True`) on the
    raw score (log-odds); the base is the model's expected value over its training data (XGBoost works
    in float32: its contributions match its own `output_margin` to ~1e-5, so the margin reported is
    their float64 sum);
  * random forest: the tree-path decomposition (Saabas): along each tree's decision path the change of
    the node's class-1 share is credited to the split's feature, averaged over the trees; it is exactly
    additive on the forest's P(class 1) (a forest averages probabilities: its margin IS the probability)
    but it is not a Shapley value (it favours features split near the root).

The calibrator (`CalibratedClassifierCV`: sigmoid or isotonic) is a monotone map of the margin, so the
reasons explain the margin, and the ranking of rows, not the calibrated probability's exact value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SCALES = {
    "linear": "log-odds",
    "hazard": "-log(expected events in the window)",
    "lightgbm": "log-odds (TreeSHAP)",
    "xgboost": "log-odds (TreeSHAP)",
    "forest": "P(class 1) (tree paths)",
}
MAX_SAMPLE = 20_000  # training rows read when the explainer is fitted


def base_estimator(est):
    """The fitted model inside a calibrated last step (CalibratedClassifierCV around FrozenEstimator)."""
    if hasattr(est, "calibrated_classifiers_") and hasattr(est, "estimator"):
        est = est.estimator
    if type(est).__name__ == "FrozenEstimator":
        est = est.estimator
    return est


def model_kind(est) -> str:
    from olist_ml_model import HazardGLM

    est = base_estimator(est)
    mod = type(est).__module__.split(".")[0]
    if isinstance(est, HazardGLM):
        return "hazard"
    if mod == "lightgbm":
        return "lightgbm"
    if mod == "xgboost":
        return "xgboost"
    if hasattr(est, "estimators_") and hasattr(est, "n_outputs_"):
        return "forest"
    if hasattr(est, "coef_") and hasattr(est, "decision_function"):
        return "linear"
    raise NotImplementedError(f"no reasons for a {type(est).__name__} model")


# ---- which original feature every transformed column comes from ----------------------------------------
def _origins(trans, cols: list[str]) -> list[str]:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    cols = list(cols)
    if trans is None or (isinstance(trans, str) and trans == "passthrough"):
        return cols
    if isinstance(trans, Pipeline):
        for _, step in trans.steps:
            cols = _origins(step, cols)
        return cols
    if isinstance(trans, SimpleImputer):
        stats = np.asarray(getattr(trans, "statistics_", []), dtype=object)
        if getattr(trans, "keep_empty_features", False) or len(stats) != len(cols):
            out = list(cols)
        else:
            out = [c for c, s in zip(cols, stats, strict=True) if not (isinstance(s, float) and math.isnan(s))]
        ind = getattr(trans, "indicator_", None)
        if trans.add_indicator and ind is not None:
            out += [cols[i] for i in ind.features_]
        return out
    if isinstance(trans, OneHotEncoder):
        tokens = [f"f{i}" for i in range(len(cols))]  # no "_": the prefix before the first "_" is the input
        return [cols[int(str(n).split("_", 1)[0][1:])] for n in trans.get_feature_names_out(tokens)]
    n_out = len(trans.get_feature_names_out(cols)) if hasattr(trans, "get_feature_names_out") else len(cols)
    if n_out != len(cols):
        raise NotImplementedError(f"cannot map the columns of {type(trans).__name__} back to features")
    return cols


def column_origins(prep) -> list[str]:
    """The original feature of each column the fitted ColumnTransformer `prep` outputs."""
    width = max(s.stop for s in prep.output_indices_.values()) if prep.output_indices_ else 0
    out: list[str | None] = [None] * width
    for name, trans, cols in prep.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        sl = prep.output_indices_[name]
        if sl.stop <= sl.start:
            continue
        if not isinstance(cols, list | tuple | np.ndarray):
            cols = [cols]
        names = [str(c) for c in cols]
        got = _origins(trans, names)
        if len(got) != sl.stop - sl.start:
            raise NotImplementedError(f"transformer {name}: {len(got)} mapped columns for {sl.stop - sl.start}")
        out[sl] = got
    return [str(o) for o in out]


# ---- the explanation of some rows -----------------------------------------------------------------------
@dataclass
class Explanation:
    """Contributions of each original feature to the margin of each row: margin = base + contrib.sum(1)."""

    features: list[str]
    contrib: np.ndarray  # (rows, features)
    base: float
    margin: np.ndarray  # (rows,): the model's own margin, computed by its native path
    values: pd.DataFrame  # the cast feature values the model saw, one column per feature
    references: dict  # feature -> the value it is compared with
    medians: dict  # feature -> training median (numeric) / most common value (categorical)
    scale: str
    docs: dict = field(default_factory=dict)
    population: str = "training rows"

    def order(self, i: int, direction: str = "both") -> np.ndarray:
        """Feature positions of row i, largest |contribution| first (ties by position); direction "up":
        only the contributions that raise the margin, largest first."""
        c = self.contrib[i]
        if direction == "up":
            pos = np.nonzero(c > 0)[0]
            return pos[np.lexsort((pos, -c[pos]))]
        return np.lexsort((np.arange(len(c)), -np.abs(c)))

    def reasons(self, i: int, k: int, direction: str = "both") -> list[dict]:
        """The top-k reasons of row i: feature, value, reference, contribution, text (direction "up": the
        k largest contributions that raise the score, e.g. why a seller is at risk)."""
        out = []
        for j in self.order(i, direction)[: max(int(k), 0)]:
            f = self.features[j]
            v = _json_value(self.values.iat[i, j])
            out.append(
                {
                    "feature": f,
                    "value": v,
                    "reference": _json_value(self.references.get(f)),
                    "contribution": float(self.contrib[i, j]),
                    "text": sentence(f, v, self.medians.get(f), self.docs.get(f), self.population),
                }
            )
        return out

    def all_reasons(self, k: int) -> list[list[dict]]:
        return [self.reasons(i, k) for i in range(len(self.margin))]

    def frame(self, k: int, index=None) -> pd.DataFrame:
        """Flat columns: margin, base, reason_<i>, reason_<i>_value / _reference / _contribution / _text, and
        `reasons` (JSON of the top-k reasons, as `scores_<problem>.reasons` holds them)."""
        k = min(max(int(k), 0), len(self.features))
        rows = self.all_reasons(k)
        data: dict[str, list] = {"margin": list(map(float, self.margin)), "base": [float(self.base)] * len(rows)}
        for r in range(k):
            data[f"reason_{r + 1}"] = [x[r]["feature"] for x in rows]
            data[f"reason_{r + 1}_value"] = [_text(x[r]["value"]) for x in rows]
            data[f"reason_{r + 1}_reference"] = [_text(x[r]["reference"]) for x in rows]
            data[f"reason_{r + 1}_contribution"] = [x[r]["contribution"] for x in rows]
            data[f"reason_{r + 1}_text"] = [x[r]["text"] for x in rows]
        data["reasons"] = [explain_json(x) for x in rows]
        return pd.DataFrame(data, index=index)


def _json_value(v):
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _text(v) -> str | None:
    return None if v is None else (v if isinstance(v, str) else f"{v:.6g}" if isinstance(v, float) else str(v))


# ---- human sentences ------------------------------------------------------------------------------------
def fmt(v, unit: str | None) -> str:
    """A value in its unit, the way a person writes it."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "unknown"
    if isinstance(v, str):
        return v
    x = float(v)
    u = (unit or "").strip()
    if u == "BRL":
        return f"R$ {x:,.0f}" if abs(x) >= 10 else f"R$ {x:,.2f}"
    if u == "share":
        return f"{100 * x:.0f}%"
    num = f"{x:,.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 100 else f"{x:,.1f}" if abs(x) >= 1 else f"{x:.2g}"
    if u in ("", "ratio", "score 1-5", "index", "probability"):
        return num
    if u.endswith("s") and abs(x - 1) < 1e-9:
        u = u[:-3] + "y" if u.endswith("ies") else u[:-1]  # 1 day, 1 order, 1 category
    return f"{num} {u}"


def sentence(feature: str, value, median, doc: dict | None, population: str) -> str:
    """'no sale for 38 days; sellers median 6 days': the feature as the catalog describes it, its value and
    the typical value among the training rows."""
    doc = doc or {}
    unit = doc.get("unit")
    label = doc.get("label") or feature.replace("_", " ")
    if value is None:
        head = f"{label} unknown (missing)"
    elif doc.get("template"):
        head = str(doc["template"]).format(value=fmt(value, unit), label=label)
    else:
        head = f"{label} {fmt(value, unit)}"
    if median is None or (isinstance(median, float) and not math.isfinite(median)):
        return head
    if isinstance(median, str):
        return f"{head}; most {population}: {median}"
    return f"{head}; {population} median {fmt(median, unit)}"


# ---- the explainer --------------------------------------------------------------------------------------
class Explainer:
    """What explaining a fitted candidate Pipeline (cast -> prep -> model) needs besides the Pipeline: the
    reference of every transformed column (training means), the training medians / modes of the features
    (the typical values the sentences quote) and the feature descriptions (`docs`). Fitted once when the
    model is logged (`fit`), pickled with it; `Explainer()` unfitted explains with zero references."""

    def __init__(self, docs: dict | None = None, population: str = "training rows"):
        self.docs = dict(docs or {})
        self.population = population
        self.ref_ = None  # mean of each transformed column over the training rows (None: zeros)
        self.medians_: dict = {}

    def fit(self, pipeline, frame: pd.DataFrame | None = None, *, seed: int = 0) -> Explainer:
        if frame is None or len(frame) == 0:
            return self
        if len(frame) > MAX_SAMPLE:
            frame = frame.sample(MAX_SAMPLE, random_state=seed)
        cast = pipeline.named_steps["cast"].transform(frame)
        for c in cast.columns:
            s = cast[c]
            if s.dtype == object:
                m = s.dropna().mode()
                self.medians_[c] = str(m.iloc[0]) if len(m) else None
            else:
                med = float(np.nanmedian(s.to_numpy(dtype=float))) if s.notna().any() else None
                self.medians_[c] = med
        Xt = np.asarray(pipeline.named_steps["prep"].transform(cast), dtype=float)
        kind = model_kind(pipeline.steps[-1][1])
        if kind in ("linear", "hazard"):
            est = base_estimator(pipeline.steps[-1][1])
            if kind == "hazard":
                Z, off = est._split(Xt)
                self.ref_ = np.append(np.nanmean(Z, axis=0), np.nanmean(off))
            else:
                self.ref_ = np.nanmean(Xt, axis=0)
            self.ref_ = np.where(np.isfinite(self.ref_), self.ref_, 0.0)
        return self

    # -- per model kind: (contributions per transformed column, base, margin)
    def _linear(self, est, Xt):
        coef = np.ravel(est.coef_)
        ref = self.ref_ if self.ref_ is not None and len(self.ref_) == len(coef) else np.zeros(len(coef))
        contrib = (Xt - ref) * coef
        base = float(np.ravel(est.intercept_)[0] + coef @ ref)
        margin = np.asarray(est.decision_function(Xt), dtype=float).ravel()
        return contrib, base, margin

    def _hazard(self, est, Xt):
        coef = est.coef_.ravel()
        Z, off = est._split(Xt)
        if self.ref_ is not None and len(self.ref_) == len(coef) + 1:
            refz, refo = self.ref_[:-1], float(self.ref_[-1])
        else:
            refz, refo = np.zeros(len(coef)), float(np.log(getattr(est, "exposure_median_", 1.0)))
        contrib = np.column_stack([-(Z - refz) * coef, -(off - refo)])
        base = float(-(est.intercept_[0] + coef @ refz + refo))
        margin = -(est.log_rate(Xt) + off)
        return contrib, base, margin

    @staticmethod
    def _lightgbm(est, Xt):
        c = np.asarray(est.predict(Xt, pred_contrib=True), dtype=float)
        margin = np.asarray(est.predict(Xt, raw_score=True), dtype=float).ravel()
        return c[:, :-1], float(c[0, -1]) if len(c) else 0.0, margin

    @staticmethod
    def _xgboost(est, Xt):
        import xgboost as xgb

        booster = est.get_booster()
        dm = xgb.DMatrix(Xt, missing=np.nan)
        c = np.asarray(booster.predict(dm, pred_contribs=True), dtype=float)
        # XGBoost computes in float32: its contributions sum to its own output margin only within ~1e-5
        # (float32 rounding), so the margin reported is their float64 sum (the score is the pipeline's)
        return c[:, :-1], float(c[0, -1]) if len(c) else 0.0, c.sum(axis=1)

    @staticmethod
    def _forest(est, Xt):
        from scipy import sparse

        pos = list(est.classes_).index(1) if 1 in list(est.classes_) else len(est.classes_) - 1
        n, m = Xt.shape
        contrib = np.zeros((n, m))
        base = 0.0
        X32 = np.asarray(Xt, dtype=np.float32)
        for tree in est.estimators_:
            t = tree.tree_
            v = t.value[:, 0, :]
            share = v[:, pos] / np.maximum(v.sum(axis=1), 1e-300)
            parent = np.full(t.node_count, -1)
            for side in (t.children_left, t.children_right):
                has = side >= 0
                parent[side[has]] = np.nonzero(has)[0]
            nodes = np.nonzero(parent >= 0)[0]
            delta = share[nodes] - share[parent[nodes]]
            feat = t.feature[parent[nodes]]
            path = tree.decision_path(X32).tocsc()[:, nodes]  # (rows, non-root nodes on the path)
            # node -> (its parent's split feature, the change of the class-1 share): sparse, as a deep tree
            # has tens of thousands of nodes
            D = sparse.csr_matrix((delta, (np.arange(len(nodes)), feat)), shape=(len(nodes), m))
            contrib += (path @ D).toarray()
            base += share[0]
        k = len(est.estimators_)
        margin = np.asarray(est.predict_proba(Xt), dtype=float)[:, pos]
        return contrib / k, base / k, margin

    def explain(self, pipeline, frame: pd.DataFrame) -> Explanation:
        """The contributions of every feature of every row of `frame` (rows as the warehouse gives them)."""
        cast_step = pipeline.named_steps["cast"]
        prep = pipeline.named_steps["prep"]
        est = base_estimator(pipeline.steps[-1][1])
        kind = model_kind(est)
        values = cast_step.transform(frame)
        Xt = np.asarray(prep.transform(values), dtype=float)
        contrib_t, base, margin = getattr(self, f"_{kind}")(est, Xt)
        origins = column_origins(prep)
        features = list(values.columns)
        pos = {f: i for i, f in enumerate(features)}
        M = np.zeros((len(origins), len(features)))
        for j, o in enumerate(origins):
            M[j, pos[o]] = 1.0
        contrib = np.asarray(contrib_t, dtype=float) @ M
        return Explanation(
            features=features,
            contrib=contrib,
            base=float(base),
            margin=np.asarray(margin, dtype=float),
            values=values,
            references=self.references(pipeline, kind, features),
            medians=self.medians_,
            scale=SCALES[kind],
            docs=self.docs,
            population=self.population,
        )

    def references(self, pipeline, kind: str, features: list[str]) -> dict:
        """feature -> the value its contribution is measured from: for linear models the point where its
        value column contributes zero (the training mean on the model's scale, mapped back through the
        scaler and the signed log); for trees (whose base is the training expectation) the training median."""
        refs = dict(self.medians_)
        if kind not in ("linear", "hazard") or self.ref_ is None:
            return refs
        prep = pipeline.named_steps["prep"]
        for name, trans, cols in prep.transformers_:
            if name != "num" or not hasattr(trans, "steps"):
                continue
            sl = prep.output_indices_[name]
            x = np.array(self.ref_[sl], dtype=float)
            for _, step in reversed(trans.steps):
                if hasattr(step, "scale_") and hasattr(step, "mean_"):
                    x = x * step.scale_ + step.mean_
                elif getattr(step, "func", None) is not None and getattr(step.func, "__name__", "") == "signed_log":
                    x = np.sign(x) * np.expm1(np.abs(x))
            for i, c in enumerate(list(cols)):
                refs[str(c)] = float(x[i])
        return refs


def explain_json(reasons: list[dict]) -> str:
    return json.dumps(reasons, separators=(",", ":"), allow_nan=False)
