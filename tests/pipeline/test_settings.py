"""One place per fact: typed settings (env, --set, recorded with every model and checked where it
scores or serves) and feature names that problems take from the catalog (an unknown one is an error)."""

from __future__ import annotations

import json
import shutil
from datetime import date

import duckdb
import pytest

from olist_ml import problems
from olist_ml.config import Settings
from olist_ml.errors import InputError, MissingStepError, SettingsMismatchError, UnknownNameError
from olist_ml.features.catalog import F, catalog
from olist_ml.problems import segments as seg
from support.serving_world import make_feature_store, train_champion


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Settings:
    """A small synthetic warehouse with a monthly feature store (shared, read-mostly)."""
    s = Settings(home=tmp_path_factory.mktemp("settings") / "home")
    make_feature_store(s)
    return s


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> Settings:
    """A copy of `world` whose MLflow store holds a seller_churn champion trained with the default settings."""
    s = Settings(home=tmp_path_factory.mktemp("settings_trained") / "home")
    s.home.mkdir(parents=True)
    shutil.copy(world.warehouse, s.warehouse)
    train_champion(s, "churn")
    return s


# ---- feature names: through the catalog, checked ------------------------------------------------------
def test_every_feature_name_every_problem_uses_is_in_the_catalog_and_the_store(world):
    from olist_ml.features import feature_columns

    with duckdb.connect(str(world.warehouse), read_only=True) as con:
        store = set(feature_columns(con))
    for windows in ((30, 90, 180), (7, 28), (14, 60, 120, 365)):
        known = {d.name for d in catalog(windows)}
        for p in problems.REGISTRY.values():
            used = p.feature_store_columns(world.with_(feature_windows=windows))
            assert set(used) <= known, (p.name, windows, set(used) - known)
            if windows == world.feature_windows:
                assert set(used) <= store, (p.name, set(used) - store)
    assert problems.get("segments").feature_store_columns(world), "segments names its features"
    assert "days_since_last_sale" in problems.get("churn").feature_store_columns(world)


def test_segmentation_uses_every_curated_role_including_loyalty(world):
    """`pct_repeat_customers_180d` (a name that never existed) was silently dropped: no loyalty role."""
    from olist_ml.features import feature_columns

    with duckdb.connect(str(world.warehouse)) as con:
        store = feature_columns(con)
        seg.write_abt(con, world)  # the population segmentation is fitted on
        abt = [r[0] for r in con.execute("DESCRIBE abt_seller_segments").fetchall()]
    assert "pct_orders_repeat_customer_180d" in abt  # the loyalty feature is fitted on
    cols = seg.curated_features(world, store)
    roles = seg._roles(world)
    assert len(cols) == len(seg.CURATED) == 12
    assert set(roles.values()) == {
        "volume",
        "ticket",
        "tenure",
        "recency",
        "rating",
        "low_rating",
        "late",
        "delivery_days",
        "assortment",
        "loyalty",
        "freight",
    }
    assert roles["pct_orders_repeat_customer_180d"] == "loyalty" and "pct_orders_repeat_customer_180d" in cols
    # a feature store without one of them: one line naming it, never a silent drop
    with pytest.raises(MissingStepError, match="pct_orders_repeat_customer_180d"):
        seg.curated_features(world, [c for c in store if not c.startswith("pct_orders_repeat_customer")])
    assert set(abt) == {"dt_ref", "seller_id", *cols}


def test_an_unknown_feature_name_fails_loudly():
    with pytest.raises(UnknownNameError, match="pct_orders_repeat_customer"):
        F.pct_repeat_customers  # noqa: B018 - the old, drifted name
    with pytest.raises(UnknownNameError, match="gmv_45d is not built"):
        F.gmv.at(45).column(Settings())
    assert F.gmv.longest.column(Settings().with_(feature_windows=(30, 365))) == "gmv_365d"
    assert F.days_since_last_sale.column() == "days_since_last_sale"


