"""The hazard_glm candidate: a constant-hazard survival GLM for "no event during the window" targets.

Simulated data from exactly that process (events at rate exp(b0 + b1 x) per day, windows of 1-45
days, y = 1 when the window passes without an event): the model must recover b1, ignore noise,
rank as well as the true probabilities, and beat a logistic regression that sees the same columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from olist_ml.errors import UnknownNameError
from olist_ml.ml import candidates as C
from olist_ml.problems import get


def _simulate(n: int = 20000, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    h = rng.integers(1, 46, n).astype(float)
    p_no_event = np.exp(-np.exp(-3.0 + 0.8 * x) * h)
    y = (rng.random(n) < p_no_event).astype(int)
    return pd.DataFrame({"x": x, "noise": rng.normal(size=n), "window_days": h}), y, p_no_event


def _build(name: str, params: dict, exposure: str | None = "window_days"):
    [c] = C.resolve([name], "binary", exposure)
    return c.build([], ["x", "noise"], {**c.default, **params}, 0, 1)


def test_recovers_the_hazard_and_beats_logreg_on_a_constant_hazard_process():
    df, y, truth = _simulate()
    test, yt, truth_t = _simulate(seed=1)
    m = _build("hazard_glm", {"alpha": 1e-4, "log_transform": False}).fit(df, y)
    est = m.named_steps["model"]
    # features are standardised: x has sd 1, so the coefficient is the true 0.8
    assert est.coef_[0, 0] == pytest.approx(0.8, abs=0.06)
    assert abs(est.coef_[0, 1]) < 0.05
    assert est.intercept_[0] == pytest.approx(-3.0, abs=0.1)
    # the fitted daily event rate of each row, against the true one (features as the model sees them)
    rate = est.log_rate(m[:-1].transform(test))
    assert np.abs(rate - (-3.0 + 0.8 * test.x.to_numpy())).max() < 0.3
    p = m.predict_proba(test)[:, 1]
    assert np.abs(p - truth_t).mean() < 0.02  # calibrated probabilities, not just a ranking
    auc = roc_auc_score(yt, p)
    assert auc >= roc_auc_score(yt, truth_t) - 0.003
    # logreg sees the window length as a plain feature: it cannot express rate x exposure
    lr = C.CANDIDATES["logreg"].build([], ["x", "noise", "window_days"], {"C": 1.0, "log_transform": False}, 0, 1)
    assert auc > roc_auc_score(yt, lr.fit(df, y).predict_proba(test)[:, 1]) + 0.003
    imp = C.importances(m)
    assert list(imp.index) == ["x", "noise"]  # the exposure offset is not reported as a feature


def test_l2_penalty_shrinks_and_bad_exposure_uses_the_training_median():
    df, y, _ = _simulate(5000)
    weak = _build("hazard_glm", {"alpha": 1e-4, "log_transform": False}).fit(df, y).named_steps["model"]
    strong = _build("hazard_glm", {"alpha": 10.0, "log_transform": False}).fit(df, y).named_steps["model"]
    assert abs(strong.coef_[0, 0]) < abs(weak.coef_[0, 0]) / 2
    m = _build("hazard_glm", {"alpha": 1e-3, "log_transform": False}).fit(df, y)
    odd = df.head(3).copy()
    odd["window_days"] = [np.nan, 0.0, np.median(df.window_days)]
    p = m.predict_proba(odd)[:, 1]
    ref = m.predict_proba(odd.assign(window_days=np.median(df.window_days)))[:, 1]
    assert np.isfinite(p).all() and p == pytest.approx(ref)


def test_candidate_needs_a_problem_with_an_exposure_column():
    with pytest.raises(UnknownNameError, match="exposure column"):
        C.resolve(["hazard_glm"], "binary", None)
    assert "hazard_glm" not in [c.name for c in C.resolve(None, "binary")]
    chosen = C.resolve(None, "binary", "window_days")
    assert [c.name for c in chosen][-1] == "hazard_glm"
    assert chosen[-1].default["exposure_column"] == "window_days"
    churn = get("churn")
    assert churn.exposure_column == "horizon_days_left"
    assert get("order_delay").exposure_column is None
