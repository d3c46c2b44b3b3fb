"""Candidate model recipes: preprocessing + estimator + Optuna search space.

Every candidate is a scikit-learn `Pipeline` whose first step casts a raw frame (as the ABT or
the scoring frame gives it) to the declared columns, so the logged model takes raw rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from ..errors import UnknownNameError


class FrameCaster(BaseEstimator, TransformerMixin):
    """Select the feature columns; numerics -> float64, categoricals -> object (NaN for missing)."""

    def __init__(self, categorical: list[str] | None = None, numeric: list[str] | None = None):
        self.categorical = categorical
        self.numeric = numeric

    def fit(self, X, y=None):
        self.feature_names_in_ = np.asarray(list(self.categorical or []) + list(self.numeric or []), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X):
        return cast_frame(X, list(self.categorical or []), list(self.numeric or []))

    def get_feature_names_out(self, input_features=None):
        return self.feature_names_in_


def cast_frame(df: pd.DataFrame, categorical: list[str], numeric: list[str]) -> pd.DataFrame:
    missing = [c for c in categorical + numeric if c not in df.columns]
    if missing:
        from ..errors import InputError

        raise InputError(f"input frame lacks feature column(s) {', '.join(missing[:10])}"
                         f"{' ...' if len(missing) > 10 else ''}: rebuild the features/ABT the model was trained on")
    out = {}
    for c in numeric:
        out[c] = pd.to_numeric(df[c], errors="coerce").astype("float64").to_numpy()
    for c in categorical:
        s = df[c]
        vals = s.astype(object).to_numpy(copy=True)
        vals[pd.isna(s).to_numpy()] = np.nan
        out[c] = np.array([v if isinstance(v, str) or v is np.nan else str(v) for v in vals], dtype=object)
    frame = pd.DataFrame(out, index=df.index)
    for c in categorical:
        frame[c] = frame[c].astype(object)
    return frame[categorical + numeric]


def _signed_log(x):
    return np.sign(x) * np.log1p(np.abs(x))


def _linear_prep(cat: list[str], num: list[str], p: dict) -> ColumnTransformer:
    from sklearn.preprocessing import FunctionTransformer

    num_steps = [("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))]
    if p.get("log_transform", True):
        num_steps.append(("log", FunctionTransformer(_signed_log, feature_names_out="one-to-one")))
    num_steps.append(("scale", StandardScaler()))
    parts = [("num", Pipeline(num_steps), num)]
    if cat:
        parts.append(("cat", Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__", keep_empty_features=True)),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=p.get("min_frequency", 20),
                                     sparse_output=False)),
        ]), cat))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def _tree_prep(cat: list[str], num: list[str]) -> ColumnTransformer:
    parts = [("num", "passthrough", num)]
    if cat:
        parts.append(("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                            encoded_missing_value=-2, min_frequency=20), cat))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def _rf_prep(cat: list[str], num: list[str]) -> ColumnTransformer:
    parts = [("num", SimpleImputer(strategy="median", keep_empty_features=True), num)]
    if cat:
        parts.append(("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                            encoded_missing_value=-2, min_frequency=20), cat))
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: str  # "binary" | "cluster"
    space: Callable  # (optuna.Trial) -> dict of params
    build: Callable  # (cat, num, params, seed, n_jobs) -> Pipeline
    default: dict  # params used when no trial budget is given (n_trials=0)
    needs_exposure: bool = False  # build() reads params["exposure_column"] (see `resolve`)


def _wrap(cat, num, prep, est) -> Pipeline:
    return Pipeline([("cast", FrameCaster(cat, num)), ("prep", prep), ("model", est)])


# ---- logistic regression -------------------------------------------------------------------
def _logreg_space(t):
    return {"C": t.suggest_float("C", 1e-3, 10.0, log=True), "log_transform": t.suggest_categorical("log_transform", [True, False])}


def _logreg_build(cat, num, p, seed, n_jobs):
    from sklearn.linear_model import LogisticRegression

    return _wrap(cat, num, _linear_prep(cat, num, p), LogisticRegression(C=p["C"], max_iter=2000))


# ---- random forest ---------------------------------------------------------------------------
def _rf_space(t):
    return {
        "n_estimators": t.suggest_int("n_estimators", 100, 400, step=50),
        "max_depth": t.suggest_int("max_depth", 4, 16),
        "min_samples_leaf": t.suggest_int("min_samples_leaf", 5, 100, log=True),
        "max_features": t.suggest_float("max_features", 0.05, 0.5),
        "max_samples": t.suggest_float("max_samples", 0.3, 0.9),
    }


def _rf_build(cat, num, p, seed, n_jobs):
    from sklearn.ensemble import RandomForestClassifier

    est = RandomForestClassifier(n_estimators=p["n_estimators"], max_depth=p["max_depth"],
                                 min_samples_leaf=p["min_samples_leaf"], max_features=p["max_features"],
                                 max_samples=p.get("max_samples", 0.5), n_jobs=n_jobs, random_state=seed)
    return _wrap(cat, num, _rf_prep(cat, num), est)


# ---- LightGBM --------------------------------------------------------------------------------
def _lgbm_space(t):
    return {
        "n_estimators": t.suggest_int("n_estimators", 100, 600, step=50),
        "learning_rate": t.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": t.suggest_int("num_leaves", 7, 63, log=True),
        "min_child_samples": t.suggest_int("min_child_samples", 10, 200, log=True),
        "subsample": t.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": t.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": t.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def _lgbm_build(cat, num, p, seed, n_jobs):
    from lightgbm import LGBMClassifier

    est = LGBMClassifier(**p, subsample_freq=1, random_state=seed, n_jobs=n_jobs, verbose=-1)
    return _wrap(cat, num, _tree_prep(cat, num), est)


# ---- XGBoost ---------------------------------------------------------------------------------
def _xgb_space(t):
    return {
        "n_estimators": t.suggest_int("n_estimators", 100, 600, step=50),
        "learning_rate": t.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "max_depth": t.suggest_int("max_depth", 2, 8),
        "min_child_weight": t.suggest_float("min_child_weight", 1.0, 50.0, log=True),
        "subsample": t.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": t.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": t.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def _xgb_build(cat, num, p, seed, n_jobs):
    from xgboost import XGBClassifier

    est = XGBClassifier(**p, tree_method="hist", random_state=seed, n_jobs=n_jobs, eval_metric="logloss")
    return _wrap(cat, num, _tree_prep(cat, num), est)


# ---- hazard GLM (survival-window targets) ------------------------------------------------------
class HazardGLM(BaseEstimator, ClassifierMixin):
    """Constant-hazard survival GLM for targets of the form "no event during an exposure window".

    Events arrive at rate lambda = exp(X w + b) per unit of exposure; the positive class is the
    window passing without an event, so P(y = 1) = exp(-lambda * exposure): a binomial GLM with the
    complementary log-log link on P(event) and offset log(exposure). The exposure (e.g. churn's
    `horizon_days_left`, 1..45 days) is the LAST column of X, raw; the other columns are the
    prepared features. Fitted by L-BFGS on the mean negative log-likelihood plus alpha/2 * ||w||^2.
    A logistic regression has to learn the rate x exposure interaction from data; here it is the
    model's structure, which is what the data-generating process of a churn-by-silence target is.
    """

    def __init__(self, alpha: float = 1.0, max_iter: int = 2000):
        self.alpha = alpha
        self.max_iter = max_iter

    def _split(self, X):
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] < 1:
            raise ValueError("HazardGLM needs a 2-D X whose last column is the exposure")
        expo = X[:, -1].copy()
        bad = ~np.isfinite(expo) | (expo <= 0)
        if bad.any():
            expo[bad] = getattr(self, "exposure_median_", 1.0)
        return X[:, :-1], np.log(expo)

    def fit(self, X, y):
        from scipy.optimize import minimize

        y = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        raw = np.asarray(X, dtype=float)[:, -1]
        ok = np.isfinite(raw) & (raw > 0)
        self.exposure_median_ = float(np.median(raw[ok])) if ok.any() else 1.0
        Z, off = self._split(X)
        n, d = Z.shape
        alpha = float(self.alpha)

        def loss(wb):
            w, b = wb[:-1], wb[-1]
            mu = np.exp(np.clip(Z @ w + b + off, -30.0, 10.0))
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                nll = np.where(y == 1, mu, -np.log(-np.expm1(-mu)))
                g = np.where(y == 1, mu, -mu / np.expm1(mu))
            return nll.mean() + alpha * (w @ w) / 2, np.append(Z.T @ g / n + alpha * w, g.mean())

        # start at the constant rate that matches the training share of event-free windows
        p1 = min(max(y.mean(), 1e-3), 1 - 1e-3)
        b0 = float(np.log(-np.log(p1)) - off.mean())
        res = minimize(loss, np.append(np.zeros(d), b0), jac=True, method="L-BFGS-B",
                       options={"maxiter": int(self.max_iter)})
        self.coef_ = res.x[:-1].reshape(1, -1)
        self.intercept_ = np.array([res.x[-1]])
        self.n_iter_ = int(res.nit)
        self.n_features_in_ = d + 1
        return self

    def log_rate(self, X) -> np.ndarray:
        """log(events per unit of exposure) of each row."""
        Z, _ = self._split(X)
        return Z @ self.coef_.ravel() + self.intercept_[0]

    def _eta(self, X) -> np.ndarray:
        """log(expected events in the window) = log rate + log exposure."""
        Z, off = self._split(X)
        return np.clip(Z @ self.coef_.ravel() + self.intercept_[0] + off, -30.0, 10.0)

    def decision_function(self, X) -> np.ndarray:
        """log-odds of the positive class (no event), log p1 - log(1 - p1): higher = more likely
        positive, and on the same scale as a logistic regression's, so a sigmoid (Platt)
        calibration of it is a logistic recalibration of the model's probabilities."""
        mu = np.exp(self._eta(X))
        return -mu - np.log(-np.expm1(-mu))

    def predict_proba(self, X) -> np.ndarray:
        p1 = np.clip(np.exp(-np.exp(self._eta(X))), 1e-12, 1 - 1e-12)
        return np.column_stack([1 - p1, p1])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _hazard_space(t):
    return {"alpha": t.suggest_float("alpha", 1e-4, 10.0, log=True),
            "log_transform": t.suggest_categorical("log_transform", [True, False])}


