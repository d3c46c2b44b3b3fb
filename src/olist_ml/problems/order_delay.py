"""Order delivery delay as a live nowcast: which of the orders in flight today will be late?

The ABT `abt_order_delay` is a landmark table: one row per order per CHECK POINT of its life.
Grain (dt_ref, order_id); dt_ref is the check point (a date, 00:00):
- at approval: dt_ref = the purchase date (the row of a NEW order: the order's own facts, known at
  approval, and the market before its purchase date -- the event convention of the former one-row-
  per-order ABT, which this row keeps unchanged);
- in flight: every STEP_DAYS days after the purchase date, and every month start, while the order
  is approved before dt_ref, not delivered before dt_ref and its promise not yet passed (dt_ref <=
  the estimated date: after that its label is known), and dt_ref lies inside the observed deliveries.
One ABT rather than a second `abt_order_delay_inflight`: one model scores new orders (their row at
approval) and orders in flight (their row at the scoring date) alike, and the protocol, the gate
and the registry stay those of one problem. Check points are order-relative (every STEP_DAYS days
after purchase) so every age in flight is sampled evenly; the month starts are added because the
evaluation ranks the orders open at each month start. STEP_DAYS: `Settings.delay.step_days` (6, measured).

Features of a row at dt_ref = t (order_delay_orders.sql, order_delay_inflight.sql): the approval-
time features (the order itself: value, freight, items, weight/volume, category, payment, promised
days and business days, holidays to the promise (national and the customer state's, from the
maintained `holidays` package), approval delay, distance, states, calendar; and the delivery
context of the days before its purchase date), and the order's state at t (order_delay_inflight.sql:
days in flight, days since approval, handed to a carrier or not and since when, days left to the
promise and business days left, days past the shipping limit while not handed over) and the market
at t (late rates, transit times and overdue shares of recent deliveries and orders, and the share of
recent deliveries to the customer state that took longer than this order can still take). Every
fact used is known strictly before t, except, on the row at approval (t = purchase date), the
order's own attributes, known at its approval on that day. No order_status anywhere (a snapshot
taken at extraction, not a point-in-time fact). No seller feature-store columns (so no feature build
before this ABT), measured on the real data (logreg, validation 2018-04..05, check points every 6
days): with the seller's 180-day and unwindowed columns (the ones the approval-time ABT kept) the
open-order ROC AUC is 0.8220 vs 0.8234 without, new orders 0.7372 vs 0.7257, for 1.8x the fit time
and an as-of join of every landmark row (19 s).

Target `is_late` = 1 when the order is not delivered by the end of its estimated delivery DATE:
`order_delivered_customer_date` falls on a later CALENDAR DAY than `order_estimated_delivery_date`,
or the order is never delivered (canceled ones included: nobody knows at approval or in flight which
order will be canceled, and the status is a snapshot). Day resolution, because the estimate is a
date (always 00:00 in Olist): an order delivered at 18:00 on its estimated day is on time.

When the label is known: whatever it turns out to be, by the end of the estimated date
(`label_known_at` = estimated date + 1 day, 00:00). A row is labelled only when that moment lies
inside the observed deliveries (`label_known_at <= delivery_end(con)`, 2018-08-31 on the real
data). Deliberately not "at the delivery when on time": labelling an order early because it was
delivered early would keep, near the end of the data and before each split boundary, the orders
that turned out on time and drop the late ones with the same promise (selection on the outcome);
the protocol purges on this column. An order shown `delivered` without a delivery timestamp is
delivered at an unknown time: no label. Unlabelled rows stay in the ABT (features known, label not).

Row weights (`row_weight` = 1 / the order's rows in the ABT; `Problem.weight_column`): every order
weighs the same in training, whatever its number of check points (a slow order would otherwise count
several times). Measured: see the README's order-delay section.

Scoring at D (`scoring_frame`, `olist-ml predict delay --dt-ref D`): the orders OPEN at D -- bought
and approved before D, not delivered before D -- whose promise has not passed (estimated date >= D),
each with its row at D. An open order whose promise already passed is not scored: its label is
known (late: not delivered by its promised day), so ranking it would only re-state a fact; on the
real data those are mostly orders canceled long ago (never delivered) that no timestamp closes.
New orders (bought at or after D) are scored by the API with their row at approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from functools import lru_cache

import duckdb
import numpy as np
import pandas as pd

from .. import geo
from ..config import DelaySettings, Settings
from ..errors import MissingStepError
from ..features.render import ENGINES, expand_macros, render_text
from ..ml.problem import Baseline, Problem
from ..warehouse import require_tables
from ._common import as_date, read_sql, write_frame_atomically

NAME = "order_delay"
ABT = "abt_order_delay"
TARGET = "is_late"
WEIGHT = "row_weight"
STG_TABLES = ["stg_orders", "stg_order_items", "stg_products", "stg_customers", "stg_sellers", "stg_order_payments"]
# columns of the ABT / scoring frame that are not features
NON_FEATURES = ("customer_id", "order_status", "label_known_at", WEIGHT)
# in-flight check points: every `Settings.delay.step_days` days after the purchase date (and every
# month start); measured: see olist_ml.config.DelaySettings
STEP_DAYS = DelaySettings.step_days
# Purge between training and evaluation periods. The ABT carries `label_known_at` (the estimated date
# + 1 day), which the protocol purges on; this is the fallback of `label_known_at()` below, declared
# (and measured) in olist_ml.config.DelaySettings.purge_days. A row at a later check point is closer
# to its label.
LABEL_PURGE_DAYS = DelaySettings.purge_days
_BASE_TMP = "_olist_order_delay_base"
_POINTS_TMP = "_olist_order_delay_points"


def base_sql(engine: str = "duckdb") -> str:
    """One row per order with items: the order's own facts and timestamps (see order_delay_base.sql)."""
    return _template("order_delay_base.sql", engine)


