"""Order delay: label rules, point-in-time context features, scoring population."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pytest

from olist_ml import geo
from olist_ml.problems import order_delay as od

from _problem_fixtures import empty_rows, order, write_orders


@pytest.fixture
def con():
    c = duckdb.connect()
    rows = empty_rows()
    # history: deliveries well before the orders under test
    for i in range(6):
        order(rows, f"h{i}", "s1", f"2018-01-0{i + 1} 10:00:00", "2018-01-20", f"2018-01-{15 + i} 12:00:00")
    # recent cohorts (the carriers' current speed): one fast delivery, one delivered after 2018-02-01
    order(rows, "c_fast", "s1", "2018-01-16 10:00:00", "2018-02-05", "2018-01-20 12:00:00")
    order(rows, "c_slow", "s1", "2018-01-18 10:00:00", "2018-02-05", "2018-02-10 12:00:00")
    order(rows, "ontime_same_day", "s1", "2018-02-01 10:00:00", "2018-02-20", "2018-02-20 18:30:00")
    order(rows, "late_next_day", "s2", "2018-02-01 11:00:00", "2018-02-20", "2018-02-21 08:00:00")
    order(rows, "early", "s1", "2018-02-02 09:00:00", "2018-02-25", "2018-02-10 09:00:00")
    order(rows, "open_shipped", "s1", "2018-02-05 09:00:00", "2018-02-28", None, status="shipped")
    order(rows, "canceled", "s2", "2018-02-05 10:00:00", "2018-02-28", None, status="canceled")
    # last delivery of the data: 2018-03-01; an order promised after that is not labelled
    order(rows, "promise_after_end", "s1", "2018-02-20 09:00:00", "2018-03-10", "2018-03-01 10:00:00")
    write_orders(c, rows)
    geo.build_zip_coordinates(c)
    return c


def _append(con, rows: dict) -> None:
    for key, stg in (("orders", "stg_orders"), ("order_items", "stg_order_items"),
                     ("order_payments", "stg_order_payments"), ("customers", "stg_customers")):
        if not rows[key]:
            continue
        df = pd.DataFrame(rows[key]).astype(object)
        con.register("_more", df)
        cols = ", ".join(df.columns)
        con.execute(f"INSERT INTO {stg} ({cols}) SELECT {cols} FROM _more")
        con.unregister("_more")


def test_labels_day_resolution_and_population(con):
    """is_late = not delivered by the end of the estimated date (delivered later, or never: canceled
    too, the status being a snapshot); labelled once known inside the observed deliveries."""
    rows = empty_rows()
    order(rows, "open_after_end", "s1", "2018-02-25 09:00:00", "2018-03-15", None, status="shipped")
    order(rows, "never_approved", "s2", "2018-02-06 09:00:00", "2018-02-26", None, status="canceled")
    rows["orders"][-1]["order_approved_at"] = None
    order(rows, "delivered_no_ts", "s1", "2018-02-03 09:00:00", "2018-02-22", None, status="delivered")
    _append(con, rows)
    end = od.delivery_end(con)
    assert end == date(2018, 3, 2)  # sparse deliveries: the day after the last one (2018-03-01 10:00)
    df = con.execute(od.abt_sql(end)).df().set_index("order_id")
    ts = pd.Timestamp
    expect = {  # order: (is_late, label_known_at)
        "ontime_same_day": (0, ts("2018-02-20 18:30:00")),  # delivered on the estimated day (18:30): on time
        "late_next_day": (1, ts("2018-02-21")),  # late from the end of the estimated day, before the delivery
        "early": (0, ts("2018-02-10 09:00:00")),
        "c_slow": (1, ts("2018-02-06")),
        "open_shipped": (1, ts("2018-03-01")),  # never delivered, promise 02-28 passed inside the data
        "canceled": (1, ts("2018-03-01")),  # likewise: nobody knew at approval it would be canceled
        "promise_after_end": (0, ts("2018-03-01 10:00:00")),  # delivered on time before the data ends
    }
    for oid, (late, known) in expect.items():
        assert (df.loc[oid, "is_late"], df.loc[oid, "label_known_at"]) == (late, known), oid
    # promise ends after the observed deliveries: in the ABT (its features are known), label unknown
    for oid in ("open_after_end", "delivered_no_ts"):
        assert pd.isna(df.loc[oid, "is_late"]) and pd.isna(df.loc[oid, "label_known_at"]), oid
    assert "never_approved" not in df.index  # never approved: never scored, not in the ABT
    assert (pd.to_datetime(df["dt_ref"]).dt.date == pd.to_datetime(df["purchase_ts"]).dt.date).all()
    lab = df[df["is_late"].notna()]
    assert (lab["label_known_at"] > lab["purchase_ts"]).all()


def test_label_known_at_is_not_a_feature():
    p = od.PROBLEM
    assert "label_known_at" in p.exclude_columns and "label_known_at" in p._non_features()
    from olist_ml.config import Settings

    assert p.split_of(Settings()).purge_days == od.LABEL_PURGE_DAYS


def test_purge_covers_the_label_delay_on_the_real_data(real_data_dir, tmp_path):
    """The purge between training and evaluation rows is the p99.9 of (label_known_at - purchase) on the
    real data, rounded up: a training row's label is known before the next period starts (99.9 %)."""
    from olist_ml import ingest
    from olist_ml.config import Settings
    from olist_ml.warehouse import session

    s = Settings(home=tmp_path / "home")
    ingest.ingest(real_data_dir, s)
    with session(s, read_only=True) as c:
        _, known_at = od.label_exprs("order_delivered_customer_date", "order_estimated_delivery_date")
        days = c.execute(f"""
            SELECT epoch({known_at} - order_purchase_timestamp) / 86400.0 FROM stg_orders
            WHERE order_purchase_timestamp < DATE '2018-08-01' AND order_estimated_delivery_date IS NOT NULL
              AND (order_approved_at IS NOT NULL OR order_delivered_customer_date IS NOT NULL)
              AND order_id IN (SELECT order_id FROM stg_order_items)""").df().iloc[:, 0]
    assert len(days) > 90_000
    p999 = days.quantile(0.999)
    assert od.LABEL_PURGE_DAYS - 1 < p999 <= od.LABEL_PURGE_DAYS, p999
    assert days.quantile(0.99) > 30  # the old 30-day purge left > 1 % of labels unknown


