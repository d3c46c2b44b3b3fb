"""`olist-ml run` on both engines gives the same tables: stg, feature store, ABTs and scores (1e-6).

DuckDB: the warehouse file. Spark: the lake (Parquet), ingest by Spark, features by Spark SQL, ABT by
Spark SQL, training on the driver through the same generic trainer, scores by mlflow.pyfunc.spark_udf.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from olist_ml import synth
from olist_ml.config import Settings
from olist_ml.features import FEATURE_TABLES
from olist_ml.pipeline import run_pipeline
from olist_ml.schema import SOURCES
from support.frames import assert_same
from support.spark import session, spark_settings

# the engine-parity runs take minutes on 2 cores: `make test-slow` (CI runs it after the default suite)
pytestmark = [pytest.mark.spark, pytest.mark.slow]
pytest.importorskip("pyspark")

BUDGET = {"n_trials": 0, "candidates": "logreg"}


@pytest.fixture(scope="module")
def spark():
    return session()


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    raw = root / "raw"
    synth.generate(raw, seed=3, scale=0.05)
    # weekly churn dt_refs (the protocol needs 3 labelled months), a small bootstrap: the test compares engines
    kw = {"churn__cadence": "weekly", "training__bootstrap": 50}
    duck = Settings(home=root / "duck").with_(**kw)
    lake = spark_settings(root / "spark").with_(**kw)
    rd = run_pipeline(duck, data=raw, problems=["churn"], cadence="weekly", **BUDGET)
    rs = run_pipeline(lake, data=raw, problems=["churn"], cadence="weekly", **BUDGET)
    return duck, lake, rd, rs, raw


@pytest.fixture(scope="module")
def more_runs(runs):
    """activation and segments on the same homes (ingest and features already current)."""
    duck, lake, _, _, raw = runs
    rd = run_pipeline(duck, data=raw, problems=["activation", "segments"], cadence="weekly", **BUDGET)
    rs = run_pipeline(lake, data=raw, problems=["activation", "segments"], cadence="weekly", **BUDGET)
    return duck, lake, rd, rs, raw


def duck_frame(s: Settings, table: str) -> pd.DataFrame:
    con = duckdb.connect(str(s.warehouse), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table}").df()
    finally:
        con.close()


def lake_frame(s: Settings, table: str) -> pd.DataFrame:
    from olist_ml.spark.lake import Lake

    df = Lake(session(), s.lake_uri).read(table)
    return df.drop("dt_month").toPandas() if "dt_month" in df.columns else df.toPandas()


def test_run_churn_equal_on_both_engines(runs) -> None:
    duck, lake, rd, rs, _ = runs
    sd = {s.step: s.status for s in rd.steps}
    ss = {s.step.replace(" (spark)", ""): s.status for s in rs.steps}
    assert ss["seller_churn: score"] == sd["seller_churn: score"] == "done", (sd, ss)
    for spec in SOURCES:
        d = duck_frame(duck, spec.stg)
        assert_same(d, lake_frame(lake, spec.stg), list(d.columns), spec.stg, tol=0)
    for t in FEATURE_TABLES:
        assert_same(duck_frame(duck, t), lake_frame(lake, t), ["dt_ref", "seller_id"], t, tol=1e-9)
    a, b = duck_frame(duck, "abt_seller_churn"), lake_frame(lake, "abt_seller_churn")
    assert len(a) > 50 and a["churn"].notna().sum() > 20
    assert_same(a, b, ["dt_ref", "seller_id"], "abt_seller_churn", tol=1e-9)
    a, b = duck_frame(duck, "scores_seller_churn"), lake_frame(lake, "scores_seller_churn")
    assert len(a) > 10 and a["score"].nunique() > 5
    assert_same(a, b, ["dt_ref", "seller_id"], "scores_seller_churn", skip=("scored_at", "run_id", "data_fp"))


def test_activation_and_segments_run_end_to_end_on_spark_like_on_duckdb(more_runs) -> None:
    duck, lake, rd, rs, _ = more_runs
    sd = {s.step: (s.status, s.detail) for s in rd.steps}
    ss = {s.step.replace(" (spark)", ""): (s.status, s.detail) for s in rs.steps}
    for name in ("seller_activation", "seller_segments"):
        steps = sorted(k for k in sd if k.startswith(name))
        assert steps == sorted(k for k in ss if k.startswith(name)), (steps, ss)
        assert [sd[k][0] for k in steps] == [ss[k][0] for k in steps], (sd, ss)
    seg_d, seg_s = duck_frame(duck, "abt_seller_segments"), lake_frame(lake, "abt_seller_segments")
    assert len(seg_d) > 20
    assert_same(seg_d, seg_s, ["seller_id"], "abt_seller_segments", tol=1e-9)
    a, b = duck_frame(duck, "scores_seller_segments"), lake_frame(lake, "scores_seller_segments")
    assert_same(a, b, ["dt_ref", "seller_id"], "scores_seller_segments", skip=("scored_at", "run_id", "data_fp"))
    assert_same(
        duck_frame(duck, "seller_segments"),
        lake_frame(lake, "seller_segments"),
        ["dt_ref", "seller_id"],
        "seller_segments",
        skip=("run_id", "scored_at", "data_fp"),
    )
    act_d, act_s = duck_frame(duck, "abt_seller_activation"), lake_frame(lake, "abt_seller_activation")
    assert len(act_d) > 10
    assert_same(act_d, act_s, ["mql_id"], "abt_seller_activation", tol=1e-9)
    if sd["seller_activation: score"][0] == "done":
        assert_same(
            duck_frame(duck, "scores_seller_activation"),
            lake_frame(lake, "scores_seller_activation"),
            ["dt_ref", "mql_id"],
            "scores_seller_activation",
            skip=("scored_at", "run_id", "data_fp"),
        )


def test_second_spark_run_skips_what_is_current_and_scores_idempotently(runs) -> None:
    _, lake, _, first, raw = runs
    again = run_pipeline(lake, data=raw, problems=["churn"], cadence="weekly", **BUDGET)
    st = {s.step: s.status for s in again.steps}
    assert st["ingest (spark)"] == "skipped" and st["feature store (spark)"] == "skipped", st
    assert "seller_churn: ABT" not in st and st["seller_churn: train"] == "skipped", st  # not due: no ABT
    assert st["seller_churn: score"] == "done"
    scores = lake_frame(lake, "scores_seller_churn")
    assert not scores.duplicated(["dt_ref", "seller_id", "model_version"]).any()


def test_training_sample_is_time_stratified(runs) -> None:
    from olist_ml import problems
    from olist_ml.spark.ml import abt_to_driver
    from olist_ml.spark.problems import SparkEnv

    _, lake, *_ = runs
    p = problems.get("churn")
    full = lake_frame(lake, "abt_seller_churn")
    cap = len(full) // 3
    s = lake.with_(spark_train_max_rows=cap)
    table, note = abt_to_driver(SparkEnv.open(s), p, s)
    got = table.to_pandas()
    assert "time-stratified sample" in note and len(got) < len(full) // 2
    per_all = full.groupby("dt_ref").size()
    per_got = got.groupby("dt_ref").size()
    frac = cap / len(full)
    for d, n in per_all.items():
        assert per_got.get(d, 0) == math.ceil(n * frac), (d, n)
    # sellers are chosen by a hash, not by time: the kept sellers overlap across dates
    first, last = per_all.index[0], per_all.index[-1]
    assert set(got.loc[got.dt_ref == first, "seller_id"]) & set(full.loc[full.dt_ref == last, "seller_id"]) <= set(
        got.loc[got.dt_ref == last, "seller_id"]
    ) | set(full.loc[full.dt_ref == first, "seller_id"])


def test_features_incremental_on_spark_recompute_what_duckdb_recomputes(spark, tmp_path: Path) -> None:
    """Lineage on the lake: an appended day of orders makes exactly the dt_refs after it stale (and
    nothing before), on both engines; a rebuild then equals the DuckDB rebuild."""
    from olist_ml import ingest
    from olist_ml.features import build
    from olist_ml.spark.ingest import ingest_spark

    raw = tmp_path / "raw"
    synth.generate(raw, seed=5, scale=0.02)
    duck = Settings(home=tmp_path / "duck")
    lake = spark_settings(tmp_path / "spark")
    ingest.ingest(raw, duck)
    ingest_spark(raw, lake)
    kw = {"start": "2018-05-07", "end": "2018-07-30", "cadence": "weekly"}
    first = (build(duck, **kw), build(lake, **kw))
    assert [t.dt_refs for t in first[0].tables] == [t.dt_refs for t in first[1].tables] == [13] * 6
    again = build(lake, **kw)
    assert [t.dt_refs for t in again.tables] == [0] * 6 and [t.skipped for t in again.tables] == [13] * 6
    # a review answered later: the dt_refs from the day after its answer on see it
    path = raw / "olist_order_reviews_dataset.csv"
    text = path.read_bytes().decode()  # as bytes: reviews hold \r\n inside quoted messages
    header, first_row, rest = text.split("\n", 2)
    cols = next(__import__("csv").reader([first_row]))
    order = cols[1]
    path.write_bytes(
        f'{header}\n{first_row}\n"extra-review","{order}",1,,,2018-06-20 00:00:00,2018-06-27 10:00:00\n{rest}'.encode()
    )
    ingest.ingest(raw, duck)
    ingest_spark(raw, lake)
    d2, s2 = build(duck, **kw), build(lake, **kw)
    assert [(t.table, t.dt_refs, t.stale) for t in s2.tables] == [(t.table, t.dt_refs, t.stale) for t in d2.tables]
    assert max(t.stale for t in s2.tables) > 0 and min(t.skipped for t in s2.tables) > 0
    for t in FEATURE_TABLES:
        assert_same(duck_frame(duck, t), lake_frame(lake, t), ["dt_ref", "seller_id"], t, tol=1e-9)
