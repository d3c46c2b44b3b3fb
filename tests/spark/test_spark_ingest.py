"""Spark ingest applies the same contract as the DuckDB ingest: same stg rows, same quarantine (physical
line, column, reason), same report, on a source full of bad values (the fixtures of test_ingest*.py)."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest

from olist_ml.config import Settings
from olist_ml.errors import InputError
from olist_ml.ingest import QUARANTINE_TABLE, ingest
from olist_ml.schema import SOURCES
from support.raw_files import ITEMS, ORDERS, PAYMENTS, PRODUCTS, write_source
from support.spark import session, spark_settings

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")

_MULTI = (
    '"review_id","order_id","review_score","review_comment_title","review_comment_message",'
    '"review_creation_date","review_answer_timestamp"\n'
    '"r1","o1",5,,"otimo\nchegou rapido\nrecomendo",2017-01-11 00:00:00,2017-01-12 10:00:00\n'  # lines 2-4
    '"r2","o2",4,,,2017-02-06 00:00:00,2017-02-07 10:00:00\n'  # line 5
    '"r3","o3",3,,"two\nlines"\n'  # lines 6-7: malformed (too few fields)
    '"r4","o3",cinco,,,2017-03-05 00:00:00,\n'  # line 8: untypable
    '"r5","o3",3,,,2017-03-05 00:00:00,2017-03-06 00:00:00,extra\n'  # line 9: malformed (too many)
    '"r6","o3",9,,,2017-03-05 00:00:00,\n'  # line 10: implausible
    '"r1","o1",3,,"again\nand again",2017-01-13 00:00:00,\n'  # lines 11-12: duplicate of line 2
)
BAD = {
    "orders": ORDERS
    + (
        '"o4","c1",delivered,1900-01-01 00:00:00,,,,1900-01-20 00:00:00\n'  # line 5: outside the window
        '"o6","c3",delivered,infinity,,,,2017-03-20 00:00:00\n'  # line 6
        '"o7","c1",delivered,2017-10-02 10:56:33+03:00,2017-10-02T11:00:00Z,,,2017-10-20 00:00:00\n'  # offsets
        '"o8","c2",delivered,2017-01-05 10:00:00-02:00,2017-01-05 12:00:00 +0000,,,2017-01-20 00:00:00\n'
        '"o9","c3",delivered,2017-10-02 10:56:33 Mars/Olympus,,,,2017-10-20 00:00:00\n'  # unknown zone
        '"o2","c2",delivered,2017-02-01 08:30:00,,,,2017-02-15 00:00:00\n'  # duplicate of line 3
    ),
    "order_items": ITEMS
    + (
        '"o2",2,"p1","s1",2017-02-05 08:30:00,NaN,1.0\n'
        '"o2",3,"p1","s1",2017-02-05 08:30:00,-Infinity,1.0\n'
        '"o2",4,"p1","s1",2017-02-05 08:30:00,-5.00,1.0\n'
        '"o2",5,"p1","s1",2017-02-05 08:30:00,1e400,1.0\n'
        '"o2",0,"p1","s1",2017-02-05 08:30:00,5.00,1.0\n'
        '"o2",6,"p1","s1",2017-02-05 08:30:00,1e12,1.0\n'
        '"o2",7,"p1","s1",2099-01-09 10:00:00,5.0,1.0\n'
        '"o2",8,"p1","s1",2017-02-05 08:30:00,5.0,\n'
    ),
    "order_payments": PAYMENTS + "o3,1,voucher,-1,10.00\no3,2,voucher,1.0,10.00\no3,3,voucher,1, nan \n",
    "order_reviews": _MULTI,
    "products": PRODUCTS + '"p4",perfumaria,40,287,-1,225,16,10,14\n"p5",perfumaria,4e1,287,1,-225,16,10,14\n',
}


@pytest.fixture(scope="module")
def spark():
    return session()


def _duck(settings: Settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _norm(v):
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return v


def _rows(records) -> list[tuple]:
    return sorted((tuple(_norm(v) for v in r) for r in records), key=repr)


def test_spark_ingest_equals_duckdb_ingest_on_bad_input(spark, tmp_path: Path) -> None:
    from olist_ml.spark.ingest import ingest_spark
    from olist_ml.spark.lake import Lake

    src = write_source(tmp_path / "src", BAD, gz=("order_reviews",))
    duck_s = Settings(home=tmp_path / "duck")
    spark_s = spark_settings(tmp_path / "spark")
    d = ingest(src, duck_s)
    s = ingest_spark(src, spark_s)
    assert d.quarantined > 20
    assert [(t.stg, t.loaded, t.quarantined) for t in s.tables] == [(t.stg, t.loaded, t.quarantined) for t in d.tables]
    assert s.checks == d.checks and s.date_window == d.date_window
    malformed = [w for w in d.warnings if "malformed CSV record" in w]
    assert sorted(set(s.warnings) - set(d.warnings)) == [] or all("malformed" not in w for w in malformed)
    assert sorted(w for w in s.warnings if "malformed" not in w) == sorted(
        w for w in d.warnings if "malformed" not in w
    )

    lake = Lake(spark, spark_s.lake_uri)
    for spec in SOURCES:
        cols = [r[0] for r in _duck(duck_s, f"DESCRIBE {spec.stg}")]
        want = _rows(_duck(duck_s, f"SELECT * FROM {spec.stg}"))
        got = _rows(tuple(r) for r in lake.read(spec.stg).select(*cols).collect())
        assert got == want, spec.stg
    dq = _duck(duck_s, f'SELECT file, line, "column", reason, raw_value FROM {QUARANTINE_TABLE}')
    sq = [tuple(r) for r in lake.read(QUARANTINE_TABLE).collect()]
    same = lambda rows: sorted((r[0], r[1], r[2], r[3], r[4]) for r in rows if not r[3].startswith("malformed"))  # noqa: E731
    assert same(sq) == same(dq)
    bad = lambda rows: sorted((r[0], r[1]) for r in rows if r[3].startswith("malformed"))  # noqa: E731
    assert bad(sq) == bad(dq) == [("olist_order_reviews_dataset.csv.gz", 6), ("olist_order_reviews_dataset.csv.gz", 9)]
    runs = lake.read("ingest_runs").collect()
    assert len(runs) == 1 and runs[0].content_hash == d.content_hash


def test_spark_ingest_refuses_an_empty_required_table_and_leaves_the_lake(spark, tmp_path: Path) -> None:
    from olist_ml.spark.ingest import ingest_spark
    from olist_ml.spark.lake import Lake

    s = spark_settings(tmp_path / "spark")
    ingest_spark(write_source(tmp_path / "good"), s)
    lake = Lake(spark, s.lake_uri)
    before = sorted(tuple(r) for r in lake.read("stg_orders").collect())
    header = ORDERS.splitlines()[0] + "\n"
    with pytest.raises(InputError, match=r"olist_orders_dataset.csv: no data rows .*stg_orders must not be empty"):
        ingest_spark(write_source(tmp_path / "bad", {"orders": header}), s)
    assert sorted(tuple(r) for r in lake.read("stg_orders").collect()) == before
    assert not [p for p in (tmp_path / "spark" / "lake" / "_staging").iterdir()]