def test_order_features(con):
    df = con.execute(od.orders_sql()).df().set_index("order_id")
    r = df.loc["late_next_day"]
    assert r["promised_days"] == 19
    assert r["seller_id"] == "s2" and r["seller_state"] == "RJ" and r["customer_state"] == "SP"
    assert r["same_state"] == 0
    assert r["distance_km"] == pytest.approx(geo.haversine_km(-22.90, -43.17, -23.55, -46.63))
    assert r["order_value"] == 100.0 and r["freight_value"] == 10.0 and r["n_items"] == 1
    assert r["total_volume_cm3"] == 1000.0
    assert r["purchase_weekday"] == 4  # 2018-02-01 is a Thursday (ISO 4)
    # context: the 6 history orders + c_fast were delivered before 2018-02-01, on the same route, none late
    assert r["route_n_delivered_90d"] == 7 and r["route_pct_late_90d"] == 0.0
    assert r["estimated_weekday"] == 2  # 2018-02-20 is a Tuesday
    # route delivery-time quantiles: six 14-day deliveries and one of 4 days
    assert r["route_p50_delivery_days_90d"] == 14.0 and r["route_p90_delivery_days_90d"] == 14.0
    assert r["route_promise_slack_p90_days"] == 19 - 14.0
    # nowcast at 2018-02-01: cohorts bought in [01-15, 01-25) -> c_fast within 10 days, c_slow not;
    # the 7-day cohorts [01-18, 01-25) -> c_slow only, not delivered within 7 days
    assert r["market_pct_delivered_10d_recent"] == 0.5
    assert r["market_pct_delivered_7d_recent"] == 0.0
    assert r["cstate_pct_delivered_10d_recent"] == 0.5


def test_features_ignore_later_events(con):
    """Appending events after an order's purchase date leaves its features unchanged."""
    before = con.execute(od.orders_sql()).df().set_index("order_id").sort_index()
    rows = empty_rows()
    # later orders, delivered late, on the same route and day as the test orders' purchase day
    for i in range(5):
        order(rows, f"later{i}", "s1", "2018-02-01 23:00:00", "2018-02-03", "2018-02-09 10:00:00")
        order(rows, f"later_b{i}", "s2", "2018-02-15 10:00:00", "2018-02-16", "2018-02-25 10:00:00")
    for key, stg in (("orders", "stg_orders"), ("order_items", "stg_order_items"),
                     ("order_payments", "stg_order_payments"), ("customers", "stg_customers")):
        df = pd.DataFrame(rows[key]).astype(object)
        con.register("_more", df)
        cols = ", ".join(df.columns)
        con.execute(f"INSERT INTO {stg} ({cols}) SELECT {cols} FROM _more")
        con.unregister("_more")
    geo.build_zip_coordinates(con)
    after = con.execute(od.orders_sql()).df().set_index("order_id").sort_index()
    # every appended event happens on/after 2018-02-01 (same-day purchases included): the orders
    # bought up to that day must not see any of them
    ids = before.index[pd.to_datetime(before["purchase_ts"]) < pd.Timestamp("2018-02-02")]
    assert {"ontime_same_day", "late_next_day"} <= set(ids)
    pd.testing.assert_frame_equal(before.loc[ids], after.loc[ids], check_dtype=False)
    # the check covers the context columns (they are filled for the compared orders)
    ctx = ["route_p90_delivery_days_90d", "route_promise_slack_p90_days", "cstate_p90_delivery_days_30d",
           "market_pct_delivered_10d_recent", "market_pct_delivered_7d_recent", "cstate_pct_delivered_10d_recent",
           "market_backlog_ratio_14d", "route_pct_late_90d", "market_pct_late_14d",
           "cstate_pct_slower_than_promise_30d", "market_pct_slower_than_promise_14d",
           "market_km_pct_slower_than_promise", "market_pct_open_due_7d", "cstate_pct_open_due_7d"]
    assert before.loc[["ontime_same_day", "late_next_day"], ctx].notna().all().all()
    # ... while an order bought after those late deliveries does see them
    assert after.loc["later_b0", "route_pct_late_90d"] > 0


