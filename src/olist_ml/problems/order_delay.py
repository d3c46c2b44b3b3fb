"""Order delivery delay: will an approved order miss its estimated delivery date?

Grain: one row per order. `dt_ref` is the order's purchase DATE in the ABT (the reference date
of its features; it drives the out-of-time split) and the scoring date in `scores_order_delay`.

Target `is_late` = 1 when the order is not delivered by the end of its estimated delivery DATE:
`order_delivered_customer_date` falls on a later CALENDAR DAY than
`order_estimated_delivery_date`, or the order is never delivered (canceled orders included:
order_status is a snapshot taken at extraction, and at approval nobody knows which order will be
canceled; these are the worst delays, ~1 % of a month's orders, and scoring includes them).
Day resolution, because the estimate is a date (always 00:00 in Olist): an order delivered at
18:00 on its estimated day is on time, as the customer was promised that day.

When the label is known (`label_known_at`, not a feature): at the delivery for an order
delivered on time, at the end of the estimated date (estimated date + 1 day, 00:00) for a late
one, delivered later or never. A row is labelled only when that moment lies inside the observed
deliveries (`label_known_at <= delivery_end(con)`, the robust end of the observed delivery days,
2018-08-31 on the real data); the other rows stay in the ABT with `is_late` and `label_known_at`
NULL (their features are known, their label not yet). ABT population: orders with items and an
estimated date that were approved (or delivered), i.e. that a scoring run could have seen.
An order shown `delivered` without a delivery timestamp is delivered at an unknown time: no label.

Features are known when the order is approved (order_delay_orders.sql): the order itself
(value, freight, items, product weight/volume/category, payment, promised days, approval
delay), geography (seller->customer haversine distance via `olist_ml.geo`, same-state flag,
states), calendar (purchase month/weekday, the promise's business days and the national holidays
it spans: `brazil_national_holidays`, a public calendar), delivery context of the days BEFORE the
purchase date (route/state/market late rates, overdue rates, backlog, backlog / recent deliveries,
the route's p50/p90 delivery days and the promise's slack over that p90, a nowcast of the
carriers' current speed: the share of the orders bought 7-24 days before that were delivered
within 7/10 days, the share of recent deliveries that took longer than THIS order's promise
(state 30 d, market 14 d, and a Kaplan-Meier estimate over the cohorts bought in the last 60
days), and the share of the orders coming due in the next 7 days still undelivered) and the
main seller's feature-store features as of the purchase timestamp (`olist_ml.features.as_of`,
prefixed `seller_`). Main seller of a multi-seller order: the largest item value. Context
features never filter on order_status (the extract's snapshot, not point-in-time).

Scoring population at date D: orders bought and approved before D, not canceled/unavailable,
and not delivered before D (open orders: approved / invoiced / processing / shipped at D).
"""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd

from .. import geo
from ..config import DelaySettings, Settings
from ..errors import MissingStepError
from ..ml.problem import Baseline, Problem
from ..warehouse import require_tables
from ._common import as_date, read_sql, seller_features_as_of, write_frame_atomically

NAME = "order_delay"
ABT = "abt_order_delay"
TARGET = "is_late"
OPEN_STATUSES = ("approved", "invoiced", "processing", "shipped")
STG_TABLES = ["stg_orders", "stg_order_items", "stg_products", "stg_customers", "stg_sellers", "stg_order_payments"]
# columns of the ABT / scoring frame that are not features
NON_FEATURES = ("customer_id", "order_status", "label_known_at")
# Purge between training and evaluation periods: how long after purchase a label becomes known
# (label_known_at - purchase_ts), measured on the real data (orders bought before 2018-08-01):
# p50 10.9 days, p90 23.1, p99 35.4, p99.5 39.3, p99.9 51.5, max 145.9. The purge is the p99.9,
# rounded up: a training row bought >= 52 days before the evaluation period has its label known
# before that period starts with probability 0.999. (With label = delivery date for late orders
# the p99.9 would be 85 days; but a late label is known at the end of the estimated date.)
LABEL_PURGE_DAYS = DelaySettings.purge_days  # 52, declared in olist_ml.config.DelaySettings


def base_sql() -> str:
    """One row per order with items: the order's own facts (see order_delay_base.sql)."""
    return read_sql("order_delay_base.sql")