# ---------------------------------------------------------------------------------------
# the calendar: Brazilian holidays from the maintained `holidays` package
# ---------------------------------------------------------------------------------------
# Brazil's 27 federative units (UF codes): the states whose own holidays the calendar adds
# fmt: off
UF = (
    "AC", "AL", "AM", "AP", "BA", "CE", "DF", "ES", "GO", "MA", "MG", "MS", "MT", "PA",
    "PB", "PE", "PI", "PR", "RJ", "RN", "RO", "RR", "RS", "SC", "SE", "SP", "TO",
)
# fmt: on
# optional national days ("pontos facultativos") on which banks, most businesses and the post are closed
_OBSERVED_OPTIONAL = ("Carnival", "Corpus Christi")
HOLIDAY_YEARS = (2016, 2035)


def brazil_holidays(
    first_year: int = HOLIDAY_YEARS[0], last_year: int = HOLIDAY_YEARS[1], state: str | None = None
) -> list[date]:
    """Brazil's national holidays (the `holidays` package's public ones plus Carnival Monday/Tuesday and
    Corpus Christi, optional nationally but observed by banks, most businesses and the post), and with
    `state` (a UF code) that state's own holidays too. A public calendar, known years in advance."""
    import holidays

    years = range(first_year, last_year + 1)
    public = holidays.country_holidays("BR", years=years, categories=("public",), language="en_US")
    optional = holidays.country_holidays("BR", years=years, categories=("optional",), language="en_US")
    days = set(public) | {d for d, name in optional.items() if any(n in name for n in _OBSERVED_OPTIONAL)}
    if state is not None:
        days |= set(holidays.country_holidays("BR", subdiv=state, years=years, categories=("public",)))
    return sorted(days)


def brazil_national_holidays(first_year: int = HOLIDAY_YEARS[0], last_year: int = HOLIDAY_YEARS[1]) -> list[date]:
    """Brazil's national holidays (`brazil_holidays` without a state)."""
    return brazil_holidays(first_year, last_year)


@lru_cache(maxsize=len(ENGINES))
def holidays_sql(engine: str = "duckdb") -> str:
    """A SELECT of (day DATE, state VARCHAR): the national holidays under state '' (the national
    calendar) and, under each UF code, that state's calendar (the national holidays and its own).
    One string literal split in SQL (~8,000 state-days): a VALUES list of them took DuckDB 2.3 s to
    parse, twice per ABT build and per API request; this takes milliseconds. Cached: a fixed calendar."""
    rows = [f":{d.isoformat()}" for d in brazil_holidays()]
    for uf in UF:
        rows += [f"{uf}:{d.isoformat()}" for d in brazil_holidays(state=uf)]
    return expand_macros(
        f"SELECT CAST(split_part(x, ':', 2) AS DATE) AS day, split_part(x, ':', 1) AS state "
        f"FROM (SELECT SPLIT_ROWS('{','.join(rows)}', ',') AS x) t",
        engine,
    )


