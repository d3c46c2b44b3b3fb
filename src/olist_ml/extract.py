"""The raw Olist files as their extract stood on a past day: the daily job's replay.

`extract_as_of(source, out, day)` writes the CSVs of `source` (a folder of the Olist files, plain
or .gz) as an extraction taken at `day` 00:00 would have held them, by the rules of the
truncation test (tests/features/test_truncation.py):

* orders purchased on or after `day` are gone, with their items, payments and reviews;
* approval, carrier hand-over and delivery timestamps on or after `day` have not happened (empty);
* an order without a delivery before `day` shows an in-flight status (shipped when handed to a
  carrier, approved when approved, else created): the data holds no cancellation time;
* reviews answered (or sent) on or after `day` are gone;
* customers, sellers and products appear with the orders and items that reference them;
* closed deals won and leads first contacted on or after `day` are gone;
* the geolocation and category translation files are copied as they are.

Replaying consecutive days into one home (`olist-ml run --data <extract of that day>`) is how the
daily job is tested (tests/pipeline/test_daily.py) and measured (benchmarks/bench_daily.py).
Every value is copied as text, so what is kept is byte-for-byte the source's value.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb

from .errors import InputError
from .schema import SOURCES

_COPIED = ("category_translation", "geolocation")


def _file(source: Path, name: str) -> Path | None:
    for f in (source / name, source / f"{name}.gz"):
        if f.exists():
            return f
    return None


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _ts(col: str) -> str:
    return f"TRY_CAST(NULLIF({col}, '') AS TIMESTAMP)"


def extract_as_of(source: Path | str, out: Path | str, day: dt.date, *, gzip: bool = False) -> dict[str, int]:
    """Write the extract of `source` as of `day` 00:00 into `out` (module doc); returns rows per file."""
    source, out = Path(source), Path(out)
    files = {s.key: (s, _file(source, s.file)) for s in SOURCES}
    if files["orders"][1] is None:
        raise InputError(f"{source}: no {files['orders'][0].file}(.gz): not a folder of the Olist CSVs")
    out.mkdir(parents=True, exist_ok=True)
    cut = f"TIMESTAMP '{day.isoformat()} 00:00:00'"
    con = duckdb.connect()
    try:
        for key, (_, path) in files.items():
            if path is not None and key not in _COPIED:
                con.execute(
                    f"CREATE TABLE {key} AS SELECT * FROM read_csv(?, header = true, all_varchar = true, "
                    "quote = '\"', escape = '\"', strict_mode = false)",
                    [str(path)],
                )
        ts = {c: _ts(c) for c in ("order_approved_at", "order_delivered_carrier_date", "order_delivered_customer_date")}
        known = {c: f"CASE WHEN {e} < {cut} THEN {c} END" for c, e in ts.items()}
        cols = [r[0] for r in con.execute("DESCRIBE orders").fetchall()]
        status = (
            f"CASE WHEN {ts['order_delivered_customer_date']} < {cut} THEN order_status "
            f"WHEN {ts['order_delivered_carrier_date']} < {cut} THEN 'shipped' "
            f"WHEN {ts['order_approved_at']} < {cut} THEN 'approved' ELSE 'created' END"
        )
        select = ", ".join(
            f"{known[c]} AS {c}" if c in known else (f"{status} AS order_status" if c == "order_status" else c)
            for c in cols
        )
        con.execute(
            f"CREATE TABLE orders_cut AS SELECT {select} FROM orders WHERE {_ts('order_purchase_timestamp')} < {cut}"
        )
        queries = {
            "orders": "SELECT * FROM orders_cut",
            "order_items": "SELECT * FROM order_items WHERE order_id IN (SELECT order_id FROM orders_cut)",
            "order_payments": "SELECT * FROM order_payments WHERE order_id IN (SELECT order_id FROM orders_cut)",
            "order_reviews": (
                "SELECT * FROM order_reviews WHERE order_id IN (SELECT order_id FROM orders_cut) "
                f"AND {_ts('review_answer_timestamp')} < {cut} AND {_ts('review_creation_date')} < {cut}"
            ),
            "customers": "SELECT * FROM customers WHERE customer_id IN (SELECT customer_id FROM orders_cut)",
            "sellers": (
                "SELECT * FROM sellers WHERE seller_id IN (SELECT seller_id FROM order_items "
                "WHERE order_id IN (SELECT order_id FROM orders_cut))"
            ),
            "products": (
                "SELECT * FROM products WHERE product_id IN (SELECT product_id FROM order_items "
                "WHERE order_id IN (SELECT order_id FROM orders_cut))"
            ),
            "closed_deals": f"SELECT * FROM closed_deals WHERE {_ts('won_date')} < {cut}",
            "marketing_qualified_leads": (
                f"SELECT * FROM marketing_qualified_leads WHERE {_ts('first_contact_date')} < {cut}"
            ),
        }
        rows: dict[str, int] = {}
        for key, (spec, path) in files.items():
            if path is None:
                continue
            if key in _COPIED:  # tables without a time of their own: the same file (and compression)
                shutil.copyfile(path, out / path.name)
                rows[spec.file] = -1
                continue
            target = out / (spec.file + (".gz" if gzip else ""))
            tmp = target.with_name(target.name + ".tmp")
            con.execute(
                f"COPY ({queries[key]}) TO {_lit(tmp)} (HEADER, QUOTE '\"', COMPRESSION {'gzip' if gzip else 'none'})"
            )
            tmp.replace(target)
            rows[spec.file] = con.execute(f"SELECT count(*) FROM ({queries[key]})").fetchall()[0][0]
    finally:
        con.close()
    return rows