def brazil_national_holidays(first_year: int = 2016, last_year: int = 2035) -> list[date]:
    """Brazil's national holidays (fixed dates + Carnival Monday/Tuesday, Good Friday, Corpus
    Christi from the Gregorian Easter date; 20 November from 2024): a public calendar, known years
    in advance."""
    from datetime import timedelta

    out: list[date] = []
    for y in range(first_year, last_year + 1):
        # anonymous Gregorian algorithm (Meeus/Jones/Butcher) for Easter Sunday
        a, b, c = y % 19, y // 100, y % 100
        d, e = b // 4, b % 4
        g = (8 * b + 13) // 25
        h = (19 * a + b - d - g + 15) % 30
        i, k = c // 4, c % 4
        l_ = (32 + 2 * e + 2 * i - h - k) % 7
        m = (a + 11 * h + 22 * l_) // 451
        month, day = divmod(h + l_ - 7 * m + 114, 31)
        easter = date(y, month, day + 1)
        out += [date(y, mo, dd) for mo, dd in ((1, 1), (4, 21), (5, 1), (9, 7), (10, 12), (11, 2), (11, 15), (12, 25))]
        if y >= 2024:  # Dia da Consciencia Negra, national since Lei 14.759/2023
            out.append(date(y, 11, 20))
        out += [easter - timedelta(days=48), easter - timedelta(days=47), easter - timedelta(days=2),
                easter + timedelta(days=60)]
    return sorted(set(out))


def holidays_sql() -> str:
    """A SELECT of one DATE column `day`: the national holidays (brazil_national_holidays)."""
    values = ", ".join(f"(DATE '{d.isoformat()}')" for d in brazil_national_holidays())
    return f"SELECT * FROM (VALUES {values}) t(day)"


def orders_sql(target: str | None = None, base: str | None = None) -> str:
    """Order-level features (see order_delay_orders.sql) of the orders of `target` (a SELECT with
    `base_sql()`'s columns; default: every order with items), their context aggregated over
    `base` (a SELECT or table of `base_sql()`'s rows; default: computed from the stg tables)."""
    sql = read_sql("order_delay_orders.sql").replace(
        "{haversine}", geo.haversine_sql("b.seller_lat", "b.seller_lng", "b.customer_lat", "b.customer_lng")
    )
    sql = sql.replace("{holidays}", holidays_sql())
    sql = sql.replace("{target}", target or "SELECT * FROM base")
    return sql.replace("{base}", base or base_sql())


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    require_tables(con, STG_TABLES, "ingest SOURCE")
    geo.build_zip_coordinates(con)


def _finish(con: duckdb.DuckDBPyConnection, df: pd.DataFrame) -> pd.DataFrame:
    """Join the seller's feature-store features as of the purchase time; tidy the dtypes."""
    df = seller_features_as_of(con, df, key="order_id", ts_col="purchase_ts")
    return df.drop(columns=["approved_at"], errors="ignore")


def delivery_end(con: duckdb.DuckDBPyConnection) -> date | None:
    """Exclusive end of the observed deliveries (`warehouse.observed_end` on delivery days: the
    first day from which every later day has < 50 % of the typical daily deliveries)."""
    from ..warehouse import observed_end

    if con.execute("SELECT count(order_delivered_customer_date) FROM stg_orders").fetchall()[0][0] == 0:
        return None
    return observed_end(con, column="order_delivered_customer_date")


def label_exprs(delivered: str, estimated: str) -> tuple[str, str]:
    """SQL of (on time, when the label is known) for an order's delivery / estimated timestamps:
    on time = delivered on or before the estimated DATE; known at that delivery when on time,
    else at the end of the estimated date (late: delivered later, or never)."""
    on_time = f"({delivered} IS NOT NULL AND CAST({delivered} AS DATE) <= CAST({estimated} AS DATE))"
    known_at = f"(CASE WHEN {on_time} THEN {delivered} ELSE CAST({estimated} AS DATE) + INTERVAL 1 DAY END)"
    return on_time, known_at


