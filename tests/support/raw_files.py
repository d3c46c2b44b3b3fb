"""Raw Olist files in the exact Kaggle format (tiny), and readers of what an ingest left behind."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import duckdb

from olist_ml.config import Settings
from olist_ml.schema import SOURCES, SOURCES_BY_KEY

# --------------------------------------------------------------------------------------------
# fixture data
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# fixture data
# --------------------------------------------------------------------------------------------
ORDERS = """\
"order_id","customer_id","order_status","order_purchase_timestamp","order_approved_at","order_delivered_carrier_date","order_delivered_customer_date","order_estimated_delivery_date"
"o1","c1",delivered,2017-01-05 10:00:00,2017-01-05 11:00:00,2017-01-06 09:00:00,2017-01-10 15:00:00,2017-01-20 00:00:00
"o2","c2",delivered,2017-02-01 08:30:00,2017-02-01 09:00:00,2017-01-31 09:00:00,2017-02-05 12:00:00,2017-02-15 00:00:00
"o3","c3",canceled,2017-03-01 12:00:00,,,,2017-03-20 00:00:00
"""
ITEMS = """\
"order_id","order_item_id","product_id","seller_id","shipping_limit_date","price","freight_value"
"o1",1,"p1","s1",2017-01-09 10:00:00,58.90,13.29
"o1",2,"p2","s1",2017-01-09 10:00:00,10.00,5.00
"o2",1,"p3","s2",2017-02-05 08:30:00,239.90,19.93
"""
PAYMENTS = """\
"order_id","payment_sequential","payment_type","payment_installments","payment_value"
o1,1,credit_card,8,87.19
o2,1,boleto,1,259.83
"""
# r1 covers two orders (real-data quirk), the first comment spans three physical lines (CRLF inside),
# r3 has an empty creation date (nullable in the real data).
REVIEWS = (
    '"review_id","order_id","review_score","review_comment_title","review_comment_message","review_creation_date","review_answer_timestamp"\r\n'
    '"r1","o1",5,,"otimo\r\nchegou rapido\r\nrecomendo",2017-01-11 00:00:00,2017-01-12 10:00:00\r\n'
    '"r1","o2",4,,,2017-02-06 00:00:00,2017-02-07 10:00:00\r\n'
    '"r3","o3",1,"ruim",,,\r\n'
)
CUSTOMERS = """\
"customer_id","customer_unique_id","customer_zip_code_prefix","customer_city","customer_state"
"c1","u1","01037",sao paulo,SP
"c2","u2","14409",franca,SP
"c3","u2","09790",sao bernardo do campo,SP
"""
SELLERS = """\
"seller_id","seller_zip_code_prefix","seller_city","seller_state"
"s1","01046",sao paulo,SP
"s2","13844",mogi guacu,SP
"""
PRODUCTS = """\
"product_id","product_category_name","product_name_lenght","product_description_lenght","product_photos_qty","product_weight_g","product_length_cm","product_height_cm","product_width_cm"
"p1",perfumaria,40,287,1,225,16,10,14
"p2",categoria_sem_traducao,44,276,1,1000,30,18,20
"p3",,,,,,,,
"""
TRANSLATION = "\ufeffproduct_category_name,product_category_name_english\r\nperfumaria,perfumery\r\nartes,art\r\n"
GEO = """\
"geolocation_zip_code_prefix","geolocation_lat","geolocation_lng","geolocation_city","geolocation_state"
"01037",-23.54562128115268,-46.63929204800168,sao paulo,SP
"01037",-23.54562128115268,-46.63929204800168,sao paulo,SP
"14409",-20.5,-47.4,franca,SP
"""
MQLS = """\
mql_id,first_contact_date,landing_page_id,origin
m1,2017-06-14,lp1,social
m2,2017-07-01,lp2,paid_search
"""
DEALS = """\
mql_id,seller_id,sdr_id,sr_id,won_date,business_segment,lead_type,lead_behaviour_profile,has_company,has_gtin,average_stock,business_type,declared_product_catalog_size,declared_monthly_revenue
m1,s1,sdr1,sr1,2017-08-01 10:00:00,pet,online_medium,cat,True,False,,reseller,,0.0
"""

BASE = {
    "orders": ORDERS,
    "order_items": ITEMS,
    "order_payments": PAYMENTS,
    "order_reviews": REVIEWS,
    "customers": CUSTOMERS,
    "sellers": SELLERS,
    "products": PRODUCTS,
    "category_translation": TRANSLATION,
    "geolocation": GEO,
    "marketing_qualified_leads": MQLS,
    "closed_deals": DEALS,
}
REQUIRED = [s.key for s in SOURCES if s.required]


def write_source(
    folder: Path, overrides: dict | None = None, *, gz: tuple[str, ...] = (), drop: tuple[str, ...] = ()
) -> Path:
    """Write the fixture CSVs; `overrides` replaces a table's text, `gz` gzips those tables, `drop` leaves them out."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {**BASE, **(overrides or {})}
    for key, text in tables.items():
        if key in drop:
            continue
        name = SOURCES_BY_KEY[key].file
        data = text.encode("utf-8") if isinstance(text, str) else text
        if key in gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / name).write_bytes(data)
    return folder


def dump(path: Path, tables: list[str] | None = None) -> dict[str, list[tuple]]:
    """Every table's rows in a stable order (ingest_runs excluded unless asked for)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = tables or [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1"
            ).fetchall()
            if r[0] != "ingest_runs"
        ]
        return {n: con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in names}
    finally:
        con.close()


def q(settings: Settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def leftovers(settings: Settings) -> list[str]:
    d = settings.warehouse.parent
    return sorted(p.name for p in d.iterdir() if ".ingest-" in p.name) if d.exists() else []


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# typing and renaming
def _zip(path: Path, folder: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, prefix + p.name)
    return path
