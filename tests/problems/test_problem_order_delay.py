"""Order delay: label rules, check points, in-flight and approval-time features (point in time),
the scoring population, the holiday calendar and the nowcast metrics."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from olist_ml import geo
from olist_ml.config import Settings
from olist_ml.problems import order_delay as od
from support.problem_rows import empty_rows, order, write_orders

ts = pd.Timestamp


def _rows() -> dict:
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
    carrier = {
        "h0": "2018-01-05 08:00:00",
        "h1": "2018-01-06 08:00:00",
        "h2": "2018-01-09 08:00:00",
        "h3": "2018-01-12 08:00:00",
        "h4": "2018-01-13 08:00:00",
        "h5": "2018-01-14 08:00:00",
        "c_slow": "2018-01-22 08:00:00",
        "late_next_day": "2018-02-08 14:00:00",
        "early": "2018-02-05 10:00:00",
        "open_shipped": "2018-02-09 10:00:00",
    }
    for o in rows["orders"]:
        o["order_delivered_carrier_date"] = carrier.get(o["order_id"])
    return rows


@pytest.fixture
def con():
    c = duckdb.connect()
    write_orders(c, _rows())
    geo.build_zip_coordinates(c)
    return c


def _append(con, rows: dict) -> None:
    for key, stg in (
        ("orders", "stg_orders"),
        ("order_items", "stg_order_items"),
        ("order_payments", "stg_order_payments"),
        ("customers", "stg_customers"),
    ):
        if not rows[key]:
            continue
        df = pd.DataFrame(rows[key]).astype(object)
        con.register("_more", df)
        cols = ", ".join(df.columns)
        con.execute(f"INSERT INTO {stg} ({cols}) SELECT {cols} FROM _more")
        con.unregister("_more")


def _abt(con, step: int = 3) -> pd.DataFrame:
    """The ABT's rows with check points every `step` days (3 here: more rows to test than the default)."""
    df = con.execute(od.abt_sql(od.delivery_end(con), step=step)).df()
    df["dt_ref"] = pd.to_datetime(df["dt_ref"])
    return df.sort_values(["order_id", "dt_ref"]).reset_index(drop=True)


def test_labels_day_resolution_and_population(con):
    """is_late = not delivered by the end of the estimated date (delivered later, or never: canceled
    too, the status being a snapshot); known, whatever it turns out to be, the day after the promise;
    labelled only when that day lies inside the observed deliveries (no selection on the outcome)."""
    rows = empty_rows()
    order(rows, "open_after_end", "s1", "2018-02-25 09:00:00", "2018-03-15", None, status="shipped")
    order(rows, "never_approved", "s2", "2018-02-06 09:00:00", "2018-02-26", None, status="canceled")
    rows["orders"][-1]["order_approved_at"] = None
    order(rows, "delivered_no_ts", "s1", "2018-02-03 09:00:00", "2018-02-22", None, status="delivered")
    _append(con, rows)
    end = od.delivery_end(con)
    assert end == date(2018, 3, 2)  # sparse deliveries: the day after the last one (2018-03-01 10:00)
    df = _abt(con)
    first = df.groupby("order_id").first()
    expect = {  # order: (is_late, label_known_at)
        "ontime_same_day": (0, ts("2018-02-21")),  # delivered on the estimated day (18:30): on time
        "late_next_day": (1, ts("2018-02-21")),  # late from the end of the estimated day, before the delivery
        "early": (0, ts("2018-02-26")),  # delivered 02-10, but the label is dated by the promise
        "c_slow": (1, ts("2018-02-06")),
        "open_shipped": (1, ts("2018-03-01")),  # never delivered, promise 02-28 passed inside the data
        "canceled": (1, ts("2018-03-01")),  # likewise: nobody knew at approval it would be canceled
    }
    for oid, (late, known) in expect.items():
        assert (first.loc[oid, "is_late"], first.loc[oid, "label_known_at"]) == (late, known), oid
    # promise ends after the observed deliveries: in the ABT (features known), label unknown -- even for
    # promise_after_end, delivered on time before the end: labelling it would keep the on-time orders of
    # its promise date and drop the late ones (selection on the outcome)
    for oid in ("open_after_end", "delivered_no_ts", "promise_after_end"):
        assert first.loc[oid, "is_late"] is pd.NA or pd.isna(first.loc[oid, "is_late"]), oid
        assert pd.isna(first.loc[oid, "label_known_at"]), oid
    assert "never_approved" not in set(df["order_id"])  # never approved: never scored, not in the ABT
    # every row of an order carries the order's label; labelled rows are before their label is known
    assert (df.groupby("order_id")["is_late"].nunique(dropna=False) == 1).all()
    lab = df[df["is_late"].notna()]
    assert (pd.to_datetime(lab["label_known_at"]) > lab["dt_ref"]).all()


