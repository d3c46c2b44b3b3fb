"""Hand-made `stg_*` tables (typed per olist_ml.schema) for the problem tests."""

from __future__ import annotations

import duckdb
import pandas as pd

from olist_ml.schema import SOURCES_BY_KEY


def create_stg(con: duckdb.DuckDBPyConnection, key: str, rows: list[dict]) -> None:
    src = SOURCES_BY_KEY[key]
    cols = list(src.columns)
    extra = ", product_category_name_english VARCHAR" if key == "products" else ""
    con.execute(f"CREATE OR REPLACE TABLE {src.stg} ({', '.join(f'{c.name} {c.type}' for c in cols)}{extra})")
    if not rows:
        return
    names = [c.name for c in cols] + (["product_category_name_english"] if key == "products" else [])
    df = pd.DataFrame([{n: r.get(n) for n in names} for r in rows], columns=names).astype(object)
    con.register("_rows", df)
    sel = ", ".join(f'CAST("{n}" AS {next((c.type for c in cols if c.name == n), "VARCHAR")})' for n in names)
    con.execute(f"INSERT INTO {src.stg} SELECT {sel} FROM _rows")
    con.unregister("_rows")


def order(
    con_rows: dict,
    oid: str,
    seller: str,
    purchase: str,
    estimated: str,
    delivered: str | None,
    status: str = "delivered",
    price: float = 100.0,
    customer_state: str = "SP",
    zip_: str = "01037",
) -> None:
    """Append one single-item order (and its customer) to the row lists in `con_rows`."""
    cid = f"c_{oid}"
    con_rows["orders"].append(
        {
            "order_id": oid,
            "customer_id": cid,
            "order_status": status,
            "order_purchase_timestamp": purchase,
            "order_approved_at": purchase,
            "order_delivered_carrier_date": None,
            "order_delivered_customer_date": delivered,
            "order_estimated_delivery_date": estimated,
        }
    )
    con_rows["order_items"].append(
        {
            "order_id": oid,
            "order_item_id": 1,
            "product_id": "p1",
            "seller_id": seller,
            "shipping_limit_date": purchase,
            "price": price,
            "freight_value": 10.0,
        }
    )
    con_rows["order_payments"].append(
        {
            "order_id": oid,
            "payment_sequential": 1,
            "payment_type": "credit_card",
            "payment_installments": 1,
            "payment_value": price + 10.0,
        }
    )
    con_rows["customers"].append(
        {
            "customer_id": cid,
            "customer_unique_id": f"u_{oid}",
            "customer_zip_code_prefix": zip_,
            "customer_city": "x",
            "customer_state": customer_state,
        }
    )


def empty_rows() -> dict:
    return {k: [] for k in ("orders", "order_items", "order_payments", "customers")}


def write_orders(con: duckdb.DuckDBPyConnection, rows: dict, sellers=("s1", "s2")) -> None:
    for k, v in rows.items():
        create_stg(con, k, v)
    create_stg(
        con,
        "sellers",
        [
            {"seller_id": s, "seller_zip_code_prefix": "20000", "seller_city": "rio", "seller_state": "RJ"}
            for s in sellers
        ],
    )
    create_stg(
        con,
        "products",
        [
            {
                "product_id": "p1",
                "product_category_name": "beleza_saude",
                "product_category_name_english": "health_beauty",
                "product_weight_g": 500.0,
                "product_length_cm": 10.0,
                "product_height_cm": 10.0,
                "product_width_cm": 10.0,
            }
        ],
    )
    create_stg(
        con,
        "geolocation",
        [
            {
                "geolocation_zip_code_prefix": "01037",
                "geolocation_lat": -23.55,
                "geolocation_lng": -46.63,
                "geolocation_city": "sao paulo",
                "geolocation_state": "SP",
            },
            {
                "geolocation_zip_code_prefix": "20000",
                "geolocation_lat": -22.90,
                "geolocation_lng": -43.17,
                "geolocation_city": "rio",
                "geolocation_state": "RJ",
            },
        ],
    )
