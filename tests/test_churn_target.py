"""The churn target and population on hand-made orders: edges of the half-open windows."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from olist_ml.config import Settings
from olist_ml.problems.churn import abt_sql

# features stub: the target/population logic does not depend on the feature store
STUB = "SELECT dt_ref, seller_id, 1.0 AS dummy FROM eligible"
DT = date(2018, 3, 1)


def _abt(sales: list[tuple[str, str]], dts=(DT,), **kw) -> dict:
    con = duckdb.connect()
    con.execute("CREATE TABLE stg_orders (order_id VARCHAR, order_purchase_timestamp TIMESTAMP)")
    con.execute("CREATE TABLE stg_order_items (order_id VARCHAR, order_item_id INTEGER, seller_id VARCHAR)")
    for i, (seller, ts) in enumerate(sales):
        con.execute("INSERT INTO stg_orders VALUES (?, ?)", [f"o{i}", ts])
        con.execute("INSERT INTO stg_order_items VALUES (?, 1, ?)", [f"o{i}", seller])
    # the observed data runs far enough for every label unless the test says otherwise
    end = kw.pop("observed_end", "2019-01-01 00:00:00")
    con.execute("INSERT INTO stg_orders VALUES ('end', ?)", [end])
    sql = abt_sql(Settings(), list(dts), features_sql=STUB, **kw)
    rows = con.execute(sql).fetchall()
    cols = [d[0] for d in con.description]
    con.close()
    return {(r[cols.index("dt_ref")], r[cols.index("seller_id")]): dict(zip(cols, r)) for r in rows}


def test_population_is_sellers_with_a_sale_in_the_45_days_before_dt_ref():
    got = _abt([("in", "2018-01-15 10:00"), ("edge", "2018-01-15 00:00"), ("old", "2018-01-14 23:59"),
                ("at_dt", "2018-03-01 00:00")])
    # [dt_ref - 45 d, dt_ref): 2018-01-15 00:00 is the first instant inside; a sale AT dt_ref is not eligible
    assert {k[1] for k in got} == {"in", "edge"}


@pytest.mark.parametrize("next_sale, churn", [
    ("2018-03-01 00:00", 0),  # a sale exactly at dt_ref counts in the target window
    ("2018-03-31 23:59", 0),  # last sale date 2018-02-14 + 45 d = 2018-03-31, inclusive
    ("2018-04-01 00:00", 1),  # one day later: it completed 45 days without a sale
    (None, 1),
])
def test_churn_window_runs_through_last_sale_date_plus_45_days(next_sale, churn):
    sales = [("s", "2018-02-14 18:00")] + ([("s", next_sale)] if next_sale else [])
    row = _abt(sales)[(DT, "s")]
    assert row["churn"] == churn
    assert row["horizon_days_left"] == 31  # 2018-03-01 .. 2018-03-31
    assert row["dummy"] == 1.0


def test_unlabelled_when_the_horizon_is_not_fully_observed_or_scoring():
    sales = [("s", "2018-02-20 10:00")]
    assert _abt(sales, observed_end="2018-04-15 00:00")[(DT, "s")]["churn"] == 1  # DT + 45 d <= end
    assert _abt(sales, observed_end="2018-04-14 23:00")[(DT, "s")]["churn"] is None
    assert _abt(sales, labelled=False)[(DT, "s")]["churn"] is None


def test_history_columns_are_point_in_time():
    base = [("s", "2017-12-01 10:00"), ("s", "2018-01-01 10:00"), ("s", "2018-02-20 10:00")]
    a = _abt(base)[(DT, "s")]
    b = _abt(base + [("s", "2018-03-01 00:00"), ("s", "2018-03-10 00:00")])[(DT, "s")]  # later sales
    cols = ["median_gap_days", "max_gap_days", "p90_gap_days", "pct_gaps_over_horizon", "n_active_weeks_84d",
            "exp_sale_days_in_horizon_90d", "horizon_days_left"]
    assert {c: a[c] for c in cols} == {c: b[c] for c in cols}
    assert a["max_gap_days"] == 50 and a["median_gap_days"] == 40.5 and a["pct_gaps_over_horizon"] == 0.5
    assert a["churn"] == 1 and b["churn"] == 0
