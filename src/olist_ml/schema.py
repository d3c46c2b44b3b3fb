"""The source tables: raw Olist file -> typed `stg_*` table.

This module is the single contract between the synthetic generator (which writes the raw
files), ingestion (which reads them into DuckDB) and every SQL model downstream (which reads
the `stg_*` tables). A `stg_*` table is 1:1 with its source file: columns renamed to clean
English snake_case, cast to real types, nothing else (the products table also carries the
English category name from the translation file).

Plausibility bounds (`Column.min_value` / `max_value`, inclusive) and `SourceTable.nonempty` are
part of the contract: ingestion quarantines a value outside its bounds (and any non-finite
DOUBLE), and refuses a source whose non-empty table ends up with no rows, so every step after
ingest may assume them. Bounds are "impossible", not "unusual": the real data has 0.00 payments,
0 installments and 0 g products, and keeps them. Upper bounds on DOUBLEs keep every sum the
feature store computes inside DECIMAL(18,2) (money, weights and dimensions are cast to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    source: str  # header in the raw CSV
    name: str  # column name in the stg table
    type: str  # DuckDB type: VARCHAR, INTEGER, DOUBLE, TIMESTAMP, DATE, BOOLEAN
    nullable: bool = True
    description: str = ""
    min_value: float | None = None  # plausibility bounds (inclusive) for numeric columns
    max_value: float | None = None


@dataclass(frozen=True)
class SourceTable:
    key: str  # short name, e.g. "orders"
    file: str  # raw file name as in the Kaggle download (".gz" optional on disk)
    stg: str  # warehouse table name
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    required: bool = True
    nonempty: bool = False  # ingest fails when no row of this table survives (header only, all quarantined)
    group: str = "ecommerce"  # "ecommerce" | "geolocation" | "marketing"
    extra: dict = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def source_names(self) -> list[str]:
        return [c.source for c in self.columns]


def _c(
    name: str,
    type_: str,
    nullable: bool = True,
    source: str | None = None,
    description: str = "",
    lo: float | None = None,
    hi: float | None = None,
) -> Column:
    return Column(
        source=source or name,
        name=name,
        type=type_,
        nullable=nullable,
        description=description,
        min_value=lo,
        max_value=hi,
    )


# Upper bounds: far above anything real (max item price 6,735, max payment 13,664, max weight 40 kg,
# max side 118 cm) and low enough that sums over a million rows, and length x height x width, stay
# inside DECIMAL(18,2).
MAX_MONEY = 1e9  # BRL per item, freight, payment
MAX_WEIGHT_G = 1e9
MAX_SIDE_CM = 1e5


V, I, D, TS, DT, B = "VARCHAR", "INTEGER", "DOUBLE", "TIMESTAMP", "DATE", "BOOLEAN"  # noqa: E741 - short type names keep the table below readable

SOURCES: tuple[SourceTable, ...] = (
    SourceTable(
        key="orders",
        file="olist_orders_dataset.csv",
        stg="stg_orders",
        nonempty=True,
        primary_key=("order_id",),
        columns=(
            _c("order_id", V, False),
            _c("customer_id", V, False),
            _c("order_status", V, False),
            _c("order_purchase_timestamp", TS, False),
            _c("order_approved_at", TS),
            _c("order_delivered_carrier_date", TS),
            _c("order_delivered_customer_date", TS),
            _c("order_estimated_delivery_date", TS, False),
        ),
    ),
    SourceTable(
        key="order_items",
        file="olist_order_items_dataset.csv",
        stg="stg_order_items",
        nonempty=True,
        primary_key=("order_id", "order_item_id"),
        columns=(
            _c("order_id", V, False),
            _c("order_item_id", I, False, lo=1),
            _c("product_id", V, False),
            _c("seller_id", V, False),
            _c("shipping_limit_date", TS, False),
            _c("price", D, False, lo=0, hi=MAX_MONEY),
            _c("freight_value", D, False, lo=0, hi=MAX_MONEY),
        ),
    ),
    SourceTable(
        key="order_payments",
        file="olist_order_payments_dataset.csv",
        stg="stg_order_payments",
        primary_key=("order_id", "payment_sequential"),
        columns=(
            _c("order_id", V, False),
            _c("payment_sequential", I, False, lo=1),
            _c("payment_type", V, False),
            _c("payment_installments", I, False, lo=0),
            _c("payment_value", D, False, lo=0, hi=MAX_MONEY),
        ),
    ),
    SourceTable(
        key="order_reviews",
        file="olist_order_reviews_dataset.csv",
        stg="stg_order_reviews",
        # review_id is NOT unique in the real data (a review can cover several orders):
        # the key is (review_id, order_id); duplicates of review_id are counted, not rejected.
        primary_key=("review_id", "order_id"),
        columns=(
            _c("review_id", V, False),
            _c("order_id", V, False),
            _c("review_score", I, False, lo=1, hi=5),
            _c("review_comment_title", V),
            _c("review_comment_message", V),
            _c("review_creation_date", TS),
            _c("review_answer_timestamp", TS),
        ),
    ),
    SourceTable(
        key="customers",
        file="olist_customers_dataset.csv",
        stg="stg_customers",
        nonempty=True,
        primary_key=("customer_id",),
        columns=(
            _c("customer_id", V, False),
            _c("customer_unique_id", V, False),
            _c("customer_zip_code_prefix", V, False),
            _c("customer_city", V),
            _c("customer_state", V, False),
        ),
    ),
    SourceTable(
        key="sellers",
        file="olist_sellers_dataset.csv",
        stg="stg_sellers",
        nonempty=True,
        primary_key=("seller_id",),
        columns=(
            _c("seller_id", V, False),
            _c("seller_zip_code_prefix", V, False),
            _c("seller_city", V),
            _c("seller_state", V, False),
        ),
    ),
    SourceTable(
        key="products",
        file="olist_products_dataset.csv",
        stg="stg_products",
        primary_key=("product_id",),
        columns=(
            _c("product_id", V, False),
            _c("product_category_name", V),
            _c("product_name_length", I, source="product_name_lenght", lo=0),
            _c("product_description_length", I, source="product_description_lenght", lo=0),
            _c("product_photos_qty", I, lo=0),
            _c("product_weight_g", D, lo=0, hi=MAX_WEIGHT_G),
            _c("product_length_cm", D, lo=0, hi=MAX_SIDE_CM),
            _c("product_height_cm", D, lo=0, hi=MAX_SIDE_CM),
            _c("product_width_cm", D, lo=0, hi=MAX_SIDE_CM),
        ),
        # stg_products also gets product_category_name_english (LEFT JOIN on the translation)
        extra={"translated": True},
    ),
    SourceTable(
        key="category_translation",
        file="product_category_name_translation.csv",
        stg="stg_product_category_name_translation",
        primary_key=("product_category_name",),
        columns=(
            _c("product_category_name", V, False),
            _c("product_category_name_english", V, False),
        ),
    ),
    SourceTable(
        key="geolocation",
        file="olist_geolocation_dataset.csv",
        stg="stg_geolocation",
        required=False,
        group="geolocation",
        columns=(
            _c("geolocation_zip_code_prefix", V, False),
            _c("geolocation_lat", D, False, lo=-90, hi=90),
            _c("geolocation_lng", D, False, lo=-180, hi=180),
            _c("geolocation_city", V),
            _c("geolocation_state", V),
        ),
    ),
    SourceTable(
        key="marketing_qualified_leads",
        file="olist_marketing_qualified_leads_dataset.csv",
        stg="stg_marketing_qualified_leads",
        primary_key=("mql_id",),
        required=False,
        group="marketing",
        columns=(
            _c("mql_id", V, False),
            _c("first_contact_date", DT, False),
            _c("landing_page_id", V),
            _c("origin", V),
        ),
    ),
    SourceTable(
        key="closed_deals",
        file="olist_closed_deals_dataset.csv",
        stg="stg_closed_deals",
        primary_key=("mql_id",),
        required=False,
        group="marketing",
        columns=(
            _c("mql_id", V, False),
            _c("seller_id", V, False),
            _c("sdr_id", V),
            _c("sr_id", V),
            _c("won_date", TS, False),
            _c("business_segment", V),
            _c("lead_type", V),
            _c("lead_behaviour_profile", V),
            _c("has_company", B),
            _c("has_gtin", B),
            _c("average_stock", V),
            _c("business_type", V),
            _c("declared_product_catalog_size", D, lo=0, hi=1e12),
            _c("declared_monthly_revenue", D, lo=0, hi=1e12),
        ),
    ),
)

SOURCES_BY_KEY: dict[str, SourceTable] = {s.key: s for s in SOURCES}
SOURCES_BY_FILE: dict[str, SourceTable] = {s.file: s for s in SOURCES}

# Referential-integrity checks: (child key, child columns, parent key, parent columns)
FOREIGN_KEYS: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    ("order_items", ("order_id",), "orders", ("order_id",)),
    ("order_items", ("product_id",), "products", ("product_id",)),
    ("order_items", ("seller_id",), "sellers", ("seller_id",)),
    ("order_payments", ("order_id",), "orders", ("order_id",)),
    ("order_reviews", ("order_id",), "orders", ("order_id",)),
    ("orders", ("customer_id",), "customers", ("customer_id",)),
    ("closed_deals", ("mql_id",), "marketing_qualified_leads", ("mql_id",)),
)
