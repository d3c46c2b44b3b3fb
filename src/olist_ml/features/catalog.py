"""Every feature column, described: meaning, window and unit (`olist-ml features list`).

Rows of every `fs_seller_*` table: one per (dt_ref, seller_id) where the seller has at least one
order (any status) with purchase time in [dt_ref - max window, dt_ref) - i.e. from the day after
the seller's first sale until the seller has been inactive for longer than the longest window
(180 days by default). A seller who sells again re-enters the spine. Every table has exactly the
same (dt_ref, seller_id) rows, so they join 1:1. Windows are half-open [dt_ref - N days, dt_ref):
a fact dated exactly dt_ref 00:00 is not in dt_ref's features. A fact is dated when it became
known: an order at purchase, a delivery at delivery, a review at its answer, lateness of an
undelivered order the day after its estimated date; order_status (a snapshot) is never used.

Problems name features through this catalog, never by a string of their own (Hamilton / Feast:
a feature's name is its definition's name): `F.gmv.longest` is `gmv_<longest window>d`,
`F.days_since_last_sale` the point column, `F.n_orders.at(90)` one window. An unknown name fails
at once (`UnknownNameError` with the closest names) - at import of the problem that uses it - and
`tests/pipeline/test_settings.py` checks every name every problem uses against a built feature store.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..config import Settings
from ..errors import UnknownNameError
from .render import trend_windows


@dataclass(frozen=True)
class FeatureDoc:
    table: str
    name: str
    description: str
    window_days: int | None  # None: lifetime / point value
    unit: str


KEY_COLUMNS = ("dt_ref", "seller_id")

# (name pattern, description, unit); "{w}" entries are repeated per window, "{t}" per trend window
_SPEC: dict[str, list[tuple[str, str, str]]] = {
    "fs_seller_sales": [
        ("n_orders_{w}d", "distinct orders with purchase time in the window, any status", "orders"),
        ("n_items_{w}d", "order items of the seller in those orders", "items"),
        ("n_sale_days_{w}d", "distinct purchase dates with at least one order", "days"),
        ("gmv_{w}d", "sum of item price of the seller's items in those orders (freight excluded)", "BRL"),
        ("avg_ticket_{w}d", "gmv / n_orders", "BRL"),
        ("avg_item_price_{w}d", "gmv / n_items", "BRL"),
        ("std_item_price_{w}d", "sample standard deviation of item price (NULL under 2 items)", "BRL"),
        ("items_per_order_{w}d", "n_items / n_orders", "items"),
        (
            "avg_days_between_sales_{w}d",
            "mean gap between consecutive sale dates inside the window (NULL under 2)",
            "days",
        ),
        ("orders_trend_{t}d", "(orders in window - orders in the window before) / their sum, in [-1, 1]", "ratio"),
        ("gmv_trend_{t}d", "(gmv in window - gmv in the window before) / their sum, in [-1, 1]", "ratio"),
        ("n_orders_lifetime", "orders purchased before dt_ref", "orders"),
        ("n_items_lifetime", "items sold before dt_ref", "items"),
        ("gmv_lifetime", "item value sold before dt_ref", "BRL"),
        ("n_sale_days_lifetime", "distinct sale dates before dt_ref", "days"),
        ("avg_days_between_sales_lifetime", "(last - first sale date) / (sale dates - 1)", "days"),
        ("days_since_last_sale", "dt_ref - DATE of the last purchase before dt_ref", "days"),
        ("days_since_first_sale", "dt_ref - DATE of the first purchase (tenure)", "days"),
    ],
    "fs_seller_reviews": [
        (
            "n_reviews_{w}d",
            "reviews answered before dt_ref (review_answer_timestamp: when score and comment became "
            "known) on the seller's orders purchased in the window",
            "reviews",
        ),
        ("avg_review_score_{w}d", "mean review_score of those reviews (NULL when none)", "score 1-5"),
        ("min_review_score_{w}d", "lowest review_score of those reviews", "score 1-5"),
        ("max_review_score_{w}d", "highest review_score of those reviews", "score 1-5"),
        ("pct_reviews_low_{w}d", "share of those reviews with 1 or 2 stars", "share"),
        ("pct_reviews_with_comment_{w}d", "share of those reviews with a non-empty comment message", "share"),
        ("pct_orders_reviewed_{w}d", "share of the window's orders with a review answered before dt_ref", "share"),
    ],
    "fs_seller_customers": [
        ("n_customers_{w}d", "distinct customers (customer_unique_id) with an order in the window", "customers"),
        (
            "pct_orders_repeat_customer_{w}d",
            "share of the window's orders whose customer had bought from the seller before",
            "share",
        ),
        ("n_customer_states_{w}d", "distinct customer states in the window", "states"),
        ("pct_orders_region_n_{w}d", "share of the window's orders from the North region", "share"),
        ("pct_orders_region_ne_{w}d", "share of the window's orders from the Northeast region", "share"),
        ("pct_orders_region_co_{w}d", "share of the window's orders from the Center-West region", "share"),
        ("pct_orders_region_se_{w}d", "share of the window's orders from the Southeast region", "share"),
        ("pct_orders_region_s_{w}d", "share of the window's orders from the South region", "share"),
        ("n_customers_lifetime", "distinct customers before dt_ref", "customers"),
    ],
    "fs_seller_delivery": [
        ("n_orders_delivered_{w}d", "window orders delivered to the customer before dt_ref", "orders"),
        (
            "n_orders_late_{w}d",
            "window orders not delivered by the end of their estimated date (delivered later or "
            "never, canceled included), known from the day after that date",
            "orders",
        ),
        (
            "pct_orders_late_{w}d",
            "n_orders_late / window orders decided at dt_ref (delivered on time before dt_ref, or late)",
            "share",
        ),
        (
            "avg_delivery_delay_days_{w}d",
            "mean (delivery date - estimated date) of delivered orders; < 0 early",
            "days",
        ),
        ("avg_delivery_days_{w}d", "mean (delivery date - purchase date) of delivered orders", "days"),
        (
            "pct_handover_late_{w}d",
            "share of orders handed to the carrier before dt_ref after the shipping limit",
            "share",
        ),
        ("avg_handover_margin_days_{w}d", "mean (shipping limit date - carrier hand-over date); < 0 late", "days"),
        (
            "n_orders_undelivered_past_estimate_{w}d",
            "window orders whose estimated date has passed with no delivery "
            "before dt_ref (stuck or canceled: order_status is not used)",
            "orders",
        ),
        ("pct_orders_undelivered_past_estimate_{w}d", "n_orders_undelivered_past_estimate / window orders", "share"),
        ("avg_freight_per_item_{w}d", "mean freight_value per item", "BRL"),
        ("freight_to_price_{w}d", "sum freight / sum item price", "ratio"),
    ],
    "fs_seller_payments": [
        ("payment_value_{w}d", "payments apportioned to the seller by its share of each order's item value", "BRL"),
        ("pct_value_credit_card_{w}d", "share of apportioned value paid by credit card", "share"),
        ("pct_value_boleto_{w}d", "share of apportioned value paid by boleto", "share"),
        ("pct_value_voucher_{w}d", "share of apportioned value paid by voucher", "share"),
        ("pct_value_debit_card_{w}d", "share of apportioned value paid by debit card", "share"),
        ("avg_installments_{w}d", "mean of each order's maximum payment_installments", "installments"),
        ("pct_orders_installments_{w}d", "share of orders paid in more than one installment", "share"),
        ("pct_orders_voucher_{w}d", "share of orders with a voucher payment", "share"),
    ],
    "fs_seller_products": [
        ("n_products_{w}d", "distinct products sold in the window", "products"),
        ("n_categories_{w}d", "distinct product categories sold in the window", "categories"),
        ("avg_photos_{w}d", "mean product_photos_qty per item sold", "photos"),
        ("avg_weight_g_{w}d", "mean product weight per item sold", "g"),
        ("avg_volume_cm3_{w}d", "mean product volume (length x height x width) per item sold", "cm3"),
        (
            "price_vs_category_median_{w}d",
            "mean of item price / category median price of the 6 months before the sale month",
            "ratio",
        ),
    ],
}

FEATURE_TABLES: list[str] = list(_SPEC)


@dataclass(frozen=True)
class Feature:
    """One catalog entry: a point column (`days_since_last_sale`) or a family of columns, one per
    feature window (`gmv_{w}d`) or per trend window (`orders_trend_{t}d`). `key` is its name in
    `F` (the pattern without the window suffix)."""

    table: str
    pattern: str
    description: str
    unit: str

    @property
    def key(self) -> str:
        return self.pattern.replace("_{w}d", "").replace("_{t}d", "")

    @property
    def per(self) -> str | None:
        """ "window", "trend" or None (one column)."""
        return "window" if "{w}" in self.pattern else "trend" if "{t}" in self.pattern else None

    def column(self, w: int | None = None) -> str:
        """The column name at window `w` (ignored for a point column)."""
        if self.per is None:
            return self.pattern
        if w is None:
            raise ValueError(f"feature {self.key} has one column per window: give the window")
        return self.pattern.format(w=int(w), t=int(w))

    def windows_of(self, windows: tuple[int, ...]) -> tuple[int | None, ...]:
        ws = tuple(sorted(set(int(w) for w in windows)))
        return {"window": ws, "trend": trend_windows(ws), None: (None,)}[self.per]

    def columns(self, windows: tuple[int, ...]) -> list[str]:
        """Every column of this entry for the feature windows `windows`."""
        return [self.column(w) for w in self.windows_of(windows)]

    def at(self, w: int) -> FeatureRef:
        return FeatureRef(self, int(w))

    @property
    def longest(self) -> FeatureRef:
        """This feature at the longest feature window of the settings in use."""
        return FeatureRef(self, "longest")


@dataclass(frozen=True)
class FeatureRef:
    """A catalog feature at a chosen window: a fixed number of days, or "longest" (the longest
    of `Settings.feature_windows`, resolved when the settings are known)."""

    feature: Feature
    window: int | str

    @property
    def key(self) -> str:
        return self.feature.key

    def columns(self, windows: tuple[int, ...]) -> list[str]:
        built = self.feature.windows_of(windows)
        w = max(windows) if self.window == "longest" else self.window
        if self.feature.per is not None and w not in built:
            raise UnknownNameError(
                f"feature {self.feature.column(w)} is not built: the feature windows are "
                f"{', '.join(map(str, sorted(windows)))} (OLIST_ML_FEATURE_WINDOWS)"
            )
        return [self.feature.column(w)]

    def column(self, settings: Settings | tuple[int, ...]) -> str:
        windows = settings.feature_windows if isinstance(settings, Settings) else settings
        return self.columns(tuple(windows))[0]


FEATURES: dict[str, Feature] = {}
for _t, _spec in _SPEC.items():
    for _pattern, _desc, _unit in _spec:
        _f = Feature(_t, _pattern, _desc, _unit)
        if _f.key in FEATURES:  # pragma: no cover - a catalog edit that would make two entries one name
            raise ValueError(f"two catalog entries are named {_f.key}: {FEATURES[_f.key].pattern}, {_pattern}")
        FEATURES[_f.key] = _f


def _unknown(name: str) -> UnknownNameError:
    close = difflib.get_close_matches(name, list(FEATURES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown feature {name!r}: not in the feature catalog{hint} (`olist-ml features list`)")


class _Catalog:
    """`F.<key>`: the catalog entry named `key`; an unknown key raises `UnknownNameError` at once."""

    def __getattr__(self, name: str) -> Feature:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return FEATURES[name]
        except KeyError:
            raise _unknown(name) from None

    def __getitem__(self, name: str) -> Feature:
        return self.__getattr__(name)

    def __dir__(self) -> list[str]:
        return sorted(FEATURES)


F = _Catalog()


def column_doc(name: str, windows: tuple[int, ...] | None = None) -> FeatureDoc:
    """The catalog entry of one concrete column name (`gmv_180d`); UnknownNameError otherwise."""
    for d in catalog(windows):
        if d.name == name:
            return d
    raise _unknown(name)


def catalog(windows: tuple[int, ...] | None = None, table: str | None = None) -> list[FeatureDoc]:
    """Every feature column of every table (or of `table`), grouped by table."""
    windows = tuple(sorted(set(windows or Settings().feature_windows)))
    out: list[FeatureDoc] = []
    for f in FEATURES.values():
        if table and f.table != table:
            continue
        out += [FeatureDoc(f.table, f.column(w), f.description, w, f.unit) for w in f.windows_of(windows)]
    return out
