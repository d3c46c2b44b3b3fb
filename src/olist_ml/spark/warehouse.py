"""The Spark engine's counterpart of `olist_ml.warehouse`: lake tables as temp views, the data's
range and observed end, and small metadata tables (build log, lineage, ingest runs).

Everything here runs as Spark SQL over temp views named like the DuckDB tables (`stg_orders`, ...),
so the same SQL text reads the same names on both engines.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from ..errors import MissingStepError
from ..schema import SOURCES
from ..warehouse import OBSERVED_END_MIN_SHARE
from .lake import Lake

STG_TABLES = tuple(s.stg for s in SOURCES)


def register_stg(lake: Lake, step: str = "ingest SOURCE", required: tuple[str, ...] = ("stg_orders",)) -> list[str]:
    """Temp views `stg_*` over the lake's stg tables (those present); returns their names."""
    lake.require(required, step)
    have = []
    for t in STG_TABLES:
        if lake.exists(t):
            lake.read(t).createOrReplaceTempView(t)
            have.append(t)
    return have


def view_exists(spark, name: str) -> bool:
    return spark.catalog.tableExists(name)


def scalar(spark, sql: str):
    rows = spark.sql(sql).collect()
    return rows[0][0] if rows else None


def data_range(spark) -> tuple[dt.datetime, dt.datetime]:
    """(first, last) order_purchase_timestamp of the registered `stg_orders`."""
    lo, hi = spark.sql("SELECT min(order_purchase_timestamp), max(order_purchase_timestamp) FROM stg_orders").collect()[
        0
    ]
    if lo is None:
        raise MissingStepError("stg_orders is empty: run `olist-ml --engine spark ingest SOURCE` first")
    return lo, hi


def observed_end(spark, min_share: float = OBSERVED_END_MIN_SHARE, column: str = "order_purchase_timestamp") -> dt.date:
    """`olist_ml.warehouse.observed_end` in Spark SQL (same rule: the first day from which every later
    day has fewer than `min_share` x the median daily count of the 28 days before it)."""
    if column not in ("order_purchase_timestamp", "order_delivered_customer_date"):
        raise ValueError(f"observed_end: unknown column {column}")
    end = scalar(
        spark,
        f"""
        WITH daily AS (
            SELECT CAST({column} AS DATE) AS d, count(*) AS n FROM stg_orders WHERE {column} IS NOT NULL GROUP BY 1
        ),
        cal AS (
            SELECT explode(sequence(min(d), max(d), INTERVAL 1 DAY)) AS d FROM daily
        ),
        filled AS (SELECT cal.d, coalesce(daily.n, 0) AS n FROM cal LEFT JOIN daily ON daily.d = cal.d),
        ref AS (
            SELECT d,
                   array_sort(collect_list(n) OVER (ORDER BY d ROWS BETWEEN 28 PRECEDING AND 1 PRECEDING)) AS prev,
                   max(n) OVER (ORDER BY d ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS max_after
            FROM filled
        ),
        med AS (
            SELECT d, max_after,
                   CASE WHEN size(prev) = 0 THEN NULL
                        WHEN size(prev) % 2 = 1 THEN CAST(prev[size(prev) DIV 2] AS DOUBLE)
                        ELSE (prev[size(prev) DIV 2 - 1] + prev[size(prev) DIV 2]) / 2.0 END AS med_prev
            FROM ref
        )
        SELECT min(d) FROM med WHERE med_prev > 0 AND max_after < {float(min_share)!r} * med_prev
    """,
    )
    if end is None:
        end = scalar(spark, f"SELECT CAST(max({column}) AS DATE) + INTERVAL 1 DAY FROM stg_orders")
    return end.date() if isinstance(end, dt.datetime) else end


# ---- small metadata tables (read and rewritten whole on the driver) ----------------------------
def read_meta(lake: Lake, name: str, columns: list[str]) -> pd.DataFrame:
    """A small lake table as pandas (empty with `columns` when absent)."""
    if not lake.exists(name):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    df = lake.read(name).toPandas()
    for c in columns:
        if c not in df.columns:
            df[c] = None
    return df[columns]


def write_meta(lake: Lake, name: str, frame: pd.DataFrame, schema: str) -> None:
    """Replace a small lake table by `frame` (`schema`: a Spark DDL string, needed for empty frames)."""
    rows = [tuple(_py(v) for v in r) for r in frame.itertuples(index=False, name=None)]
    df = lake.spark.createDataFrame(rows, schema)
    lake.replace(df, name)


def _py(v):
    """A plain Python value for Spark's row verifier (pandas/numpy scalars and missing values converted)."""
    if _isna(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v


def _isna(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False
