"""The churn target, population and churn-specific columns on hand-made orders: edges of the
half-open windows, the observed-period rules and point-in-time correctness."""

from __future__ import annotations

import math
from datetime import date

import duckdb
import pytest

from olist_ml.config import Settings
from olist_ml.problems.churn import CHURN_COLUMNS, abt_sql

# features stub: the target/population logic does not depend on the feature store
STUB = "SELECT dt_ref, seller_id, 1.0 AS dummy FROM eligible"
DT = date(2018, 3, 1)
END = date(2019, 1, 1)  # observed far enough for every label unless a test says otherwise


def _abt(sales, dts=(DT,), *, background=True, silent=None, observed_end=END, **kw) -> dict:
    """sales: (seller, purchase ts[, {carrier, delivered, estimated, limit}]) per order. `background`:
    another seller orders daily at noon 2017-06-01..2018-12-31 (the marketplace is live), except on
    the days of `silent` = (first, last) date."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE stg_orders (order_id VARCHAR, order_purchase_timestamp TIMESTAMP, "
        "order_delivered_carrier_date TIMESTAMP, order_delivered_customer_date TIMESTAMP, "
        "order_estimated_delivery_date TIMESTAMP)"
    )
    con.execute(
        "CREATE TABLE stg_order_items (order_id VARCHAR, order_item_id INTEGER, product_id VARCHAR, "
        "seller_id VARCHAR, shipping_limit_date TIMESTAMP)"
    )
    for i, sale in enumerate(sales):
        seller, ts, extra = (*sale, {}) if len(sale) == 2 else sale
        con.execute(
            "INSERT INTO stg_orders SELECT ?, t, ?, ?, coalesce(?, t + INTERVAL 20 DAY) FROM "
            "(SELECT CAST(? AS TIMESTAMP) AS t)",
            [f"o{i}", extra.get("carrier"), extra.get("delivered"), extra.get("estimated"), ts],
        )
        con.execute(
            "INSERT INTO stg_order_items SELECT ?, 1, ?, ?, coalesce(?, CAST(? AS TIMESTAMP) + INTERVAL 5 DAY)",
            [f"o{i}", extra.get("product", "p1"), seller, extra.get("limit"), ts],
        )
    if background:
        s0, s1 = silent or (date(1900, 1, 1), date(1900, 1, 1))
        con.execute(
            """
            INSERT INTO stg_orders
            SELECT 'bg' || r, t, t + INTERVAL 1 DAY, t + INTERVAL 3 DAY, t + INTERVAL 10 DAY
            FROM (SELECT range AS r, TIMESTAMP '2017-06-01 12:00:00' + range * INTERVAL 1 DAY AS t FROM range(0, 579))
            WHERE NOT (CAST(t AS DATE) BETWEEN ? AND ?)""",
            [s0, s1],
        )
        con.execute(
            "INSERT INTO stg_order_items SELECT order_id, 1, 'pbg', 'bg', order_purchase_timestamp "
            "FROM stg_orders WHERE order_id LIKE 'bg%'"
        )
    sql = abt_sql(Settings(), list(dts), features_sql=STUB, observed_end=observed_end, **kw)
    rows = con.execute(sql).fetchall()
    cols = [d[0] for d in con.description]
    con.close()
    return {(r[cols.index("dt_ref")], r[cols.index("seller_id")]): dict(zip(cols, r, strict=False)) for r in rows}


def test_population_is_sellers_with_a_sale_in_the_45_days_before_dt_ref():
    got = _abt(
        [
            ("in", "2018-01-15 10:00"),
            ("edge", "2018-01-15 00:00"),
            ("old", "2018-01-14 23:59"),
            ("at_dt", "2018-03-01 00:00"),
        ],
        background=False,
    )
    # [dt_ref - 45 d, dt_ref): 2018-01-15 00:00 is the first instant inside; a sale AT dt_ref is not eligible
    assert {k[1] for k in got} == {"in", "edge"}


@pytest.mark.parametrize(
    "next_sale, churn",
    [
        ("2018-03-01 00:00", 0),  # a sale exactly at dt_ref counts in the target window
        ("2018-03-31 23:59", 0),  # last sale date 2018-02-14 + 45 d = 2018-03-31, inclusive
        ("2018-04-01 00:00", 1),  # one day later: it completed 45 days without a sale
        (None, 1),
    ],
)
def test_churn_window_runs_through_last_sale_date_plus_45_days(next_sale, churn):
    sales = [("s", "2018-02-14 18:00")] + ([("s", next_sale)] if next_sale else [])
    row = _abt(sales)[(DT, "s")]
    assert row["churn"] == churn
    assert row["horizon_days_left"] == 31  # 2018-03-01 .. 2018-03-31
    assert row["dummy"] == 1.0
    # label_known_at: the first sale in the window (churn = 0), else the window's end 2018-04-01 00:00
    # (= dt_ref + horizon_days_left days, never after dt_ref + 45 days)
    assert str(row["label_known_at"]) == (f"{next_sale}:00" if churn == 0 else "2018-04-01 00:00:00")


def test_label_known_at_is_null_where_unlabelled_and_never_a_feature():
    from olist_ml.problems.churn import PROBLEM

    row = _abt([("s", "2018-02-20 10:00")], observed_end=date(2018, 4, 14))[(DT, "s")]
    assert row["churn"] is None and row["label_known_at"] is None
    assert "label_known_at" in PROBLEM.exclude_columns and "label_known_at" not in CHURN_COLUMNS


def test_labelled_iff_dt_ref_plus_horizon_is_not_after_the_exclusive_observed_end():
    sales = [("s", "2018-02-20 10:00")]
    # observed_end is exclusive: data is observed on days < observed_end. DT + 45 d = 2018-04-15.
    assert _abt(sales, observed_end=date(2018, 4, 15))[(DT, "s")]["churn"] == 1
    assert _abt(sales, observed_end=date(2018, 4, 14))[(DT, "s")]["churn"] is None
    assert _abt(sales, labelled=False)[(DT, "s")]["churn"] is None
    with pytest.raises(ValueError, match="observed_end"):
        abt_sql(Settings(), [DT], features_sql=STUB)  # labelled needs the observed end


@pytest.mark.parametrize(
    "silent, labelled",
    [
        ((date(2018, 3, 20), date(2018, 4, 2)), False),  # 14 silent marketplace days inside the target span
        ((date(2018, 3, 20), date(2018, 4, 1)), True),  # 13 days: quiet trade, not a hole
        ((date(2018, 1, 1), date(2018, 1, 14)), True),  # 14 days, but before dt_ref - 45 d = 2018-01-15
        ((date(2018, 1, 2), date(2018, 1, 15)), False),  # ... ending on 2018-01-15: inside the eligibility span
        ((date(2018, 4, 15), date(2018, 5, 1)), True),  # from dt_ref + 45 d on: after the target span
    ],
)
def test_unlabelled_when_a_marketplace_hole_overlaps_the_observation_span(silent, labelled):
    row = _abt([("s", "2018-02-20 10:00")], silent=silent)[(DT, "s")]
    assert (row["churn"] is not None) == labelled
    if labelled:
        assert row["churn"] == 1


def test_history_columns_values():
    sales = [
        ("s", "2017-12-01 10:00"),
        ("s", "2018-01-01 10:00", {"carrier": "2018-01-02 10:00", "delivered": "2018-01-05 10:00"}),
        ("s", "2018-02-20 10:00", {"carrier": "2018-02-22 10:00", "delivered": "2018-03-03 10:00"}),
        ("s", "2018-02-25 09:00", {"product": "p2", "limit": "2018-02-27 00:00"}),  # never handed over
        ("s", "2018-02-25 11:00", {"product": "p2", "carrier": "2018-02-26 10:00", "delivered": "2018-02-28 10:00"}),
    ]
    a = _abt(sales)[(DT, "s")]
    assert a["n_sale_days_7d"] == 1 and a["n_sale_days_14d"] == 2 and a["n_sale_days_28d"] == 2
    assert a["n_orders_7d"] == 2 and a["n_orders_14d"] == 3
    assert a["days_since_2nd_last_sale_day"] == 9 and a["days_since_3rd_last_sale_day"] == 59
    assert a["days_since_5th_last_sale_day"] is None
    assert a["last_gap_days"] == 5 and a["avg_last5_gaps_days"] == pytest.approx((5 + 50 + 31) / 3)
    # gaps 31, 50, 5; current gap >= 4 days: 31, 50, 5 qualify, one of them > 45
    assert a["p_gap_over_horizon_given_recency"] == pytest.approx((1 + 1) / (3 + 2))
    assert a["recency_over_tenure"] == pytest.approx(4 / 90)
    assert a["horizon_days_left"] == 42  # through 2018-02-25 + 45 d = 2018-04-11
    assert a["p_no_sale_poisson_28d"] == pytest.approx(math.exp(-2 / 28 * 42))
    assert a["neg_log_p_no_sale_gamma_poisson"] == pytest.approx((4 + 1) * math.log((30 + 90 + 42) / (30 + 90)))
    # backlog at dt_ref: the 02-20 order is delivered only on 03-03; the 09:00 order was never shipped
    assert a["n_orders_in_flight"] == 2 and a["n_orders_awaiting_carrier"] == 1
    assert a["n_orders_overdue_handover"] == 1 and a["pct_orders_overdue_handover"] == pytest.approx(1 / 3)
    assert a["n_orders_due_after_dt_ref"] == 3  # estimated 20 days after purchase
    assert a["n_products_lifetime"] == 2 and a["top_product_share_90d"] == pytest.approx(3 / 5)
    assert a["product_hhi_90d"] == pytest.approx((3 / 5) ** 2 + (2 / 5) ** 2)
    # marketplace: 30 background + 3 of s in [01-30, 03-01); 30 + 1 in [12-31, 01-30)
    assert a["mkt_orders_ratio_30d"] == pytest.approx(33 / 31)
    assert a["mkt_share_orders_30d"] == pytest.approx(1000 * 3 / 33)
    assert a["mkt_share_orders_ratio"] == pytest.approx((3 / 33) / (1 / 31))


def test_every_churn_column_is_point_in_time():
    base = [
        ("s", "2017-12-01 10:00"),
        ("s", "2018-01-01 10:00", {"product": "p2"}),
        ("s", "2018-02-20 10:00", {"carrier": "2018-03-02 10:00", "delivered": "2018-03-09 10:00"}),
        ("s", "2018-02-27 10:00"),
        ("t", "2018-02-10 10:00"),
    ]
    a = _abt(base)
    # facts from dt_ref 00:00 on: new sales of s and of others, and later timestamps of earlier orders
    later = [
        ("s", "2018-03-01 00:00"),
        ("s", "2018-03-10 00:00", {"product": "p9"}),
        ("t", "2018-03-02 00:00"),
        ("u", "2018-03-05 00:00"),
    ]
    moved = [*base[:2], ("s", "2018-02-20 10:00", {"carrier": "2018-03-20 10:00", "delivered": None}), *base[3:]]
    for other in (_abt(base + later), _abt(moved + later)):
        for key in a:
            assert {c: a[key][c] for c in CHURN_COLUMNS} == {c: other[key][c] for c in CHURN_COLUMNS}, key
        assert set(other) == set(a)  # the population does not change either
    assert a[(DT, "s")]["churn"] == 1 and _abt(base + later)[(DT, "s")]["churn"] == 0
    assert set(CHURN_COLUMNS) <= set(a[(DT, "s")])
