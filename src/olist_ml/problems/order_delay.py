"""Order delivery delay: will a delivered order reach the customer after its estimated date?

Grain: one row per order. `dt_ref` is the order's purchase DATE in the ABT (the reference date
of its features; it drives the out-of-time split) and the scoring date in `scores_order_delay`.

Target `is_late` = 1 when `order_delivered_customer_date` falls on a later CALENDAR DAY than
`order_estimated_delivery_date`. Day resolution, because the estimate is a date (always
00:00 in Olist): an order delivered at 18:00 on its estimated day is on time, as the customer
was promised that day. (Comparing raw timestamps would call such orders late: ~1 point more.)

Labelled population: orders with status `delivered`, a delivery timestamp, and an estimated
date strictly before the last observed delivery day (`max(order_delivered_customer_date)`), so
an order is only judged once its promise has expired inside the observed data.

Features are known when the order is approved (order_delay_orders.sql): the order itself
(value, freight, items, product weight/volume/category, payment, promised days, approval
delay), geography (seller->customer haversine distance via `olist_ml.geo`, same-state flag,
states), calendar (purchase month/weekday), delivery context of the days BEFORE the purchase
date (route/state/market late rates, overdue rates, backlog) and the main seller's
feature-store features as of the purchase timestamp (`olist_ml.features.as_of`, prefixed
`seller_`). Main seller of a multi-seller order: the largest item value.

Scoring population at date D: orders bought and approved before D, not canceled/unavailable,
and not delivered before D (open orders: approved / invoiced / processing / shipped at D).
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd

from .. import geo
from ..config import Settings
from ..errors import MissingStepError
from ..ml.problem import Problem, SplitConfig
from ..warehouse import require_tables
from ._common import as_date, read_sql, seller_features_as_of, write_frame_atomically

NAME = "order_delay"
ABT = "abt_order_delay"
TARGET = "is_late"
OPEN_STATUSES = ("approved", "invoiced", "processing", "shipped")
STG_TABLES = ["stg_orders", "stg_order_items", "stg_products", "stg_customers", "stg_sellers", "stg_order_payments"]
# columns of the ABT / scoring frame that are not features
NON_FEATURES = ("customer_id", "order_status")


def orders_sql() -> str:
    """Order-level features of every order with items (see order_delay_orders.sql)."""
    return read_sql("order_delay_orders.sql").replace(
        "{haversine}", geo.haversine_sql("b.seller_lat", "b.seller_lng", "b.customer_lat", "b.customer_lng")
    )


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    require_tables(con, STG_TABLES, "ingest SOURCE")
    geo.build_zip_coordinates(con)


def _finish(con: duckdb.DuckDBPyConnection, df: pd.DataFrame) -> pd.DataFrame:
    """Join the seller's feature-store features as of the purchase time; tidy the dtypes."""
    df = seller_features_as_of(con, df, key="order_id", ts_col="purchase_ts")
    return df.drop(columns=["approved_at"], errors="ignore")


def observed_delivery_end(con: duckdb.DuckDBPyConnection) -> date | None:
    return as_date(con.execute("SELECT max(order_delivered_customer_date) FROM stg_orders").fetchall()[0][0])


def labelled_sql() -> str:
    return f"""
        SELECT CAST(purchase_ts AS DATE) AS dt_ref, o.*,
               CASE WHEN CAST(delivered_at AS DATE) > CAST(estimated_at AS DATE) THEN 1 ELSE 0 END AS {TARGET}
        FROM ({orders_sql()}) o
        WHERE order_status = 'delivered' AND delivered_at IS NOT NULL
          AND CAST(estimated_at AS DATE) < (SELECT CAST(max(order_delivered_customer_date) AS DATE) FROM stg_orders)
    """


def build_abt(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """Build `abt_order_delay` (one row per labelled delivered order) atomically; returns rows."""
    _prepare(con)
    df = con.execute(labelled_sql() + " ORDER BY dt_ref, order_id").df()
    df = _finish(con, df)
    cols = ["dt_ref", "order_id"] + [c for c in df.columns if c not in ("dt_ref", "order_id", TARGET)] + [TARGET]
    return write_frame_atomically(con, ABT, df[cols])


def default_scoring_date(con: duckdb.DuckDBPyConnection) -> date:
    """The day after the last observed purchase."""
    end = as_date(con.execute("SELECT max(order_purchase_timestamp) FROM stg_orders").fetchall()[0][0])
    if end is None:
        raise MissingStepError("stg_orders is empty: run `olist-ml ingest SOURCE` first")
    return end + timedelta(days=1)


def scoring_frame(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date | None = None) -> pd.DataFrame:
    """Open orders at `as_of` (default: the day after the last purchase), features as in the ABT."""
    _prepare(con)
    d = as_date(as_of) or default_scoring_date(con)
    df = con.execute(
        f"""
        SELECT CAST(? AS DATE) AS dt_ref, o.*
        FROM ({orders_sql()}) o
        WHERE o.purchase_ts < CAST(? AS DATE)
          AND o.approved_at < CAST(? AS DATE)
          AND o.order_status NOT IN ('canceled', 'unavailable', 'created')
          AND NOT (o.order_status = 'delivered' AND o.delivered_at IS NULL)  -- delivered at an unknown time
          AND (o.delivered_at IS NULL OR o.delivered_at >= CAST(? AS DATE))
        ORDER BY o.purchase_ts, o.order_id
        """,
        [d, d, d, d],
    ).df()
    if df.empty:
        return df
    return _finish(con, df)


PROBLEM = Problem(
    name=NAME,
    kind="binary",
    abt_table=ABT,
    key_columns=("dt_ref", "order_id"),
    time_column="dt_ref",
    group_column="seller_id",
    target=TARGET,
    build_abt=build_abt,
    scoring_frame=scoring_frame,
    exclude_columns=NON_FEATURES,
    aliases=("delay", "order-delay", "delivery_delay"),
    description="P(a delivered order reaches the customer after its estimated delivery date), at approval",
    # a training order's label is only known once its promise expired: promises are ~24 days (p95 ~40)
    split=SplitConfig(cv_folds=3, purge_days=30),
    build_step="features build",
)
