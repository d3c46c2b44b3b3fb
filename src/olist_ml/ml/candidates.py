"""Candidate model recipes: preprocessing + estimator + Optuna search space.

Every candidate is a scikit-learn `Pipeline` whose first step casts a raw frame (as the ABT or
the scoring frame gives it) to the declared columns, so the logged model takes raw rows. The
classes a fitted candidate holds are scikit-learn's, LightGBM's, XGBoost's or those of
`olist_ml_model` (the frame caster, the hazard GLM, the signed log), which is logged with every
model so that it loads without olist-ml (`olist_ml.ml.artefact`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from olist_ml_model import FrameCaster, HazardGLM, MissingColumnsError, signed_log
from olist_ml_model import cast_frame as _cast_frame

from ..errors import UnknownNameError

__all__ = ["CANDIDATES", "Candidate", "FrameCaster", "HazardGLM", "cast_frame", "importances", "resolve"]


def cast_frame(df: pd.DataFrame, categorical: list[str], numeric: list[str]) -> pd.DataFrame:
    """`olist_ml_model.cast_frame`, with a missing column as a one-line InputError."""
    from ..errors import InputError

    try:
        return _cast_frame(df, categorical, numeric)
    except MissingColumnsError as e:
        raise InputError(str(e)) from None


_signed_log = signed_log  # the name older registered models refer to


def _linear_prep(cat: list[str], num: list[str], p: dict) -> ColumnTransformer:
    from sklearn.preprocessing import FunctionTransformer

    num_steps = [("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))]
    if p.get("log_transform", True):
        num_steps.append(("log", FunctionTransformer(signed_log, feature_names_out="one-to-one")))
    num_steps.append(("scale", StandardScaler()))
    parts = [("num", Pipeline(num_steps), num)]
    if cat:
        parts.append(
            (
                "cat",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(strategy="constant", fill_value="__missing__", keep_empty_features=True),
                        ),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                min_frequency=p.get("min_frequency", 20),
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                cat,
            )
        )
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def _tree_prep(cat: list[str], num: list[str]) -> ColumnTransformer:
    parts = [("num", "passthrough", num)]
    if cat:
        parts.append(
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2, min_frequency=20
                ),
                cat,
            )
        )
    return ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)


def _rf_prep(cat: list[str], num: list[str]) -> ColumnTransformer:
    parts = [("num", SimpleImputer(strategy="median", keep_empty_features=True), num)]
    if cat:
        parts.append(
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2, min_frequency=20
                ),
                cat,
            )
        )
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
    return {
        "C": t.suggest_float("C", 1e-3, 10.0, log=True),
        "log_transform": t.suggest_categorical("log_transform", [True, False]),
    }


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

    est = RandomForestClassifier(
        n_estimators=p["n_estimators"],
        max_depth=p["max_depth"],
        min_samples_leaf=p["min_samples_leaf"],
        max_features=p["max_features"],
        max_samples=p.get("max_samples", 0.5),
        n_jobs=n_jobs,
        random_state=seed,
    )
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


# ---- hazard GLM (survival-window targets): `olist_ml_model.HazardGLM` ---------------------------
def _hazard_space(t):
    return {
        "alpha": t.suggest_float("alpha", 1e-4, 10.0, log=True),
        "log_transform": t.suggest_categorical("log_transform", [True, False]),
    }


def _hazard_build(cat, num, p, seed, n_jobs):
    expo = p.get("exposure_column")
    if not expo:
        raise ValueError("hazard_glm needs params['exposure_column'] (the problem's Problem.exposure_column)")
    prep = _linear_prep(cat, num, p)
    prep.transformers.append(("exposure", "passthrough", [expo]))  # last column = raw exposure
    return _wrap(cat, list(num) if expo in num else [*num, expo], prep, HazardGLM(alpha=p["alpha"]))


# ---- k-means (clustering problems) -----------------------------------------------------------
def _kmeans_space(t):
    return {
        "n_clusters": t.suggest_int("n_clusters", 3, 8),
        "log_transform": t.suggest_categorical("log_transform", [True, False]),
    }


def _kmeans_build(cat, num, p, seed, n_jobs):
    from sklearn.cluster import KMeans

    return _wrap(cat, num, _linear_prep(cat, num, p), KMeans(n_clusters=p["n_clusters"], n_init=4, random_state=seed))


CANDIDATES: dict[str, Candidate] = {
    "logreg": Candidate("logreg", "binary", _logreg_space, _logreg_build, {"C": 0.1, "log_transform": True}),
    "random_forest": Candidate(
        "random_forest",
        "binary",
        _rf_space,
        _rf_build,
        {"n_estimators": 200, "max_depth": 8, "min_samples_leaf": 20, "max_features": 0.3, "max_samples": 0.5},
    ),
    "lightgbm": Candidate(
        "lightgbm",
        "binary",
        _lgbm_space,
        _lgbm_build,
        {
            "n_estimators": 200,
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_child_samples": 40,
            "subsample": 0.8,
            "colsample_bytree": 0.7,
            "reg_lambda": 1.0,
        },
    ),
    "xgboost": Candidate(
        "xgboost",
        "binary",
        _xgb_space,
        _xgb_build,
        {
            "n_estimators": 200,
            "learning_rate": 0.05,
            "max_depth": 4,
            "min_child_weight": 5.0,
            "subsample": 0.8,
            "colsample_bytree": 0.7,
            "reg_lambda": 1.0,
        },
    ),
    "hazard_glm": Candidate(
        "hazard_glm", "binary", _hazard_space, _hazard_build, {"alpha": 1.0, "log_transform": True}, needs_exposure=True
    ),
    "kmeans": Candidate("kmeans", "cluster", _kmeans_space, _kmeans_build, {"n_clusters": 5, "log_transform": True}),
}

DEFAULTS = {"binary": ("logreg", "random_forest", "lightgbm", "xgboost"), "cluster": ("kmeans",)}


def resolve(
    names: tuple[str, ...] | list[str] | None, kind: str, exposure_column: str | None = None
) -> list[Candidate]:
    """Candidates by name (None -> the defaults of `kind`, plus `hazard_glm` when the problem
    declares an exposure column). A candidate that needs the exposure gets it bound into its
    params (so it is logged with them)."""
    names = (
        list(names)
        if names
        else list(DEFAULTS[kind]) + (["hazard_glm"] if exposure_column and kind == "binary" else [])
    )
    out = []
    for n in names:
        c = CANDIDATES.get(n)
        if c is None or c.kind != kind or (c.needs_exposure and not exposure_column):
            valid = ", ".join(
                k for k, v in CANDIDATES.items() if v.kind == kind and (exposure_column or not v.needs_exposure)
            )
            if c is not None and c.kind == kind:
                raise UnknownNameError(
                    f"{kind} candidate '{n}' needs a problem that declares an exposure column "
                    f"(Problem.exposure_column, e.g. seller_churn): choose from {valid}"
                )
            raise UnknownNameError(f"unknown {kind} candidate '{n}': choose from {valid}")
        if c.needs_exposure:
            c = replace(
                c,
                default={**c.default, "exposure_column": exposure_column},
                space=_with_exposure(c.space, exposure_column),
            )
        out.append(c)
    return out


def _with_exposure(space: Callable, column: str) -> Callable:
    def bound(trial):
        return {**space(trial), "exposure_column": column}

    return bound


def output_feature_names(pipe: Pipeline) -> list[str]:
    try:
        return [str(n) for n in pipe.named_steps["prep"].get_feature_names_out()]
    except Exception:  # noqa: BLE001 - pragma: no cover - defensive
        return []


def importances(pipe: Pipeline) -> pd.Series:
    """Model-native importance per ORIGINAL feature (trees: gain/impurity; linear: |coef|, summed over a
    feature's transformed columns: its one-hot columns, its missing-value indicator); a calibrated last
    step (`olist_ml.ml.calibration`) is looked through. (The transformed columns' names, e.g. f193, are
    what the report showed before: `olist_ml_model.explain.column_origins` maps them back.)"""
    from olist_ml_model.explain import column_origins

    from .calibration import base_estimator

    est = base_estimator(pipe.named_steps["model"])
    if hasattr(est, "feature_importances_"):
        vals = np.asarray(est.feature_importances_, dtype=float)
    elif hasattr(est, "coef_"):
        vals = np.abs(np.ravel(est.coef_))
    else:
        return pd.Series(dtype=float)
    try:
        names = column_origins(pipe.named_steps["prep"])
    except (NotImplementedError, AttributeError, KeyError):  # an unusual prep: the transformed names
        names = output_feature_names(pipe)
    if isinstance(est, HazardGLM) and len(names) == len(vals) + 1:
        names = names[:-1]  # the last prepared column is the exposure offset (coefficient fixed at 1)
    if len(names) != len(vals):
        names = [f"f{i}" for i in range(len(vals))]
    return pd.Series(vals, index=names).groupby(level=0).sum().sort_values(ascending=False)
