"""The Spark engine: the SAME feature SQL (rendered for Spark) on PySpark.

The warehouse's stg tables are exported to parquet (`<spark_path>/_stg/`), registered as temp
views, and each feature table is written as parquet partitioned by dt_ref under
`<spark_path>/<table>/`, with dynamic partition overwrite: re-running replaces exactly the
dt_ref partitions computed. Incremental runs skip dt_ref partitions already present. Local mode
by default (`settings.spark_master`, e.g. local[2]); any cluster URL works the same way.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from ..config import Settings
from .build import EPOCH, REQUIRED_STG, TableBuild, _progress
from .render import render, statements

_SESSION = None


def get_spark(settings: Settings | None = None):
    """One shared SparkSession per process (UTC, no UI, few shuffle partitions)."""
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:  # pragma: no cover - depends on the install
        from ..errors import MissingStepError

        raise MissingStepError("the spark engine needs pyspark: pip install 'olist-ml[spark]'") from e
    settings = settings or Settings()
    _SESSION = (
        SparkSession.builder.master(settings.spark_master)
        .appName("olist-ml-features")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    _SESSION.sparkContext.setLogLevel("ERROR")
    return _SESSION


def export_stg(con, out_dir: Path) -> Path:
    """Write the stg tables the features read as parquet files (one per table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for t in REQUIRED_STG:
        con.execute(f"COPY {t} TO '{out_dir / (t + '.parquet')}' (FORMAT parquet)")
    return out_dir


def register(spark, stg_dir: Path, dates: list[dt.date], windows: tuple[int, ...]) -> None:
    """Temp views: stg_* from parquet, fs_dates, then the `_events.sql` prelude."""
    for t in REQUIRED_STG:
        spark.read.parquet(str(stg_dir / f"{t}.parquet")).createOrReplaceTempView(t)
    rows = [(d, (d - EPOCH).days, d.year * 12 + d.month) for d in sorted(set(dates))]
    spark.createDataFrame(rows, "dt_ref DATE, dn INT, mi INT").createOrReplaceTempView("fs_dates")
    for st in statements(render("_events", windows, "spark")):
        spark.sql(st)


def compute_spark(spark, table: str, windows: tuple[int, ...]):
    """A Spark DataFrame with one feature table's rows for the registered fs_dates."""
    return spark.sql(render(table, windows, "spark"))


def built_partitions(path: Path) -> set[dt.date]:
    if not path.is_dir():
        return set()
    return {dt.date.fromisoformat(p.name.split("=", 1)[1]) for p in path.iterdir() if p.name.startswith("dt_ref=")}


def build_spark(settings: Settings, con, names: list[str], dates, windows, *, full: bool, progress: bool) -> list[TableBuild]:
    spark = get_spark(settings)
    root = settings.spark_path
    stg_dir = export_stg(con, root / "_stg")
    out: list[TableBuild] = []
    with _progress(progress, len(names)) as advance:
        for name in names:
            t1 = time.perf_counter()
            done = set() if full else built_partitions(root / name)
            todo = [d for d in dates if d not in done]
            rows = 0
            if todo:
                register(spark, stg_dir, todo, windows)
                df = compute_spark(spark, name, windows).cache()
                rows = df.count()
                df.write.mode("overwrite").partitionBy("dt_ref").parquet(str(root / name))
                df.unpersist()
            out.append(TableBuild(name, len(todo), rows, time.perf_counter() - t1, skipped=len(dates) - len(todo)))
            advance(name)
    return out
