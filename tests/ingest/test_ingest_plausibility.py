"""Ingestion only puts sane data into stg_*: plausibility quarantine (non-finite, negative, out of range,
dates outside the window), UTC offsets converted to America/Sao_Paulo, empty required tables refused,
zip size caps, physical line numbers in every row message, and an end-to-end check that
`olist-ml features build` runs on what ingest let through.

Fixtures: the hand-written CSVs of tests/support/raw_files.py and the seeded synthetic generator.
"""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from pathlib import Path

import pytest

from olist_ml import ingest as ingest_mod
from olist_ml.cli import main
from olist_ml.config import Settings
from olist_ml.errors import InputError
from olist_ml.ingest import ingest
from olist_ml.ingest import load as ingest_load
from olist_ml.schema import SOURCES_BY_KEY
from support.raw_files import (
    CUSTOMERS,
    GEO,
    ITEMS,
    ORDERS,
    PAYMENTS,
    PRODUCTS,
    REVIEWS,
    SELLERS,
    _zip,
    leftovers,
    q,
    sha,
    write_source,
)


def quarantine(settings: Settings, file: str | None = None) -> list[tuple]:
    where = f"WHERE file = '{file}'" if file else ""
    return q(
        settings,
        f'SELECT file, line, "column", reason, raw_value FROM ingest_quarantine {where} ORDER BY file, line, "column"',
    )


# --------------------------------------------------------------------------------------------
# 1. plausibility: non-finite, negative, out of range
# --------------------------------------------------------------------------------------------
def test_non_finite_and_negative_values_are_quarantined(tmp_path: Path, wh: Settings) -> None:
    items = ITEMS + (
        '"o2",2,"p1","s1",2017-02-05 08:30:00,NaN,1.0\n'  # line 5
        '"o2",3,"p1","s1",2017-02-05 08:30:00,inf,1.0\n'  # line 6
        '"o2",4,"p1","s1",2017-02-05 08:30:00,-Infinity,1.0\n'  # line 7
        '"o2",5,"p1","s1",2017-02-05 08:30:00,-5.00,1.0\n'  # line 8
        '"o2",6,"p1","s1",2017-02-05 08:30:00,5.00,-0.01\n'  # line 9
        '"o2",7,"p1","s1",2017-02-05 08:30:00,1e400,1.0\n'  # line 10: overflows to inf
        '"o2",8,"p1","s1",2017-02-05 08:30:00,-0,0\n'  # line 11: zero is a real price, kept
        '"o2",0,"p1","s1",2017-02-05 08:30:00,5.00,1.0\n'  # line 12: item numbers start at 1
        '"o2",9,"p1","s1",2017-02-05 08:30:00,1e12,1.0\n'  # line 13: beyond any DECIMAL(18,2) sum
    )
    payments = PAYMENTS + "o3,1,voucher,-1,10.00\no3,2,voucher,1,-10.00\no3,3,voucher,1, nan \n"  # lines 4-6
    reviews = REVIEWS + '"r5","o3",0,,,,\r\n"r6","o3",6,,,,\r\n'  # physical lines 7, 8 (the first comment spans 3)
    products = PRODUCTS + '"p4",perfumaria,40,287,-1,225,16,10,14\n"p5",perfumaria,40,287,1,-225,16,10,14\n'
    geo = GEO + '"01037",-95.0,-46.6,sao paulo,SP\n"01037",-23.5,Infinity,sao paulo,SP\n'
    overrides = {
        "order_items": items,
        "order_payments": payments,
        "order_reviews": reviews,
        "products": products,
        "geolocation": geo,
    }
    rep = ingest(write_source(tmp_path / "src", overrides), wh)
    rows = quarantine(wh)
    by_file: dict[str, list[tuple]] = {}
    for r in rows:
        by_file.setdefault(r[0], []).append(r[1:])
    it = by_file["olist_order_items_dataset.csv"]
    assert [(line, col) for line, col, *_ in it] == [
        (5, "price"),
        (6, "price"),
        (7, "price"),
        (8, "price"),
        (9, "freight_value"),
        (10, "price"),
        (12, "order_item_id"),
        (13, "price"),
    ]
    reasons = {line: reason for line, _, reason, _ in it}
    assert all("not a finite number" in reasons[n] for n in (5, 6, 7, 10))
    assert "negative" in reasons[8] and "negative" in reasons[9]
    assert "below the minimum 1" in reasons[12] and "above the maximum" in reasons[13]
    assert [raw for line, _, _, raw in it if line in (5, 6, 7)] == ["NaN", "inf", "-Infinity"]
    assert rep.table("order_items").quarantined == 8
    bad_left = "SELECT count(*) FROM stg_order_items WHERE NOT isfinite(price) OR price < 0 OR freight_value < 0"
    assert q(wh, bad_left) == [(0,)]
    assert q(wh, "SELECT price, freight_value FROM stg_order_items WHERE order_item_id = 8") == [(0.0, 0.0)]
    pay = by_file["olist_order_payments_dataset.csv"]
    assert [(line, col) for line, col, *_ in pay] == [
        (4, "payment_installments"),
        (5, "payment_value"),
        (6, "payment_value"),
    ]
    assert "not a finite number" in pay[2][2]
    rev = by_file["olist_order_reviews_dataset.csv"]
    assert [(line, col) for line, col, *_ in rev] == [(7, "review_score"), (8, "review_score")]
    assert "below the minimum 1" in rev[0][2] and "above the maximum 5" in rev[1][2]
    prod = by_file["olist_products_dataset.csv"]
    assert [(line, col) for line, col, *_ in prod] == [(5, "product_photos_qty"), (6, "product_weight_g")]
    g = by_file["olist_geolocation_dataset.csv"]
    assert [(line, col) for line, col, *_ in g] == [(5, "geolocation_lat"), (6, "geolocation_lng")]
    # the table warning gives the count and the first reason
    assert any(
        "8 row(s) quarantined (first: line 5, column price: not a finite number" in w
        for w in rep.table("order_items").warnings
    ), rep.table("order_items").warnings