def calendar_sql(engine: str = "duckdb") -> str:
    """The CTEs `holidays`, `cal_days`, `cal_states`, `calendar` over a CTE `target` (order_delay_calendar.sql)."""
    return _render("order_delay_calendar.sql", engine, holidays=holidays_sql(engine))


# ---------------------------------------------------------------------------------------
# the SQL: approval-time features, in-flight features, check points. Every query is written once, in
# the SQL both engines run, with the dialect macros of `olist_ml.features.render` (DATEDIFF_DAYS,
# QUANTILE_CONT, ISODOW, EPOCH, ARG_MAX, DATE_SERIES, SPLIT_ROWS, STAR_EXCLUDE) expanded for `engine`
# ("duckdb", the default, or "spark"); the .sql files are Jinja templates (`render.render_text`) whose
# inputs (other queries) are rendered in after the macros are expanded, so no text is expanded twice.
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _template(name: str, engine: str) -> str:
    """The SQL file `name` (problems/sql/) with its dialect macros expanded for `engine`."""
    return expand_macros(read_sql(name), engine)


def _render(name: str, engine: str, **inputs) -> str:
    return render_text(_template(name, engine), **inputs)


def orders_sql(target: str | None = None, base: str | None = None, engine: str = "duckdb") -> str:
    """Approval-time features (order_delay_orders.sql) of the orders of `target` (a SELECT with
    `base_sql()`'s columns; default: every order with items), their context aggregated over `base` (a
    SELECT of `base_sql()`'s rows; default: computed from the stg tables)."""
    return _render(
        "order_delay_orders.sql",
        engine,
        haversine=geo.haversine_sql("b.seller_lat", "b.seller_lng", "b.customer_lat", "b.customer_lng"),
        calendar=calendar_sql(engine),
        target=target or "SELECT * FROM base",
        base=base or base_sql(engine),
    )


def inflight_sql(target: str, base: str | None = None, engine: str = "duckdb") -> str:
    """In-flight features (order_delay_inflight.sql) of the rows of `target` (a SELECT of `base_sql()`'s
    columns + `dt_ref`, the check point), from the history `base` (default: the stg tables)."""
    return _render(
        "order_delay_inflight.sql", engine, calendar=calendar_sql(engine), target=target, base=base or base_sql(engine)
    )


def checkpoints_sql(base: str, end: date | None, step: int = STEP_DAYS, engine: str = "duckdb") -> str:
    """Every order's check points (see the module doc; order_delay_checkpoints.sql): `base`'s columns +
    dt_ref. In-flight check points only before `end` (exclusive end of the observed deliveries; None: no
    in-flight rows)."""
    end_sql = f"DATE '{as_date(end).isoformat()}'" if end is not None else "CAST(NULL AS DATE)"
    return _render("order_delay_checkpoints.sql", engine, base=base, step=int(step), end=end_sql)


def features_sql(orders: str, points: str, base: str, engine: str = "duckdb") -> str:
    """Feature rows of the check-point rows `points` (`base_sql()` columns + dt_ref) of the orders
    `orders` (`base_sql()` columns, one row per order): each order's approval-time features joined to
    its in-flight features at each dt_ref; the context aggregates the history `base`."""
    return f"""
        SELECT p.dt_ref, s.*, {expand_macros("STAR_EXCLUDE(i, dt_ref, order_id)", engine)}
        FROM ({points}) p
        JOIN ({orders_sql(target=orders, base=base, engine=engine)}) s ON s.order_id = p.order_id
        JOIN ({inflight_sql(target=points, base=base, engine=engine)}) i
          ON i.dt_ref = p.dt_ref AND i.order_id = p.order_id
    """


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    require_tables(con, STG_TABLES, "ingest SOURCE")
    geo.build_zip_coordinates(con)