def abt_sql(delivery_end_date: date | None) -> str:
    """Every ABT row (see the module doc): features, `label_known_at` and `is_late`, both NULL where
    the label is not known by `delivery_end_date` (exclusive end of the observed deliveries)."""
    end = (f"TIMESTAMP '{as_date(delivery_end_date).isoformat()} 00:00:00'" if delivery_end_date is not None
           else "CAST(NULL AS TIMESTAMP)")
    on_time, known_at = label_exprs("o.delivered_at", "o.estimated_at")
    labelled = (f"{known_at} <= {end} "
                "AND NOT (o.order_status = 'delivered' AND o.delivered_at IS NULL)")  # delivered at an unknown time
    return f"""
        SELECT CAST(o.purchase_ts AS DATE) AS dt_ref, o.*,
               CAST(CASE WHEN {labelled} THEN {known_at} END AS TIMESTAMP) AS label_known_at,
               CAST(CASE WHEN {labelled} THEN (CASE WHEN {on_time} THEN 0 ELSE 1 END) END AS INTEGER) AS {TARGET}
        FROM ({orders_sql()}) o
        WHERE o.estimated_at IS NOT NULL AND (o.approved_at IS NOT NULL OR o.delivered_at IS NOT NULL)
    """


def build_abt(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """Build `abt_order_delay` (one row per approved order; `is_late` NULL until known) atomically."""
    _prepare(con)
    df = con.execute(abt_sql(delivery_end(con)) + " ORDER BY dt_ref, order_id").df()
    df = _finish(con, df)
    last = ("label_known_at", TARGET)
    cols = ["dt_ref", "order_id"] + [c for c in df.columns if c not in ("dt_ref", "order_id", *last)] + list(last)
    return write_frame_atomically(con, ABT, df[cols])


def default_scoring_date(con: duckdb.DuckDBPyConnection) -> date:
    """The observed end of the data (`olist_ml.warehouse.observed_end`): "today" for a snapshot.

    Not the day after max(purchase): the real extract's thin tail of stray orders runs weeks
    past the point where the data stops being complete.
    """
    from ..warehouse import observed_end

    if con.execute("SELECT count(*) FROM stg_orders").fetchall()[0][0] == 0:
        raise MissingStepError("stg_orders is empty: run `olist-ml ingest SOURCE` first")
    return observed_end(con)


def scoring_frame(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date | None = None) -> pd.DataFrame:
    """Open orders at `as_of` (default: the observed end of the data), features as in the ABT."""
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


# ---------------------------------------------------------------------------------------
# new orders (the serving API): the ABT's feature row from an order's raw attributes
# ---------------------------------------------------------------------------------------
# request column -> (SQL type, base_sql() column it becomes)
REQUEST_COLUMNS: dict[str, tuple[str, str]] = {
    "order_id": ("VARCHAR", "order_id"),
    "customer_id": ("VARCHAR", "customer_id"),
    "order_status": ("VARCHAR", "order_status"),
    "seller_id": ("VARCHAR", "seller_id"),
    "order_purchase_timestamp": ("TIMESTAMP", "purchase_ts"),
    "order_approved_at": ("TIMESTAMP", "approved_at"),
    "order_estimated_delivery_date": ("TIMESTAMP", "estimated_at"),
    "shipping_limit_date": ("TIMESTAMP", "shipping_limit_date"),
    "customer_state": ("VARCHAR", "customer_state"),
    "customer_zip_code_prefix": ("VARCHAR", None),
    "seller_state": ("VARCHAR", "seller_state"),
    "seller_zip_code_prefix": ("VARCHAR", None),
    "order_value": ("DOUBLE", "order_value"),
    "freight_value": ("DOUBLE", "freight_value"),
    "n_items": ("BIGINT", "n_items"),
    "n_products": ("BIGINT", "n_products"),
    "n_sellers": ("BIGINT", "n_sellers"),
    "total_weight_g": ("DOUBLE", "total_weight_g"),
    "max_item_weight_g": ("DOUBLE", "max_item_weight_g"),
    "total_volume_cm3": ("DOUBLE", "total_volume_cm3"),
    "product_category": ("VARCHAR", "product_category"),
    "payment_type": ("VARCHAR", "payment_type"),
    "payment_installments": ("INTEGER", "payment_installments"),
    "n_payments": ("BIGINT", "n_payments"),
}
_REQUEST_VIEW = "_olist_order_delay_request"


def _request_target_sql(source: str) -> str:
    """`base_sql()`'s columns for the rows of the request view; customer/seller location from the
    request, else from stg_customers (by customer_id) / stg_sellers (by seller_id), located the
    way base_sql() locates them (geo_zip_coordinates on zip prefix + state)."""
    zip5 = "lpad(trim(CAST({} AS VARCHAR)), 5, '0')"
    return f"""
        SELECT r.order_id, r.customer_id, coalesce(r.order_status, 'approved') AS order_status, r.seller_id,
               r.purchase_ts, CAST(r.purchase_ts AS DATE) AS purchase_date, r.approved_at,
               CAST(NULL AS TIMESTAMP) AS delivered_at, r.estimated_at,
               upper(trim(coalesce(r.customer_state, c.customer_state))) AS customer_state,
               upper(trim(coalesce(r.seller_state, s.seller_state))) AS seller_state,
               gc.lat AS customer_lat, gc.lng AS customer_lng, gc.geo_level AS customer_geo_level,
               gs.lat AS seller_lat, gs.lng AS seller_lng, gs.geo_level AS seller_geo_level,
               r.order_value, r.freight_value, r.n_items, r.n_products, r.n_sellers,
               r.total_weight_g, r.max_item_weight_g, r.total_volume_cm3, r.shipping_limit_date,
               coalesce(r.product_category, 'unknown') AS product_category,
               r.payment_type, r.payment_installments, r.n_payments
        FROM ({source}) r
        LEFT JOIN stg_customers c ON c.customer_id = r.customer_id
        LEFT JOIN stg_sellers s ON s.seller_id = r.seller_id
        LEFT JOIN {geo.GEO_TABLE} gc
               ON gc.zip_code_prefix = {zip5.format("coalesce(r.customer_zip_code_prefix, c.customer_zip_code_prefix)")}
              AND gc.state = upper(trim(coalesce(r.customer_state, c.customer_state)))
        LEFT JOIN {geo.GEO_TABLE} gs
               ON gs.zip_code_prefix = {zip5.format("coalesce(r.seller_zip_code_prefix, s.seller_zip_code_prefix)")}
              AND gs.state = upper(trim(coalesce(r.seller_state, s.seller_state)))
    """


def request_frame(con: duckdb.DuckDBPyConnection, settings: Settings, orders: pd.DataFrame,
                  as_of=None, *, history: str | None = None) -> pd.DataFrame:
    """The ABT's feature row (columns of `abt_order_delay` but the target) for new orders.

    `orders` holds one row per order with any of `REQUEST_COLUMNS` (raw Olist attributes, items
    already summed: order_value = sum of prices, n_items...); `seller_id` is required. The row
    is computed by the ABT's own SQL (`orders_sql`) with these orders as its `target`, so order
    features (freight_ratio, promised_days, promised_business_days, approval_hours, distance_km,
    same_state, calendar), context features (route_*, cstate_*, market_*, seller_*_due/overdue,
    promise_slack_days, *_slower_than_promise_*:
    facts strictly before the purchase date) and the seller's feature-store row are those
    `build_abt` gives an order with the same attributes. Missing locations come from
    stg_customers (customer_id) / stg_sellers (seller_id).

    as_of: orders without `order_purchase_timestamp` are taken as bought at `as_of` (default:
    now, UTC); with `as_of` given, the seller's feature-store row is the latest dt_ref <= as_of
    for every order (default: <= each order's purchase time, as in the ABT).
    history: a table holding `base_sql()`'s rows to aggregate the context over (the serving
    API keeps one in memory); default: computed from the stg tables.
    Rows come back in the order of `orders`.
    """
    from datetime import datetime, timezone

    from ..errors import InputError
    from ..warehouse import table_exists

    if "seller_id" not in orders.columns:
        raise InputError("order_delay request: no seller_id column (columns: "
                         f"{', '.join(map(str, orders.columns)) or 'none'})")
    require_tables(con, ["stg_customers", "stg_sellers"] + ([] if history else STG_TABLES), "ingest SOURCE")
    if not table_exists(con, geo.GEO_TABLE):
        geo.build_zip_coordinates(con)
    req = orders.reset_index(drop=True).copy()
    bad = req.index[req["seller_id"].isna() | (req["seller_id"].astype(str).str.strip() == "")]
    if len(bad):
        raise InputError(f"order_delay request row {int(bad[0])}: seller_id is empty")
    if "order_id" not in req.columns:
        req["order_id"] = None
    given = [str(o) if o is not None and not (isinstance(o, float) and pd.isna(o)) else None for o in req["order_id"]]
    prefix = "request-"
    while any(o is not None and o.startswith(prefix) for o in given):
        prefix = "_" + prefix  # generated ids never take a given one
    req["order_id"] = [o if o is not None else f"{prefix}{i}" for i, o in enumerate(given)]
    dup = req["order_id"][req["order_id"].duplicated()]
    if len(dup):
        raise InputError(f"order_delay request: order_id {dup.iloc[0]} appears more than once")
    when = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(datetime.now(timezone.utc).replace(tzinfo=None))
    if "order_purchase_timestamp" not in req.columns:
        req["order_purchase_timestamp"] = when
    req["order_purchase_timestamp"] = pd.to_datetime(req["order_purchase_timestamp"]).fillna(when)
    view = pd.DataFrame({c: (req[c] if c in req.columns else None) for c in REQUEST_COLUMNS})
    casts = ", ".join(f"CAST({c} AS {t}) AS {b or c}" for c, (t, b) in REQUEST_COLUMNS.items())
    target = _request_target_sql(f"SELECT {casts} FROM {_REQUEST_VIEW}")
    base = f"SELECT * FROM {history}" if history else None
    con.register(_REQUEST_VIEW, view)
    try:
        df = con.execute(f"SELECT CAST(purchase_ts AS DATE) AS dt_ref, o.* "
                         f"FROM ({orders_sql(target=target, base=base)}) o").df()
    finally:
        con.unregister(_REQUEST_VIEW)
    df = df.set_index("order_id", drop=False).loc[req["order_id"]].reset_index(drop=True)
    if as_of is None:
        return _finish(con, df)
    df["_features_ts"] = when
    df = seller_features_as_of(con, df, key="order_id", ts_col="_features_ts")
    return df.drop(columns=["approved_at", "_features_ts"], errors="ignore")


def label_known_at(df: pd.DataFrame, settings: Settings) -> pd.Series:
    """When an order's label is known whatever it turns out to be: the day after its promised
    (estimated) date. A delivery on or before that day settles is_late = 0 (earlier, at delivery);
    none by then settles is_late = 1. Purging on the delivery time would select on the outcome."""
    return pd.to_datetime(df["estimated_at"]).dt.normalize() + pd.Timedelta(days=1)


def promise_slack_rule(df: pd.DataFrame):
    """The baseline: the fewer days the promise leaves beyond the route's recent average delivery
    time (`promise_slack_days`), the more likely late. Chosen on the VALIDATION months of the real
    data among the rules named in the issue: promise slack 0.694 ROC AUC, route late rate
    (`route_pct_late_90d`) 0.650, promised days 0.467 (`benchmarks/bench_problems.py --baselines`)."""
    return -pd.to_numeric(df["promise_slack_days"], errors="coerce").to_numpy(dtype=float)


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
    # the seller's short-window feature-store columns (104 of 209 numeric features) add nothing on the
    # real data's validation months (logreg ROC AUC 0.7884 without them, 0.7868 with) and cost a third
    # of the fit time: only the longest window (180 d) and the unwindowed ones are kept
    exclude_columns=NON_FEATURES + ("seller_*_30d", "seller_*_90d"),
    aliases=("delay", "order-delay", "delivery_delay"),
    description="P(an approved order is not delivered by its estimated delivery date), at approval",
    # a training order's label is known at label_known_at: p99.9 of (label_known_at - purchase) is 52 days.
    # test: the last 3 labelled months; validation: the 2 before (the later one mostly purged: its
    # orders' promises run past the test start); a label is known the day after the promised date
    # at the latest (`label_known_at`; promises are ~24 days, p95 ~40). Tuning on a time-stratified
    # sample of 20,000 training rows (of ~58,000 on the real data). All in Settings.delay
    # (olist_ml.config.DelaySettings: test/validation months, purge_days = LABEL_PURGE_DAYS, tune_rows).
    settings_of=lambda s: s.delay,
    # measured on the real data (validation ROC AUC; tuning + fit time under `olist-ml run`'s budget,
    # relative to logreg): logreg 0.816 (1x), LightGBM 0.753 (7x), XGBoost 0.754 (4x), random forest
    # 0.726 (18x): the two slowest never win here; LightGBM stays as the non-linear candidate
    candidates=("logreg", "lightgbm"),
    label_known_fn=label_known_at,
    baseline=Baseline("promise slack alone (-promise_slack_days as the score)", score=promise_slack_rule),
    ci_cluster_column="order_id",
    build_step="features build",
    event_time_column="purchase_ts",  # dt_ref: purchase date in the ABT, scoring date when scored
)
