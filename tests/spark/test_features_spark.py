"""Engine parity: every feature query gives the same rows on DuckDB and on Spark (the lake engine,
`olist_ml.spark.features`) over the hand-written edge-case fixture of test_features.py."""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import pandas as pd
import pytest

from olist_ml.features import FEATURE_TABLES, build, compute
from olist_ml.schema import SOURCES
from support.feature_rows import DT_REFS, make_rows, write_warehouse
from support.spark import session, spark_settings

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark():
    return session()


def _norm(df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=[c for c in ("dt_month",) if c in df.columns])
    df["dt_ref"] = pd.to_datetime(df["dt_ref"]).dt.date
    return df.sort_values(["dt_ref", "seller_id"]).reset_index(drop=True)


def _fixture_lake(settings, tmp_path):
    """The fixture as a DuckDB warehouse and as a lake (its stg tables copied as Parquet)."""
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    write_warehouse(settings.warehouse, make_rows())
    s = spark_settings(tmp_path / "spark_home")
    lake = tmp_path / "spark_home" / "lake"
    con = duckdb.connect(str(settings.warehouse))
    try:
        for src in SOURCES:
            if con.execute(f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{src.stg}'").fetchall()[
                0
            ][0]:
                (lake / src.stg).mkdir(parents=True)
                con.execute(f"COPY {src.stg} TO '{lake / src.stg / 'part-0.parquet'}' (FORMAT parquet)")
    finally:
        con.close()
    return s


@pytest.mark.slow  # every table on both engines; the pipeline parity test covers the default path
def test_every_feature_query_same_on_duckdb_and_spark(spark, tmp_path, settings):
    from olist_ml.spark.features import compute_spark, lake_of, register_dates, register_events
    from olist_ml.spark.warehouse import register_stg

    s = _fixture_lake(settings, tmp_path)
    windows = tuple(settings.feature_windows)
    con = duckdb.connect(str(settings.warehouse))
    try:
        duck = {t: _norm(compute(con, t, DT_REFS, windows)) for t in FEATURE_TABLES}
    finally:
        con.close()
    register_stg(lake_of(s))
    register_dates(spark, DT_REFS)
    register_events(spark, windows, cache=False)
    for t in FEATURE_TABLES:
        sp = _norm(compute_spark(spark, t, windows, DT_REFS).toPandas())
        d = duck[t]
        assert list(sp.columns) == list(d.columns), t
        assert len(d) > 50 and len(sp) == len(d), t
        assert list(sp.seller_id) == list(d.seller_id) and list(sp.dt_ref) == list(d.dt_ref), t
        for c in d.columns[2:]:
            for a, b in zip(d[c].tolist(), sp[c].tolist(), strict=False):
                na, nb = (
                    a is None or a is pd.NA or (isinstance(a, float) and math.isnan(a)),
                    b is None or b is pd.NA or (isinstance(b, float) and math.isnan(b)),
                )
                assert na == nb, (t, c, a, b)
                if not na:
                    assert math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9), (t, c, a, b)


def test_spark_build_writes_month_partitions_incrementally(spark, tmp_path, settings):
    s = _fixture_lake(settings, tmp_path)
    r = build(s, start="2017-05-01", end="2017-05-03", tables=["sales"])
    assert r.engine == "spark" and r.tables[0].dt_refs == 3 and r.tables[0].rows > 0
    r = build(s, start="2017-05-01", end="2017-05-04", tables=["sales"])
    assert r.tables[0].dt_refs == 1 and r.tables[0].skipped == 3
    path = tmp_path / "spark_home" / "lake" / "fs_seller_sales"
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("dt_month=")) == ["dt_month=2017-05-01"]
    got = _norm(pd.read_parquet(path))
    con = duckdb.connect(str(settings.warehouse))
    try:
        exp = _norm(compute(con, "fs_seller_sales", [dt.date(2017, 5, i) for i in range(1, 5)]))
    finally:
        con.close()
    assert len(got) == len(exp)
    assert list(got.seller_id) == list(exp.seller_id)
    assert got["gmv_180d"].tolist() == pytest.approx(exp["gmv_180d"].tolist())