def _hazard_build(cat, num, p, seed, n_jobs):
    expo = p.get("exposure_column")
    if not expo:
        raise ValueError("hazard_glm needs params['exposure_column'] (the problem's Problem.exposure_column)")
    prep = _linear_prep(cat, num, p)
    prep.transformers.append(("exposure", "passthrough", [expo]))  # last column = raw exposure
    return _wrap(cat, list(num) if expo in num else [*num, expo], prep, HazardGLM(alpha=p["alpha"]))


# ---- k-means (clustering problems) -----------------------------------------------------------
def _kmeans_space(t):
    return {"n_clusters": t.suggest_int("n_clusters", 3, 8), "log_transform": t.suggest_categorical("log_transform", [True, False])}


def _kmeans_build(cat, num, p, seed, n_jobs):
    from sklearn.cluster import KMeans

    return _wrap(cat, num, _linear_prep(cat, num, p), KMeans(n_clusters=p["n_clusters"], n_init=4, random_state=seed))


CANDIDATES: dict[str, Candidate] = {
    "logreg": Candidate("logreg", "binary", _logreg_space, _logreg_build, {"C": 0.1, "log_transform": True}),
    "random_forest": Candidate("random_forest", "binary", _rf_space, _rf_build,
                               {"n_estimators": 200, "max_depth": 8, "min_samples_leaf": 20, "max_features": 0.3,
                                "max_samples": 0.5}),
    "lightgbm": Candidate("lightgbm", "binary", _lgbm_space, _lgbm_build,
                          {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 40,
                           "subsample": 0.8, "colsample_bytree": 0.7, "reg_lambda": 1.0}),
    "xgboost": Candidate("xgboost", "binary", _xgb_space, _xgb_build,
                         {"n_estimators": 200, "learning_rate": 0.05, "max_depth": 4, "min_child_weight": 5.0,
                          "subsample": 0.8, "colsample_bytree": 0.7, "reg_lambda": 1.0}),
    "hazard_glm": Candidate("hazard_glm", "binary", _hazard_space, _hazard_build, {"alpha": 1.0, "log_transform": True},
                            needs_exposure=True),
    "kmeans": Candidate("kmeans", "cluster", _kmeans_space, _kmeans_build, {"n_clusters": 5, "log_transform": True}),
}

