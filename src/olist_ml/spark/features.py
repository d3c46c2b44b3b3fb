"""The feature store on Spark: the SAME feature SQL (rendered for Spark) over the lake's stg tables,
written as Parquet partitioned by dt_ref under the lake, incremental by lineage.

Per build:
1. the lake's stg tables become temp views; the `_events.sql` prelude (items, seller-orders,
   seller-payments: the facts every feature query reads) is computed ONCE and cached, instead of
   being re-derived inside each of the six queries;
2. per table, the dt_refs to compute are planned like on DuckDB (`features.build.plan_dates`):
   missing ones, and built ones whose data as known at the dt_ref or whose SQL/windows changed
   (`olist_ml.spark.lineage`); stale dt_refs outside the range are dropped;
3. one set-based query per table over all its dt_refs (the first/last requested day numbers are
   inlined as literals, so Spark plans no scalar sub-queries), cached once, counted per dt_ref
   and written with dynamic partition overwrite into month partitions (`dt_month`, one file per
   month; see `_write_table`);
4. the table's rows of `fs_build_log` (dt_ref, n_rows, data/config fingerprints) are written after
   its partitions: a build killed in between leaves partitions the log does not know, which the
   next run simply recomputes.
"""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd

from ..config import Settings
from ..features.build import (
    BUILD_LOG,
    EPOCH,
    REQUIRED_STG,
    BuildReport,
    TableBuild,
    check_cadence,
    expected_columns,
    plan_dates,
    range_of,
    resolve_tables,
    table_config_fp,
)
from ..features.progress import table_progress
from ..features.render import render, statements
from . import lineage
from .lake import Lake
from .session import get_spark
from .warehouse import data_range, observed_end, read_meta, register_stg, write_meta

BUILD_LOG_COLUMNS = ["table_name", "dt_ref", "n_rows", "built_at", "data_fp", "config_fp"]
BUILD_LOG_SCHEMA = "table_name STRING, dt_ref DATE, n_rows BIGINT, built_at TIMESTAMP, data_fp STRING, config_fp STRING"
_EVENT_VIEWS = ("ev_items", "ev_seller_orders", "ev_seller_payments")
MONTH = "dt_month"  # physical partition column of the feature tables (first day of dt_ref's month)


def lake_of(settings: Settings) -> Lake:
    return Lake(get_spark(settings), settings.lake_uri)


# ---- query preparation -------------------------------------------------------------------------
def register_dates(spark, dates: list[dt.date]) -> None:
    rows = [(d, (d - EPOCH).days, d.year * 12 + d.month) for d in sorted(set(dates))]
    spark.createDataFrame(rows, "dt_ref DATE, dn INT, mi INT").createOrReplaceTempView("fs_dates")


def register_events(spark, windows: tuple[int, ...], cache: bool = True) -> list:
    """The `_events.sql` views, each computed once and cached (returns the cached DataFrames)."""
    cached = []
    for st in statements(render("_events", windows, "spark")):
        head, _, body = st.partition(" AS\n")
        name = head.split()[-1]
        df = spark.sql(body)
        if cache and name in _EVENT_VIEWS:  # filled by the first query that reads it (no job of its own)
            df = df.cache()
            cached.append(df)
        df.createOrReplaceTempView(name)
    return cached


def spark_sql(table: str, windows: tuple[int, ...], dates: list[dt.date]) -> str:
    """The feature query for Spark with the requested day-number range inlined."""
    dns = [(d - EPOCH).days for d in dates]
    sql = render(table, windows, "spark")
    return sql.replace("(SELECT min(dn) FROM fs_dates)", str(min(dns))).replace(
        "(SELECT max(dn) FROM fs_dates)", str(max(dns))
    )


def compute_spark(spark, table: str, windows: tuple[int, ...], dates: list[dt.date] | None = None):
    """A Spark DataFrame with one feature table's rows for `dates` (default: the registered fs_dates)."""
    if dates is None:
        dates = [r[0] for r in spark.sql("SELECT dt_ref FROM fs_dates").collect()]
    return spark.sql(spark_sql(table, windows, dates))


