"""Generic ML machinery on a generated ABT with a known signal (no feature store needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from olist_ml.config import Settings
from olist_ml.ml import registry, scoring
from olist_ml.ml.data import split_protocol, time_group_folds
from olist_ml.ml.problem import Problem, SplitConfig
from olist_ml.ml.train import train
from olist_ml.warehouse import connect, replace_table_atomically
from support.toy_problem import N_ENT, toy_abt, toy_problem


@pytest.fixture
def wh(settings: Settings) -> Settings:
    connect(settings, must_exist=False).close()
    return settings


def test_feature_derivation_and_split(wh):
    abt = toy_abt()
    p = toy_problem(abt)
    con = connect(wh)
    p.build_abt(con, wh)
    cat, num = p.features_of(con)
    con.close()
    assert cat == ["segment"] and num == ["signal", "noise"]
    sp = split_protocol(abt.assign(dt_ref=pd.to_datetime(abt.dt_ref)), p, wh)
    # months 10..12 labelled test, 13..14 unlabelled; validation 08..09; a label is known 31 days on
    assert (str(sp.validation_start), str(sp.test_start), str(sp.test_end)) == (
        "2017-08-01",
        "2017-10-01",
        "2017-12-01",
    )
    assert sp.train["dt_ref"].max() == pd.Timestamp("2017-07-01")  # 07-01 + 31 d = 08-01: known by then
    assert set(sp.validation["dt_ref"]) == {pd.Timestamp("2017-08-01")}  # 09-01's labels arrive after 10-01
    assert sp.pretest["dt_ref"].max() == pd.Timestamp("2017-08-01") and len(sp.pretest) == len(sp.train) + len(
        sp.validation
    )
    assert set(sp.test["dt_ref"].dt.month) == {10, 11, 12} and sp.test["y"].notna().all()
    assert len(sp.labelled) == abt["y"].notna().sum()
    folds, _ = time_group_folds(sp.train, p, 2, seed=0, known=sp.train_known)
    assert folds
    for tr, va in folds:
        a, b = sp.train.iloc[tr], sp.train.iloc[va]
        assert not set(a.entity_id) & set(b.entity_id)  # no entity on both sides
        assert (a.dt_ref + pd.Timedelta(days=31)).max() <= b.dt_ref.min()  # labels known before the fold validates


def test_known_signal_reaches_auc_floor_and_scoring_is_idempotent(wh):
    p = toy_problem(toy_abt())
    res = train(p, wh, n_trials=2, timeout=30, candidates=["logreg", "lightgbm"])
    assert res.decision == "champion" and res.model_version == "1"
    for c in res.candidates:
        assert c.validation["roc_auc"] > 0.75, (c.name, c.validation)
        assert 0 <= c.validation["brier"] <= 0.25
    assert res.test["roc_auc"] > 0.75 and res.test["roc_auc_ci_low"] < res.test["roc_auc"] < res.test["roc_auc_ci_high"]
    champ = registry.load_champion(wh, "toy_problem")
    assert champ.version == "1" and set(champ.feature_names) == {"segment", "signal", "noise"}

    r1 = scoring.predict(p, wh)
    con = connect(wh, read_only=True)
    t1 = con.execute("SELECT * EXCLUDE (scored_at) FROM scores_toy_problem ORDER BY entity_id").df()
    con.close()
    r2 = scoring.predict(p, wh)
    con = connect(wh, read_only=True)
    t2 = con.execute("SELECT * EXCLUDE (scored_at) FROM scores_toy_problem ORDER BY entity_id").df()
    con.close()
    assert r1.n_scored == r2.n_scored == len(t2) == N_ENT // 2
    pd.testing.assert_frame_equal(t1, t2)
    assert set(t2.decile) == set(range(1, 11))
    assert t2.loc[t2.decile == 1, "score"].min() >= t2.loc[t2.decile == 10, "score"].max()


def test_shuffled_target_falls_to_chance(wh):
    p = toy_problem(toy_abt(shuffle=True))
    res = train(p, wh, n_trials=2, timeout=30, candidates=["logreg", "lightgbm"], register=False)
    for c in res.candidates:
        assert 0.40 < c.validation["roc_auc"] < 0.60, (c.name, c.validation)
    assert 0.40 < res.test["roc_auc"] < 0.60 and res.test["roc_auc_ci_low"] < 0.5


def test_champion_rule_keeps_worse_challenger_out(wh):
    abt = toy_abt()
    good = toy_problem(abt)
    r1 = train(good, wh, n_trials=0, candidates=["logreg"])
    assert r1.decision == "champion"
    # the segment alone is weaker (but above chance): v1's spec (logreg on signal, noise, segment)
    # is refit on the same rows and wins on the same test rows
    weak = dataclasses.replace(good, categorical_features=("segment",), numeric_features=())
    r2 = train(weak, wh, n_trials=0, candidates=["logreg"])
    assert r2.decision == "challenger", r2.reason
    assert "does not beat champion v1" in r2.reason and "both specs fitted on the same" in r2.reason
    assert registry.load_champion(wh, "toy_problem").version == "1"
    assert str(registry.alias_version(wh, "toy_problem", "challenger").version) == "2"
    mv = registry.alias_version(wh, "toy_problem", "challenger")
    assert mv.tags["decision"] == "challenger"
    # a manual promotion moves the alias and records why
    out = registry.promote(wh, "toy_problem", 2, reason="business asked for the simpler model")
    assert out["previous"] == "1"
    champ = registry.load_champion(wh, "toy_problem")
    assert champ.version == "2" and champ.tags["champion_reason"] == "business asked for the simpler model"


def test_cluster_problem_on_the_same_machinery(wh):
    rng = np.random.default_rng(3)
    centers = np.array([[0, 0], [6, 0], [0, 6]])
    rows = []
    for dt in pd.date_range("2017-01-01", periods=8, freq="MS"):
        lab = rng.integers(0, 3, size=120)
        xy = centers[lab] + rng.normal(scale=0.6, size=(120, 2))
        rows.append(
            pd.DataFrame(
                {"dt_ref": dt.date(), "entity_id": [f"e{i:03d}" for i in range(120)], "a": xy[:, 0], "b": xy[:, 1]}
            )
        )
    abt = pd.concat(rows, ignore_index=True)

    def build(con, settings):
        con.register("_c", abt)
        try:
            return replace_table_atomically(con, "abt_toy_c", "SELECT dt_ref::DATE AS dt_ref, entity_id, a, b FROM _c")
        finally:
            con.unregister("_c")

    def frame(con, settings, as_of):
        return con.execute("SELECT * FROM abt_toy_c WHERE dt_ref = (SELECT max(dt_ref) FROM abt_toy_c)").df()

    p = Problem(
        name="toy_segments",
        kind="cluster",
        abt_table="abt_toy_c",
        key_columns=("dt_ref", "entity_id"),
        time_column="dt_ref",
        group_column="entity_id",
        build_abt=build,
        scoring_frame=frame,
        split=SplitConfig(test_months=2, validation_months=2, cv_folds=2),
    )
    res = train(p, wh, n_trials=3, timeout=30)
    best = res.candidates[0]
    assert res.metric == "silhouette" and best.validation["silhouette"] > 0.5 and res.test["silhouette"] > 0.5
    rep = scoring.predict(p, wh)
    con = connect(wh, read_only=True)
    sc = con.execute("SELECT score, decile FROM scores_toy_segments").df()
    con.close()
    assert rep.n_scored == 120 and sc["score"].nunique() >= 3 and sc["decile"].isna().all()


def test_champion_rule_decision_and_reason():
    from olist_ml.ml.registry import CHALLENGER, CHAMPION, champion_rule

    d, r = champion_rule(0.871, 0.868, label="test roc_auc", champion_version=3, on="the same test rows")
    assert d == CHAMPION and r == "test roc_auc 0.8710 beats champion v3 0.8680 on the same test rows"
    # a tie at 4 decimals prints 6, and min_delta must be exceeded
    d, r = champion_rule(0.87291, 0.87288, label="test roc_auc", champion_version=1, on="x", min_delta=0.001)
    assert d == CHALLENGER and "0.872910 does not beat champion v1 0.872880" in r
    # lower-is-better metrics (log loss) flip the comparison
    assert (
        champion_rule(0.30, 0.35, label="test log_loss", champion_version=1, on="x", lower_is_better=True)[0]
        == CHAMPION
    )
    assert (
        champion_rule(0.40, 0.35, label="test log_loss", champion_version=1, on="x", lower_is_better=True)[0]
        == CHALLENGER
    )
