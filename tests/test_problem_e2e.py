"""End to end on synthetic data: synth -> ingest -> features -> train -> score, for the order-delay,
activation and segmentation problems (through the shared machinery and the problem registry)."""

from __future__ import annotations

import pytest

from olist_ml import problems
from olist_ml.config import Settings
from olist_ml.warehouse import session


def _features_ready() -> bool:
    try:
        from olist_ml import features
    except ImportError:
        return False
    return all(hasattr(features, n) for n in ("build", "as_of", "feature_columns", "feature_frame_sql",
                                               "available_dt_refs", "FEATURE_TABLES"))


needs_features = pytest.mark.skipif(not _features_ready(), reason="olist_ml.features (build/as_of) not available yet")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Settings:
    from olist_ml import features, ingest, synth

    root = tmp_path_factory.mktemp("problems_e2e")
    synth.generate(root / "raw", scale=0.05, seed=11)
    s = Settings(home=root / "home", threads=2)
    ingest.ingest(root / "raw", s)
    features.build(s, cadence="monthly")
    return s


def test_registry_has_the_problems():
    for alias, name in (("delay", "order_delay"), ("activation", "seller_activation"), ("segments", "seller_segments")):
        assert problems.get(alias).name == name


@needs_features
def test_order_delay_train_and_score(world):
    from olist_ml.ml import scoring, train

    p = problems.get("order_delay")
    r = train.train(p, world, n_trials=0, candidates=["logreg"])
    assert r.decision == "champion" and r.model_version == "1"
    assert 0.5 < r.candidates[0].oot["roc_auc"] <= 1.0
    with session(world, read_only=True) as con:
        cols = [c[0] for c in con.execute("DESCRIBE abt_order_delay").fetchall()]
        assert any(c.startswith("seller_") and c not in ("seller_id", "seller_state") for c in cols)
    rep = scoring.predict(p, world)
    assert rep.n_scored > 0
    with session(world, read_only=True) as con:
        n, lo, hi = con.execute("SELECT count(*), min(score), max(score) FROM scores_order_delay").fetchall()[0]
    assert n == rep.n_scored and 0 <= lo <= hi <= 1


@needs_features
def test_activation_train_and_score(world):
    from olist_ml.ml import scoring, train
    from olist_ml.problems import activation as act

    p = problems.get("activation")
    r = train.train(p, world, n_trials=0, candidates=["logreg"])
    ci = act.log_oot_confidence(world, r, n_boot=200)["logreg"]
    assert ci.n > 0 and (ci.n_boot == 0 or ci.low <= ci.high)
    with session(world, read_only=True) as con:
        first = con.execute("SELECT min(dt_ref) FROM abt_seller_activation").fetchall()[0][0]
    import datetime as dt

    rep = scoring.predict(p, world, as_of=first + dt.timedelta(days=30))
    assert rep.n_scored > 0


@needs_features
def test_segments_fit_and_assign(world):
    from olist_ml.problems import segments as seg

    res = seg.fit_segments(world, k_range=(3, 5), n_stability=2)
    assert 3 <= res.k <= 5 and len(set(res.names.values())) == res.k
    assert res.profile["n_sellers"].sum() == res.n_sellers
    assert len(res.stability_ari) == 2 and all(-1 <= a <= 1 for a in res.stability_ari)
    with session(world, read_only=True) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT segment_name), min(model_version) FROM seller_segments "
                           "WHERE dt_ref = ?", [res.dt_ref]).fetchall()[0]
    assert rows == (res.n_sellers, res.k, res.model_version)
    assert seg.assign_segments(world, res.dt_ref) == res.n_sellers  # idempotent re-assignment
    with session(world, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM seller_segments").fetchall()[0][0] == res.n_sellers
