"""One SparkSession per process, configured for this project.

Inside a running Spark application (Databricks, `spark-submit`, a notebook) the active session is
used as it is: its master, memory and Hadoop settings are the platform's. Otherwise a session is
built from `Settings`: `spark_master` (default `local[2]`; `local-cluster[2,1,1024]` starts separate
executor JVMs on this machine; `spark://host:7077`, `yarn`, `k8s://...` for a cluster),
`spark_shuffle_partitions`, `spark_driver_memory` and any `spark_conf` pairs.

Settings that matter for correctness, not speed (also applied to a platform's active session): the
session time zone is UTC and `TIMESTAMP` means TIMESTAMP_NTZ (the stg timestamps are naive local
times, as in DuckDB; no conversion may touch them), and partition overwrite is dynamic (re-writing
some partitions of a table replaces exactly those).
"""

from __future__ import annotations

import os
import sys

from ..config import Settings
from ..errors import InputError, MissingStepError

_SESSION = None


def _local(master: str) -> bool:
    return master.startswith("local")


INSTALL_HINT = (
    "the spark engine needs PySpark, which is not installed: install the extra with "
    "`pip install 'olist-ml[spark]'` (in a clone: `make install`, or "
    "`uv sync --extra spark`), or use --engine duckdb"
)


def require_pyspark() -> None:
    """One line (MissingStepError) when PySpark is absent: checked before any work on the spark engine."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        raise MissingStepError(INSTALL_HINT)


def get_spark(settings: Settings | None = None):
    """The shared SparkSession (created on first use; ~10 s for a local JVM)."""
    global _SESSION
    if _SESSION is not None and not _stopped(_SESSION):
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise MissingStepError(INSTALL_HINT) from None
    active = SparkSession.getActiveSession()
    if active is not None:  # a platform's session (Databricks, spark-submit): use it as configured
        _SESSION = active
        _apply_sql_conf(active, settings or Settings())
        return active
    settings = settings or Settings()
    master = settings.spark_master
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors run this interpreter (same packages)
    b = SparkSession.builder.master(master).appName("olist-ml")
    if _local(master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        b = b.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    conf = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.autoBroadcastJoinThreshold": str(64 << 20),
    }
    for k, v in conf.items():
        b = b.config(k, v)
    for k, v in _sql_conf(settings).items():
        b = b.config(k, v)
    for kv in settings.spark_conf:  # "spark.k=v" items (OLIST_ML_SPARK_CONF)
        k, sep, v = kv.partition("=")
        if not sep:
            raise InputError(f"OLIST_ML_SPARK_CONF item {kv!r}: write key=value, e.g. spark.executor.memory=4g")
        b = b.config(k.strip(), v.strip())
    _SESSION = b.getOrCreate()
    _SESSION.sparkContext.setLogLevel("ERROR")
    return _SESSION


def _sql_conf(settings: Settings) -> dict[str, str]:
    return {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
        # `TIMESTAMP` in the shared SQL means a naive timestamp, as in DuckDB (Spark's default is LTZ)
        "spark.sql.timestampType": "TIMESTAMP_NTZ",
    }


def _apply_sql_conf(spark, settings: Settings) -> None:
    for k, v in _sql_conf(settings).items():
        spark.conf.set(k, v)


def _stopped(spark) -> bool:
    try:
        return spark.sparkContext._jsc is None or spark.sparkContext._jsc.sc().isStopped()
    except Exception:  # noqa: BLE001 - a session whose JVM is gone counts as stopped
        return True


def stop_spark() -> None:
    """Stop the shared session (tests that switch masters; the CLI lets the process end)."""
    global _SESSION
    if _SESSION is not None:
        _SESSION.stop()
    _SESSION = None