# ---- typed settings: env vars, --set, errors ------------------------------------------------------------
def test_settings_are_typed_and_read_from_env_and_set(monkeypatch):
    monkeypatch.setenv("OLIST_ML_CHURN_HORIZON_DAYS", "30")
    monkeypatch.setenv("OLIST_ML_CHURN_CADENCE", "weekly")
    monkeypatch.setenv("OLIST_ML_ACTIVATION_HORIZON_DAYS", "60")
    monkeypatch.setenv("OLIST_ML_FEATURE_WINDOWS", "90,30")
    monkeypatch.setenv("OLIST_ML_SEGMENTS_K_RANGE", "3-5")
    monkeypatch.setenv("OLIST_ML_CANDIDATES", "logreg,lightgbm")  # older env names keep working
    monkeypatch.setenv("OLIST_ML_TRIALS", "7")
    monkeypatch.setenv("OLIST_ML_DELAY_TUNE_ROWS", "none")
    s = Settings.from_env(sets=["churn.eligibility_days=60", "training.bootstrap=200"], seed=5)
    assert (s.churn.horizon_days, s.churn.eligibility_days, s.churn.cadence) == (30, 60, "weekly")
    assert s.activation.horizon_days == 60 and s.feature_windows == (30, 90) and s.seed == 5
    assert s.segments.k_range == (3, 5) and s.training.candidates == ("logreg", "lightgbm")
    assert (s.training.trials, s.training.bootstrap, s.delay.tune_rows) == (7, 200, None)
    assert s.churn.split.purge_days == 30  # the churn purge follows the horizon
    assert not hasattr(s, "extra")  # no untyped bag of settings any more
    monkeypatch.setenv("OLIST_ML_CHURN_HORIZON_DAYS", "45 days")
    with pytest.raises(InputError, match="OLIST_ML_CHURN_HORIZON_DAYS='45 days' is not a valid int"):
        Settings.from_env()
    monkeypatch.delenv("OLIST_ML_CHURN_HORIZON_DAYS")
    with pytest.raises(UnknownNameError, match="churn.cadence 'hourly' is not one of monthly, weekly, daily"):
        Settings().with_set(["churn.cadence=hourly"])
    with pytest.raises(UnknownNameError, match="churn has no field 'horizon'"):
        Settings().with_set(["churn.horizon=3"])


def test_cli_set_reaches_the_command(tmp_path, capsys):
    from olist_ml.cli import main

    assert main(["--home", str(tmp_path / "h"), "--set", "churn.horizon_days=abc", "problems"]) == 2
    assert capsys.readouterr().err.strip() == "error: --set churn.horizon_days='abc' is not a valid int"


def test_the_churn_abt_windows_follow_the_feature_windows():
    from olist_ml.problems.churn import abt_sql, churn_columns

    s = Settings().with_(feature_windows=(30, 60))
    sql = abt_sql(s, [date(2018, 3, 1)], features_sql="SELECT dt_ref, seller_id FROM eligible", labelled=False)
    assert "exp_sale_days_in_horizon_60d" in sql and "exp_sale_days_in_horizon_180d" not in sql
    assert "exp_sale_days_in_horizon_60d" in churn_columns(s.feature_windows)
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE stg_orders AS SELECT 'o1' AS order_id, TIMESTAMP '2018-02-20 10:00' AS "
        "order_purchase_timestamp, NULL::TIMESTAMP AS order_delivered_carrier_date, NULL::TIMESTAMP AS "
        "order_delivered_customer_date, TIMESTAMP '2018-03-10' AS order_estimated_delivery_date"
    )
    con.execute(
        "CREATE TABLE stg_order_items AS SELECT 'o1' AS order_id, 1 AS order_item_id, 'p' AS product_id, "
        "'s' AS seller_id, TIMESTAMP '2018-02-25' AS shipping_limit_date"
    )
    row = con.execute(sql).df().iloc[0]
    # one sale day 9 days before dt_ref, tenure 9 days: rate 1/9 a day x (2018-02-20 + 45 d - dt_ref + 1 = 37 days left)
    assert row["horizon_days_left"] == 37
    assert row["exp_sale_days_in_horizon_60d"] == pytest.approx(37 / 9)


