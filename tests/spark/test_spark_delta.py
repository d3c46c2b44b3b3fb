"""Delta Lake on the project's Spark session (issue 20, item 1: the session only; the lake still writes
Parquet): the jars for the installed PySpark come through spark.jars.packages, a dt_ref partition is
replaced with replaceWhere, and an older version reads back with versionAsOf."""

from __future__ import annotations

import datetime as dt
import warnings
from importlib import metadata
from pathlib import Path

import pytest

from olist_ml.config import Settings
from olist_ml.errors import UnknownNameError
from olist_ml.spark import session as S
from support.spark import TABLE_FORMAT, session

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")

SCHEMA = "dt_ref DATE, seller_id STRING, n DOUBLE"
JAN, FEB, MAR = dt.date(2018, 1, 1), dt.date(2018, 2, 1), dt.date(2018, 3, 1)


def test_delta_package_is_the_artifact_for_the_installed_spark_and_delta() -> None:
    pytest.importorskip("delta")
    import pyspark

    major, minor = pyspark.__version__.split(".")[:2]
    assert S.delta_package() == f"io.delta:delta-spark_{major}.{minor}_2.13:{metadata.version('delta-spark')}"
    conf = S.with_delta_conf({"spark.jars.packages": "org.apache.hadoop:hadoop-aws:3.4.1"})
    assert conf["spark.jars.packages"] == f"org.apache.hadoop:hadoop-aws:3.4.1,{S.delta_package()}"
    assert conf["spark.sql.extensions"] == S.DELTA_EXTENSION
    assert conf["spark.sql.catalog.spark_catalog"] == S.DELTA_CATALOG
    assert "org.apache.hadoop:hadoop-client-runtime" in conf["spark.jars.excludes"].split(",")
    # jars given as files (a cluster without internet): nothing to resolve
    local = S.with_delta_conf({"spark.jars": "/opt/jars/io.delta_delta-spark_4.2_2.13-4.4.0.jar"})
    assert "spark.jars.packages" not in local and local["spark.sql.extensions"] == S.DELTA_EXTENSION


def test_table_format_setting_from_env_and_a_bad_value_is_one_line(monkeypatch) -> None:
    monkeypatch.setenv("OLIST_ML_SPARK_TABLE_FORMAT", "delta")
    assert S.table_format(Settings.from_env()) == "delta"
    assert S.table_format(Settings()) == "parquet"  # the default: the lake writes Parquet
    with pytest.raises(UnknownNameError, match=r"'orc' is not one of parquet, delta \(OLIST_ML_SPARK_TABLE_FORMAT\)"):
        S.table_format(Settings(spark_table_format="orc"))


def test_delta_table_replace_a_partition_and_time_travel(tmp_path: Path) -> None:
    if TABLE_FORMAT != "delta":
        pytest.skip("delta-spark is not installed")
    from delta.tables import DeltaTable

    spark = session()
    assert S.has_delta(spark)
    path = (tmp_path / "fs_seller_sales").as_uri()
    v0 = [(JAN, "a", 1.0), (JAN, "b", 2.0), (FEB, "a", 3.0)]
    spark.createDataFrame(v0, SCHEMA).write.format("delta").partitionBy("dt_ref").save(path)
    feb = [(FEB, "a", 30.0), (FEB, "c", 40.0)]
    (
        spark.createDataFrame(feb, SCHEMA)
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"dt_ref = DATE '{FEB}'")
        .save(path)
    )

    def rows(df) -> list[tuple]:
        return sorted(tuple(r) for r in df.collect())

    assert rows(spark.read.format("delta").load(path)) == sorted(v0[:2] + feb)  # January untouched
    assert rows(spark.read.format("delta").option("versionAsOf", 0).load(path)) == sorted(v0)
    assert sorted(p.name for p in (tmp_path / "fs_seller_sales").glob("dt_ref=*")) == [f"dt_ref={JAN}", f"dt_ref={FEB}"]
    # a row outside the partition it replaces is refused, and the refused write commits nothing
    with pytest.raises(Exception, match="(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        (
            spark.createDataFrame([(MAR, "a", 1.0)], SCHEMA)
            .write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"dt_ref = DATE '{FEB}'")
            .save(path)
        )
    history = DeltaTable.forPath(spark, path).history().select("version", "operation").collect()
    assert sorted((r.version, r.operation) for r in history) == [(0, "WRITE"), (1, "WRITE")]


def test_pandas_future_warning_is_filtered_unless_verbose() -> None:
    import pandas as pd
    from pyspark.sql.pandas.utils import require_minimum_pandas_version

    if int(pd.__version__.split(".")[0]) < 3:
        pytest.skip("PySpark warns only with pandas >= 3")
    for verbose, expected in ((False, 0), (True, 1)):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            S.quiet_pandas_warning(Settings(verbose=verbose))
            require_minimum_pandas_version()
        assert sum(S.PANDAS_WARNING in str(w.message) for w in seen) == expected, (verbose, seen)