# ---- build log --------------------------------------------------------------------------------
def read_build_log(lake: Lake) -> pd.DataFrame:
    df = read_meta(lake, BUILD_LOG, BUILD_LOG_COLUMNS)
    df["dt_ref"] = pd.to_datetime(df["dt_ref"]).dt.date
    return df


def logged_lineage(log: pd.DataFrame, table: str) -> dict[dt.date, tuple[str | None, str | None]]:
    t = log[log["table_name"] == table]
    return {d: (a, b) for d, a, b in zip(t["dt_ref"], t["data_fp"], t["config_fp"], strict=False)}


def available_dt_refs(lake: Lake) -> list[dt.date]:
    """dt_refs built for the spine table (`features.retrieval.available_dt_refs` on the lake)."""
    from ..features.retrieval import SPINE

    log = read_build_log(lake)
    return sorted(set(log.loc[log["table_name"] == SPINE, "dt_ref"]))


# ---- build -----------------------------------------------------------------------------------
def build_spark(
    settings: Settings,
    *,
    start=None,
    end=None,
    cadence: str = "daily",
    tables=None,
    full: bool = False,
    progress: bool = False,
) -> BuildReport:
    """`olist_ml.features.build` on Spark over the lake (module docstring)."""
    t0 = time.perf_counter()
    check_cadence(cadence)
    names = resolve_tables(tables)
    windows = tuple(sorted(set(settings.feature_windows)))
    lake = lake_of(settings)
    spark = lake.spark
    register_stg(lake, required=REQUIRED_STG)
    lo, hi = data_range(spark)
    start_d, end_d, dates = range_of(lo, hi, lambda: observed_end(spark), start, end, cadence)
    report = BuildReport(engine="spark", cadence=cadence, start=start_d, end=end_d)
    log = read_build_log(lake)
    logged_all = set(log.loc[log["table_name"].isin(names), "dt_ref"])
    asof = lineage.asof_fingerprints(spark, set(dates) | logged_all, REQUIRED_STG)
    cached: list = []
    dirty = False
    try:
        with table_progress(progress, len(names)) as advance:
            for name in names:
                t1 = time.perf_counter()
                reshaped = _drop_if_reshaped(lake, name, windows)
                if reshaped:
                    log = log[log["table_name"] != name]
                log = _forget_lost(lake, log, name)
                cfg = table_config_fp(name, windows)
                plan = plan_dates(dates, logged_lineage(log, name), asof, cfg, full, reshaped)
                if plan.drop:
                    _drop_dt_refs(lake, name, plan.drop)
                    log = log[~((log["table_name"] == name) & log["dt_ref"].isin(plan.drop))]
                rows = 0
                if plan.todo:
                    if not cached:
                        cached = register_events(spark, windows)
                    counts = _write_table(lake, name, windows, plan.todo)
                    rows = sum(counts.values())
                    log = _log_rows(log, name, plan.todo, counts, asof, cfg)
                if plan.todo or plan.drop or reshaped:
                    dirty = True
                report.tables.append(TableBuild.of_plan(name, plan, len(dates), rows, time.perf_counter() - t1))
                advance(name)
    finally:
        # the build log is written once (also after a failure: what was written is recorded); a build
        # killed before this line leaves partitions the log does not know, recomputed next time
        if dirty:
            write_meta(lake, BUILD_LOG, log, BUILD_LOG_SCHEMA)
        for df in cached:
            df.unpersist()
    report.seconds = time.perf_counter() - t0
    return report