DEFAULTS = {"binary": ("logreg", "random_forest", "lightgbm", "xgboost"), "cluster": ("kmeans",)}


def resolve(names: tuple[str, ...] | list[str] | None, kind: str,
            exposure_column: str | None = None) -> list[Candidate]:
    """Candidates by name (None -> the defaults of `kind`, plus `hazard_glm` when the problem
    declares an exposure column). A candidate that needs the exposure gets it bound into its
    params (so it is logged with them)."""
    names = list(names) if names else list(DEFAULTS[kind]) + (["hazard_glm"] if exposure_column and kind == "binary"
                                                                else [])
    out = []
    for n in names:
        c = CANDIDATES.get(n)
        if c is None or c.kind != kind or (c.needs_exposure and not exposure_column):
            valid = ", ".join(k for k, v in CANDIDATES.items() if v.kind == kind
                              and (exposure_column or not v.needs_exposure))
            if c is not None and c.kind == kind:
                raise UnknownNameError(f"{kind} candidate '{n}' needs a problem that declares an exposure column "
                                       f"(Problem.exposure_column, e.g. seller_churn): choose from {valid}")
            raise UnknownNameError(f"unknown {kind} candidate '{n}': choose from {valid}")
        if c.needs_exposure:
            c = replace(c, default={**c.default, "exposure_column": exposure_column},
                        space=_with_exposure(c.space, exposure_column))
        out.append(c)
    return out