# --------------------------------------------------------------------------------------------
# 2. dates outside the plausible window
# --------------------------------------------------------------------------------------------
def test_dates_outside_the_window_are_quarantined(tmp_path: Path, wh: Settings) -> None:
    orders = (
        ORDERS
        + (
            '"o4","c1",delivered,1900-01-01 00:00:00,,,,1900-01-20 00:00:00\n'  # line 5
            '"o5","c2",delivered,9999-12-31 00:00:00,,,,9999-12-31 00:00:00\n'  # line 6
            '"o6","c3",delivered,infinity,,,,2017-03-20 00:00:00\n'  # line 7
            '"o7","c3",delivered,2017-03-02 12:00:00,2017-03-02 13:00:00,,2200-01-01 00:00:00,2017-03-20 '
            "00:00:00\n"  # 8
            '"o8","c3",delivered,2014-12-01 00:00:00,,,,2015-06-10 00:00:00\n'  # line 9: 2 years before
            '"o9","c3",delivered,2017-03-03 12:00:00,,,,2021-06-01 00:00:00\n'  # line 10: far, but holdable
        )
        + "".join(
            f'"g{i}","c1",delivered,2017-0{1 + i % 3}-1{i % 10} 10:00:00,,,,2017-04-01 00:00:00\n' for i in range(12)
        )
    )
    items = ITEMS + '"o4",1,"p1","s1",2017-01-09 10:00:00,5.0,1.0\n"o1",3,"p1","s1",2099-01-09 10:00:00,5.0,1.0\n'
    mqls = "mql_id,first_contact_date,landing_page_id,origin\nm1,2017-06-14,lp1,social\nm2,0001-01-01,lp2,x\n"
    rep = ingest(
        write_source(tmp_path / "src", {"orders": orders, "order_items": items, "marketing_qualified_leads": mqls}), wh
    )
    lo, hi = rep.date_window  # anchored on the purchase quartiles (2017-01-15 .. 2017-03-01)
    assert date(2014, 12, 1) < date.fromisoformat(lo) < date(2016, 1, 1), rep.date_window
    assert date(2021, 6, 1) < date.fromisoformat(hi) < date(2099, 1, 9), rep.date_window
    rows = quarantine(wh, "olist_orders_dataset.csv")
    assert [(line, col) for _, line, col, *_ in rows] == [
        (5, "order_estimated_delivery_date"),
        (5, "order_purchase_timestamp"),
        (6, "order_estimated_delivery_date"),
        (6, "order_purchase_timestamp"),
        (7, "order_purchase_timestamp"),
        (8, "order_delivered_customer_date"),
        (9, "order_purchase_timestamp"),
    ]
    assert all(r[3].startswith(f"date outside the plausible window {lo}..{hi}") for r in rows), rows
    assert rep.table("orders").quarantined == 5
    kept = q(wh, "SELECT order_id FROM stg_orders WHERE order_id LIKE 'o%' ORDER BY 1")
    assert [r[0] for r in kept] == ["o1", "o2", "o3", "o9"]
    # other tables use the same window
    assert [(r[1], r[2]) for r in quarantine(wh, "olist_order_items_dataset.csv")] == [(6, "shipping_limit_date")]
    mql_rows = quarantine(wh, "olist_marketing_qualified_leads_dataset.csv")
    assert [(r[1], r[2]) for r in mql_rows] == [(3, "first_contact_date")]
    # foreign-key policy: the item of the quarantined order o4 is kept and counted, like any orphan
    assert rep.checks["fk_order_items_order_id_not_in_orders"] == 1
    assert q(wh, "SELECT count(*) FROM stg_order_items WHERE order_id = 'o4'") == [(1,)]
    # the feature store's default backfill now starts at the data, not in 1900
    assert q(wh, "SELECT min(order_purchase_timestamp), max(order_purchase_timestamp) FROM stg_orders") == [
        (datetime(2017, 1, 5, 10, 0), datetime(2017, 3, 18, 10, 0))
    ]


