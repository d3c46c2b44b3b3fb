"""Engine parity: every feature query gives the same rows on DuckDB and on Spark (local mode)."""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import pandas as pd
import pytest
from test_features import DT_REFS, make_rows, write_warehouse  # noqa: E402

from olist_ml.features import FEATURE_TABLES, build, compute

pytestmark = pytest.mark.spark
pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark():
    from olist_ml.features.spark_engine import get_spark

    return get_spark()


def _norm(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["dt_ref"] = pd.to_datetime(df["dt_ref"]).dt.date
    return df.sort_values(["dt_ref", "seller_id"]).reset_index(drop=True)


def test_every_feature_query_same_on_duckdb_and_spark(spark, tmp_path, settings):
    from olist_ml.features.spark_engine import compute_spark, export_stg, register

    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    write_warehouse(settings.warehouse, make_rows())
    windows = tuple(settings.feature_windows)
    con = duckdb.connect(str(settings.warehouse))
    try:
        duck = {t: _norm(compute(con, t, DT_REFS, windows)) for t in FEATURE_TABLES}
        stg = export_stg(con, tmp_path / "stg")
    finally:
        con.close()
    register(spark, stg, DT_REFS, windows)
    for t in FEATURE_TABLES:
        sp = _norm(compute_spark(spark, t, windows).toPandas())
        d = duck[t]
        assert list(sp.columns) == list(d.columns), t
        assert len(d) > 50 and len(sp) == len(d), t
        assert list(sp.seller_id) == list(d.seller_id) and list(sp.dt_ref) == list(d.dt_ref), t
        for c in d.columns[2:]:
            for a, b in zip(d[c].tolist(), sp[c].tolist()):
                na, nb = a is None or a is pd.NA or (isinstance(a, float) and math.isnan(a)), b is None or b is pd.NA or (
                    isinstance(b, float) and math.isnan(b))
                assert na == nb, (t, c, a, b)
                if not na:
                    assert math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9), (t, c, a, b)


def test_spark_build_writes_dt_ref_partitions_incrementally(spark, settings):
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    write_warehouse(settings.warehouse, make_rows())
    s = settings.with_(engine="spark")
    r = build(s, start="2017-05-01", end="2017-05-03", tables=["sales"])
    assert r.engine == "spark" and r.tables[0].dt_refs == 3 and r.tables[0].rows > 0
    r = build(s, start="2017-05-01", end="2017-05-04", tables=["sales"])
    assert r.tables[0].dt_refs == 1 and r.tables[0].skipped == 3
    path = s.spark_path / "fs_seller_sales"
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("dt_ref=")) == [
        f"dt_ref=2017-05-0{i}" for i in range(1, 5)
    ]
    got = _norm(pd.read_parquet(path))
    con = duckdb.connect(str(settings.warehouse))
    try:
        exp = _norm(compute(con, "fs_seller_sales", [dt.date(2017, 5, i) for i in range(1, 5)]))
    finally:
        con.close()
    assert len(got) == len(exp)
    assert list(got.seller_id) == list(exp.seller_id)
    assert got["gmv_180d"].tolist() == pytest.approx(exp["gmv_180d"].tolist())
