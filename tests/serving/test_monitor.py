"""Monitoring: PSI against hand-computed values, realised performance on known outcomes, and
`monitor()` end to end over a real training run (olist_ml.ml.train), real batch scores
(olist_ml.ml.scoring.predict), the warehouse tables and the MLflow monitoring run."""

from __future__ import annotations

import math
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from olist_ml.serving.metrics import EPSILON, decile_edges, psi, realised_performance, roc_auc, top_decile_lift
from support.serving_world import MON_ABT, N_SELLERS, REFS
from support.serving_world import fixture_problem as _problem


# ---------------------------------------------------------------------------------------
# PSI by hand
# ---------------------------------------------------------------------------------------
def test_psi_numeric_deciles_by_hand():
    ref = pd.Series(np.arange(100, dtype=float))  # deciles: 9.9, 19.8, ..., 89.1 -> 10 bins of 10%
    cur = pd.Series(np.r_[np.arange(0, 10), np.arange(90, 100)].astype(float).repeat(1))
    edges = decile_edges(ref)
    assert edges == pytest.approx([9.9 * k for k in range(1, 10)])
    r = psi(ref, cur)
    # current: 50% in the first bin, 50% in the last, 8 empty bins (-> epsilon), no NULL anywhere
    e = EPSILON
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (e - 0.1) * math.log(e / 0.1)
    assert r.psi == pytest.approx(expected, rel=1e-12)
    assert r.flag
    assert r.ref_share[:10] == pytest.approx([0.1] * 10)
    assert r.cur_share[0] == 0.5 and r.cur_share[9] == 0.5


def test_psi_nulls_are_their_own_bin_and_values_outside_range_go_to_outer_bins():
    ref = pd.Series([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, None, None])
    cur = pd.Series([-100.0, 1000.0, None, None, None, None])
    r = psi(ref, cur)
    n_bins = len(decile_edges(ref)) + 1
    # reference: 10 values in 10 bins (1/12 each), 2 NULLs (1/6); current: 1/6 in each outer bin, 2/3 NULL
    ref_v, ref_null = 1 / 12, 2 / 12
    cur_outer, cur_null = 1 / 6, 4 / 6
    e = EPSILON
    expected = (
        2 * (cur_outer - ref_v) * math.log(cur_outer / ref_v)
        + (n_bins - 2) * (e - ref_v) * math.log(e / ref_v)
        + (cur_null - ref_null) * math.log(cur_null / ref_null)
    )
    assert n_bins == 10
    assert r.psi == pytest.approx(expected, rel=1e-12)
    assert r.null_ref == 2 and r.null_cur == 4


def test_psi_categorical_with_unseen_and_null():
    ref = pd.Series(["a"] * 5 + ["b"] * 3 + [None] * 2)
    cur = pd.Series(["a"] * 2 + ["b"] * 2 + [None] * 4 + ["c"] * 2)
    r = psi(ref, cur)
    e = EPSILON
    expected = (
        (0.2 - 0.5) * math.log(0.2 / 0.5)
        + (0.2 - 0.3) * math.log(0.2 / 0.3)
        + (0.2 - e) * math.log(0.2 / e)
        + (0.4 - 0.2) * math.log(0.4 / 0.2)
    )
    assert r.bins == ["a", "b", "<unseen>", "<null>"]
    assert r.psi == pytest.approx(expected, rel=1e-12)


def test_psi_of_identical_populations_is_zero_and_small_shift_is_not_flagged():
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(size=5000))
    assert psi(x, x).psi == pytest.approx(0.0, abs=1e-12)
    assert not psi(x, pd.Series(rng.normal(size=5000))).flag
    assert psi(x, pd.Series(rng.normal(loc=1.0, size=5000))).flag


# ---------------------------------------------------------------------------------------
# realised performance on known outcomes
# ---------------------------------------------------------------------------------------
def test_realised_performance_known_outcomes():
    s1 = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    y1 = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    s2 = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    y2 = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # perfectly wrong ranking
    df = pd.DataFrame(
        {
            "dt_ref": [date(2018, 1, 1)] * 10 + [date(2018, 2, 1)] * 10 + [date(2018, 3, 1)] * 3,
            "score": s1 + s2 + [0.5, 0.6, 0.7],
            "target": y1 + y2 + [None, None, None],  # not matured yet: dropped
        }
    )
    out = realised_performance(df, group_cols="dt_ref")
    assert list(out["dt_ref"]) == [date(2018, 1, 1), date(2018, 2, 1)]
    r1, r2 = out.iloc[0], out.iloc[1]
    # dt 1: positives at 0.9 (beats all 8 negatives) and 0.7 (beats 7 of 8) -> 15/16
    assert r1["roc_auc"] == pytest.approx(15 / 16)
    # top decile = the single highest score (a positive); base rate 0.2 -> lift 5
    assert r1["lift_top_decile"] == pytest.approx(5.0)
    assert r1["n"] == 10 and r1["n_positive"] == 2
    assert r2["roc_auc"] == pytest.approx(0.0)
    assert r2["lift_top_decile"] == pytest.approx(0.0)


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert top_decile_lift([0] * 20 + [1] * 5, list(range(25))) == pytest.approx(1.0 / (5 / 25))