def test_date_window_is_anchored_on_the_middle_of_the_orders(tmp_path: Path, wh: Settings) -> None:
    # a quarter of the orders far in the past cannot drag the window: it is anchored on the
    # purchase quartiles, not on min/max
    good = "".join(f'"g{i}","c1",delivered,2017-0{1 + i % 6}-10 10:00:00,,,,2017-08-01 00:00:00\n' for i in range(12))
    bad = "".join(f'"b{i}","c1",delivered,190{i}-01-01 00:00:00,,,,2017-08-01 00:00:00\n' for i in range(4))
    rep = ingest(write_source(tmp_path / "src", {"orders": ORDERS + good + bad}), wh)
    assert rep.table("orders").quarantined == 4
    assert date.fromisoformat(rep.date_window[0]).year >= 2014
    assert q(wh, "SELECT count(*) FROM stg_orders") == [(15,)]


# --------------------------------------------------------------------------------------------
# 3. timestamps with a UTC offset
# --------------------------------------------------------------------------------------------
def test_utc_offsets_are_converted_to_sao_paulo_local_time(tmp_path: Path, wh: Settings) -> None:
    orders = ORDERS + (
        '"o4","c1",delivered,2017-10-02 10:56:33+03:00,2017-10-02T11:00:00Z,,,2017-10-20 00:00:00\n'
        '"o5","c2",delivered,2017-01-05 10:00:00-02:00,2017-01-05 12:00:00 +0000,,,2017-01-20 00:00:00\n'
    )
    rep = ingest(write_source(tmp_path / "src", {"orders": orders}), wh)
    assert rep.quarantined == 0
    got = q(
        wh,
        "SELECT order_id, order_purchase_timestamp, order_approved_at FROM stg_orders "
        "WHERE order_id IN ('o1', 'o4', 'o5') ORDER BY 1",
    )
    assert got == [
        ("o1", datetime(2017, 1, 5, 10, 0), datetime(2017, 1, 5, 11, 0)),  # naive: unchanged
        ("o4", datetime(2017, 10, 2, 4, 56, 33), datetime(2017, 10, 2, 8, 0)),  # UTC-3 before the 2017 DST start
        ("o5", datetime(2017, 1, 5, 10, 0), datetime(2017, 1, 5, 10, 0)),  # UTC-2 in the 2016/17 summer time
    ]
    assert any(
        "4 timestamp(s) with a UTC offset converted to America/Sao_Paulo local time" in w
        for w in rep.table("orders").warnings
    ), rep.table("orders").warnings