def test_open_orders_scoring_population(con):
    sql = f"""
        SELECT order_id FROM ({od.orders_sql()}) o
        WHERE o.purchase_ts < DATE '2018-02-15' AND o.approved_at < DATE '2018-02-15'
          AND o.order_status NOT IN ('canceled', 'unavailable', 'created')
          AND (o.delivered_at IS NULL OR o.delivered_at >= DATE '2018-02-15')
    """
    got = {r[0] for r in con.execute(sql).fetchall()}
    # at 2018-02-15: the shipped order and the two delivered on 02-20/21 are open; 'early' was delivered
    assert got == {"open_shipped", "ontime_same_day", "late_next_day"}


def test_holiday_calendar():
    h = set(od.brazil_national_holidays(2018, 2026))
    from datetime import date

    # Carnival Monday/Tuesday, Good Friday and Corpus Christi follow Easter (2018-04-01, 2026-04-05)
    for d in ("2018-02-12", "2018-02-13", "2018-03-30", "2018-05-31", "2026-02-16", "2026-02-17", "2026-04-03",
              "2026-06-04", "2018-09-07", "2018-11-15", "2018-12-25"):
        assert date.fromisoformat(d) in h
    assert date(2018, 2, 14) not in h and date(2018, 4, 1) not in h
    assert len(od.brazil_national_holidays(2018, 2018)) == 12
    assert date(2018, 11, 20) not in h and date(2025, 11, 20) in h  # national only from 2024 on


def test_promise_calendar_features(con):
    df = con.execute(od.orders_sql()).df().set_index("order_id")
    r = df.loc["late_next_day"]  # bought Thu 2018-02-01, promised Tue 2018-02-20; Carnival Mon/Tue 02-12/13
    # Mon-Fri in [02-01, 02-20): 2 + 5 + 5 + 1 = 13 weekdays, less the two Carnival days
    assert r["promised_business_days"] == 11
    assert r["n_holidays_to_estimate"] == 2
    assert df.loc["h0", "n_holidays_to_estimate"] == 1  # bought 2018-01-01 (a holiday), due 01-20


def test_promise_vs_recent_deliveries(con):
    """Share of recent deliveries slower than this order's promise; Kaplan-Meier nowcast; orders coming due."""
    df = con.execute(od.orders_sql()).df().set_index("order_id")
    r = df.loc["promise_after_end"]  # bought 2018-02-20, promised 18 days
    # deliveries in [01-21, 02-20) to SP: c_slow (23 days) and early (8 days) -> 1 of 2 slower than 18 days
    assert r["cstate_pct_slower_than_promise_30d"] == 0.5
    assert r["cstate_pct_slower_than_promise_less_3d_30d"] == 0.5
    assert r["market_pct_slower_than_promise_14d"] == 0.5
    # KM over the 13 orders bought in [12-22, 02-20) (the canceled one too: censored, as it was open):
    # events at age 4 (1 of 13 at risk), 8 (1 of 12), 14 (6 of 11); the open ones censored -> S(18) = 5/13
    assert r["market_km_pct_slower_than_promise"] == pytest.approx(5 / 13)
    # due in [02-20, 02-27) and bought before 02-20: ontime_same_day, late_next_day (both delivered on/after
    # 02-20, so open at 02-20 00:00) and early (delivered 02-10)
    assert r["market_pct_open_due_7d"] == pytest.approx(2 / 3)
    assert r["cstate_pct_open_due_7d"] == pytest.approx(2 / 3)
    # at 2018-02-01 every recent SP delivery (4 and 14 days) beat a 19-day promise
    assert df.loc["late_next_day", "cstate_pct_slower_than_promise_30d"] == 0.0
