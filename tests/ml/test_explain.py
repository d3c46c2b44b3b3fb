"""Faithfulness of the reasons (issue 21, items 1-3), for every binary candidate type the project trains.

For each of logreg, random_forest, lightgbm, xgboost and hazard_glm (the pipelines `olist_ml.ml.candidates`
builds, imputation, signed log, scaling and one-hot included; calibrated as the registered artefact is):
  * contributions + base = margin on every row (1e-6), and the margin is the model's own additive scale
    (its probability follows from it by the model's link: the check is against the estimator's API);
  * moving one feature of one row to an extreme makes that feature the row's top reason;
  * permuting a column the model does not use changes no reason;
  * a linear model's reference is exact: at the stated reference a feature contributes nothing;
  * the registered pyfunc model answers `predict(rows, params={"explain": k})` with the score and k reasons
    (the default output unchanged), through a real MLflow store.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from olist_ml.ml import calibration as calib
from olist_ml.ml.candidates import resolve
from olist_ml_model.explain import Explainer, base_estimator, sentence

CANDIDATES = ["logreg", "random_forest", "lightgbm", "xgboost", "hazard_glm"]
CAT, NUM = ["state"], ["signal", "skewed", "second", "days_left"]


def toy_frame(n: int = 800, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "skewed": rng.lognormal(1.0, 1.0, n),
            "second": rng.normal(size=n),
            "days_left": rng.integers(1, 46, n).astype("int64"),
            "state": rng.choice(["SP", "RJ", "MG", "BA"], n, p=[0.5, 0.25, 0.2, 0.05]),
            "unused": rng.normal(size=n),  # a column of the frame the model never reads
        }
    )
    X.loc[rng.random(n) < 0.08, "signal"] = np.nan
    X.loc[rng.random(n) < 0.05, "state"] = None
    logit = (
        1.5 * X["signal"].fillna(0)
        + 0.6 * np.log(X["skewed"])
        + 0.8 * X["second"]
        - 0.04 * X["days_left"]
        + (X["state"] == "RJ") * 0.8
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@pytest.fixture(scope="module")
def fitted():
    """Every candidate fitted on the toy rows, calibrated (sigmoid, on other rows) like a registered model."""
    X, y = toy_frame()
    Xv, yv = toy_frame(400, seed=1)
    out = {}
    for name in CANDIDATES:
        cand = resolve([name], "binary", "days_left" if name == "hazard_glm" else None)[0]
        pipe = cand.build(CAT, NUM, cand.default, 0, 1).fit(X, y)
        r = calib.response(pipe, Xv)
        cal = calib.Calibration("sigmoid", calibrator=calib._fit(r, yv, "sigmoid"))
        model = calib.attach(pipe, cal)
        out[name] = (model, Explainer(population="sellers").fit(model, X))
    return X, out


def _native_probability(est, Xt: np.ndarray, margin: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(what the margin implies by the model's link, the estimator's own uncalibrated P(class 1))."""
    own = np.asarray(est.predict_proba(Xt), dtype=float)[:, 1]
    if kind == "random_forest":
        return margin, own
    if kind == "hazard_glm":  # P(no event) = exp(-expected events), margin = -log(expected events)
        return np.exp(-np.exp(-margin)), own
    return 1 / (1 + np.exp(-margin)), own


@pytest.mark.parametrize("name", CANDIDATES)
def test_contributions_plus_base_equal_the_margin_on_every_row(fitted, name):
    X, models = fitted
    model, ex = models[name]
    e = ex.explain(model, X)
    assert e.features == CAT + NUM  # the original features, not the transformed columns
    assert e.contrib.shape == (len(X), len(CAT + NUM))
    np.testing.assert_allclose(e.base + e.contrib.sum(axis=1), e.margin, rtol=0, atol=1e-6)
    # the margin is the model's own: its link gives the estimator's uncalibrated probability
    est = base_estimator(model.steps[-1][1])
    implied, own = _native_probability(est, model[:-1].transform(X), e.margin, name)
    np.testing.assert_allclose(implied, own, rtol=0, atol=1e-5 if name == "xgboost" else 1e-9)
    # the calibrated score (what is served) is a monotone function of the margin
    p = model.predict_proba(X)[:, 1]
    order = np.argsort(e.margin, kind="stable")
    assert np.all(np.diff(p[order]) >= -1e-12)


@pytest.mark.parametrize("name", CANDIDATES)
def test_moving_one_feature_of_one_row_makes_it_the_top_reason(fitted, name):
    X, models = fitted
    model, ex = models[name]
    e = ex.explain(model, X)
    i = int(np.argmin(np.abs(e.contrib).max(axis=1)))  # the most ordinary row: no feature stands out
    assert e.reasons(i, 1)[0]["feature"] != "second" or abs(e.contrib[i]).max() < 0.05
    row = X.iloc[[i]].copy()
    row["second"] = X["second"].min() - 3.0  # far below anything seen
    moved = ex.explain(model, row)
    top = moved.reasons(0, 3)
    assert top[0]["feature"] == "second", top
    assert top[0]["value"] == pytest.approx(row["second"].iloc[0])
    assert top[0]["contribution"] < 0  # a low value of a positive-effect feature lowers the margin