def test_offsets_with_an_unknown_zone_are_quarantined(tmp_path: Path, wh: Settings) -> None:
    orders = ORDERS + '"o4","c1",delivered,2017-10-02 10:56:33 Mars/Olympus,,,,2017-10-20 00:00:00\n'
    rep = ingest(write_source(tmp_path / "src", {"orders": orders}), wh)
    assert rep.table("orders").quarantined == 1
    assert [(r[1], r[2]) for r in quarantine(wh)] == [(5, "order_purchase_timestamp")]


def test_without_time_zone_support_offsets_are_quarantined_not_dropped(
    tmp_path: Path, wh: Settings, monkeypatch
) -> None:
    # where DuckDB cannot convert (no ICU time-zone data), a zoned value is refused with the reason
    monkeypatch.setattr(ingest_load, "tz_support", lambda con: False)
    orders = ORDERS + '"o4","c1",delivered,2017-10-02 10:56:33+03:00,,,,2017-10-20 00:00:00\n'
    rep = ingest(write_source(tmp_path / "src", {"orders": orders}), wh)
    assert rep.table("orders").quarantined == 1
    (row,) = quarantine(wh)
    assert row[1:3] == (5, "order_purchase_timestamp") and "time-zone support (ICU)" in row[3], row
    assert row[4] == "2017-10-02 10:56:33+03:00"


# --------------------------------------------------------------------------------------------
# 4. an empty required table fails the ingest, warehouse untouched
# --------------------------------------------------------------------------------------------
_HEADER_ONLY = {
    k: t.split("\n", 1)[0] + "\n"
    for k, t in {"orders": ORDERS, "order_items": ITEMS, "sellers": SELLERS, "customers": CUSTOMERS}.items()
}


