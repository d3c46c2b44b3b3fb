"""The shared warehouse helpers: observed end of the data and atomic table replacement."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest

from olist_ml.warehouse import observed_end, replace_table_atomically


def _orders(con, counts: dict[date, int]) -> None:
    rows = []
    for d, n in counts.items():
        rows += [(f"o{d.isoformat()}_{i}", f"{d.isoformat()} 10:00:00") for i in range(n)]
    con.execute("CREATE OR REPLACE TABLE stg_orders (order_id VARCHAR, order_purchase_timestamp TIMESTAMP)")
    con.executemany("INSERT INTO stg_orders VALUES (?, ?)", rows)


def test_observed_end_ignores_a_thin_tail_of_stray_orders():
    con = duckdb.connect()
    start = date(2018, 6, 1)
    counts = {start + timedelta(days=i): 40 for i in range(60)}  # steady until 2018-07-30
    counts[date(2018, 7, 31)] = 2  # the extract dies off
    counts[date(2018, 8, 20)] = 1  # stray late orders (cancellations in the real data)
    counts[date(2018, 9, 15)] = 1
    _orders(con, counts)
    assert observed_end(con) == date(2018, 7, 31)


def test_observed_end_without_a_tail_is_the_day_after_the_last_order():
    con = duckdb.connect()
    start = date(2018, 1, 1)
    _orders(con, {start + timedelta(days=i): 30 for i in range(50)})
    assert observed_end(con) == start + timedelta(days=50)


def test_replace_table_atomically_keeps_the_old_table_when_the_query_fails():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    with pytest.raises(duckdb.Error):
        replace_table_atomically(con, "t", "SELECT no_such_column FROM t")
    assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert replace_table_atomically(con, "t", "SELECT 2 AS x UNION ALL SELECT 3") == 2
