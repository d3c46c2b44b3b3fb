"""Hand-built stg rows for the feature-store tests (a randomized fixture with edge cases) and writers."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import duckdb
import pandas as pd

from olist_ml.schema import SOURCES_BY_KEY

T0 = dt.datetime(2017, 1, 1)

T0 = dt.datetime(2017, 1, 1)
STATES = ["SP", "RJ", "MG", "RS", "PR", "BA", "PE", "AM", "DF", "GO"]
REGION = {
    "SP": "se",
    "RJ": "se",
    "MG": "se",
    "RS": "s",
    "PR": "s",
    "BA": "ne",
    "PE": "ne",
    "AM": "n",
    "DF": "co",
    "GO": "co",
}
EDGE_DT_REF = dt.date(2017, 6, 1)  # an order and a review's answer sit exactly at its midnight
DT_REFS = [
    dt.date(2017, 1, 15),
    dt.date(2017, 3, 1),
    dt.date(2017, 4, 17),
    EDGE_DT_REF,
    dt.date(2017, 6, 2),
    dt.date(2017, 8, 20),
    dt.date(2017, 11, 5),
    dt.date(2018, 2, 1),
    dt.date(2018, 5, 30),
]


# ------------------------------------------------------------------------------------------
# fixture
# ------------------------------------------------------------------------------------------
def _ts(r: random.Random, lo: dt.datetime, days: float) -> dt.datetime:
    return (lo + dt.timedelta(seconds=r.randrange(int(days * 86400)))).replace(microsecond=0)


def make_rows(seed: int = 7, n_orders: int = 160) -> dict[str, list[tuple]]:
    r = random.Random(seed)
    sellers = [f"s{i}" for i in range(7)]
    products = [
        (
            f"p{i}",
            r.choice(["bed", "toys", "auto", None, "garden"]),
            r.choice([None, 1, 2, 5]),
            r.choice([None, 300.0, 1250.0, 80.0]),
            10.0 + i,
            5.0,
            20.0 + (i % 4),
        )
        for i in range(25)
    ]
    cust_unique = [f"u{i}" for i in range(40)]
    customers, orders, items, payments, reviews = [], [], [], [], []
    for k in range(n_orders):
        oid = f"o{k:04d}"
        # s6 sells only in the first 2 months (then is inactive > 180 days); s5 starts late
        seller_pool = sellers[:5] + (["s5"] if k > n_orders // 2 else []) + (["s6"] if k < 12 else [])
        ts = _ts(r, T0, 500)
        if k < 12:
            ts = _ts(r, T0, 60)
        if k == 0:  # edge: exactly at a dt_ref midnight
            ts = dt.datetime.combine(EDGE_DT_REF, dt.time())
        if k == 1:  # same seller, a second before
            ts = dt.datetime.combine(EDGE_DT_REF, dt.time()) - dt.timedelta(seconds=1)
        if k == 2:  # its review is answered exactly at the dt_ref midnight
            ts = dt.datetime.combine(EDGE_DT_REF, dt.time()) - dt.timedelta(days=10)
        cid = f"c{k:04d}"
        uid = r.choice(cust_unique[:12]) if r.random() < 0.5 else r.choice(cust_unique)
        customers.append((cid, uid, f"{r.randrange(10000, 99999)}", "city", r.choice(STATES)))
        status = r.choices(["delivered", "shipped", "canceled", "unavailable", "processing"], [70, 10, 8, 5, 7])[0]
        est = dt.datetime.combine((ts + dt.timedelta(days=r.randrange(5, 30))).date(), dt.time())
        carrier = (
            ts + dt.timedelta(days=r.uniform(0.5, 8))
            if status in ("delivered", "shipped") and r.random() < 0.95
            else None
        )
        delivered = None
        if status == "delivered" and r.random() < 0.97:
            delivered = (carrier or ts) + dt.timedelta(days=r.uniform(1, 35))
        approved = ts + dt.timedelta(hours=2)
        orders.append((oid, cid, status, ts, approved, carrier, delivered, est))
        chosen = [sellers[0]] if k in (0, 1, 2) else r.sample(seller_pool, 1 if r.random() < 0.8 else 2)
        n = 0
        for s in chosen:
            for _ in range(r.choice([1, 1, 1, 2, 3])):
                n += 1
                p = r.choice(products)
                price = round(r.uniform(5, 400), 2)
                items.append(
                    (oid, n, p[0], s, ts + dt.timedelta(days=r.uniform(1, 6)), price, round(r.uniform(0, 40), 2))
                )
        if r.random() < 0.97:  # a few orders without payment rows
            total = sum(i[5] + i[6] for i in items if i[0] == oid)
            parts = [("credit_card", r.choice([1, 1, 3, 10]))] if r.random() < 0.7 else [("boleto", 1)]
            if r.random() < 0.2:
                parts.append(("voucher", 1))
            if r.random() < 0.05:
                parts.append(("debit_card", 1))
            share = [r.random() + 0.1 for _ in parts]
            for j, ((ptype, inst), sh) in enumerate(zip(parts, share, strict=False)):
                payments.append((oid, j + 1, ptype, inst, round(total * sh / sum(share), 2)))
        for j in range(1 if k == 2 else r.choice([0, 1, 1, 1, 2])):
            created = dt.datetime.combine((ts + dt.timedelta(days=r.randrange(0, 60))).date(), dt.time())
            if r.random() < 0.05:
                created = None
            # answered 1 hour to 5 days after the survey was sent (deterministic: the rng stream is unchanged)
            answered = created + dt.timedelta(hours=1 + (k * 37 + j * 11) % 120) if created else None
            if k == 2:  # edge: sent 2 days before a dt_ref, answered exactly at its midnight
                created = dt.datetime.combine(EDGE_DT_REF, dt.time()) - dt.timedelta(days=2)
                answered = dt.datetime.combine(EDGE_DT_REF, dt.time())
            if k % 23 == 5:  # a survey never answered: its score is never known
                answered = None
            comment = r.choice([None, "", "ok", "ruim demais"])
            reviews.append(
                (f"r{k}_{j}", oid, 1 if k == 2 else r.choice([1, 2, 3, 4, 5, 5, 5]), None, comment, created, answered)
            )
    prods = [
        (
            p[0],
            p[1],
            40,
            300,
            p[2],
            p[3],
            p[4],
            p[5],
            p[6],
            {"bed": "bed_bath", "toys": "toys", "auto": "auto", "garden": None}.get(p[1]),
        )
        for p in products
    ]
    # a category without translation keeps its Portuguese name
    sellers_rows = [(s, "01000", "sp", "SP") for s in sellers]
    return {
        "orders": orders,
        "order_items": items,
        "order_payments": payments,
        "order_reviews": reviews,
        "customers": customers,
        "sellers": sellers_rows,
        "products": prods,
    }


def write_warehouse(path: Path, rows: dict[str, list[tuple]]) -> None:
    con = duckdb.connect(str(path))
    for key, data in rows.items():
        src = SOURCES_BY_KEY[key]
        cols = [(c.name, c.type) for c in src.columns]
        if key == "products":
            cols.append(("product_category_name_english", "VARCHAR"))
        con.execute(f"CREATE OR REPLACE TABLE {src.stg} ({', '.join(f'{n} {t}' for n, t in cols)})")
        _insert(con, src.stg, [n for n, _ in cols], data)
    con.close()


def _insert(con, table: str, cols: list[str], data: list[tuple]) -> None:
    if not data:
        return
    df = pd.DataFrame(data, columns=cols, dtype=object)
    con.register("__rows", df)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM __rows")
    con.unregister("__rows")


def append_rows(path: Path, rows: dict[str, list[tuple]]) -> None:
    con = duckdb.connect(str(path))
    for key, data in rows.items():
        src = SOURCES_BY_KEY[key]
        _insert(con, src.stg, src.column_names, data)
    con.close()