# ---------------------------------------------------------------------------------------
# monitor() end to end on a small problem trained with the real machinery
# ---------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_monitor_end_to_end(settings):
    from olist_ml.ml import registry, tracking
    from olist_ml.ml.scoring import predict
    from olist_ml.ml.train import train
    from olist_ml.serving.monitor import monitor, training_range

    settings.home.mkdir(parents=True)
    duckdb.connect(str(settings.warehouse)).close()
    problem = _problem()
    res = train(problem, settings, n_trials=0, candidates=["logreg"], cv_folds=2)
    assert res.decision == "champion"
    predict(problem, settings, as_of=date(2017, 12, 1))  # a past, labelled population
    predict(problem, settings, as_of=REFS[-1])  # the latest population (labels not matured)

    champ = registry.load_champion(settings, problem.name)
    lo, hi = training_range(settings, champ)
    assert (str(lo), str(hi)) == (res.lineage["train_dt_ref_min"], res.lineage["train_dt_ref_max"])

    out = monitor(problem, settings)
    assert out.current_dt_ref == REFS[-1]
    assert out.n_current == N_SELLERS
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        n_ref = con.execute(f"SELECT count(*) FROM {MON_ABT} WHERE dt_ref BETWEEN ? AND ?", [lo, hi]).fetchall()[0][0]
        drift = (
            con.execute("SELECT feature, kind, psi, flag FROM monitor_drift WHERE problem = ?", [problem.name])
            .df()
            .set_index("feature")
        )
        perf = con.execute("SELECT * FROM monitor_performance WHERE problem = ? ORDER BY dt_ref", [problem.name]).df()
        joined = con.execute(
            f"SELECT s.score, a.target FROM scores_monitor_fixture s JOIN {MON_ABT} a USING (dt_ref, seller_id) "
            f"WHERE a.target IS NOT NULL AND s.dt_ref = DATE '2017-12-01'"
        ).df()
    finally:
        con.close()
    assert out.n_reference == n_ref
    # the drifting feature is flagged, the stable ones are not; the PSI stored equals a recomputation
    assert set(drift.index) == {"x1", "x2", "state", "score"}
    assert drift.loc["x2", "flag"] and drift.loc["x2", "psi"] > 1.0
    assert not drift.loc["x1", "flag"] and not drift.loc["state", "flag"]
    assert drift.loc["x2", "kind"] == "feature" and drift.loc["score", "kind"] == "score"
    # realised performance: a row per scored date; only the matured one has labels, and its metric equals
    # the metric over the join, with the known signal; the latest date waits for its labels
    assert list(perf["dt_ref"].astype(str)) == ["2017-12-01", str(REFS[-1])]
    assert perf["n"].iloc[1] == 0 and not perf["final"].iloc[1] and perf["final"].iloc[0]
    assert perf["n"].iloc[0] == perf["n_scored"].iloc[0] == len(joined)
    assert perf["roc_auc"].iloc[0] == pytest.approx(roc_auc(joined["target"], joined["score"]))
    assert perf["roc_auc"].iloc[0] > 0.7
    assert perf["lift_top_decile"].iloc[0] == pytest.approx(top_decile_lift(joined["target"], joined["score"]))
    # the MLflow monitoring run in the problem's experiment
    client = tracking.client(settings)
    run = client.get_run(out.mlflow_run_id)
    assert run.data.tags["role"] == "monitor"
    assert run.info.experiment_id == res.experiment_id
    assert run.data.metrics["psi_x2"] == pytest.approx(drift.loc["x2", "psi"])
    assert run.data.metrics["n_drifted"] == out.n_flagged
    # a second run appends, with its own run_ts
    monitor(problem, settings, log_to_mlflow=False)
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT run_ts), count(*) FROM monitor_drift").fetchall()[0][1] == 8
    finally:
        con.close()
