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


def test_observed_end_needs_half_the_typical_daily_volume():
    """A partial extract (days at 20-48 % of normal, like 24-28 August 2018 in the real data) is not
    observed data: the end is the first day from which every day stays under 50 % of the median of
    the 28 days before it. A day at exactly 50 % still counts (the old 10 % rule kept them all)."""
    con = duckdb.connect()
    start = date(2018, 6, 1)
    counts = {start + timedelta(days=i): 40 for i in range(60)}  # steady until 2018-07-30
    tail = [20, 19, 12, 8, 10, 3, 1]  # 50 %, then 48 %, 30 %, 20 %, 25 %, ...
    counts.update({date(2018, 7, 31) + timedelta(days=i): n for i, n in enumerate(tail)})
    _orders(con, counts)
    assert observed_end(con) == date(2018, 8, 1)
    assert observed_end(con, min_share=0.10) == date(2018, 8, 5)  # the old rule kept the partial days


def test_observed_end_of_the_deliveries():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE stg_orders (order_id VARCHAR, order_purchase_timestamp TIMESTAMP, "
        "order_delivered_customer_date TIMESTAMP)"
    )
    start = date(2018, 1, 1)
    rows = [
        (f"o{i}_{j}", f"{start + timedelta(days=i)} 10:00:00", f"{start + timedelta(days=i + 5)} 12:00:00")
        for i in range(60)
        for j in range(10)
    ]
    rows += [(f"x{j}", "2018-03-01 10:00:00", None) for j in range(10)]  # undelivered, bought later
    con.executemany("INSERT INTO stg_orders VALUES (?, ?, ?)", rows)
    # deliveries run 2018-01-06 .. 2018-03-06 (the day after the last is the end); purchases end 2018-03-01
    assert observed_end(con, column="order_delivered_customer_date") == date(2018, 3, 7)
    assert observed_end(con) == date(2018, 3, 2)
    with pytest.raises(ValueError, match="column"):
        observed_end(con, column="order_status")


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