def test_check_points(con):
    """A row at approval (the purchase date), then every `step` days and at each month start while
    the order is approved, undelivered and its promise not passed, inside the observed deliveries;
    each order's rows weigh 1 in all."""
    df = _abt(con)
    pts = df.groupby("order_id")["dt_ref"].apply(lambda s: [d.strftime("%m-%d") for d in s]).to_dict()
    assert od.STEP_DAYS == Settings().delay.step_days == 6  # the default; these rows use step 3
    # bought 02-01, delivered 02-21 08:00, promised 02-20: every 3 days up to the promise
    assert pts["late_next_day"] == ["02-01", "02-04", "02-07", "02-10", "02-13", "02-16", "02-19"]
    # delivered 02-10 09:00: in flight at 02-08 00:00, not at 02-11
    assert pts["early"] == ["02-02", "02-05", "02-08"]
    # never delivered, promised 02-28: up to the promise, not beyond (its label is known from 03-01)
    assert pts["open_shipped"] == ["02-05", "02-08", "02-11", "02-14", "02-17", "02-20", "02-23", "02-26"]
    # 03-01 is a check point (step) and a month start (once); 03-04 is after the observed deliveries
    assert pts["promise_after_end"] == ["02-20", "02-23", "02-26", "03-01"]
    # bought 01-16, delivered 01-20 12:00: in flight at 01-19 00:00, not at the month start 02-01
    assert pts["c_fast"] == ["01-16", "01-19"]
    # month starts: c_slow (bought 01-18, promised 02-05, delivered 02-10) is in flight at 02-01 00:00
    assert "02-01" in pts["c_slow"]
    assert df.groupby("order_id")["row_weight"].sum().round(12).eq(1.0).all()
    assert df.loc[df["order_id"] == "late_next_day", "row_weight"].iloc[0] == pytest.approx(1 / 7)
    assert not df.duplicated(["dt_ref", "order_id"]).any()


def test_inflight_state_features(con):
    df = _abt(con).set_index(["order_id", "dt_ref"])
    r = df.loc[("late_next_day", ts("2018-02-07"))]  # carrier takes it 02-08 14:00: not yet at 02-07 00:00
    assert r["days_in_flight"] == 6 and r["days_since_approval"] == 6 and r["days_left"] == 13
    assert r["handed_to_carrier"] == 0 and pd.isna(r["days_since_carrier"])
    assert r["days_past_shipping_limit"] == 6  # shipping limit 02-01 (the fixture: at purchase)
    r = df.loc[("late_next_day", ts("2018-02-10"))]
    assert r["handed_to_carrier"] == 1 and r["days_since_carrier"] == 2 and r["carrier_days_after_purchase"] == 7
    assert pd.isna(r["days_past_shipping_limit"]) and r["days_left"] == 10
    # business days in [02-10 Sat, 02-20): Wed 14, Thu 15, Fri 16, Mon 19 -- Carnival Mon/Tue 12/13 off
    assert r["business_days_left"] == 4 and r["business_days_left_state"] == 4
    r = df.loc[("late_next_day", ts("2018-02-01"))]  # the row at approval: the order as approved
    assert (r["days_in_flight"], r["days_since_approval"], r["handed_to_carrier"], r["days_left"]) == (0, 0, 0, 19)
    assert r["promised_days"] == 19 and r["promised_business_days"] == 11


