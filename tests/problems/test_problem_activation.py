"""Seller activation: label rules (half-open 90-day horizon, unlabelled past the data end),
missing marketing tables, scoring population, bootstrap interval."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from olist_ml.config import Settings
from olist_ml.errors import NotReadyError
from olist_ml.problems import activation as act
from support.problem_rows import create_stg, empty_rows, order, write_orders


def _deal(mql, seller, won, **kw):
    return {
        "mql_id": mql,
        "seller_id": seller,
        "sdr_id": "sdr1",
        "sr_id": "sr1",
        "won_date": won,
        "business_segment": kw.get("segment", "pet"),
        "lead_type": "online_medium",
        "lead_behaviour_profile": "cat",
        "has_company": True,
        "has_gtin": None,
        "average_stock": "5-20",
        "business_type": "reseller",
        "declared_product_catalog_size": 10.0,
        "declared_monthly_revenue": 0.0,
    }


@pytest.fixture
def con():
    c = duckdb.connect()
    rows = empty_rows()
    # sellers' sales (first sale relative to won_date 2018-01-01 00:00)
    order(rows, "o_a", "a", "2018-03-31 23:59:00", "2018-04-20", "2018-04-10")  # day 89.99: inside
    order(rows, "o_b", "b", "2018-04-01 00:00:00", "2018-04-20", "2018-04-10")  # exactly day 90: outside
    order(rows, "o_c_before", "c", "2017-12-15 10:00:00", "2018-01-10", "2018-01-05")  # before won: ignored
    order(rows, "o_e", "e", "2018-05-10 10:00:00", "2018-05-20", "2018-05-15")  # sold after won (unlabelled)
    order(rows, "o_end", "z", "2018-06-30 12:00:00", "2018-07-20", None, status="shipped")  # data end
    write_orders(c, rows, sellers=("a", "b", "c", "e", "z"))
    create_stg(
        c,
        "closed_deals",
        [
            _deal("m_a", "a", "2018-01-01 00:00:00"),
            _deal("m_b", "b", "2018-01-01 00:00:00"),
            _deal("m_c", "c", "2018-01-01 00:00:00"),
            # horizon ends 2018-07-01 10:00 > data end 2018-06-30 12:00: unlabelled, never sold -> scored
            _deal("m_d", "d", "2018-04-02 10:00:00"),
            # unlabelled but already sold: known activated, not scored
            _deal("m_e", "e", "2018-04-20 10:00:00"),
            # horizon ends 2018-06-30 12:00, before the observed end 2018-07-01 (the day after the
            # last order: this sparse fixture has no thin tail): labelled
            _deal("m_f", "f", "2018-04-01 12:00:00"),
        ],
    )
    create_stg(
        c,
        "marketing_qualified_leads",
        [
            {"mql_id": m, "first_contact_date": "2017-12-01", "landing_page_id": "lp1", "origin": "organic_search"}
            for m in ("m_a", "m_b", "m_c", "m_d", "m_e", "m_f")
        ],
    )
    return c


def test_labels(con, tmp_path):
    s = Settings(home=tmp_path)
    assert act.build_abt(con, s) == 6
    got = dict(con.execute("SELECT mql_id, activated FROM abt_seller_activation").fetchall())
    assert got == {"m_a": 1, "m_b": 0, "m_c": 0, "m_d": None, "m_e": None, "m_f": 0}
    r = con.execute(
        "SELECT days_first_contact_to_win, won_month, origin, has_company, dt_ref "
        "FROM abt_seller_activation WHERE mql_id = 'm_a'"
    ).fetchall()[0]
    assert r[0] == 31 and r[1] == 1 and r[2] == "organic_search" and r[3] == "true" and str(r[4]) == "2018-01-01"
    # when each label became known: the first sale inside the horizon, else the horizon's end
    known = {
        m: (None if t is None else str(t))
        for m, t in con.execute("SELECT mql_id, label_known_at FROM abt_seller_activation").fetchall()
    }
    assert known == {
        "m_a": "2018-03-31 23:59:00",
        "m_b": "2018-04-01 00:00:00",
        "m_c": "2018-04-01 00:00:00",
        "m_d": None,
        "m_e": None,
        "m_f": "2018-06-30 12:00:00",
    }
    cat, num = act.PROBLEM.features_of(con)
    assert "seller_id" not in cat + num and "activated" not in num and "label_known_at" not in cat + num
    assert "label_known_at" in act.PROBLEM.exclude_columns
    assert {"origin", "sdr_id", "sr_id", "business_segment"} <= set(cat)
    assert {"declared_monthly_revenue", "days_first_contact_to_win", "won_month"} <= set(num)


def test_horizon_is_configurable(con, tmp_path):
    act.build_abt(con, Settings(home=tmp_path).with_(activation__horizon_days=100))
    got = dict(con.execute("SELECT mql_id, activated FROM abt_seller_activation").fetchall())
    assert got["m_b"] == 1  # day 90 is inside a 100-day horizon
    assert got["m_f"] is None  # 2018-04-01 + 100 days > data end


def test_scoring_population(con, tmp_path):
    s = Settings(home=tmp_path)
    df = act.scoring_frame(con, s, None)
    assert list(df["mql_id"]) == ["m_d"]
    assert str(df["dt_ref"].iloc[0]) == "2018-07-01"
    assert "activated" not in df.columns and "label_known_at" not in df.columns
    # scoring a past date: deals won before it whose horizon is open and who have not sold yet
    past = act.scoring_frame(con, s, "2018-03-01")
    # m_c's only sale was before it was won, so it is still open; the others were not won yet
    assert set(past["mql_id"]) == {"m_a", "m_b", "m_c"}
    # at 2018-04-01 00:00 the 90-day horizons of the 2018-01-01 deals have just closed
    assert set(act.scoring_frame(con, s, "2018-04-01")["mql_id"]) == set()
    # once m_e sold (2018-05-10) it drops out; m_d and m_f are still open
    assert set(act.scoring_frame(con, s, "2018-05-11")["mql_id"]) == {"m_d", "m_f"}
    assert set(act.scoring_frame(con, s, "2018-05-10")["mql_id"]) == {"m_d", "m_e", "m_f"}


def test_missing_marketing_tables(con, tmp_path):
    con.execute("DROP TABLE stg_closed_deals")
    with pytest.raises(NotReadyError, match="marketing-funnel files .*olist_closed_deals_dataset.csv"):
        act.build_abt(con, Settings(home=tmp_path))


def test_bootstrap_auc():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = y * 0.3 + rng.uniform(0, 1, 300)
    ci = act.bootstrap_auc(y, p, n_boot=300, seed=0)
    assert ci.low < ci.auc < ci.high and 0.5 < ci.auc < 1
    assert ci.n == 300 and ci.n_boot == 300
    narrow = act.bootstrap_auc(np.r_[y, y, y, y], np.r_[p, p, p, p], n_boot=300, seed=0)
    assert (narrow.high - narrow.low) < (ci.high - ci.low)  # 4x the rows: a narrower interval
    perfect = act.bootstrap_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_boot=50)
    assert perfect.auc == 1.0 and perfect.low == 1.0


def test_labels_stop_at_the_observed_end_not_at_a_thin_tail(tmp_path):
    """Steady daily orders until 2018-02-28, then stray orders until 2018-05-20: the observed
    end is 2018-03-01 (olist_ml.warehouse.observed_end), so a deal whose 90 days end after it is
    unlabelled even though max(order_purchase_timestamp) lies later; the scoring date defaults to it."""
    from datetime import date, timedelta

    from olist_ml.warehouse import observed_end

    c = duckdb.connect()
    rows = empty_rows()
    start = date(2018, 1, 20)
    for i in range(40):  # 2018-01-20 .. 2018-02-28, 12 orders a day by seller s
        d = start + timedelta(days=i)
        for j in range(12):
            order(rows, f"o{i}_{j}", "s", f"{d} 10:00:00", f"{d + timedelta(days=20)}", f"{d + timedelta(days=5)}")
    order(rows, "stray1", "s", "2018-04-10 10:00:00", "2018-05-01", None, status="canceled")
    order(rows, "stray2", "late_seller", "2018-05-20 10:00:00", "2018-06-01", None, status="canceled")
    write_orders(c, rows, sellers=("s", "late_seller", "never"))
    create_stg(
        c,
        "closed_deals",
        [
            _deal("m_in", "x", "2017-11-20 00:00:00"),  # + 90 d = 2018-02-18: labelled, never sold -> 0
            _deal("m_edge", "x2", "2017-12-01 00:00:00"),  # + 90 d = 2018-03-01 00:00 = the end: labelled
            _deal("m_tail", "late_seller", "2018-01-10 00:00:00"),  # + 90 d = 2018-04-10 > end: unlabelled
        ],
    )
    create_stg(
        c,
        "marketing_qualified_leads",
        [
            {"mql_id": m, "first_contact_date": "2017-10-01", "landing_page_id": "lp1", "origin": "paid_search"}
            for m in ("m_in", "m_edge", "m_tail")
        ],
    )
    assert observed_end(c) == date(2018, 3, 1)
    assert c.execute("SELECT max(order_purchase_timestamp) FROM stg_orders").fetchall()[0][0].date() == date(
        2018, 5, 20
    )
    act.build_abt(c, Settings(home=tmp_path))
    got = dict(c.execute("SELECT mql_id, activated FROM abt_seller_activation").fetchall())
    assert got == {"m_in": 0, "m_edge": 0, "m_tail": None}
    df = act.scoring_frame(c, Settings(home=tmp_path), None)
    # at 2018-03-01 the late seller's stray sale (2018-05-20) is not known yet: still to score
    assert list(df["mql_id"]) == ["m_tail"] and str(df["dt_ref"].iloc[0]) == "2018-03-01"


def test_too_few_labelled_months_is_a_stated_skip_with_the_date_it_will_have_enough():
    """Early extracts (the real data in April 2018): labelled deals in one or two months only. Not a
    failure (`run` skips it, exit 0): a NotReadyError naming when the third month's first label arrives."""
    import datetime as dt

    import pandas as pd
    import pytest

    from olist_ml.config import Settings
    from olist_ml.errors import NotReadyError
    from olist_ml.ml.data import split_protocol
    from olist_ml.problems import activation

    won = pd.to_datetime(["2018-01-10", "2018-01-20", "2018-02-05", "2018-02-25", "2018-03-03", "2018-03-09"])
    abt = pd.DataFrame(
        {
            "dt_ref": won.date,
            "mql_id": [f"m{i}" for i in range(6)],
            "won_date": won,
            "activated": pd.array([1, 0, 1, 0, None, None], dtype="Int64"),
        }
    )
    with pytest.raises(NotReadyError) as e:
        split_protocol(abt, activation.PROBLEM, Settings())
    msg = str(e.value)
    assert "labelled rows in only 2 month(s)" in msg
    # the first March deal (won 2018-03-03) is labelled 90 days later
    assert f"enough from about {dt.date(2018, 3, 3) + dt.timedelta(days=90)}" in msg, msg
