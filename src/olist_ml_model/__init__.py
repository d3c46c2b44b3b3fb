"""The code a registered olist-ml model runs at prediction time, and nothing more.

Every model olist-ml registers (`models:/<problem>@champion`) is a standard MLflow pyfunc model
whose pickle refers to the classes of this package; the package is logged with the model
(`code_paths`, the model's `code/olist_ml_model/`), so the model loads and predicts where olist-ml
is not installed, in an environment built only from the model's own logged requirements
(`mlflow.pyfunc.get_model_dependencies`): numpy, pandas, scipy, scikit-learn, cloudpickle, mlflow,
plus lightgbm / xgboost-cpu when the model holds one of them.

Rules that keep it portable:
  * import nothing from `olist_ml` (the project), DuckDB, Spark or anything else the model's
    requirements do not name; numpy, pandas and scikit-learn at module level, the rest lazily;
  * a class here is pickled by reference (`olist_ml_model.<Class>`): renaming or moving it breaks
    the loading of models already registered, so old names stay importable;
  * the pyfunc wrapper (`olist_ml_model.pyfunc.ChampionModel`) is in its own module so that the
    estimators can be imported without MLflow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.preprocessing import RobustScaler

__all__ = ["FrameCaster", "HazardGLM", "HeavyTailScaler", "MissingColumnsError", "cast_frame", "signed_log"]


class MissingColumnsError(KeyError):
    """The input frame lacks feature columns the model was trained on."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def missing_columns_message(missing: list[str]) -> str:
    return (
        f"input frame lacks feature column(s) {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}: "
        f"rebuild the features/ABT the model was trained on"
    )


def cast_frame(df: pd.DataFrame, categorical: list[str], numeric: list[str]) -> pd.DataFrame:
    """The feature columns of `df` in the model's order: numerics -> float64 (NULL -> NaN, whatever
    the input dtype: int64, nullable Int64, float64, object), categoricals -> object holding str or
    NaN. This is what every model sees, from a warehouse frame, a Spark batch or parsed JSON alike."""
    missing = [c for c in categorical + numeric if c not in df.columns]
    if missing:
        raise MissingColumnsError(missing_columns_message(missing))
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


def signed_log(x):
    """sign(x) * log(1 + |x|): tames heavy tails, keeps the sign and zero."""
    return np.sign(x) * np.log1p(np.abs(x))


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
        res = minimize(
            loss, np.append(np.zeros(d), b0), jac=True, method="L-BFGS-B", options={"maxiter": int(self.max_iter)}
        )
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


CLIP = 5.0


class HeavyTailScaler(BaseEstimator, TransformerMixin):
    """Signed log1p on skewed non-negative columns, then RobustScaler, then clip to [-clip, clip]
    (the scaling of the seller segmentation, `olist_ml.problems.segments`)."""

    def __init__(self, skew_threshold: float = 1.0, clip: float = CLIP):
        self.skew_threshold = skew_threshold
        self.clip = clip

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        skew = pd.DataFrame(X).skew().fillna(0).to_numpy()
        self.log_cols_ = (skew > self.skew_threshold) & (np.nanmin(X, axis=0) >= 0)
        self.scaler_ = RobustScaler(quantile_range=(10.0, 90.0)).fit(self._log(X))
        # a constant column has IQR 0: RobustScaler keeps scale 1, so it contributes 0 after centring
        return self

    def _log(self, X):
        X = np.array(X, dtype=float, copy=True)
        X[:, self.log_cols_] = np.log1p(X[:, self.log_cols_])
        return X

    def transform(self, X):
        return np.clip(self.scaler_.transform(self._log(np.asarray(X, dtype=float))), -self.clip, self.clip)