def _finish(df: pd.DataFrame) -> pd.DataFrame:
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
    on time = delivered on or before the estimated DATE; known, whatever it turns out to be, at the
    end of the estimated date (estimated date + 1 day, 00:00)."""
    on_time = f"({delivered} IS NOT NULL AND CAST({delivered} AS DATE) <= CAST({estimated} AS DATE))"
    known_at = f"(CAST(CAST({estimated} AS DATE) + INTERVAL 1 DAY AS TIMESTAMP))"
    return on_time, known_at


def abt_sql(
    delivery_end_date: date | None,
    base: str | None = None,
    points: str | None = None,
    step: int = STEP_DAYS,
    engine: str = "duckdb",
) -> str:
    """Every ABT row (see the module doc): features, `row_weight`, `label_known_at` and `is_late`, both
    NULL where the label is not known by `delivery_end_date` (exclusive end of the observed deliveries).
    base: the history (default: computed from the stg tables); points: its check points (default:
    `checkpoints_sql(base, delivery_end_date, step)`)."""
    base = base or base_sql(engine)
    points = points or checkpoints_sql(base, delivery_end_date, step, engine)
    orders = f"SELECT * FROM ({base}) b WHERE order_id IN (SELECT order_id FROM ({points}) p)"
    end = (
        f"TIMESTAMP '{as_date(delivery_end_date).isoformat()} 00:00:00'"
        if delivery_end_date is not None
        else "CAST(NULL AS TIMESTAMP)"
    )
    label, known_at = label_sql("f.delivered_at", "f.estimated_at", "f.order_status", end)
    return f"""
        SELECT f.*,
               CAST(1 AS DOUBLE) / count(*) OVER (PARTITION BY f.order_id) AS {WEIGHT},
               CAST(CASE WHEN {label} IS NOT NULL THEN {known_at} END AS TIMESTAMP) AS label_known_at,
               {label} AS {TARGET}
        FROM ({features_sql(orders, points, base, engine)}) f
    """


def label_sql(delivered: str, estimated: str, status: str, end: str) -> tuple[str, str]:
    """SQL of (the label: 1 late, 0 on time, NULL while not known by `end`, the exclusive end of the
    observed deliveries; when it is known whatever it turns out to be). An order shown delivered
    without a delivery time is never labelled (delivered at an unknown time)."""
    on_time, known_at = label_exprs(delivered, estimated)
    labelled = f"{known_at} <= {end} AND NOT ({status} = 'delivered' AND {delivered} IS NULL)"
    return f"CAST(CASE WHEN {labelled} THEN (CASE WHEN {on_time} THEN 0 ELSE 1 END) END AS INTEGER)", known_at


def outcomes(con: duckdb.DuckDBPyConnection, settings: Settings, scored: pd.DataFrame) -> pd.DataFrame:
    """`Problem.outcomes`: each scored order's label as known now (`label_sql`, the ABT's own rule)."""
    end = delivery_end(con)
    end_sql = f"TIMESTAMP '{end.isoformat()} 00:00:00'" if end is not None else "CAST(NULL AS TIMESTAMP)"
    label, known_at = label_sql(
        "o.order_delivered_customer_date", "o.order_estimated_delivery_date", "o.order_status", end_sql
    )
    con.register("_olist_scored", scored[["dt_ref", "order_id"]])
    try:
        return con.execute(
            f"SELECT s.dt_ref, s.order_id, {label} AS label, CAST({known_at} AS TIMESTAMP) AS label_known_at "
            "FROM _olist_scored s LEFT JOIN stg_orders o ON o.order_id = s.order_id"
        ).df()
    finally:
        con.unregister("_olist_scored")


@dataclass(frozen=True)
class Query:
    """What an engine runs for this problem: the temp tables to materialise first, in order ((name,
    SELECT) pairs, dropped afterwards; later ones may read earlier ones), then `sql`. The same plan
    runs on DuckDB (`build_abt`, `scoring_frame`) and on Spark (`olist_ml.spark.problems`)."""

    temps: tuple[tuple[str, str], ...]
    sql: str


def abt_query(delivery_end_date: date | None, step: int = STEP_DAYS, engine: str = "duckdb") -> Query:
    """The ABT's rows ordered by (dt_ref, order_id): the history and the check points materialised first."""
    base, points = f"SELECT * FROM {_BASE_TMP}", f"SELECT * FROM {_POINTS_TMP}"
    return Query(
        ((_BASE_TMP, base_sql(engine)), (_POINTS_TMP, checkpoints_sql(base, delivery_end_date, step, engine))),
        abt_sql(delivery_end_date, base=base, points=points, engine=engine) + " ORDER BY dt_ref, order_id",
    )