def _oracle(base: pd.DataFrame, t: pd.Timestamp, row: pd.Series) -> dict[str, float]:
    """Brute force of some in-flight context features of `row` at check point t, from the orders table."""
    b = base.copy()
    dd = b["delivered_at"].dt.normalize()
    done = b[b["delivered_at"].notna() & (dd < t)]
    st = done[
        (done["customer_state"] == row["customer_state"])
        & (done["delivered_at"].dt.normalize() >= t - pd.Timedelta(days=30))
    ]
    age = (st["delivered_at"].dt.normalize() - st["purchase_ts"].dt.normalize()).dt.days
    p = row["purchase_ts"].normalize()
    age_now = (t - p).days
    age_late = (row["estimated_at"].normalize() - p).days + 1
    out = {
        "now_cstate_pct_late_30d": float((st["delivered_at"].dt.normalize() > st["estimated_at"].dt.normalize()).mean())
        if len(st)
        else np.nan,
        "now_cstate_p_late_given_age": (
            float((age >= age_late).sum() / (age >= age_now).sum()) if (age >= age_now).sum() else np.nan
        ),
    }
    recent = b[(b["purchase_ts"] >= t - pd.Timedelta(days=45)) & (b["purchase_ts"] < t)]
    over = (recent["estimated_at"].dt.normalize() < t) & (recent["delivered_at"].isna() | (recent["delivered_at"] >= t))
    out["now_market_pct_overdue_45d"] = float(over.mean()) if len(recent) else np.nan
    return out


def test_inflight_context_equals_a_brute_force_oracle(con):
    base = con.execute(
        "SELECT o.order_id, o.order_purchase_timestamp AS purchase_ts, "
        "o.order_delivered_customer_date AS delivered_at, o.order_estimated_delivery_date AS estimated_at, "
        "c.customer_state FROM stg_orders o JOIN stg_customers c USING (customer_id)"
    ).df()
    df = _abt(con)
    checked = 0
    for _, r in df[df["days_in_flight"] > 0].iterrows():
        want = _oracle(base, r["dt_ref"], r)
        for k, v in want.items():
            got = r[k]
            assert (pd.isna(got) and np.isnan(v)) or got == pytest.approx(v), (r["order_id"], r["dt_ref"], k, got, v)
        checked += 1
    assert checked > 20
    # the conditional rate is informative: 0, 1 and in between among the rows checked
    # (promise_after_end at 03-01, 9 days old, 19 to its promise: every SP delivery older than 9 days took >= 19)
    r = df[(df["order_id"] == "promise_after_end") & (df["dt_ref"] == ts("2018-03-01"))].iloc[0]
    assert r["now_cstate_p_late_given_age"] == 1.0
    v = df.loc[df["days_in_flight"] > 0, "now_cstate_p_late_given_age"]
    assert (v == 0).any() and ((v > 0) & (v < 1)).any()


def test_inflight_features_ignore_later_events(con):
    """Facts on/after a check point (a hand-over, deliveries, new orders) leave its rows unchanged."""
    t0 = ts("2018-02-15")
    before = _abt(con)
    rows = empty_rows()
    for i in range(5):  # later orders, delivered late on the same route, from the check point on
        order(rows, f"later{i}", "s1", "2018-02-15 00:00:00", "2018-02-17", "2018-02-24 10:00:00")
    _append(con, rows)
    con.execute(
        "UPDATE stg_orders SET order_delivered_carrier_date = TIMESTAMP '2018-02-15 00:00:00' "
        "WHERE order_id = 'canceled'"
    )  # handed over exactly at 02-15 00:00: not before 02-15
    geo.build_zip_coordinates(con)
    after = _abt(con)
    keys = ["order_id", "dt_ref"]
    feats = [c for c in before.columns if c not in ("row_weight", "label_known_at", "is_late")]
    a = before[before["dt_ref"] <= t0].set_index(keys).sort_index()[feats[2:]]
    b = after[after["dt_ref"] <= t0].set_index(keys).sort_index().loc[a.index][feats[2:]]
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    # the check covers in-flight context that is filled
    inflight = a[a["days_in_flight"] > 0]
    assert len(inflight) > 10 and inflight["now_market_pct_overdue_45d"].notna().all()
    # ... while a later check point does see them
    got = after.set_index(keys).loc[("canceled", ts("2018-02-17"))]
    assert got["handed_to_carrier"] == 1 and got["days_since_carrier"] == 2


