"""Seller segmentation: k chosen in range by silhouette, stability measured, profiles add up,
names readable and unique, heavy tails tamed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from olist_ml.config import Settings
from olist_ml.problems import segments as seg

S = Settings()
W = max(S.feature_windows)


def _sellers(seed: int = 0) -> pd.DataFrame:
    """Four planted seller types with heavy-tailed volumes."""
    rng = np.random.default_rng(seed)
    groups = {  # n, log-gmv centre, orders, tenure days, recency, rating, pct late
        "big": (60, 9.0, 200, 600, 2, 4.6, 0.03),
        "new": (120, 5.0, 5, 40, 5, 4.3, 0.05),
        "bad": (70, 6.5, 30, 400, 10, 2.6, 0.45),
        "fading": (90, 6.0, 10, 500, 150, 4.2, 0.06),
    }
    rows = []
    for g, (n, lg, no, ten, rec, rat, late) in groups.items():
        for _ in range(n):
            rows.append(
                {
                    "seller_id": f"{g}{len(rows)}",
                    "truth": g,
                    f"gmv_{W}d": float(np.exp(rng.normal(lg, 0.3))),
                    f"n_orders_{W}d": float(max(1, rng.normal(no, no * 0.15))),
                    "days_since_first_sale": float(max(1, rng.normal(ten, ten * 0.1))),
                    "days_since_last_sale": float(max(0, rng.normal(rec, rec * 0.2 + 1))),
                    f"avg_review_score_{W}d": float(np.clip(rng.normal(rat, 0.15), 1, 5)),
                    f"pct_orders_late_{W}d": float(np.clip(rng.normal(late, 0.03), 0, 1)),
                }
            )
    df = pd.DataFrame(rows)
    df.loc[df.index[::17], f"avg_review_score_{W}d"] = np.nan  # sellers without reviews
    return df


FEATS = [
    f"gmv_{W}d",
    f"n_orders_{W}d",
    "days_since_first_sale",
    "days_since_last_sale",
    f"avg_review_score_{W}d",
    f"pct_orders_late_{W}d",
]


def test_curated_features_come_from_the_catalog():
    """Every curated feature is a catalog column at the longest window (no list of its own; the check
    against a built feature store is tests/pipeline/test_settings.py)."""
    from olist_ml.errors import MissingStepError
    from olist_ml.features.catalog import catalog

    cols = seg.curated_features(S)
    assert set(FEATS) <= set(cols) and f"pct_orders_repeat_customer_{W}d" in cols
    assert set(cols) <= {d.name for d in catalog(S.feature_windows)}
    with pytest.raises(MissingStepError, match="the feature store lacks"):
        seg.curated_features(S, FEATS + ["something_else"])  # a store lacking some: named, never dropped


def test_heavy_tail_scaler_clips_and_logs():
    X = np.c_[np.r_[np.ones(99), 1e9], np.linspace(-1, 1, 100)]
    sc = seg.HeavyTailScaler().fit(X)
    assert sc.log_cols_.tolist() == [True, False]  # skewed non-negative -> log; symmetric/negative -> not
    Z = sc.transform(X)
    assert np.abs(Z).max() <= seg.CLIP


def test_choose_k_stability_profile_names():
    df = _sellers()
    k, sil = seg.choose_k(df, FEATS, (3, 8), seed=0)
    assert set(sil) == set(range(3, 9)) and 3 <= k <= 8
    assert k == 4  # the planted structure
    assert sil[k] == max(sil.values())
    pipe = seg.segment_pipeline(FEATS, k, 0).fit(df)
    labels = pipe[-1].labels_
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(df["truth"], labels) > 0.9
    aris = seg.stability(df, FEATS, k, labels, seed=0, n_runs=3)
    assert len(aris) == 3 and min(aris) > 0.9

    X = seg._space(pipe, df)
    prof = seg.profile(df, labels, FEATS, X, f"gmv_{W}d")
    assert prof["n_sellers"].sum() == len(df)
    assert prof["share"].sum() == pytest.approx(1.0)
    assert prof["gmv_share"].sum() == pytest.approx(1.0)
    names = seg.name_segments(prof, FEATS, S)
    assert len(set(names.values())) == len(names) == k
    # names follow the profiles of the planted types
    by_truth = {t: names[int(pd.Series(labels[df["truth"] == t]).mode()[0])] for t in ("big", "new", "bad", "fading")}
    assert "high-volume" in by_truth["big"]
    assert "new" in by_truth["new"]
    assert by_truth["bad"].startswith("at-risk") and "badly rated" in by_truth["bad"]
    assert "fading" in by_truth["fading"]


def test_names_are_unique_even_for_identical_profiles():
    prof = pd.DataFrame({"segment": [0, 1, 2], "n_sellers": [5, 9, 7], f"z_gmv_{W}d": [1.0, 1.0, -1.0]})
    names = seg.name_segments(prof, [f"gmv_{W}d"], S)
    assert len(set(names.values())) == 3
    assert names[1] == "high-volume" and names[0] == "high-volume #2"


def test_too_few_sellers_is_a_clear_error():
    from olist_ml.errors import InputError

    with pytest.raises(InputError, match="active sellers"):
        seg.choose_k(_sellers().head(3), FEATS, (3, 8), seed=0)
