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

Delta Lake (`Settings.spark_table_format == "delta"`, env OLIST_ML_SPARK_TABLE_FORMAT): the session is
built with Delta's SQL extension and catalog, and its jars (`delta_package()`:
io.delta:delta-spark_<Spark major.minor>_2.13:<delta-spark version>, the artifact for the installed PySpark
and delta-spark) through Spark's own `spark.jars.packages` resolver (Ivy: `~/.m2` first, then Maven
Central; cached under `~/.ivy2.5.2`), added to any packages `spark_conf` names. Only the session: the
lake still writes Parquet (the Delta table format goes behind the engine interface, issue 20).

PySpark 4.2 warns `PySpark does not yet fully support pandas >= 3.0.0` (a FutureWarning) each time it
converts to or from pandas on the driver, about ten times per command (12 on `--engine spark ingest`):
filtered here unless `Settings.verbose` (`--verbose`). The Python workers' stderr does not reach the
console in local mode; on a cluster it goes to the executor logs, unfiltered.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

from ..config import Settings
from ..errors import InputError, MissingStepError, OlistMLError, UnknownNameError

_SESSION = None
_BUILT_WITH_DELTA: bool | None = None  # None: the platform's session (Databricks ships Delta), used as it is

TABLE_FORMATS = ("parquet", "delta")
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
PANDAS_WARNING = "PySpark does not yet fully support pandas >= 3.0.0"
# Delta 4.4's transitive dependencies that PySpark's own jars already provide, in newer versions (Hadoop client,
# Parquet, Jackson, logging, compression codecs): excluded from the resolution (`spark.jars.excludes`), so only
# Delta's own jars (delta-spark, delta-storage, delta-kernel-*, the Unity Catalog client) are fetched, and no older
# duplicate lands on the classpath. Measured: 37 modules / 33 jars resolved without this list, 8 (13 MB) with it.
DELTA_EXCLUDES = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.slf4j:slf4j-api",
    "commons-logging:commons-logging",
    "commons-pool:commons-pool",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "io.airlift:aircompressor",
    "org.roaringbitmap:RoaringBitmap",
    "org.roaringbitmap:shims",
    "org.locationtech.jts:jts-core",
    "com.google.code.findbugs:jsr305",
)


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


def table_format(settings: Settings) -> str:
    """The Spark table format setting ("parquet" or "delta"); one line naming the variable otherwise."""
    fmt = str(settings.spark_table_format).strip().lower()
    if fmt not in TABLE_FORMATS:
        raise UnknownNameError(
            f"spark table format {settings.spark_table_format!r} is not one of {', '.join(TABLE_FORMATS)} "
            "(OLIST_ML_SPARK_TABLE_FORMAT)"
        )
    return fmt


def delta_package() -> str:
    """Maven coordinates of the Delta jars matching the installed PySpark and delta-spark (since Delta
    4.1 the artifact carries the Spark version: io.delta:delta-spark_4.2_2.13:4.4.1 for PySpark 4.2)."""
    from importlib import metadata

    import pyspark

    try:
        delta = metadata.version("delta-spark")
    except metadata.PackageNotFoundError:
        raise MissingStepError(
            "OLIST_ML_SPARK_TABLE_FORMAT=delta needs delta-spark, which is not installed: install the extra with "
            "`pip install 'olist-ml[spark]'` (in a clone: `make install`), or use OLIST_ML_SPARK_TABLE_FORMAT=parquet"
        ) from None
    major, minor = pyspark.__version__.split(".")[:2]
    return f"io.delta:delta-spark_{major}.{minor}_2.13:{delta}"


def has_delta(spark) -> bool:
    """Whether the session runs Delta's SQL extension (so Delta tables can be read and written)."""
    return DELTA_EXTENSION in (spark.conf.get("spark.sql.extensions", "") or "")