def test_scoring_population_is_open_orders_at_their_row(con):
    """Open at D: approved before D, not delivered before D, promise not passed (no order_status: the
    canceled order is open while nothing closes it). Each scored at its row at D, which is the ABT's
    row when D is one of its check points."""
    rows = empty_rows()
    order(rows, "overdue_open", "s1", "2018-01-20 09:00:00", "2018-02-10", None, status="shipped")
    _append(con, rows)
    s = Settings(home="/nonexistent")
    f = od.scoring_frame(con, s, date(2018, 2, 15))
    assert set(f["order_id"]) == {"ontime_same_day", "late_next_day", "open_shipped", "canceled"}
    assert (pd.to_datetime(f["dt_ref"]) == ts("2018-02-15")).all()
    # 'early' was delivered 02-10; 'overdue_open' was promised 02-10: its label is known (late), not scored
    abt = _abt(con)
    f = od.scoring_frame(con, s, date(2018, 3, 1)).set_index("order_id")
    assert list(f.index) == ["promise_after_end"]
    row = abt[(abt["dt_ref"] == ts("2018-03-01")) & (abt["order_id"] == "promise_after_end")].set_index("order_id")
    cols = [c for c in f.columns if c != "dt_ref"]
    assert {"row_weight", "label_known_at", "is_late", "approved_at"}.isdisjoint(cols) and "days_left" in cols
    pd.testing.assert_frame_equal(f[cols], row[cols], check_dtype=False)


def test_label_known_at_and_weight_are_not_features():
    p = od.PROBLEM
    for c in ("label_known_at", "row_weight"):
        assert c in p._non_features()
    assert p.weight_column == "row_weight"
    from olist_ml.config import Settings

    assert p.split_of(Settings()).purge_days == od.LABEL_PURGE_DAYS


def test_purge_covers_the_label_delay_on_the_real_data(real_data_dir, tmp_path):
    """The fallback purge is the p99.9 of (label_known_at - purchase) on the real data, rounded up."""
    from olist_ml import ingest
    from olist_ml.warehouse import session

    s = Settings(home=tmp_path / "home")
    ingest.ingest(real_data_dir, s)
    with session(s, read_only=True) as c:
        _, known_at = od.label_exprs("order_delivered_customer_date", "order_estimated_delivery_date")
        days = (
            c.execute(f"""
            SELECT epoch({known_at} - order_purchase_timestamp) / 86400.0 FROM stg_orders
            WHERE order_purchase_timestamp < DATE '2018-08-01' AND order_estimated_delivery_date IS NOT NULL
              AND (order_approved_at IS NOT NULL OR order_delivered_customer_date IS NOT NULL)
              AND order_id IN (SELECT order_id FROM stg_order_items)""")
            .df()
            .iloc[:, 0]
        )
    assert len(days) > 90_000
    p999 = days.quantile(0.999)
    assert od.LABEL_PURGE_DAYS - 1 < p999 <= od.LABEL_PURGE_DAYS, p999


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
    """Appending events after an order's purchase date leaves its approval-time features unchanged."""
    before = con.execute(od.orders_sql()).df().set_index("order_id").sort_index()
    rows = empty_rows()
    # later orders, delivered late, on the same route and day as the test orders' purchase day
    for i in range(5):
        order(rows, f"later{i}", "s1", "2018-02-01 23:00:00", "2018-02-03", "2018-02-09 10:00:00")
        order(rows, f"later_b{i}", "s2", "2018-02-15 10:00:00", "2018-02-16", "2018-02-25 10:00:00")
    _append(con, rows)
    geo.build_zip_coordinates(con)
    after = con.execute(od.orders_sql()).df().set_index("order_id").sort_index()
    # every appended event happens on/after 2018-02-01 (same-day purchases included): the orders
    # bought up to that day must not see any of them
    ids = before.index[pd.to_datetime(before["purchase_ts"]) < pd.Timestamp("2018-02-02")]
    assert {"ontime_same_day", "late_next_day"} <= set(ids)
    pd.testing.assert_frame_equal(before.loc[ids], after.loc[ids], check_dtype=False)
    # the check covers the context columns (they are filled for the compared orders)
    ctx = [
        "route_p90_delivery_days_90d",
        "route_promise_slack_p90_days",
        "cstate_p90_delivery_days_30d",
        "market_pct_delivered_10d_recent",
        "market_pct_delivered_7d_recent",
        "cstate_pct_delivered_10d_recent",
        "market_backlog_ratio_14d",
        "route_pct_late_90d",
        "market_pct_late_14d",
        "cstate_pct_slower_than_promise_30d",
        "market_pct_slower_than_promise_14d",
        "market_km_pct_slower_than_promise",
        "market_pct_open_due_7d",
        "cstate_pct_open_due_7d",
    ]
    assert before.loc[["ontime_same_day", "late_next_day"], ctx].notna().all().all()
    # ... while an order bought after those late deliveries does see them
    assert after.loc["later_b0", "route_pct_late_90d"] > 0


