"""Seller churn end to end on synthetic data: ABT target vs a brute-force oracle, CLI train ->
champion -> predict, and the one-line errors of missing steps."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from olist_ml.cli import main
from olist_ml.config import Settings
from olist_ml.warehouse import observed_end

features = pytest.importorskip("olist_ml.features")
synth = pytest.importorskip("olist_ml.synth")
from olist_ml.ingest import ingest  # noqa: E402
from olist_ml.problems import churn  # noqa: E402

SCALE = 0.05


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Settings:
    """Synthetic raw files -> warehouse -> monthly feature store (shared, read-mostly)."""
    root = tmp_path_factory.mktemp("churn")
    raw = root / "raw"
    synth.generate(raw, seed=7, scale=SCALE)
    s = Settings(home=root / "home")
    ingest(raw, s)
    features.build(s, cadence="monthly")
    return s


@pytest.fixture
def home(built: Settings, tmp_path: Path) -> Settings:
    """A private copy of the built warehouse with an empty MLflow store."""
    s = Settings(home=tmp_path / "home")
    s.home.mkdir(parents=True)
    shutil.copy(built.warehouse, s.warehouse)
    return s


def _oracle(con, dt_refs, elig_days: int, horizon: int) -> pd.DataFrame:
    sales = con.execute(
        "SELECT DISTINCT i.seller_id, i.order_id, o.order_purchase_timestamp AS ts "
        "FROM stg_order_items i JOIN stg_orders o USING (order_id)"
    ).df()
    end = pd.Timestamp(observed_end(con))  # exclusive
    days = sorted({d.date() for d in con.execute("SELECT order_purchase_timestamp FROM stg_orders").df().iloc[:, 0]})
    # marketplace-wide silences of >= SILENCE_DAYS days: [first silent day, next order day)
    holes = [
        (pd.Timestamp(a) + timedelta(days=1), pd.Timestamp(b))
        for a, b in zip(days, days[1:], strict=False)
        if (b - a).days - 1 >= churn.SILENCE_DAYS
    ]
    rows = []
    by_seller = {k: sorted(g["ts"]) for k, g in sales.groupby("seller_id")}
    for dt in dt_refs:
        t0 = pd.Timestamp(dt)
        for seller, ts in by_seller.items():
            before = [t for t in ts if t0 - timedelta(days=elig_days) <= t < t0]
            if not before:
                continue
            last_day = max(before).normalize()
            stop = last_day + timedelta(days=horizon + 1)  # through last sale date + horizon days
            sold = any(t0 <= t < stop for t in ts)
            hole = any(h0 < t0 + timedelta(days=horizon) and h1 > t0 - timedelta(days=elig_days) for h0, h1 in holes)
            label = None if t0 + timedelta(days=horizon) > end or hole else int(not sold)
            rows.append({"dt_ref": t0, "seller_id": seller, "oracle": label})
    return pd.DataFrame(rows)


def test_abt_population_and_target_match_brute_force_oracle(home):
    con = duckdb.connect(str(home.warehouse))
    try:
        n = churn.build_abt(con, home)
        abt = con.execute("SELECT * FROM abt_seller_churn").df()
        assert n == len(abt) > 0
        assert not abt.duplicated(["dt_ref", "seller_id"]).any()
        assert (pd.to_datetime(abt.dt_ref).dt.day == 1).all()  # monthly by default
        feats = features.feature_columns(con)
        assert set(feats) <= set(abt.columns)
        orc = _oracle(con, sorted(abt.dt_ref.unique()), home.churn.eligibility_days, home.churn.horizon_days)
    finally:
        con.close()
    abt["dt_ref"] = pd.to_datetime(abt["dt_ref"])
    m = abt[["dt_ref", "seller_id", "churn"]].merge(orc, on=["dt_ref", "seller_id"], how="outer", indicator=True)
    assert (m["_merge"] == "both").all(), m[m["_merge"] != "both"].head()
    lab = m["oracle"].notna()
    assert (m.loc[lab, "churn"] == m.loc[lab, "oracle"]).all()
    assert m.loc[~lab, "churn"].isna().all()
    assert lab.any() and (~lab).any()  # both labelled and scoring-only dt_refs exist
    assert 0.02 < m.loc[lab, "churn"].mean() < 0.98


def test_cli_train_promote_predict_churn(home, capsys):
    g = ["--home", str(home.home)]
    rc = main(
        g
        + [
            "train",
            "churn",
            "--trials",
            "1",
            "--timeout",
            "20",
            "--candidates",
            "logreg,lightgbm",
            "--test-months",
            "2",
            "--validation-months",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "seller_churn v1 is champion" in out
    # the protocol in the summary: periods, the once-measured test with its CI beside the recency
    # baseline, calibration, and the AUC of the sellers one can still act on
    assert "| validation 20" in out and "| test 20" in out and "purged by when labels became known" in out
    assert "measured once): roc_auc 0." in out and "baseline recency alone" in out
    assert "calibration: " in out and "roc_auc_sold_14d" in out and "roc_auc_left_31_45d" in out
    from olist_ml.ml.registry import load_champion

    champ = load_champion(home, "seller_churn")
    assert champ.version == "1" and len(champ.feature_names) > 10

    rc = main(g + ["predict", "churn"])
    out = capsys.readouterr().out
    assert rc == 0, out
    con = duckdb.connect(str(home.warehouse), read_only=True)
    first = con.execute("SELECT * EXCLUDE (scored_at) FROM scores_seller_churn ORDER BY seller_id").df()
    latest = con.execute("SELECT max(dt_ref) FROM fs_seller_sales").fetchall()[0][0]
    con.close()
    assert len(first) > 0 and (pd.to_datetime(first.dt_ref).dt.date == latest).all()
    assert first.score.between(0, 1).all() and first.model_version.eq("1").all()
    assert f"scored {len(first)} rows" in out

    assert main(g + ["predict", "churn", "--dt-ref", str(latest)]) == 0  # same dt_ref + version: replaced
    con = duckdb.connect(str(home.warehouse), read_only=True)
    again = con.execute("SELECT * EXCLUDE (scored_at) FROM scores_seller_churn ORDER BY seller_id").df()
    con.close()
    pd.testing.assert_frame_equal(first, again)

    rc = main(g + ["promote", "churn", "--version", "7", "--reason", "x"])
    assert rc == 2 and "has no version 7" in capsys.readouterr().err


def test_cli_errors_are_one_line(home, tmp_path, capsys):
    g = ["--home", str(home.home)]
    assert main(g + ["train", "nosuchproblem"]) == 2
    err = capsys.readouterr().err
    assert "unknown problem 'nosuchproblem'" in err and "seller_churn" in err and err.count("\n") == 1

    assert main(g + ["predict", "churn"]) == 2  # nothing trained yet
    err = capsys.readouterr().err
    assert "no model 'seller_churn'" in err and "olist-ml train churn" in err and err.count("\n") == 1

    con = duckdb.connect(str(home.warehouse))
    for t in features.FEATURE_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {t}")
    con.close()
    assert main(g + ["train", "churn", "--trials", "0"]) == 2  # features not built
    err = capsys.readouterr().err
    assert "olist-ml features" in err and err.count("\n") == 1

    empty = ["--home", str(tmp_path / "nothing")]
    assert main(empty + ["train", "churn"]) == 2  # no warehouse at all
    assert "olist-ml ingest" in capsys.readouterr().err
    assert main(g + ["predict", "churn", "--dt-ref", "2017-13-01"]) == 2