@pytest.mark.parametrize("name", CANDIDATES)
def test_permuting_an_unused_column_changes_no_reason(fitted, name):
    X, models = fitted
    model, ex = models[name]
    shuffled = X.copy()
    shuffled["unused"] = np.random.default_rng(5).permutation(X["unused"].to_numpy())
    a, b = ex.explain(model, X), ex.explain(model, shuffled)
    np.testing.assert_array_equal(a.contrib, b.contrib)
    assert a.all_reasons(3) == b.all_reasons(3)


@pytest.mark.parametrize("name", ["logreg", "hazard_glm"])
def test_linear_reference_is_exact(fitted, name):
    """coefficient x (value - reference): at its stated reference a (non-missing) feature contributes 0."""
    X, models = fitted
    model, ex = models[name]
    e = ex.explain(model, X.head(1))
    row = X.head(1).copy()
    for f in ("skewed", "second"):
        row[f] = e.references[f]
    at_ref = ex.explain(model, row)
    for f in ("skewed", "second"):
        j = at_ref.features.index(f)
        assert abs(at_ref.contrib[0, j]) < 1e-9, (f, at_ref.contrib[0, j])
        assert abs(e.contrib[0, j]) > 1e-6  # the first row itself is not at the reference


def test_sentences_come_from_the_feature_catalog():
    from olist_ml.ml.explain import feature_docs

    docs = feature_docs(["days_since_last_sale", "gmv_180d", "pct_orders_late_90d", "horizon_days_left"])
    assert docs["gmv_180d"]["unit"] == "BRL" and docs["days_since_last_sale"]["unit"] == "days"
    assert sentence("days_since_last_sale", 38.0, 6.0, docs["days_since_last_sale"], "sellers") == (
        "no sale for 38 days; sellers median 6 days"
    )
    assert sentence("gmv_180d", 1234.5, 310.0, docs["gmv_180d"], "sellers") == (
        "GMV R$ 1,234 in the last 180 days; sellers median R$ 310"
    )
    assert sentence("pct_orders_late_90d", 0.25, 0.05, docs["pct_orders_late_90d"], "sellers") == (
        "25% of orders late in the last 90 days; sellers median 5%"
    )
    assert "left in the no-sale window" in sentence("horizon_days_left", 7.0, 30.0, docs["horizon_days_left"], "s")
    assert sentence("state", None, "SP", {}, "sellers") == "state unknown (missing); most sellers: SP"


def test_registered_pyfunc_model_answers_explain(tmp_path):
    """Through a real MLflow sqlite store: the default output stays one score per row; `explain` adds the
    reasons, equal to the explainer's, and the signature declares the parameter."""
    import mlflow

    from olist_ml.config import Settings
    from olist_ml.ml import artefact, explain, tracking
    from olist_ml.ml.problem import Problem

    settings = Settings(home=tmp_path / "home")
    tracking.configure(settings)
    X, y = toy_frame(400)
    cand = resolve(["logreg"], "binary")[0]
    model = cand.build(CAT, NUM, cand.default, 0, 1).fit(X, y)
    problem = Problem("toy", "binary", "abt_toy", ("dt_ref", "seller_id"), "dt_ref", None, None)
    ex = explain.explainer_for(model, X, problem, settings)
    mlflow.set_experiment(experiment_id=tracking.experiment_id(settings, "toy"))
    with mlflow.start_run():
        info = artefact.log_model(mlflow, model, "binary", X, explainer=ex)
    m = mlflow.pyfunc.load_model(info.model_uri)
    assert [p.name for p in m.metadata.signature.params.params] == ["explain"]
    plain = m.predict(X.head(20))
    assert isinstance(plain, pd.Series) and plain.name == "score" and len(plain) == 20
    out = m.predict(X.head(20), params={"explain": 3})
    assert isinstance(out, pd.DataFrame) and len(out) == 20
    np.testing.assert_allclose(out["score"], plain, rtol=0, atol=1e-12)
    e = ex.explain(model, X.head(20))
    for i in range(20):
        want = e.reasons(i, 3)
        assert [out.iloc[i][f"reason_{r}"] for r in (1, 2, 3)] == [w["feature"] for w in want]
        assert json.loads(out.iloc[i]["reasons"]) == want
        assert out.iloc[i]["reason_1_text"].endswith(")") or "sellers" in out.iloc[i]["reason_1_text"]
    np.testing.assert_allclose(out["margin"], e.margin, rtol=0, atol=1e-12)
    with pytest.raises(Exception, match="explain"):
        m.predict(X.head(2), params={"explain": -1})