def test_holiday_calendar():
    """Brazil's holidays from the maintained `holidays` package, pinned on known dates."""
    h = set(od.brazil_holidays(2018, 2026))
    # Carnival Monday/Tuesday, Good Friday and Corpus Christi follow Easter (2018-04-01, 2026-04-05)
    for d in (
        "2018-02-12",
        "2018-02-13",
        "2018-03-30",
        "2018-04-21",
        "2018-05-31",
        "2026-02-16",
        "2026-02-17",
        "2026-04-03",
        "2026-06-04",
        "2018-09-07",
        "2018-11-15",
        "2018-12-25",
        "2018-01-01",
    ):
        assert date.fromisoformat(d) in h, d
    assert date(2018, 2, 14) not in h and date(2018, 4, 1) not in h  # Ash Wednesday, Easter Sunday
    assert len(od.brazil_holidays(2018, 2018)) == 12
    assert date(2018, 11, 20) not in h and date(2025, 11, 20) in h  # national only from 2024 on
    # state holidays: Sao Paulo's Constitutionalist Revolution (07-09), Rio's Saint George (04-23)
    sp, rj = set(od.brazil_holidays(2018, 2018, state="SP")), set(od.brazil_holidays(2018, 2018, state="RJ"))
    assert date(2018, 7, 9) in sp and date(2018, 7, 9) not in h and date(2018, 7, 9) not in rj
    assert date(2018, 4, 23) in rj and date(2018, 4, 23) not in sp
    assert set(od.brazil_holidays(2018, 2018)) <= sp
    # the dates the issue names: Tiradentes 2017-04-21 (national), SP's 2017-07-09; Carnival Tuesday
    # 2018-02-13 is only an optional day in `holidays` (not a public holiday) but closes banks and the
    # post, so the calendar adds it
    import holidays

    assert date(2017, 4, 21) in od.brazil_national_holidays(2017, 2017)
    assert date(2017, 7, 9) in od.brazil_holidays(2017, 2017, state="SP")
    assert date(2017, 7, 9) not in od.brazil_national_holidays(2017, 2017)
    assert date(2018, 2, 13) not in holidays.country_holidays("BR", years=2018)
    assert date(2018, 2, 13) in h
    # the SQL calendar holds exactly these days: the national one under '', each state's under its code
    got = duckdb.connect().execute(od.holidays_sql()).df()
    got["day"] = pd.to_datetime(got["day"]).dt.date
    assert set(got.loc[got["state"] == "", "day"]) == set(od.brazil_holidays())
    assert set(got.loc[got["state"] == "SP", "day"]) == set(od.brazil_holidays(state="SP"))
    assert set(got["state"]) == {"", *od.UF}