def _with_exposure(space: Callable, column: str) -> Callable:
    def bound(trial):
        return {**space(trial), "exposure_column": column}

    return bound


def output_feature_names(pipe: Pipeline) -> list[str]:
    try:
        return [str(n) for n in pipe.named_steps["prep"].get_feature_names_out()]
    except Exception:  # pragma: no cover - defensive
        return []


def importances(pipe: Pipeline) -> pd.Series:
    """Model-native importance per transformed column (trees: gain/impurity; linear: |coef|); a
    calibrated last step (`olist_ml.ml.calibration`) is looked through."""
    from .calibration import base_estimator

    est = base_estimator(pipe.named_steps["model"])
    names = output_feature_names(pipe)
    if hasattr(est, "feature_importances_"):
        vals = np.asarray(est.feature_importances_, dtype=float)
    elif hasattr(est, "coef_"):
        vals = np.abs(np.ravel(est.coef_))
    else:
        return pd.Series(dtype=float)
    if isinstance(est, HazardGLM) and len(names) == len(vals) + 1:
        names = names[:-1]  # the last prepared column is the exposure offset (coefficient fixed at 1)
    if len(names) != len(vals):
        names = [f"f{i}" for i in range(len(vals))]
    return pd.Series(vals, index=names).sort_values(ascending=False)