def quiet_pandas_warning(settings: Settings) -> None:
    """Filter PySpark's pandas >= 3 FutureWarning in this process (module docstring) unless `settings.verbose`."""
    if not settings.verbose:
        warnings.filterwarnings("ignore", message=re.escape(PANDAS_WARNING), category=FutureWarning)


def get_spark(settings: Settings | None = None):
    """The shared SparkSession (created on first use; ~10 s for a local JVM)."""
    global _SESSION, _BUILT_WITH_DELTA
    settings = settings or Settings()
    quiet_pandas_warning(settings)
    delta = table_format(settings) == "delta"
    if _SESSION is not None and not _stopped(_SESSION):
        if delta and _BUILT_WITH_DELTA is False:
            raise OlistMLError(
                "the running Spark session was started without Delta Lake: OLIST_ML_SPARK_TABLE_FORMAT=delta must "
                "be set before the first Spark step of a process"
            )
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise MissingStepError(INSTALL_HINT) from None
    active = SparkSession.getActiveSession()
    if active is not None:  # a platform's session (Databricks, spark-submit): use it as configured
        _SESSION, _BUILT_WITH_DELTA = active, None
        _apply_sql_conf(active, settings)
        return active
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
    extra = _user_conf(settings)
    if delta:
        extra = with_delta_conf(extra)
        if _local(master):  # Delta replays its log with 50 shuffle partitions by default: seconds per read on 2 cores
            extra.setdefault("spark.databricks.delta.snapshotPartitions", str(settings.spark_shuffle_partitions))
    for k, v in extra.items():
        b = b.config(k, v)
    _SESSION, _BUILT_WITH_DELTA = b.getOrCreate(), delta
    _SESSION.sparkContext.setLogLevel("ERROR")
    return _SESSION


def _user_conf(settings: Settings) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in settings.spark_conf:  # "spark.k=v" items (OLIST_ML_SPARK_CONF)
        k, sep, v = kv.partition("=")
        if not sep:
            raise InputError(f"OLIST_ML_SPARK_CONF item {kv!r}: write key=value, e.g. spark.executor.memory=4g")
        out[k.strip()] = v.strip()
    return out


def with_delta_conf(conf: dict[str, str]) -> dict[str, str]:
    """`conf` plus Delta's jars, SQL extension and catalog (added to packages / extensions given there).
    Where `spark.jars` already names a delta-spark jar file (a cluster without internet: the jars copied from
    an Ivy cache), no package is resolved."""
    out = dict(conf)

    def add(key: str, value: str) -> None:
        have = [x.strip() for x in out.get(key, "").split(",") if x.strip()]
        out[key] = ",".join(have + ([value] if value not in have else []))

    if not any("delta-spark_" in Path(j).name for j in out.get("spark.jars", "").split(",")):
        add("spark.jars.packages", delta_package())  # unless the jars are given as files (no network)
        for x in DELTA_EXCLUDES:
            add("spark.jars.excludes", x)
    add("spark.sql.extensions", DELTA_EXTENSION)
    out.setdefault("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    return out


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


TABLE_FORMATS = ("parquet", "delta")
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
PANDAS_WARNING = "PySpark does not yet fully support pandas >= 3.0.0"
# Delta 4.4's transitive dependencies that PySpark's own jars already provide, in newer versions (Hadoop client,
# Parquet, Jackson, logging, compression codecs): excluded from the resolution (`spark.jars.excludes`), so only
# Delta's own jars (delta-spark, delta-storage, delta-kernel-*, the Unity Catalog client) are fetched, and no older
# duplicate lands on the classpath. Measured: 37 modules / 33 jars resolved without this list, 8 (13 MB) with it.
DELTA_EXCLUDES = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.slf4j:slf4j-api",
    "commons-logging:commons-logging",
    "commons-pool:commons-pool",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "io.airlift:aircompressor",
    "org.roaringbitmap:RoaringBitmap",
    "org.roaringbitmap:shims",
    "org.locationtech.jts:jts-core",
    "com.google.code.findbugs:jsr305",
)