def test_lineage_hashes_the_settings_that_shape_each_problem():
    from olist_ml.lineage import problem_config_fp

    churn, act = problems.get("churn"), problems.get("activation")
    s = Settings()
    assert problem_config_fp(churn, s) != problem_config_fp(churn, s.with_(churn__horizon_days=30))
    assert problem_config_fp(churn, s) != problem_config_fp(churn, s.with_(churn__cadence="weekly"))
    assert problem_config_fp(churn, s) != problem_config_fp(churn, s.with_(feature_windows=(30, 60)))
    # the training protocol does not shape the ABT or the scores; activation reads no feature store
    assert problem_config_fp(churn, s) == problem_config_fp(churn, s.with_(churn__test_months=2))
    assert problem_config_fp(act, s) == problem_config_fp(act, s.with_(feature_windows=(30, 60)))
    assert problem_config_fp(act, s) != problem_config_fp(act, s.with_(activation__horizon_days=60))


# ---- recorded with every run and version, checked where a model scores or serves ----------------------
def test_settings_are_logged_with_the_run_and_the_model_version(trained):
    from olist_ml.ml import registry, tracking

    mv = registry.alias_version(trained, "seller_churn")
    rec = json.loads(mv.tags["settings"])
    assert rec["churn_horizon_days"] == 45 and rec["feature_windows"] == "30,90,180"
    assert rec["churn_cadence"] == "monthly" and rec["churn_test_months"] == 3
    c = tracking.client(trained)
    refit = c.get_run(mv.tags["run_id"])
    parent = c.get_run(refit.data.tags["mlflow.parentRunId"])
    for run in (parent, refit):
        assert run.data.params["churn_horizon_days"] == "45" and run.data.params["feature_windows"] == "30,90,180"
        assert json.loads(run.data.tags["settings"]) == rec


def test_scoring_with_other_settings_is_one_line_naming_both_values(trained, tmp_path, capsys):
    from olist_ml.cli import main
    from olist_ml.ml.scoring import predict

    churn = problems.get("churn")
    with pytest.raises(SettingsMismatchError) as e:
        predict(churn, trained.with_(churn__horizon_days=30))
    msg = str(e.value)
    assert msg.startswith("seller_churn v1 was trained with churn_horizon_days=45, the current setting is 30: ")
    assert "OLIST_ML_CHURN_HORIZON_DAYS=45" in msg and "\n" not in msg
    with pytest.raises(
        SettingsMismatchError, match="trained with feature_windows=30,90,180, the current setting is 30,90"
    ):
        predict(churn, trained.with_(feature_windows=(30, 90)))
    # the protocol (test months) does not change what a model scores: no error
    assert predict(churn, trained.with_(churn__test_months=2)).n_scored > 0
    home = ["--home", str(trained.home)]
    assert main([*home, "--set", "churn.horizon_days=30", "predict", "churn"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: seller_churn v1 was trained with churn_horizon_days=45, the current setting is 30"
    )


def test_serving_refuses_a_champion_trained_with_other_settings(trained):
    from olist_ml.serving.state import CHURN, ServingState

    ok = ServingState(trained, problems=(CHURN,), poll_seconds=0)
    ok.refresh()
    assert ok.readiness() == (True, [])
    bad = ServingState(trained.with_(churn__horizon_days=30), problems=(CHURN,), poll_seconds=0)
    bad.refresh()
    ready, reasons = bad.readiness()
    assert not ready and bad.slots[CHURN].champion is None
    assert reasons[0].startswith(
        "seller_churn: seller_churn v1 was trained with churn_horizon_days=45, the current setting is 30"
    )


def test_a_version_without_recorded_settings_is_not_checked():
    churn = problems.get("churn")
    churn.check_settings(None, Settings().with_(churn__horizon_days=30), "1")  # trained before settings were recorded
    churn.check_settings({"churn_horizon_days": 30}, Settings().with_(churn__horizon_days=30), "2")
    with pytest.raises(SettingsMismatchError):
        churn.check_settings({"churn_horizon_days": 30}, Settings(), "2")