def _write_table(lake: Lake, name: str, windows: tuple[int, ...], todo: list[dt.date]) -> dict[dt.date, int]:
    """Compute `todo` dt_refs of one table and replace them in its month partitions; rows per dt_ref.

    Physical layout: partitioned by `dt_month` (the first day of dt_ref's month), one file per month,
    rows sorted by (dt_ref, seller_id). A dt_ref partition per day would write 608 files per table for
    the daily backfill, which costs Spark more than computing them (measured: benchmarks/bench_spark.py).
    Replacing some dt_refs of a month rewrites that month: its other dt_refs are read and kept.
    """
    from pyspark.sql import functions as F

    spark = lake.spark
    register_dates(spark, todo)
    df = compute_spark(spark, name, windows, todo).withColumn(MONTH, F.trunc("dt_ref", "month"))
    months = sorted({d.replace(day=1) for d in todo})
    present = set(lake.partitions(name, MONTH)) if lake.exists(name) else set()
    touched = [m for m in months if m.isoformat() in present]
    keep = None
    if touched:  # rows of the touched months that this run does not recompute
        old = lake.read(name).where(F.col(MONTH).isin(touched) & ~F.col("dt_ref").isin(todo))
        keep = old.select(*df.columns)
        df = df.unionByName(keep)
    df = df.repartition(MONTH).sortWithinPartitions("dt_ref", "seller_id")
    # materialised once: counted, then written (old rows are read before their files are replaced)
    df = df.localCheckpoint(eager=True) if keep is not None else df.cache()
    try:
        per_day = {r[0]: int(r[1]) for r in df.groupBy("dt_ref").count().collect()}
        counts = {d: n for d, n in per_day.items() if d in set(todo)}
        written = {d.replace(day=1) for d in per_day}
        if written:
            lake.overwrite_partitions(df, name, [MONTH])
        gone = [m for m in touched if m not in written]  # a month left with no row at all
        if gone:
            lake.drop_partitions(name, [m.isoformat() for m in gone], MONTH)
    finally:
        df.unpersist()
    return counts


def _log_rows(
    log: pd.DataFrame, name: str, todo: list[dt.date], counts: dict[dt.date, int], asof: dict[dt.date, str], cfg: str
) -> pd.DataFrame:
    keep = log[~((log["table_name"] == name) & log["dt_ref"].isin(set(todo)))]
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime().replace(microsecond=0)
    new = pd.DataFrame(
        {
            "table_name": name,
            "dt_ref": list(todo),
            "n_rows": [counts.get(d, 0) for d in todo],
            "built_at": now,
            "data_fp": [asof[d] for d in todo],
            "config_fp": cfg,
        }
    )
    return pd.concat([keep, new], ignore_index=True) if len(keep) else new


def _forget_lost(lake: Lake, log: pd.DataFrame, name: str) -> pd.DataFrame:
    """Log rows whose month partition is gone (deleted by hand, a write killed while committing) are
    forgotten, so their dt_refs count as missing and are recomputed."""
    mine = (log["table_name"] == name) & (log["n_rows"].fillna(0).astype(int) > 0)
    if not mine.any():
        return log
    present = set(lake.partitions(name, MONTH)) if lake.exists(name) else set()
    lost = mine & ~log["dt_ref"].map(lambda d: d.replace(day=1).isoformat() in present)
    return log[~lost]


def _drop_dt_refs(lake: Lake, name: str, dates: list[dt.date]) -> None:
    """Remove stale dt_refs outside the requested range: their months are rewritten without them."""
    from pyspark.sql import functions as F

    months = sorted({d.replace(day=1) for d in dates})
    present = set(lake.partitions(name, MONTH))
    touched = [m for m in months if m.isoformat() in present]
    if not touched:
        return
    rest = lake.read(name).where(F.col(MONTH).isin(touched) & ~F.col("dt_ref").isin(dates))
    rest = rest.repartition(MONTH).sortWithinPartitions("dt_ref", "seller_id").localCheckpoint(eager=True)
    written = {r[0] for r in rest.select(MONTH).distinct().collect()}
    if written:
        lake.overwrite_partitions(rest, name, [MONTH])
    lake.drop_partitions(name, [m.isoformat() for m in touched if m not in written], MONTH)


def _drop_if_reshaped(lake: Lake, name: str, windows: tuple[int, ...]) -> bool:
    """Drop a lake table built with other columns (feature windows changed); True if dropped."""
    if not lake.exists(name):
        return False
    if set(lake.columns(name)) - {MONTH} == set(expected_columns(name, windows)):
        return False
    lake.drop(name)
    return True
