"""Shared by the Spark tests: ONE SparkSession per test run (starting one costs ~10 s), its master
chosen by SPARK_TEST_MASTER (default local[2]; `make test-spark-cluster` runs the Spark tests again on
local-cluster[2,1,1024]: separate executor JVMs and Python workers, so the model that spark_udf ships and
the lake files are really read by other processes). The session runs with Delta Lake enabled
(`spark_table_format="delta"`: its jars come through spark.jars.packages, cached under ~/.ivy2.5.2) when
delta-spark is installed, as in `make install`: every Spark test runs on the session the Delta table
format will use; the lake itself still writes Parquet."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from olist_ml.config import Settings

MASTER = os.environ.get("SPARK_TEST_MASTER", "local[2]")
TABLE_FORMAT = "delta" if importlib.util.find_spec("delta") is not None else "parquet"


def spark_settings(home: Path, **kw) -> Settings:
    """Settings of a test home on the Spark engine (the shared session's master)."""
    kw.setdefault("spark_table_format", TABLE_FORMAT)
    return Settings(
        home=home, engine="spark", spark_master=MASTER, spark_shuffle_partitions=2, spark_driver_memory="1g", **kw
    )


def session():
    from olist_ml.spark.session import get_spark

    return get_spark(spark_settings(Path("/nonexistent")))
