"""Order delay's SQL runs on Spark: the ABT `abt_order_delay` and the scoring frame (the orders open at a
date, each with its row there) built by Spark from the same SQL text as on DuckDB (the dialect macros of
`olist_ml.features.render`, rendered for "spark") equal DuckDB's, every row and column (1e-6, NULLs alike).

Both engines read the same stg rows: DuckDB ingests a small synthetic source, its stg tables are copied
into the lake (Spark's own ingest has its parity test), so any difference is the order-delay SQL's. On
Spark the ABT is built through the generic path (`olist_ml.spark.ml.refresh_abt`: the SparkProblem
adapter, the lake write and its lineage)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from olist_ml.config import Settings
from olist_ml.ingest import ingest
from olist_ml.problems import order_delay as od
from olist_ml.schema import SOURCES
from olist_ml.warehouse import session as duck_session
from support.frames import assert_same
from support.spark import session, spark_settings

pytestmark = [pytest.mark.spark, pytest.mark.slow]
pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def homes(synthetic_csvs, tmp_path_factory):
    """(DuckDB settings, Spark settings, SparkEnv): one synthetic source; its stg tables on both engines."""
    from olist_ml.spark.lake import Lake
    from olist_ml.spark.problems import SparkEnv

    root = tmp_path_factory.mktemp("delay-engines")
    duck = Settings(home=root / "duck")
    ingest(synthetic_csvs(3, 0.05), duck)
    lake = spark_settings(root / "spark")
    spark = session()
    out = root / "stg"
    out.mkdir()
    con = duckdb.connect(str(duck.warehouse), read_only=True)
    try:
        have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        for spec in SOURCES:
            if spec.stg in have:
                con.execute(f"COPY {spec.stg} TO '{out / spec.stg}.parquet' (FORMAT parquet)")
    finally:
        con.close()
    lk = Lake(spark, lake.lake_uri)
    for f in sorted(out.glob("*.parquet")):
        lk.replace(spark.read.parquet(f.as_uri()), f.stem)
    return duck, lake, SparkEnv.open(lake, features=False)


def test_abt_equal_on_both_engines(homes) -> None:
    from olist_ml.spark.ml import refresh_abt

    duck, lake, env = homes
    with duck_session(duck) as con:
        od.build_abt(con, duck)
        a = con.execute(f"SELECT * FROM {od.ABT}").df()
    ref = refresh_abt(env, od.PROBLEM, lake)
    assert ref.rebuilt and ref.rows == len(a)
    b = env.lake.read(od.ABT).toPandas()
    assert list(b.columns) == list(a.columns)  # the same columns in the same order
    # the ABT is not trivial: rows at approval and in flight, labels of both kinds and not yet known
    assert len(a) > 1000 and (a["days_in_flight"] > 0).sum() > 500 and (a["days_in_flight"] == 0).sum() > 500
    assert set(a[od.TARGET].dropna().astype(int)) == {0, 1} and a[od.TARGET].isna().sum() > 0
    assert a["route_p90_delivery_days_90d"].notna().sum() > 100
    assert a["market_km_pct_slower_than_promise"].nunique() > 50
    assert_same(a, b, ["dt_ref", "order_id"], od.ABT)
    # a second refresh with nothing changed keeps the table (lineage recorded on the lake)
    assert not refresh_abt(env, od.PROBLEM, lake).rebuilt


def test_scoring_frames_equal_on_both_engines(homes) -> None:
    from olist_ml.spark.problems import order_delay_scoring_frame

    duck, lake, env = homes
    with duck_session(duck) as con:
        end = od.default_scoring_date(con)
        assert env.observed_end() == end  # the default scoring date, on both engines
        for d in (None, end - dt.timedelta(days=40)):
            a = od.scoring_frame(con, duck, d)
            b = order_delay_scoring_frame(env, lake, d).toPandas()
            assert len(a) > 20 and (a["days_in_flight"] > 0).all(), (d, len(a))
            assert list(b.columns) == list(a.columns)
            assert (pd.to_datetime(b["dt_ref"]) == pd.Timestamp(d or end)).all()
            assert_same(a, b, ["order_id"], f"scoring frame at {d or end}")


def test_delay_trains_and_scores_on_spark_like_on_duckdb(homes) -> None:
    """The Spark pipeline's step for one problem (`run_problem_spark`: ABT, training on the driver, spark_udf
    scores) runs order delay too, and its scores equal DuckDB's (`train` + `predict` on the warehouse)."""
    from olist_ml.ml import registry
    from olist_ml.ml.scoring import predict
    from olist_ml.ml.train import train
    from olist_ml.spark.pipeline import run_problem_spark
    from olist_ml.steps import PipelineReport

    duck, lake, env = homes
    budget = {"n_trials": 0, "candidates": "logreg"}
    duck, lake = duck.with_(training__bootstrap=50), lake.with_(training__bootstrap=50)
    res = train(od.PROBLEM, duck, **budget)
    report = PipelineReport(source="test", synthetic=True)
    run_problem_spark(od.PROBLEM, lake, report, env=env, **budget)
    steps = {s.step: s.status for s in report.steps}
    assert steps[f"{od.NAME}: train"] == "done", report.steps
    if res.decision == registry.REJECTED:  # both engines trained the same model: the same decision
        assert steps[f"{od.NAME}: score"] == "skipped", report.steps
        pytest.skip("the synthetic delay model is below its gate on this data: nothing scored to compare")
    assert steps[f"{od.NAME}: score"] == "done", report.steps
    predict(od.PROBLEM, duck)
    con = duckdb.connect(str(duck.warehouse), read_only=True)
    try:
        a = con.execute(f"SELECT * FROM {od.PROBLEM.scores_table}").df()
    finally:
        con.close()
    b = env.lake.read(od.PROBLEM.scores_table).toPandas()
    assert len(a) > 20 and a["score"].nunique() > 10
    assert_same(a, b, ["dt_ref", "order_id"], od.PROBLEM.scores_table, skip=("scored_at", "run_id", "data_fp"))