@pytest.mark.parametrize("key", sorted(_HEADER_ONLY))
def test_header_only_required_table_fails(key: str, tmp_path: Path, wh: Settings, previous: str, capsys) -> None:
    src = write_source(tmp_path / "new", {key: _HEADER_ONLY[key]})
    rc = main(["--home", str(wh.home), "ingest", str(src), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and SOURCES_BY_KEY[key].file in err and "no data rows" in err, err
    assert sha(wh.warehouse) == previous and leftovers(wh) == []


def test_required_table_with_every_row_quarantined_fails(tmp_path: Path, wh: Settings, previous: str) -> None:
    sellers = SELLERS.split("\n", 1)[0] + '\n"s1","01046",sao paulo,\n"s2",,x,SP\n'
    with pytest.raises(InputError) as ei:
        ingest(write_source(tmp_path / "new", {"sellers": sellers}, gz=("sellers",)), wh)
    msg = str(ei.value)
    assert "\n" not in msg and "olist_sellers_dataset.csv.gz" in msg and "all 2 row(s) quarantined" in msg, msg
    assert "line 2" in msg
    assert sha(wh.warehouse) == previous and leftovers(wh) == []


def test_header_only_optional_table_is_still_a_warning(tmp_path: Path, wh: Settings) -> None:
    rep = ingest(write_source(tmp_path / "src", {"geolocation": GEO.split("\n", 1)[0] + "\n"}), wh)
    assert rep.loaded["stg_geolocation"] == 0
    assert any("header only" in w for w in rep.table("geolocation").warnings)


# --------------------------------------------------------------------------------------------
# 5. zip extraction caps
# --------------------------------------------------------------------------------------------
@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch) -> Path:
    """Point tempfile at a private folder so the test can see what extraction leaves behind."""
    d = tmp_path / "systmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def test_zip_total_size_cap(tmp_path: Path, wh: Settings, previous: str, private_tmp: Path, monkeypatch) -> None:
    archive = _zip(tmp_path / "olist.zip", write_source(tmp_path / "src"), "brazilian-ecommerce/")
    monkeypatch.setenv("OLIST_ML_ZIP_MAX_BYTES", "1500")
    with pytest.raises(InputError) as ei:
        ingest(archive, wh)
    msg = str(ei.value)
    assert "\n" not in msg and "olist.zip:brazilian-ecommerce/" in msg and "OLIST_ML_ZIP_MAX_BYTES=1500" in msg, msg
    assert sha(wh.warehouse) == previous and leftovers(wh) == []
    assert list(private_tmp.iterdir()) == []
    # the same archive loads under the default cap
    monkeypatch.delenv("OLIST_ML_ZIP_MAX_BYTES")
    assert ingest(archive, wh).source_kind == "zip"
    assert list(private_tmp.iterdir()) == []


def test_zip_ratio_cap(tmp_path: Path, wh: Settings, previous: str, private_tmp: Path, monkeypatch) -> None:
    src = write_source(tmp_path / "src")
    big = GEO + '"01037",-23.54562128115268,-46.63929204800168,sao paulo,SP\n' * 40_000  # ~2.4 MB, compresses ~300x
    (src / "olist_geolocation_dataset.csv").write_text(big)
    archive = _zip(tmp_path / "bomb.zip", src)
    monkeypatch.setenv("OLIST_ML_ZIP_MAX_RATIO", "20")
    with pytest.raises(InputError) as ei:
        ingest(archive, wh)
    msg = str(ei.value)
    assert "\n" not in msg and "bomb.zip:olist_geolocation_dataset.csv" in msg and "compression ratio" in msg, msg
    assert "OLIST_ML_ZIP_MAX_RATIO=20" in msg
    assert sha(wh.warehouse) == previous and list(private_tmp.iterdir()) == []


def test_zip_cap_settings_must_be_numbers(tmp_path: Path, wh: Settings, monkeypatch) -> None:
    archive = _zip(tmp_path / "olist.zip", write_source(tmp_path / "src"))
    monkeypatch.setenv("OLIST_ML_ZIP_MAX_RATIO", "lots")
    with pytest.raises(InputError, match="OLIST_ML_ZIP_MAX_RATIO"):
        ingest(archive, wh)


# --------------------------------------------------------------------------------------------
# 6. physical line numbers in every row message
# --------------------------------------------------------------------------------------------
# the first review's comment spans 3 physical lines (2-4); after it, record n sits on line n + 2
_MULTI = (
    '"review_id","order_id","review_score","review_comment_title","review_comment_message",'
    '"review_creation_date","review_answer_timestamp"\n'
    '"r1","o1",5,,"otimo\nchegou rapido\nrecomendo",2017-01-11 00:00:00,2017-01-12 10:00:00\n'  # lines 2-4
    '"r2","o2",4,,,2017-02-06 00:00:00,2017-02-07 10:00:00\n'  # line 5
)


@pytest.mark.parametrize("gz", [False, True])
def test_malformed_record_after_multiline_field_gets_its_physical_line(gz: bool, tmp_path: Path, wh: Settings) -> None:
    reviews = _MULTI + (
        '"r3","o3",3,,"two\nlines"\n'  # lines 6-7: malformed (too few fields)
        '"r4","o3",cinco,,,2017-03-05 00:00:00,\n'  # line 8: untypable
        '"r5","o3",3,,,2017-03-05 00:00:00,2017-03-06 00:00:00,extra\n'  # line 9: malformed (too many)
        '"r6","o3",9,,,2017-03-05 00:00:00,\n'  # line 10: implausible
    )
    src = write_source(tmp_path / "src", {"order_reviews": reviews}, gz=("order_reviews",) if gz else ())
    rep = ingest(src, wh)
    name = "olist_order_reviews_dataset.csv" + (".gz" if gz else "")
    rows = quarantine(wh, name)
    assert [r[1] for r in rows] == [6, 8, 9, 10], rows
    assert "malformed" in rows[0][3] and rows[0][4] == '"r3","o3",3,,"two\nlines"'
    assert rows[1][2:4] == ("review_score", "cannot cast to INTEGER")
    assert "malformed" in rows[2][3] and rows[3][2] == "review_score"
    warnings = rep.table("order_reviews").warnings
    assert any("2 malformed CSV record(s) quarantined (first at line 6)" in w for w in warnings), warnings


def test_malformed_records_with_crlf_line_ends(tmp_path: Path, wh: Settings) -> None:
    customers = (
        '"customer_id","customer_unique_id","customer_zip_code_prefix","customer_city","customer_state"\r\n'
        '"c1","u1","01037",sao paulo,SP\r\n'  # line 2
        '"c2","u2","14409","fran\r\nca"\r\n'  # lines 3-4: malformed
        '"c3","u2","09790",sao bernardo do campo,SP\r\n'  # line 5
        '"c4","u4"\r\n'  # line 6: malformed
        '"c5","u5","01037",x,\r\n'  # line 7: missing state
    )
    ingest(write_source(tmp_path / "src", {"customers": customers}), wh)
    assert [(r[1], r[2]) for r in quarantine(wh)] == [
        (3, "customer_state"),
        (6, "customer_zip_code_prefix"),
        (7, "customer_state"),
    ]


def test_duplicate_key_message_uses_physical_lines(tmp_path: Path, wh: Settings) -> None:
    reviews = _MULTI + '"r1","o1",3,,"again\nand again",2017-01-13 00:00:00,\n'  # lines 6-7, duplicate of line 2
    items = ITEMS + '"o1",1,"p9","s1",2017-01-09 10:00:00,1.0,1.0\n'  # line 5 duplicates line 2 (record 0)
    ingest(write_source(tmp_path / "src", {"order_reviews": reviews, "order_items": items}), wh)
    rows = {r[0]: r[1:] for r in quarantine(wh)}
    assert rows["olist_order_reviews_dataset.csv"][0] == 6
    assert rows["olist_order_reviews_dataset.csv"][2] == (
        "duplicate primary key (review_id,order_id) first seen at line 2"
    )
    assert rows["olist_order_items_dataset.csv"][0] == 5
    assert rows["olist_order_items_dataset.csv"][2] == (
        "duplicate primary key (order_id,order_item_id) first seen at line 2"
    )


# --------------------------------------------------------------------------------------------
# 7. end to end: synthetic data with bad values -> ingest -> features build (exit 0)
# --------------------------------------------------------------------------------------------
def _append(path: Path, text: str) -> int:
    """Append lines to a CSV; returns the physical line number of the first appended line."""
    data = path.read_bytes()
    path.write_bytes(data + text.encode())
    return data.count(b"\n") + 1


def test_end_to_end_bad_values_then_features_build(tmp_path: Path) -> None:
    synth = pytest.importorskip("olist_ml.synth")
    raw = tmp_path / "raw"
    synth.generate(raw, seed=11, scale=0.02)
    orders_f, items_f = raw / "olist_orders_dataset.csv", raw / "olist_order_items_dataset.csv"
    first_item = items_f.read_text().splitlines()[1].split(",")
    oid, pid, sid = first_item[0], first_item[2], first_item[3]
    cid = orders_f.read_text().splitlines()[1].split(",")[1]
    item = f"{oid},{{n}},{pid},{sid},2017-06-01 10:00:00,{{price}},10.00\n"
    li = _append(items_f, "".join(item.format(n=90 + i, price=p) for i, p in enumerate(["NaN", "inf", "-12.50"])))
    lo = _append(
        orders_f,
        f"x1900,{cid},delivered,1900-01-01 10:00:00,,,,1900-01-20 00:00:00\n"
        f"x9999,{cid},delivered,9999-12-31 10:00:00,,,,9999-12-31 00:00:00\n"  # old code: OverflowError
        f"xtz,{cid},delivered,2017-10-02 10:56:33+03:00,,,,2017-10-20 00:00:00\n",
    )
    home = tmp_path / "home"
    assert main(["--home", str(home), "ingest", str(raw), "--no-progress"]) == 0
    s = Settings(home=home)
    got = q(s, 'SELECT file, line, "column", reason FROM ingest_quarantine ORDER BY file, line, "column"')
    assert [(f, line, c) for f, line, c, _ in got] == [
        ("olist_order_items_dataset.csv", li, "price"),
        ("olist_order_items_dataset.csv", li + 1, "price"),
        ("olist_order_items_dataset.csv", li + 2, "price"),
        ("olist_orders_dataset.csv", lo, "order_estimated_delivery_date"),
        ("olist_orders_dataset.csv", lo, "order_purchase_timestamp"),
        ("olist_orders_dataset.csv", lo + 1, "order_estimated_delivery_date"),
        ("olist_orders_dataset.csv", lo + 1, "order_purchase_timestamp"),
    ]
    reasons = [r[3] for r in got]
    assert "not a finite number" in reasons[0] and "not a finite number" in reasons[1] and "negative" in reasons[2]
    assert all(r.startswith("date outside the plausible window") for r in reasons[3:])
    converted = q(s, "SELECT order_purchase_timestamp FROM stg_orders WHERE order_id = 'xtz'")
    assert converted == [(datetime(2017, 10, 2, 4, 56, 33),)]
    assert q(s, "SELECT min(order_purchase_timestamp) >= TIMESTAMP '2016-01-01' FROM stg_orders") == [(True,)]
    # every later step may assume stg is sane: the default feature backfill runs and spans the data only
    assert main(["--home", str(home), "features", "build", "--cadence", "monthly", "--no-progress"]) == 0
    first, n = q(s, "SELECT min(dt_ref), count(DISTINCT dt_ref) FROM fs_seller_sales")[0]
    assert first >= date(2016, 1, 1) and n < 40


# --------------------------------------------------------------------------------------------
# the rules hold on the generated data: nothing synthetic is quarantined
# --------------------------------------------------------------------------------------------
def test_window_and_bounds_keep_every_synthetic_row(tmp_path: Path) -> None:
    synth = pytest.importorskip("olist_ml.synth")
    raw = tmp_path / "raw"
    synth.generate(raw, seed=3, scale=0.02, gzip=True)
    rep = ingest(raw, Settings(home=tmp_path / "home"), strict=True)
    assert rep.quarantined == 0 and rep.date_window


def test_bounds_are_declared_in_the_schema() -> None:
    cols = {(s.key, c.name): c for s in SOURCES_BY_KEY.values() for c in s.columns}
    assert cols[("order_items", "price")].min_value == 0
    score = cols[("order_reviews", "review_score")]
    assert (score.min_value, score.max_value) == (1, 5)
    assert {k for k, s in SOURCES_BY_KEY.items() if s.nonempty} == {"orders", "order_items", "sellers", "customers"}
    # every DOUBLE that a feature casts to DECIMAL(18,2) has an upper bound
    assert all(c.max_value is not None for (k, n), c in cols.items() if c.type == "DOUBLE")
    assert ingest_mod.DATE_ANCHOR == ("orders", "order_purchase_timestamp")