def test_promise_calendar_features(con):
    rows = empty_rows()  # an RJ customer across Saint George's day (04-23, an RJ holiday, a Monday)
    order(
        rows,
        "rj_april",
        "s1",
        "2018-04-18 10:00:00",
        "2018-04-27",
        None,
        status="shipped",
        customer_state="RJ",
        zip_="20000",
    )
    _append(con, rows)
    df = con.execute(od.orders_sql()).df().set_index("order_id")
    r = df.loc["late_next_day"]  # bought Thu 2018-02-01, promised Tue 2018-02-20; Carnival Mon/Tue 02-12/13
    # Mon-Fri in [02-01, 02-20): 2 + 5 + 5 + 1 = 13 weekdays, less the two Carnival days
    assert r["promised_business_days"] == 11
    assert r["n_holidays_to_estimate"] == 2 and r["n_state_holidays_to_estimate"] == 0
    assert df.loc["h0", "n_holidays_to_estimate"] == 1  # bought 2018-01-01 (a holiday), due 01-20
    r = df.loc["rj_april"]  # [04-18 Wed, 04-27 Fri): 7 weekdays; Tiradentes (04-21) is a Saturday
    assert r["promised_business_days"] == 7 and r["n_holidays_to_estimate"] == 1
    assert r["n_state_holidays_to_estimate"] == 1
    # in flight at 04-21 (after the observed deliveries, so scored rather than in the ABT)
    r = od.scoring_frame(con, Settings(home="/nonexistent"), date(2018, 4, 21)).set_index("order_id").loc["rj_april"]
    # [04-21 Sat, 04-27): Mon 23 (RJ only), Tue-Thu
    assert r["business_days_left"] == 4 and r["business_days_left_state"] == 3


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


def test_nowcast_metrics():
    """Per month start: ROC AUC over the orders open then (rows in flight), beside days-left alone; the
    rows at approval measure the new orders."""
    f = pd.DataFrame(
        {
            "dt_ref": pd.to_datetime(["2018-06-01"] * 4 + ["2018-06-04"] * 2 + ["2018-07-01"] * 4 + ["2018-06-01"] * 2),
            "days_in_flight": [3, 5, 8, 2, 4, 4, 1, 6, 9, 2, 0, 0],
            "days_left": [10, 2, 1, 20, 3, 4, 5, 4, 7, 8, 20, 10],
            "promise_slack_days": [0] * 10 + [5.0, -2.0],
            "is_late": [0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1],
        }
    )
    p = np.array([0.1, 0.9, 0.8, 0.2, 0.5, 0.5, 0.15, 0.2, 0.9, 0.1, 0.2, 0.7])
    m = od.nowcast_metrics(f, f["is_late"].to_numpy(), p, Settings(home="/nonexistent"))
    assert m["roc_auc_open_2018_06"] == 1.0 and m["roc_auc_open_days_left_2018_06"] == 1.0  # 4 rows at 06-01
    # 07-01: late = {1 (p .15, left 5), 9 (p .9, left 7)} vs {6 (p .2, left 4), 2 (p .1, left 8)}: the model
    # orders 3 of 4 pairs right (.15 < .2), days-left 2 of 4
    assert m["roc_auc_open_2018_07"] == pytest.approx(0.75)
    assert m["roc_auc_open_days_left_2018_07"] == pytest.approx(0.5)
    assert m["roc_auc_open_mean"] == pytest.approx(0.875) and m["roc_auc_open_min_gain"] == pytest.approx(0.0)
    assert m["roc_auc_new_orders"] == 1.0 and m["roc_auc_new_orders_promise_slack"] == 1.0
    assert "roc_auc_open_2018_06_04" not in m and not any("06_04" in k for k in m)


def test_row_weights_reach_the_estimator():
    """`Problem.weight_column` (generic hook): every fit passes the column as sample weights."""
    from olist_ml.ml import candidates as cands
    from olist_ml.ml.train import _fit

    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    y = (x + rng.normal(size=n) > 0).astype(int)
    w = np.where(x > 1, 50.0, 1.0)
    df = pd.DataFrame({"x": x, "is_late": y, "row_weight": w})
    build = lambda: cands.CANDIDATES["logreg"].build([], ["x"], {"C": 1.0, "log_transform": False}, 0, 1)  # noqa: E731
    got = _fit(od.PROBLEM, build(), df)
    want = build().fit(df, df["is_late"], model__sample_weight=w)
    plain = build().fit(df, df["is_late"])
    np.testing.assert_allclose(got[-1].coef_, want[-1].coef_)
    assert not np.allclose(got[-1].coef_, plain[-1].coef_)