def scoring_query(d: date, engine: str = "duckdb") -> Query:
    """The orders open at `d` with their rows at `d`, ordered by (purchase_ts, order_id)."""
    base = f"SELECT * FROM {_BASE_TMP}"
    orders = open_orders_sql(base, d)
    points = f"SELECT DATE '{as_date(d).isoformat()}' AS dt_ref, o.* FROM ({orders}) o"
    return Query(
        ((_BASE_TMP, base_sql(engine)),),
        features_sql(orders, points, base, engine) + " ORDER BY purchase_ts, order_id",
    )


def abt_columns(columns) -> list[str]:
    """The ABT's columns in their stored order (keys first; weight, label time and target last; no approved_at)."""
    last = (WEIGHT, "label_known_at", TARGET)
    keep = [c for c in columns if c != "approved_at"]
    return ["dt_ref", "order_id"] + [c for c in keep if c not in ("dt_ref", "order_id", *last)] + list(last)


def _run(con: duckdb.DuckDBPyConnection, q: Query) -> pd.DataFrame:
    try:
        for name, sql in q.temps:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        return con.execute(q.sql).df()
    finally:
        for name, _ in reversed(q.temps):
            con.execute(f"DROP TABLE IF EXISTS {name}")


def build_abt(con: duckdb.DuckDBPyConnection, settings: Settings, step: int | None = None) -> int:
    """Build `abt_order_delay` (one row per order per check point; `is_late` NULL until known) atomically.
    step: days between in-flight check points (default: `settings.delay.step_days`)."""
    step = int(step or settings.delay.step_days)
    _prepare(con)
    df = _run(con, abt_query(delivery_end(con), step))
    return write_frame_atomically(con, ABT, df[abt_columns(df.columns)])


def default_scoring_date(con: duckdb.DuckDBPyConnection) -> date:
    """The observed end of the data (`olist_ml.warehouse.observed_end`): "today" for a snapshot.

    Not the day after max(purchase): the real extract's thin tail of stray orders runs weeks
    past the point where the data stops being complete.
    """
    from ..warehouse import observed_end

    if con.execute("SELECT count(*) FROM stg_orders").fetchall()[0][0] == 0:
        raise MissingStepError("stg_orders is empty: run `olist-ml ingest SOURCE` first")
    return observed_end(con)


def open_orders_sql(base: str, d: date) -> str:
    """The orders open at `d` whose promise has not passed (see the module doc): `base`'s rows."""
    day = f"DATE '{as_date(d).isoformat()}'"
    return f"""
        SELECT * FROM ({base}) b
        WHERE b.approved_at < {day} AND b.estimated_at IS NOT NULL
          AND (b.delivered_at IS NULL OR b.delivered_at >= {day}) AND CAST(b.estimated_at AS DATE) >= {day}
    """


def scoring_frame(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date | None = None) -> pd.DataFrame:
    """The orders open at `as_of` (default: the observed end of the data), each with its row at that date."""
    _prepare(con)
    d = as_date(as_of) or default_scoring_date(con)
    return _finish(_run(con, scoring_query(d)))


