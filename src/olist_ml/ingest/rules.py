"""The plausibility contract, shared by the DuckDB ingest (`load.py`) and the Spark ingest
(`olist_ml.spark.ingest`): the date window from the orders' quartiles, the value rules of every
column (each engine turns a rule into its own condition; the rules, their order -- the first that
applies names the reason -- and the reasons' text live only here) and the cross-table checks.
See docs/ingest.md ("Date window")."""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import FOREIGN_KEYS, SOURCES_BY_KEY, Column
from .report import TableReport
from .text import q

# Dates: the window is anchored on the middle half of the orders' purchase timestamps (the
# quartiles Q1..Q3 of the orders file: unlike min/max, a few wild rows barely move them).
DATE_ANCHOR = ("orders", "order_purchase_timestamp")


DATE_PAST_MARGIN_DAYS = 730  # lo = Q1 - max(2 years, 2 x IQR): bounds the feature store's default backfill


DATE_FUTURE_MARGIN_DAYS = 1826  # hi = Q3 + max(5 years, 2 x IQR): later dates only have to be holdable


DATE_IQR_FACTOR = 2


LOCAL_TZ = "America/Sao_Paulo"  # timestamps with a UTC offset are converted to this zone's local time


ZONE_RE = r"[0-9]:[0-9]{2}(:[0-9]{2}(\.[0-9]*)?)?\s*[^0-9\s:.]"


@dataclass
class Rules:
    """What every table of one ingest is checked against."""

    tz_ok: bool  # DuckDB can convert an offset to LOCAL_TZ (ICU time-zone data loaded)
    window: tuple[str, str] | None = None  # plausible dates, inclusive ISO days; set once the orders are typed


def _num(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def window_from_quartiles(q1, q3) -> tuple[str, str]:
    """The plausible-date window from the anchor's quartiles (DATE_* constants; whole days)."""
    import datetime as _dt

    d1, d3 = _dt.date(q1.year, q1.month, q1.day), _dt.date(q3.year, q3.month, q3.day)
    spread = DATE_IQR_FACTOR * (d3 - d1).days
    try:
        lo = d1 - _dt.timedelta(days=max(DATE_PAST_MARGIN_DAYS, spread))
    except OverflowError:
        lo = _dt.date.min
    try:
        hi = d3 + _dt.timedelta(days=max(DATE_FUTURE_MARGIN_DAYS, spread))
    except OverflowError:
        hi = _dt.date.max
    return lo.isoformat(), hi.isoformat()


@dataclass(frozen=True)
class ValueRule:
    """One check of one column. kind: missing | zone | cast | nonfinite | min | max | window;
    bound: the limit of min/max, the (lo, hi) ISO days of window."""

    kind: str
    reason: str
    bound: object = None


def value_rules(c: Column, window: tuple[str, str] | None, tz_ok: bool = True) -> list[ValueRule]:
    """The checks of one column, in the order the reason is chosen."""
    out = []
    if not c.nullable:
        out.append(ValueRule("missing", "missing value in non-nullable column"))
    if c.type == "VARCHAR":
        return out
    if c.type in ("TIMESTAMP", "DATE"):
        out.append(
            ValueRule(
                "zone",
                f"cannot convert the time zone to {LOCAL_TZ} local time"
                if tz_ok
                else f"has a time zone, and DuckDB's time-zone support (ICU) is not available to convert "
                f"it to {LOCAL_TZ}",
            )
        )
    out.append(ValueRule("cast", f"cannot cast to {c.type}"))
    if c.type == "DOUBLE":
        out.append(ValueRule("nonfinite", "not a finite number (NaN or infinity)"))
    if c.min_value is not None:
        why = "negative value (must be >= 0)" if c.min_value == 0 else f"below the minimum {_num(c.min_value)}"
        out.append(ValueRule("min", why, c.min_value))
    if c.max_value is not None:
        out.append(ValueRule("max", f"above the maximum {_num(c.max_value)}", c.max_value))
    if c.type in ("TIMESTAMP", "DATE") and window:
        out.append(ValueRule("window", f"date outside the plausible window {window[0]}..{window[1]}", window))
    return out


_TS_ORDER_CHECKS = (
    ("orders", "orders_approved_before_purchase", "order_approved_at < order_purchase_timestamp"),
    ("orders", "orders_carrier_before_approved", "order_delivered_carrier_date < order_approved_at"),
    ("orders", "orders_delivered_before_carrier", "order_delivered_customer_date < order_delivered_carrier_date"),
    ("orders", "orders_delivered_before_purchase", "order_delivered_customer_date < order_purchase_timestamp"),
    ("order_reviews", "reviews_answered_before_created", "review_answer_timestamp < review_creation_date"),
)


def cross_checks(count, reps: dict[str, TableReport], anti: str = "ANTI JOIN") -> dict[str, int]:
    """The cross-table checks for any engine: `count(sql) -> int` runs a query over the stg tables;
    `anti` is the engine's anti-join keyword (Spark: LEFT ANTI JOIN). Warnings go to `reps`."""
    checks: dict[str, int] = {}

    def warn(key: str, msg: str) -> None:
        reps[key].warnings.append(f"{reps[key].file}: {msg}")

    for child, ccols, parent, pcols in FOREIGN_KEYS:
        if child not in reps or parent not in reps:
            continue
        c, p = SOURCES_BY_KEY[child], SOURCES_BY_KEY[parent]
        on = " AND ".join(f"c.{q(a)} = p.{q(b)}" for a, b in zip(ccols, pcols, strict=False))
        notnull = " AND ".join(f"c.{q(a)} IS NOT NULL" for a in ccols)
        n = count(f"SELECT count(*) FROM {c.stg} c {anti} {p.stg} p ON {on} WHERE {notnull}")
        name = f"fk_{child}_{'_'.join(ccols)}_not_in_{parent}"
        checks[name] = n
        if n:
            warn(child, f"{n} row(s) whose {','.join(ccols)} is not in {p.stg} (kept)")
    if "order_reviews" in reps:
        n = count(
            "SELECT count(*) FROM (SELECT review_id FROM stg_order_reviews GROUP BY review_id HAVING count(*) > 1) x"
        )
        checks["duplicate_review_ids"] = n
        if n:
            warn("order_reviews", f"{n} review_id(s) appear on more than one order (kept; key is review_id, order_id)")
    if "orders" in reps and "order_items" in reps:
        n = count(f"SELECT count(*) FROM stg_orders o {anti} stg_order_items i ON i.order_id = o.order_id")
        checks["orders_without_items"] = n
        if n:
            warn("orders", f"{n} order(s) without items (kept)")
    if "orders" in reps and "order_payments" in reps:
        n = count(f"SELECT count(*) FROM stg_orders o {anti} stg_order_payments p ON p.order_id = o.order_id")
        checks["orders_without_payment"] = n
        if n:
            warn("orders", f"{n} order(s) without payment (kept)")
    for key, name, cond in _TS_ORDER_CHECKS:
        if key in reps:
            n = count(f"SELECT count(*) FROM {SOURCES_BY_KEY[key].stg} WHERE {cond}")
            checks[name] = n
            if n:
                warn(key, f"{n} row(s) with timestamps out of order: {cond} (kept)")
    return checks
