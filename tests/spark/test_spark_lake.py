"""Lake tables: the root URI reaches Spark's writer and Hadoop untouched; local tables are replaced atomically."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from olist_ml.errors import EnvironmentFault
from support.spark import session, spark_settings

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark():
    return session()


def test_s3a_uri_is_handed_to_the_spark_writer_untouched(spark, monkeypatch, tmp_path: Path) -> None:
    from pyspark.sql.readwriter import DataFrameWriter

    from olist_ml.spark.lake import Lake

    monkeypatch.chdir(tmp_path)
    seen: list[str] = []
    monkeypatch.setattr(DataFrameWriter, "parquet", lambda self, path, *a, **k: seen.append(path))
    lake = Lake(spark, "s3a://bucket/x")
    df = spark.createDataFrame(
        [(dt.date(2018, 1, 1), dt.date(2018, 1, 1), "s1")], "dt_month DATE, dt_ref DATE, seller_id STRING"
    )
    lake.overwrite_partitions(df, "fs_seller_sales", ["dt_month"])
    stage = lake.stage(df, "stg_orders")
    assert seen[0] == "s3a://bucket/x/fs_seller_sales"
    assert seen[1] == f"s3a://bucket/x/{stage}" and stage.startswith("_staging/stg_orders-")
    assert not any(tmp_path.iterdir())  # no local folder named "s3a:"


def test_a_remote_scheme_without_its_connector_is_one_line_and_nothing_local(
    spark, monkeypatch, tmp_path: Path
) -> None:
    """Real Hadoop: the URI reaches its FileSystem lookup as given (the old engine made a folder `s3a:`)."""
    from olist_ml.features import build

    monkeypatch.chdir(tmp_path)
    s = spark_settings(tmp_path / "home", spark_dir="s3a://bucket/x")
    with pytest.raises(EnvironmentFault) as e:
        build(s, tables=["sales"])
    msg = str(e.value)
    assert "\n" not in msg and "lake s3a://bucket/x" in msg and "'s3a:'" in msg
    assert not (tmp_path / "s3a:").exists() and not any(p.name.startswith("s3a") for p in tmp_path.rglob("*"))


def test_replace_swaps_a_whole_table_and_partitions_are_replaced_one_by_one(spark, tmp_path: Path) -> None:
    from olist_ml.spark.lake import Lake

    lake = Lake(spark, (tmp_path / "lake").as_uri())
    lake.replace(spark.createDataFrame([(1,), (2,)], "x INT"), "t")
    lake.replace(spark.createDataFrame([(3,)], "x INT"), "t")
    assert [r.x for r in lake.read("t").collect()] == [3]
    assert lake.tables() == ["t"] and not [p for p in (tmp_path / "lake" / "_staging").iterdir()]
    rows = [(dt.date(2018, m, 1), m) for m in (1, 2)]
    lake.overwrite_partitions(spark.createDataFrame(rows, "m DATE, v INT"), "p", ["m"])
    lake.overwrite_partitions(spark.createDataFrame([(dt.date(2018, 2, 1), 20)], "m DATE, v INT"), "p", ["m"])
    got = sorted((r.m, r.v) for r in lake.read("p").collect())
    assert got == [(dt.date(2018, 1, 1), 1), (dt.date(2018, 2, 1), 20)]
    assert lake.partitions("p", "m") == ["2018-01-01", "2018-02-01"]