# ---------------------------------------------------------------------------------------
# the serving API: the ABT's feature row of an order in flight or a new one, from its raw attributes
# ---------------------------------------------------------------------------------------
# request column -> (SQL type, base_sql() column it becomes)
REQUEST_COLUMNS: dict[str, tuple[str, str]] = {
    "order_id": ("VARCHAR", "order_id"),
    "customer_id": ("VARCHAR", "customer_id"),
    "order_status": ("VARCHAR", "order_status"),
    "seller_id": ("VARCHAR", "seller_id"),
    "order_purchase_timestamp": ("TIMESTAMP", "purchase_ts"),
    "order_approved_at": ("TIMESTAMP", "approved_at"),
    "order_delivered_carrier_date": ("TIMESTAMP", "carrier_at"),
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
               r.purchase_ts, CAST(r.purchase_ts AS DATE) AS purchase_date, r.approved_at, r.carrier_at,
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


def request_frame(
    con: duckdb.DuckDBPyConnection, settings: Settings, orders: pd.DataFrame, as_of=None, *, history: str | None = None
) -> pd.DataFrame:
    """The ABT's feature row (columns of `abt_order_delay` but the target and weight) of each order of
    `orders` at the scoring date D (`as_of`, a date or timestamp taken at its day's 00:00; default:
    today, UTC), as `scoring_frame` / `build_abt` give it:

    - an order bought before D is IN FLIGHT: its row at dt_ref = D, from its state at D -- approved
      (`order_approved_at`) and handed to a carrier (`order_delivered_carrier_date`) when those
      happened before D (a later or missing one has not happened yet); undelivered (a delivered order
      has no delay left to predict). Its promise may have passed (days_left < 0: the label is known).
    - an order bought at or after D is NEW: its row at approval (dt_ref = its purchase date).

    `orders` holds one row per order with any of `REQUEST_COLUMNS` (raw Olist attributes, items
    already summed: order_value = sum of prices, n_items...); `seller_id` is required. The row is
    computed by the ABT's own SQL (`features_sql`) with these orders as its target, the context
    from `history` (a table holding `base_sql()`'s rows; the serving API keeps one in memory;
    default: computed from the stg tables). Missing locations come from stg_customers (customer_id)
    / stg_sellers (seller_id). Orders without `order_purchase_timestamp` are bought at D 00:00
    (new). Rows come back in the order of `orders`; `dt_ref` is each row's check point.
    """
    from datetime import datetime

    from ..errors import InputError
    from ..warehouse import table_exists

    if "seller_id" not in orders.columns:
        raise InputError(
            f"order_delay request: no seller_id column (columns: {', '.join(map(str, orders.columns)) or 'none'})"
        )
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
    d = as_date(as_of) if as_of is not None else datetime.now(UTC).date()
    if "order_purchase_timestamp" not in req.columns:
        req["order_purchase_timestamp"] = pd.Timestamp(d)
    req["order_purchase_timestamp"] = pd.to_datetime(req["order_purchase_timestamp"]).fillna(pd.Timestamp(d))
    view = pd.DataFrame({c: (req[c] if c in req.columns else None) for c in REQUEST_COLUMNS})
    casts = ", ".join(f"CAST({c} AS {t}) AS {b or c}" for c, (t, b) in REQUEST_COLUMNS.items())
    target = _request_target_sql(f"SELECT {casts} FROM {_REQUEST_VIEW}")
    day = f"DATE '{d.isoformat()}'"
    points = (
        f"SELECT CASE WHEN t.purchase_ts < {day} THEN {day} ELSE t.purchase_date END AS dt_ref, t.* FROM ({target}) t"
    )
    base = f"SELECT * FROM {history}" if history else base_sql()
    con.register(_REQUEST_VIEW, view)
    try:
        df = con.execute(features_sql(target, points, base)).df()
    finally:
        con.unregister(_REQUEST_VIEW)
    df = df.set_index("order_id", drop=False).loc[req["order_id"]].reset_index(drop=True)
    return _finish(df)


def label_known_at(df: pd.DataFrame, settings: Settings) -> pd.Series:
    """When an order's label is known whatever it turns out to be: the day after its promised
    (estimated) date. A delivery on or before that day settles is_late = 0 (earlier, at delivery);
    none by then settles is_late = 1. Purging on the delivery time would select on the outcome."""
    return pd.to_datetime(df["estimated_at"]).dt.normalize() + pd.Timedelta(days=1)


def promise_slack_rule(df: pd.DataFrame):
    """The fewer days the promise leaves beyond the route's recent average delivery time
    (`promise_slack_days`, at approval), the more likely late: the former approval-time baseline,
    still reported on the rows at approval (new orders)."""
    return -pd.to_numeric(df["promise_slack_days"], errors="coerce").to_numpy(dtype=float)


def days_left_rule(df: pd.DataFrame):
    """The baseline: the fewer days left to the promise at the check point (`days_left`), the more
    likely late -- one number an operator already has (at approval it is the promised days)."""
    return -pd.to_numeric(df["days_left"], errors="coerce").to_numpy(dtype=float)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from ..ml.metrics import ranking_metric

    s = np.where(np.isfinite(s), s, np.nanmedian(s) if np.isfinite(s).any() else 0.0)  # unknown: neutral
    return float(ranking_metric("roc_auc", y, s))


def nowcast_metrics(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, settings: Settings) -> dict[str, float]:
    """The operations question, on labelled rows `frame` with predictions `p` (`Problem.extra_metrics`):
    for each month start in the frame, the ROC AUC over the orders open at that date (their rows at
    it, in flight) beside days-left alone (`roc_auc_open_<YYYY_MM>`, `roc_auc_open_days_left_<YYYY_MM>`),
    their means and the smallest gain over days-left (`roc_auc_open_min_gain`); and the ROC AUC over
    the new orders (rows at approval) beside the promise slack (`roc_auc_new_orders[_promise_slack]`)."""
    t = pd.to_datetime(frame["dt_ref"]).to_numpy()
    flight = pd.to_numeric(frame["days_in_flight"], errors="coerce").to_numpy()
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    out: dict[str, float] = {}
    model, rule = [], []
    for m in sorted(set(pd.to_datetime(frame["dt_ref"])[pd.to_datetime(frame["dt_ref"]).dt.day == 1])):
        sel = (t == np.datetime64(m)) & (flight > 0)
        if sel.sum() == 0 or len(np.unique(y[sel])) < 2:
            continue
        key = pd.Timestamp(m).strftime("%Y_%m")
        out[f"roc_auc_open_{key}"] = a = _auc(y[sel], p[sel])
        out[f"roc_auc_open_days_left_{key}"] = b = _auc(y[sel], days_left_rule(frame[sel]))
        model.append(a)
        rule.append(b)
    if model:
        out["roc_auc_open_mean"] = float(np.mean(model))
        out["roc_auc_open_days_left_mean"] = float(np.mean(rule))
        out["roc_auc_open_min_gain"] = float(np.min(np.subtract(model, rule)))
    new = flight == 0
    if new.sum() and len(np.unique(y[new])) == 2:
        out["roc_auc_new_orders"] = _auc(y[new], p[new])
        out["roc_auc_new_orders_promise_slack"] = _auc(y[new], promise_slack_rule(frame[new]))
    return out


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
    description="P(an order is not delivered by its estimated delivery date), at approval and while in flight",
    # test: the last 3 labelled months of check points; validation: the 2 before. Purged on
    # label_known_at (the day after the promise): a training row's label is known before the next
    # period starts. Tuning on a time-stratified sample of the training rows. All in Settings.delay
    # (olist_ml.config.DelaySettings: test/validation months, purge_days = LABEL_PURGE_DAYS, tune_rows,
    # step_days).
    settings_of=lambda s: s.delay,
    # measured on the real landmark ABT (validation 2018-04..05, `bench_delay_nowcast.py`): logreg ROC AUC
    # 0.8437 (open orders at month starts 0.8256, new orders 0.7275; 73 s), LightGBM 0.8232 (0.7966,
    # 0.6854; 505 s, one tuning trial in its budget): LightGBM neither ranks better nor fits in the
    # time; `--candidates lightgbm` / OLIST_ML_CANDIDATES still try it
    candidates=("logreg",),
    label_known_fn=label_known_at,
    baseline=Baseline(
        "days left to the promise alone (-days_left as the score)",
        score=days_left_rule,
        sql="-CAST(days_left AS DOUBLE)",
    ),
    extra_metrics=nowcast_metrics,
    ci_cluster_column="order_id",
    weight_column=WEIGHT,
    build_step="ingest SOURCE",  # the ABT reads the stg tables only (no feature-store row)
    reads=(*STG_TABLES, "stg_geolocation"),  # the order facts, the parties and their zip coordinates
    outcomes=outcomes,
    # dt_ref: the check point (purchase date for the row at approval), the scoring date when scored
    event_time_column="purchase_ts",
)
