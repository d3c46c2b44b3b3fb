"""Ingestion: typing, validation, quarantine, bad input, atomicity, strict mode, zip, idempotence.

Fixtures are tiny hand-written CSVs written into tmp_path by the tests themselves.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import zipfile
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from olist_ml.cli import main
from olist_ml.config import Settings
from olist_ml.errors import InputError, MissingStepError
from olist_ml.ingest import ingest, summary
from olist_ml.ingest import load as ingest_load
from olist_ml.ingest import runs as ingest_runs
from support.raw_files import (
    CUSTOMERS,
    ITEMS,
    ORDERS,
    PAYMENTS,
    REVIEWS,
    SELLERS,
    _zip,
    dump,
    leftovers,
    q,
    sha,
    write_source,
)


# --------------------------------------------------------------------------------------------
def test_types_renames_and_translation(tmp_path: Path, wh: Settings) -> None:
    src = write_source(tmp_path / "src", gz=("orders", "order_reviews"))
    rep = ingest(src, wh)
    assert rep.quarantined == 0
    assert rep.loaded["stg_orders"] == 3 and rep.loaded["stg_order_items"] == 3
    types = dict(q(wh, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'stg_orders'"))
    assert types["order_purchase_timestamp"] == "TIMESTAMP" and types["order_id"] == "VARCHAR"
    types = dict(
        q(wh, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'stg_order_items'")
    )
    assert types["order_item_id"] == "INTEGER" and types["price"] == "DOUBLE"
    types = dict(
        q(wh, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'stg_closed_deals'")
    )
    assert types["has_company"] == "BOOLEAN" and types["won_date"] == "TIMESTAMP"
    types = dict(
        q(
            wh,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = "
            "'stg_marketing_qualified_leads'",
        )
    )
    assert types["first_contact_date"] == "DATE"
    # zip prefixes keep their leading zeros
    assert q(wh, "SELECT customer_zip_code_prefix FROM stg_customers WHERE customer_id = 'c1'") == [("01037",)]
    assert q(wh, "SELECT geolocation_zip_code_prefix, typeof(geolocation_lat) FROM stg_geolocation LIMIT 1") == [
        ("01037", "DOUBLE")
    ]
    # misspelt source columns renamed; English category via LEFT JOIN (NULL when untranslated)
    cols = [
        r[0]
        for r in q(
            wh,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'stg_products' ORDER BY "
            "ordinal_position",
        )
    ]
    assert "product_name_length" in cols and "product_description_length" in cols
    assert not any("lenght" in c for c in cols)
    assert cols[-1] == "product_category_name_english"
    assert q(
        wh, "SELECT product_id, product_name_length, product_category_name_english FROM stg_products ORDER BY 1"
    ) == [("p1", 40, "perfumery"), ("p2", 44, None), ("p3", None, None)]
    # BOM stripped from the translation header
    assert q(
        wh, "SELECT count(*) FROM stg_product_category_name_translation WHERE product_category_name = 'perfumaria'"
    ) == [(1,)]
    # values typed correctly, multi-line comment kept intact
    assert q(wh, "SELECT order_purchase_timestamp FROM stg_orders WHERE order_id = 'o1'") == [
        (datetime(2017, 1, 5, 10, 0),)
    ]
    assert q(wh, "SELECT first_contact_date FROM stg_marketing_qualified_leads WHERE mql_id = 'm1'") == [
        (date(2017, 6, 14),)
    ]
    assert q(wh, "SELECT has_company, has_gtin FROM stg_closed_deals") == [(True, False)]
    assert q(wh, "SELECT review_comment_message FROM stg_order_reviews WHERE order_id = 'o1'") == [
        ("otimo\r\nchegou rapido\r\nrecomendo",)
    ]
    # nullable empty review_creation_date is NULL, not quarantined
    assert q(wh, "SELECT review_creation_date FROM stg_order_reviews WHERE review_id = 'r3'") == [(None,)]
    # rows keep file order
    assert [r[0] for r in q(wh, "SELECT order_id FROM stg_orders")] == ["o1", "o2", "o3"]


def test_real_quirks_are_counted_not_dropped(tmp_path: Path, wh: Settings) -> None:
    items = ITEMS + '"o2",2,"p1","s_unknown",2017-02-05 08:30:00,5.0,1.0\n'
    rep = ingest(write_source(tmp_path / "src", {"order_items": items}), wh)
    assert rep.quarantined == 0
    assert rep.checks["duplicate_review_ids"] == 1
    assert rep.checks["orders_without_items"] == 1  # o3
    assert rep.checks["orders_without_payment"] == 1  # o3
    assert rep.checks["orders_carrier_before_approved"] == 1  # o2
    assert rep.checks["fk_order_items_seller_id_not_in_sellers"] == 1
    assert rep.checks["fk_order_items_order_id_not_in_orders"] == 0
    assert q(wh, "SELECT count(*) FROM stg_order_items WHERE seller_id = 's_unknown'") == [(1,)]
    assert q(wh, "SELECT count(*) FROM stg_order_reviews WHERE review_id = 'r1'") == [(2,)]
    assert any("without payment" in w for w in rep.table("orders").warnings)
    assert any("review_id" in w for w in rep.table("order_reviews").warnings)
    assert any(
        "s_unknown" not in w and "seller_id is not in stg_sellers" in w for w in rep.table("order_items").warnings
    )


# --------------------------------------------------------------------------------------------
# quarantine
# --------------------------------------------------------------------------------------------
def test_untypable_and_null_rows_are_quarantined_with_line_numbers(tmp_path: Path, wh: Settings) -> None:
    # a bad review after the multi-line comment: physical line 7 (header 1, r1/o1 lines 2-4, r1/o2 5, r3 6)
    reviews = REVIEWS + '"r4","o3",cinco,,,2017-03-05 00:00:00,\r\n'
    orders = ORDERS + '"o4","c1",,2017-03-02 12:00:00,,,,2017-03-20 00:00:00\n'  # empty non-nullable status, line 5
    items = ITEMS + '"o1",3,"p1","s1",not-a-date,1e400x,1.0\n'  # two bad values in one row, line 5
    rep = ingest(
        write_source(
            tmp_path / "src", {"order_reviews": reviews, "orders": orders, "order_items": items}, gz=("order_reviews",)
        ),
        wh,
    )
    assert rep.table("order_reviews").quarantined == 1
    assert rep.table("orders").quarantined == 1
    assert rep.table("order_items").quarantined == 1  # one row, two reasons
    assert rep.quarantined == 3
    rows = q(wh, 'SELECT file, line, "column", reason, raw_value FROM ingest_quarantine ORDER BY file, line, "column"')
    assert ("olist_order_reviews_dataset.csv.gz", 7, "review_score", "cannot cast to INTEGER", "cinco") in rows
    assert ("olist_orders_dataset.csv", 5, "order_status", "missing value in non-nullable column", None) in rows
    assert ("olist_order_items_dataset.csv", 5, "shipping_limit_date", "cannot cast to TIMESTAMP", "not-a-date") in rows
    assert ("olist_order_items_dataset.csv", 5, "price", "cannot cast to DOUBLE", "1e400x") in rows
    assert len(rows) == 4
    # quarantined rows are left out of stg, the rest is loaded
    assert q(wh, "SELECT count(*) FROM stg_order_reviews WHERE review_id = 'r4'") == [(0,)]
    assert q(wh, "SELECT count(*) FROM stg_orders") == [(3,)]
    assert q(wh, "SELECT count(*) FROM stg_order_items") == [(3,)]
    assert rep.loaded["stg_order_reviews"] == 3


def test_duplicate_primary_key_keeps_first_and_quarantines_rest(tmp_path: Path, wh: Settings) -> None:
    sellers = SELLERS + '"s1","99999",outra,RJ\n'  # line 4
    payments = PAYMENTS + "o1,01,voucher,1,1.00\n"  # same (order_id, payment_sequential=1) after typing, line 4
    rep = ingest(write_source(tmp_path / "src", {"sellers": sellers, "order_payments": payments}), wh)
    assert rep.table("sellers").quarantined == 1 and rep.table("order_payments").quarantined == 1
    assert q(wh, "SELECT seller_zip_code_prefix FROM stg_sellers WHERE seller_id = 's1'") == [("01046",)]
    rows = q(wh, 'SELECT file, line, "column", reason, raw_value FROM ingest_quarantine ORDER BY file')
    assert rows[0][:3] == ("olist_order_payments_dataset.csv", 4, "order_id,payment_sequential")
    assert rows[0][3].startswith("duplicate primary key") and rows[0][4] == "o1,1"
    assert rows[1][:3] == ("olist_sellers_dataset.csv", 4, "seller_id") and rows[1][4] == "s1"


def test_malformed_record_is_quarantined_with_its_line(tmp_path: Path, wh: Settings) -> None:
    customers = CUSTOMERS.replace('"c2","u2","14409",franca,SP\n', '"c2","u2","14409",franca\n')  # 4 fields, line 3
    rep = ingest(write_source(tmp_path / "src", {"customers": customers}), wh)
    assert rep.table("customers").quarantined == 1
    assert rep.loaded["stg_customers"] == 2
    rows = q(wh, "SELECT line, reason, raw_value FROM ingest_quarantine")
    assert len(rows) == 1 and rows[0][0] == 3 and "malformed" in rows[0][1] and "franca" in rows[0][2]
    # the row after the malformed one still gets its real line number
    customers2 = (
        CUSTOMERS.replace('"c2","u2","14409",franca,SP\n', '"c2","u2","14409",franca\n') + '"c4","u4","x",city,\n'
    )
    rep = ingest(write_source(tmp_path / "src2", {"customers": customers2}), wh)
    rows = q(wh, 'SELECT line, "column" FROM ingest_quarantine ORDER BY line')
    assert rows == [(3, "customer_state"), (5, "customer_state")]


def test_extra_column_is_a_warning(tmp_path: Path, wh: Settings) -> None:
    sellers = SELLERS.replace('"seller_state"\n', '"seller_state","note"\n').replace("SP\n", "SP,x\n")
    rep = ingest(write_source(tmp_path / "src", {"sellers": sellers}), wh)
    assert rep.quarantined == 0
    assert any("extra column ignored: note" in w for w in rep.table("sellers").warnings)
    assert "note" not in [
        r[0] for r in q(wh, "SELECT column_name FROM information_schema.columns WHERE table_name = 'stg_sellers'")
    ]


def test_optional_tables(tmp_path: Path, wh: Settings) -> None:
    rep = ingest(write_source(tmp_path / "a", drop=("geolocation", "marketing_qualified_leads", "closed_deals")), wh)
    assert set(rep.skipped) == {"stg_geolocation", "stg_marketing_qualified_leads", "stg_closed_deals"}
    assert rep.groups_loaded == ["ecommerce"]
    assert q(wh, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'stg_geolocation'") == [(0,)]
    rep = ingest(write_source(tmp_path / "b", drop=("closed_deals",)), wh)
    assert rep.skipped == ["stg_closed_deals"]
    assert any("marketing funnel is partial" in w for w in rep.warnings)
    assert q(wh, "SELECT count(*) FROM stg_marketing_qualified_leads") == [(2,)]


# --------------------------------------------------------------------------------------------
# bad input: one line naming the file, nothing changed
# --------------------------------------------------------------------------------------------
def _truncated_gzip(folder: Path) -> str:
    big = ORDERS + "".join(f'"x{i}","c1",delivered,2017-01-05 10:00:00,,,,2017-01-20 00:00:00\n' for i in range(5000))
    data = gzip.compress(big.encode(), mtime=0)
    (folder / "olist_orders_dataset.csv").unlink()
    (folder / "olist_orders_dataset.csv.gz").write_bytes(data[: len(data) // 2])
    return "olist_orders_dataset.csv.gz"


def _corrupt_gzip(folder: Path) -> str:
    # bytes flipped in the middle of the deflate stream: DuckDB itself does not check the gzip CRC
    big = ITEMS + "".join(f'"o1",{i},"p1","s1",2017-01-09 10:00:00,{i}.5,1.0\n' for i in range(3, 20000))
    data = bytearray(gzip.compress(big.encode(), mtime=0))
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0x55
    (folder / "olist_order_items_dataset.csv").unlink()
    (folder / "olist_order_items_dataset.csv.gz").write_bytes(bytes(data))
    return "olist_order_items_dataset.csv.gz"


def _missing_file(folder: Path) -> str:
    (folder / "olist_sellers_dataset.csv").unlink()
    return "olist_sellers_dataset.csv"


def _missing_column(folder: Path) -> str:
    (folder / "olist_orders_dataset.csv").write_text(
        ORDERS.replace(',"order_status"', "").replace(",delivered", "").replace(",canceled", "")
    )
    return "order_status"


def _empty_file(folder: Path) -> str:
    (folder / "olist_products_dataset.csv").write_bytes(b"")
    return "olist_products_dataset.csv"


def _empty_gz(folder: Path) -> str:
    (folder / "olist_products_dataset.csv").unlink()
    (folder / "olist_products_dataset.csv.gz").write_bytes(gzip.compress(b""))
    return "olist_products_dataset.csv.gz"


def _binary_file(folder: Path) -> str:
    (folder / "olist_customers_dataset.csv").write_bytes(bytes(range(256)) * 50)
    return "olist_customers_dataset.csv"


def _html_file(folder: Path) -> str:
    (folder / "olist_order_items_dataset.csv").write_text(
        "<!DOCTYPE html>\n<html><body>Sign in to Kaggle</body></html>\n"
    )
    return "olist_order_items_dataset.csv"


def _not_gzip(folder: Path) -> str:
    (folder / "olist_order_payments_dataset.csv").rename(folder / "olist_order_payments_dataset.csv.gz")
    return "olist_order_payments_dataset.csv.gz"


def _twice(folder: Path) -> str:
    (folder / "olist_sellers_dataset.csv.gz").write_bytes(gzip.compress(SELLERS.encode()))
    return "olist_sellers_dataset.csv"


def _latin1(folder: Path) -> str:
    (folder / "olist_sellers_dataset.csv").write_bytes((SELLERS + '"s9","01046",s\xe3o paulo,SP\n').encode("latin-1"))
    return "olist_sellers_dataset.csv"


BAD_FOLDERS = {
    "not utf-8": (_latin1, "not UTF-8 encoded text (invalid byte on line 4)"),
    "missing file": (_missing_file, "missing required file"),
    "missing column": (_missing_column, "missing column order_status"),
    "truncated gzip": (_truncated_gzip, "truncated or corrupt gzip"),
    "corrupt gzip": (_corrupt_gzip, "truncated or corrupt gzip"),
    "empty file": (_empty_file, "empty file"),
    "empty gzip": (_empty_gz, "empty file"),
    "binary file": (_binary_file, "not a CSV file"),
    "html file": (_html_file, "HTML"),
    "not gzip": (_not_gzip, "not a valid gzip"),
    "file twice": (_twice, "more than once"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_bad_folder_input(case: str, tmp_path: Path, wh: Settings, previous: str) -> None:
    make, expected = BAD_FOLDERS[case]
    src = write_source(tmp_path / "bad")
    name = make(src)
    with pytest.raises(InputError) as ei:
        ingest(src, wh)
    msg = str(ei.value)
    assert "\n" not in msg and name in msg and expected in msg, msg
    assert sha(wh.warehouse) == previous
    assert leftovers(wh) == []


def test_missing_folder(tmp_path: Path, wh: Settings) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        ingest(tmp_path / "nope", wh)
    assert not wh.warehouse.exists()


def test_bad_zip_inputs(tmp_path: Path, wh: Settings, previous: str) -> None:
    src = write_source(tmp_path / "src")
    good = _zip(tmp_path / "olist.zip", src)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip at all\n" * 20)
    # corrupt member: flip bytes inside the compressed data of the first member
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(good) as zf:
        info = zf.infolist()[0]
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    buf = bytearray(data)
    for i in range(start + 5, start + 25):
        buf[i] ^= 0xFF
    corrupt.write_bytes(bytes(buf))
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    cases = [
        (truncated, "truncated or corrupt zip"),
        (garbage, "truncated or corrupt zip"),
        (corrupt, "corrupt zip member"),
        (other, "missing required file"),
    ]
    for path, expected in cases:
        with pytest.raises(InputError) as ei:
            ingest(path, wh)
        msg = str(ei.value)
        assert "\n" not in msg and path.name in msg and expected in msg, msg
        assert sha(wh.warehouse) == previous
        assert leftovers(wh) == []


def test_cli_bad_input_one_line_nonzero(tmp_path: Path, wh: Settings, capsys) -> None:
    src = write_source(tmp_path / "bad")
    _missing_column(src)
    rc = main(["--home", str(wh.home), "ingest", str(src), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "olist_orders_dataset.csv" in err and "order_status" in err
    assert not wh.warehouse.exists()

    truncated = tmp_path / "cut.zip"
    full = _zip(tmp_path / "full.zip", write_source(tmp_path / "ok")).read_bytes()
    truncated.write_bytes(full[:200])
    rc = main(["--home", str(wh.home), "ingest", str(truncated)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "cut.zip" in err and "Traceback" not in err


def test_cli_subprocess_no_traceback(tmp_path: Path, wh: Settings) -> None:
    src = write_source(tmp_path / "bad")
    _binary_file(src)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLIST_ML_")}
    p = subprocess.run(
        [sys.executable, "-m", "olist_ml", "--home", str(wh.home), "ingest", str(src)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert "olist_customers_dataset.csv" in p.stderr


# --------------------------------------------------------------------------------------------
# atomicity, carry-over, strict, idempotence, zip
# --------------------------------------------------------------------------------------------
def test_failure_mid_ingest_leaves_previous_warehouse(tmp_path: Path, wh: Settings, previous: str, monkeypatch) -> None:
    src = write_source(tmp_path / "new", {"sellers": SELLERS + '"s3","20000",rio,RJ\n'})
    real = ingest_load.load_table
    calls = []

    def flaky(con, spec, *a, **kw):
        calls.append(spec.key)
        if len(calls) == 4:  # three stg tables already written into the temp warehouse
            raise RuntimeError("disk on fire")
        return real(con, spec, *a, **kw)

    monkeypatch.setattr(ingest_load, "load_table", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest(src, wh)
    assert sha(wh.warehouse) == previous
    assert leftovers(wh) == []

    # a failure after the old warehouse was attached and copied from also changes nothing
    monkeypatch.setattr(ingest_load, "load_table", real)
    before = dump(wh.warehouse)

    def boom(*a, **kw):
        raise RuntimeError("crash while recording the run")

    monkeypatch.setattr(ingest_runs, "record_run", boom)
    with pytest.raises(RuntimeError, match="crash while recording"):
        ingest(src, wh)
    assert sha(wh.warehouse) == previous
    assert dump(wh.warehouse) == before
    assert leftovers(wh) == []


def test_reingest_keeps_downstream_tables(tmp_path: Path, wh: Settings, previous: str) -> None:
    con = duckdb.connect(str(wh.warehouse))
    con.execute("CREATE SCHEMA mart")
    con.execute("CREATE TABLE mart.abt_x AS SELECT 1 AS a")
    con.execute("CREATE TABLE scores_seller_churn (seller_id VARCHAR PRIMARY KEY, p DOUBLE NOT NULL)")
    con.execute("INSERT INTO scores_seller_churn VALUES ('s1', 0.3), ('s2', 0.7)")
    con.execute("CREATE VIEW v_orders AS SELECT count(*) AS n FROM stg_orders")
    con.execute("CREATE VIEW a_over_v AS SELECT n * 2 AS n2 FROM v_orders")  # sorts before its dependency
    con.execute("CREATE VIEW v_geo AS SELECT count(*) AS n FROM stg_geolocation")
    con.close()
    rep = ingest(
        write_source(tmp_path / "new", {"sellers": SELLERS + '"s3","20000",rio,RJ\n'}, drop=("geolocation",)), wh
    )
    assert set(rep.kept_tables) >= {
        "fs_seller_sales",
        "scores_seller_churn",
        "mart.abt_x",
        "v_orders",
        "a_over_v",
        "ingest_runs",
    }
    assert q(wh, "SELECT n2 FROM a_over_v") == [(6,)]
    # stg_geolocation is gone with the new source, so its view cannot come along: said, not silent
    assert any("view v_geo was not carried over" in w for w in rep.warnings)
    assert q(wh, "SELECT * FROM fs_seller_sales") == [(date(2017, 6, 1), "s1", 3)]
    assert q(wh, "SELECT * FROM scores_seller_churn ORDER BY 1") == [("s1", 0.3), ("s2", 0.7)]
    assert q(wh, "SELECT * FROM mart.abt_x") == [(1,)]
    assert q(wh, "SELECT n FROM v_orders") == [(3,)]
    assert q(wh, "SELECT count(*) FROM stg_sellers") == [(3,)]  # stg replaced by the new source
    # the constraint came along with the table
    with pytest.raises(duckdb.ConstraintException):
        con = duckdb.connect(str(wh.warehouse))
        try:
            con.execute("INSERT INTO scores_seller_churn VALUES ('s1', 0.1)")
        finally:
            con.close()
    assert q(wh, "SELECT count(*) FROM ingest_runs") == [(2,)]


def test_reingest_over_warehouse_with_pending_wal(tmp_path: Path, wh: Settings) -> None:
    ingest(write_source(tmp_path / "src"), wh)
    # a process that wrote a feature table and died before checkpointing leaves its data in the WAL
    code = (
        "import duckdb, os, sys; c = duckdb.connect(sys.argv[1]); "
        'c.execute("CREATE TABLE fs_seller_late AS SELECT range AS i FROM range(5)"); os._exit(0)'
    )
    subprocess.run([sys.executable, "-c", code, str(wh.warehouse)], check=True, timeout=60)
    wal = Path(str(wh.warehouse) + ".wal")
    assert wal.exists()
    rep = ingest(write_source(tmp_path / "src"), wh)
    assert "fs_seller_late" in rep.kept_tables
    assert not wal.exists()
    assert q(wh, "SELECT count(*) FROM fs_seller_late") == [(5,)]


def test_strict_fails_and_changes_nothing(tmp_path: Path, wh: Settings, previous: str, capsys) -> None:
    src = write_source(tmp_path / "new", {"order_items": ITEMS + '"o1",3,"p1","s1",bad-date,1.0,1.0\n'})
    with pytest.raises(InputError) as ei:
        ingest(src, wh, strict=True)
    msg = str(ei.value)
    assert "1 row(s) would be quarantined" in msg and "olist_order_items_dataset.csv line 5" in msg
    assert sha(wh.warehouse) == previous and leftovers(wh) == []
    rc = main(["--home", str(wh.home), "ingest", str(src), "--strict", "--no-progress"])
    assert rc == 2 and "--strict" in capsys.readouterr().err
    assert sha(wh.warehouse) == previous
    # without --strict the same source loads, with the row quarantined
    rc = main(["--home", str(wh.home), "ingest", str(src), "--no-progress"])
    assert rc == 0
    assert q(wh, "SELECT count(*) FROM ingest_quarantine") == [(1,)]
    # strict on clean data succeeds
    assert ingest(write_source(tmp_path / "clean"), wh, strict=True).quarantined == 0


def test_reingest_is_idempotent(tmp_path: Path, wh: Settings) -> None:
    src = write_source(
        tmp_path / "src",
        {"orders": ORDERS + '"o9","c1",delivered,yesterday,,,,2017-01-20 00:00:00\n'},
        gz=("geolocation",),
    )
    r1 = ingest(src, wh)
    d1 = dump(wh.warehouse)
    r2 = ingest(src, wh)
    d2 = dump(wh.warehouse)
    assert d1 == d2 and d1["ingest_quarantine"]
    assert r1.content_hash == r2.content_hash and r1.run_id != r2.run_id
    runs = q(wh, "SELECT content_hash, rows_loaded, rows_quarantined FROM ingest_runs ORDER BY finished_at")
    assert len(runs) == 2 and runs[0] == runs[1] and runs[0][2] == 1
    # a changed source changes the hash
    r3 = ingest(write_source(tmp_path / "src2"), wh)
    assert r3.content_hash != r1.content_hash


@pytest.mark.parametrize("prefix", ["", "brazilian-ecommerce/"])
def test_zip_input_matches_folder(prefix: str, tmp_path: Path, wh: Settings) -> None:
    src = write_source(tmp_path / "src", gz=("geolocation",))
    ingest(src, wh)
    from_folder = dump(wh.warehouse)
    rep = ingest(_zip(tmp_path / "archive.zip", src, prefix), wh)
    assert rep.source_kind == "zip"
    assert dump(wh.warehouse) == from_folder


def test_progress_and_json_output(tmp_path: Path, wh: Settings, capsys) -> None:
    src = write_source(tmp_path / "src")
    assert ingest(src, wh, progress=True).loaded["stg_orders"] == 3
    capsys.readouterr()
    assert main(["--home", str(wh.home), "ingest", str(src), "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["quarantined"] == 0 and {t["stg"]: t["loaded"] for t in out["tables"]}["stg_order_items"] == 3
    assert main(["--home", str(wh.home), "ingest", str(src)]) == 0
    text = capsys.readouterr().out
    assert "stg_order_reviews" in text and "0 quarantined" in text


def test_summary(tmp_path: Path, wh: Settings, capsys) -> None:
    with pytest.raises(MissingStepError):
        summary(wh)
    ingest(write_source(tmp_path / "src"), wh)
    rows = {r["table"]: r for r in summary(wh)}
    assert rows["stg_orders"]["rows"] == 3
    assert rows["stg_orders"]["min"] == datetime(2017, 1, 5, 10, 0)
    assert rows["stg_orders"]["max"] == datetime(2017, 3, 1, 12, 0)
    assert rows["stg_geolocation"]["rows"] == 3
    assert main(["--home", str(wh.home), "summary"]) == 0
    assert "stg_orders" in capsys.readouterr().out


def test_stale_temp_of_dead_process_is_removed(tmp_path: Path, wh: Settings) -> None:
    wh.warehouse.parent.mkdir(parents=True)
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(p.stdout)
    stale = wh.warehouse.parent / f".{wh.warehouse.name}.ingest-{dead}-deadbeef.tmp"
    stale.write_bytes(b"half a warehouse")
    ingest(write_source(tmp_path / "src"), wh)
    assert not stale.exists() and leftovers(wh) == []


# --------------------------------------------------------------------------------------------
# real data and synthetic round trip
# --------------------------------------------------------------------------------------------
REAL_COUNTS = {
    "stg_orders": 99441,
    "stg_order_items": 112650,
    "stg_order_payments": 103886,
    "stg_order_reviews": 99224,
    "stg_customers": 99441,
    "stg_products": 32951,
    "stg_sellers": 3095,
    "stg_product_category_name_translation": 71,
    "stg_geolocation": 1000163,
    "stg_marketing_qualified_leads": 8000,
    "stg_closed_deals": 842,
}


@pytest.mark.realdata
def test_real_data_exact_counts(tmp_path: Path) -> None:
    d = os.environ.get("OLIST_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("OLIST_DATA_DIR not set: real Olist data not available")
    s = Settings(home=tmp_path / "home")
    rep = ingest(Path(d), s, strict=True)
    assert rep.loaded == REAL_COUNTS
    assert rep.quarantined == 0
    assert rep.checks["duplicate_review_ids"] > 0  # real quirk, kept
    assert rep.checks["orders_without_items"] > 0
    # 13 rows truncated upstream lost creation + answer dates, 5 more also lost the end of their comment
    # (see known_differences in the data folder): nullable, so loaded with NULL, not quarantined
    assert q(s, "SELECT count(*) FROM stg_order_reviews WHERE review_creation_date IS NULL") == [(18,)]
    assert (
        q(
            s,
            "SELECT count(*) FROM stg_products WHERE product_category_name IS NOT NULL AND "
            "product_category_name_english IS NULL",
        )[0][0]
        < 20
    )
    assert q(s, "SELECT min(length(customer_zip_code_prefix)) FROM stg_customers") == [(5,)]


def test_synthetic_round_trip(tmp_path: Path) -> None:
    try:
        from olist_ml import synth
    except ImportError as e:
        pytest.skip(f"olist_ml.synth not importable yet: {e}")
    if not hasattr(synth, "generate"):
        pytest.skip("olist_ml.synth has no generate() yet (written concurrently by the synth area)")
    out = tmp_path / "synth"
    counts = synth.generate(out, seed=7, scale=0.02)
    s = Settings(home=tmp_path / "home")
    rep = ingest(out, s, strict=True)
    assert rep.quarantined == 0
    by_file = {t.file.removesuffix(".gz"): t.loaded for t in rep.tables}
    assert {Path(name).name.removesuffix(".gz") for name in counts} == set(by_file)  # every file written was loaded
    for name, n in counts.items():
        assert by_file[Path(name).name.removesuffix(".gz")] == n, name
    assert by_file["olist_orders_dataset.csv"] > 0


def test_reingest_writes_into_the_warehouse_and_a_kill_inside_leaves_the_previous_one(
    tmp_path: Path, wh: Settings, previous: str
) -> None:
    """A later ingest writes only the ingest tables into the existing warehouse (the rest of the home stays
    in place, unchanged tables are not rewritten), in one transaction: a process killed inside it (after
    one table was replaced) leaves the previous warehouse, every table as it was."""
    before = dump(wh.warehouse, None)
    runs_before = q(wh, "SELECT count(*) FROM ingest_runs")[0][0]
    src = write_source(tmp_path / "new", {"sellers": SELLERS + '"s3","20000",rio,RJ\n'})
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from olist_ml.config import Settings\n"
        "from olist_ml.ingest import carry, ingest\n"
        "real = carry._same_in\n"
        "seen = []\n"
        "def dying(con, db, name):\n"
        "    seen.append(name)\n"
        "    if len(seen) == 4:  # inside the transaction, after earlier tables were dropped and rewritten\n"
        "        os._exit(9)\n"
        "    return real(con, db, name)\n"
        "carry._same_in = dying\n"
        "ingest(Path(sys.argv[1]), Settings(home=Path(sys.argv[2]), warehouse_path=Path(sys.argv[3])))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(src), str(wh.home), str(wh.warehouse)], capture_output=True, text=True
    )
    assert p.returncode == 9, p.stderr[-2000:]
    assert dump(wh.warehouse, None) == before
    assert q(wh, "SELECT count(*) FROM ingest_runs")[0][0] == runs_before
    # the same ingest, not killed: only the changed table is rewritten, the feature table stays
    rep = ingest(src, wh)
    assert rep.rewritten == ["stg_sellers"], rep.rewritten
    assert "fs_seller_sales" in rep.kept_tables
    assert q(wh, "SELECT count(*) FROM stg_sellers") == [(3,)]
    assert q(wh, "SELECT * FROM fs_seller_sales") == [(date(2017, 6, 1), "s1", 3)]
    assert q(wh, "SELECT count(*) FROM ingest_runs")[0][0] == runs_before + 1
    assert leftovers(wh) == []
