"""Feature store: brute-force oracle == SQL, point-in-time contract, backfill semantics, catalog, CLI.

The fixture is a tiny randomized warehouse (stg_* tables with the schema.py types) that covers
the edge cases: multi-seller orders, repeat customers, canceled/open/late orders, reviews with
no creation date or no answer, reviews answered days after they were created, facts exactly at a
dt_ref midnight, a seller inactive longer than 180 days.
The oracle below loops over the fixture rows in plain Python; it knows nothing of the SQL.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from olist_ml.config import Settings
from olist_ml.errors import InputError, MissingStepError, UnknownNameError
from olist_ml.features import (
    FEATURE_TABLES,
    as_of,
    available_dt_refs,
    build,
    catalog,
    compute,
    feature_columns,
    feature_frame_sql,
)
from support.feature_rows import DT_REFS, EDGE_DT_REF, REGION, append_rows, make_rows, write_warehouse


@pytest.fixture
def wh(tmp_path: Path) -> tuple[Settings, dict]:
    rows = make_rows()
    s = Settings(home=tmp_path / "home", threads=2)
    s.warehouse.parent.mkdir(parents=True, exist_ok=True)
    write_warehouse(s.warehouse, rows)
    return s, rows


# ------------------------------------------------------------------------------------------
# brute-force oracle
# ------------------------------------------------------------------------------------------
def _mean(xs):
    return sum(xs) / len(xs) if xs else None


def oracle(rows: dict, d: dt.date, windows=(30, 90, 180)) -> dict[str, dict[str, object]]:
    """{seller_id: {feature: value}} at dt_ref d, by looping over the fixture rows."""
    D = dt.datetime.combine(d, dt.time())
    orders = {o[0]: o for o in rows["orders"]}
    cust = {c[0]: c for c in rows["customers"]}
    prod = {p[0]: p for p in rows["products"]}
    W = max(windows)
    out: dict[str, dict] = {}
    sellers = sorted({i[3] for i in rows["order_items"]})
    for s in sellers:
        its = [i for i in rows["order_items"] if i[3] == s]
        by_order: dict[str, list] = {}
        for i in its:
            by_order.setdefault(i[0], []).append(i)
        past = {oid: orders[oid] for oid in by_order if orders[oid][3] < D}
        inw = lambda ts, w: D - dt.timedelta(days=w) <= ts < D  # noqa: E731
        if not any(inw(o[3], W) for o in past.values()):
            continue  # not in the spine
        f: dict[str, object] = {}
        sale_dates = sorted({o[3].date() for o in past.values()})
        f["days_since_last_sale"] = (d - sale_dates[-1]).days
        f["days_since_first_sale"] = (d - sale_dates[0]).days
        f["n_orders_lifetime"] = len(past)
        f["gmv_lifetime"] = sum(i[5] for oid in past for i in by_order[oid])
        first_seen: dict[str, dt.datetime] = {}
        for _oid, o in sorted(past.items(), key=lambda kv: (kv[1][3], kv[0])):
            first_seen.setdefault(cust[o[1]][1], o[3])
        f["n_customers_lifetime"] = len(first_seen)
        for w in windows:
            wo = {oid: o for oid, o in past.items() if inw(o[3], w)}
            wi = [i for oid in wo for i in by_order[oid]]
            prices = [i[5] for i in wi]
            f[f"n_orders_{w}d"] = len(wo)
            f[f"n_items_{w}d"] = len(wi)
            f[f"gmv_{w}d"] = sum(prices)
            f[f"avg_ticket_{w}d"] = sum(prices) / len(wo) if wo else None
            f[f"std_item_price_{w}d"] = (
                math.sqrt(sum((p - _mean(prices)) ** 2 for p in prices) / (len(prices) - 1))
                if len(prices) > 1
                else None
            )
            days = sorted({o[3].date() for o in wo.values()})
            f[f"n_sale_days_{w}d"] = len(days)
            f[f"avg_days_between_sales_{w}d"] = (days[-1] - days[0]).days / (len(days) - 1) if len(days) > 1 else None
            if 2 * w <= W:
                prev = [o for o in past.values() if D - dt.timedelta(days=2 * w) <= o[3] < D - dt.timedelta(days=w)]
                a, b = len(wo), len(prev)
                f[f"orders_trend_{w}d"] = (a - b) / (a + b) if a + b else None
            # reviews known (answered) before D on the window's orders
            rv = [x for x in rows["order_reviews"] if x[1] in wo and x[6] is not None and x[6] < D]
            sc = [x[2] for x in rv]
            f[f"n_reviews_{w}d"] = len(rv)
            f[f"avg_review_score_{w}d"] = _mean(sc)
            f[f"min_review_score_{w}d"] = min(sc) if sc else None
            f[f"max_review_score_{w}d"] = max(sc) if sc else None
            f[f"pct_reviews_low_{w}d"] = sum(1 for x in sc if x <= 2) / len(sc) if sc else None
            f[f"pct_reviews_with_comment_{w}d"] = sum(1 for x in rv if x[4] and x[4].strip()) / len(rv) if rv else None
            f[f"pct_orders_reviewed_{w}d"] = len({x[1] for x in rv}) / len(wo) if wo else None
            # customers
            uids = {cust[o[1]][1] for o in wo.values()}
            f[f"n_customers_{w}d"] = len(uids)
            f[f"n_customer_states_{w}d"] = len({cust[o[1]][4] for o in wo.values()})
            f[f"pct_orders_region_se_{w}d"] = (
                sum(1 for o in wo.values() if REGION[cust[o[1]][4]] == "se") / len(wo) if wo else None
            )
            rep = 0
            for oid, o in wo.items():
                uid = cust[o[1]][1]
                if any(cust[p[1]][1] == uid and (p[3], p[0]) < (o[3], oid) for p in past.values()):
                    rep += 1
            f[f"pct_orders_repeat_customer_{w}d"] = rep / len(wo) if wo else None
            # delivery (facts known before D; the status is never read)
            late = decided = delivered = undelivered = 0
            delays = []
            handed = handed_late = 0
            for oid, o in wo.items():
                carrier, deliv, est = o[5], o[6], o[7]
                delivered_before = deliv is not None and deliv < D
                not_by_estimate = deliv is None or deliv.date() > est.date()  # delivered later, or never
                if delivered_before:
                    delivered += 1
                    delays.append((deliv.date() - est.date()).days)
                if not_by_estimate and est.date() < d:  # known the day after the estimated date
                    decided += 1
                    late += 1
                    undelivered += not delivered_before
                elif delivered_before:  # on time
                    decided += 1
                if carrier is not None and carrier < D:
                    handed += 1
                    handed_late += carrier > min(i[4] for i in by_order[oid])
            f[f"n_orders_delivered_{w}d"] = delivered
            f[f"n_orders_late_{w}d"] = late
            f[f"pct_orders_late_{w}d"] = late / decided if decided else None
            f[f"avg_delivery_delay_days_{w}d"] = _mean(delays)
            f[f"n_orders_undelivered_past_estimate_{w}d"] = undelivered
            f[f"pct_handover_late_{w}d"] = handed_late / handed if handed else None
            f[f"avg_freight_per_item_{w}d"] = _mean([i[6] for i in wi])
            # payments apportioned by the seller's share of item value
            value = voucher = 0.0
            for oid in wo:
                pays = [p for p in rows["order_payments"] if p[0] == oid]
                allp = [i[5] for i in rows["order_items"] if i[0] == oid]
                share = sum(i[5] for i in by_order[oid]) / sum(allp)
                value += round(sum(p[4] for p in pays) * share, 2) if pays else 0.0
                voucher += round(sum(p[4] for p in pays if p[2] == "voucher") * share, 2) if pays else 0.0
            f[f"payment_value_{w}d"] = value
            f[f"pct_value_voucher_{w}d"] = voucher / value if value else None
            # products
            f[f"n_products_{w}d"] = len({i[2] for i in wi})
            f[f"n_categories_{w}d"] = len({prod[i[2]][9] or prod[i[2]][1] for i in wi} - {None})
            ws = [prod[i[2]][5] for i in wi if prod[i[2]][5] is not None]
            f[f"avg_weight_g_{w}d"] = _mean(ws)
        out[s] = f
    return out


def _close(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NA:
        return b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA
    if b is None or b is pd.NA or (isinstance(b, float) and math.isnan(b)):
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)


def sql_rows(settings: Settings, dates: list[dt.date]) -> dict[tuple[dt.date, str], dict]:
    con = duckdb.connect(str(settings.warehouse))
    try:
        frames = [compute(con, t, dates) for t in FEATURE_TABLES]
    finally:
        con.close()
    out: dict[tuple, dict] = {}
    for df in frames:
        for rec in df.to_dict("records"):
            key = (pd.Timestamp(rec.pop("dt_ref")).date(), rec.pop("seller_id"))
            out.setdefault(key, {}).update(rec)
    return out


# ------------------------------------------------------------------------------------------
# oracle == SQL
# ------------------------------------------------------------------------------------------
def test_oracle_equals_sql_on_randomized_fixture(wh):
    settings, rows = wh
    got = sql_rows(settings, DT_REFS)
    checked = 0
    for d in DT_REFS:
        exp = oracle(rows, d)
        keys = {s for (dd, s) in got if dd == d}
        assert keys == set(exp), f"spine differs at {d}"
        for s, feats in exp.items():
            row = got[(d, s)]
            for name, v in feats.items():
                assert _close(v, row[name]), f"{name} at {d} for {s}: oracle {v!r} != sql {row[name]!r}"
                checked += 1
    assert checked > 2000  # the fixture really exercises the features
    # the sample is broad: every table contributes checked columns
    sample = set(next(iter(oracle(rows, DT_REFS[5]).values())))
    for t in FEATURE_TABLES:
        assert sample & {d.name for d in catalog(table=t)}, t


def test_required_features_present_with_meaning(wh):
    settings, rows = wh
    names = {d.name for d in catalog()}
    for n in ("n_orders_180d", "gmv_180d", "days_since_last_sale", "days_since_first_sale", "avg_review_score_180d"):
        assert n in names
    got = sql_rows(settings, [EDGE_DT_REF])
    # s0 has an order a second before EDGE_DT_REF -> last sale was "yesterday"
    assert got[(EDGE_DT_REF, "s0")]["days_since_last_sale"] == 1


def test_event_at_dt_ref_midnight_is_excluded(wh):
    settings, rows = wh
    d = EDGE_DT_REF
    got = sql_rows(settings, [d, d + dt.timedelta(days=1)])
    exp_d = oracle(rows, d)["s0"]
    exp_next = oracle(rows, d + dt.timedelta(days=1))["s0"]
    # order o0000 sits exactly at d 00:00: not in d's features, in d+1's
    assert exp_next["n_orders_30d"] == exp_d["n_orders_30d"] + 1
    assert got[(d, "s0")]["n_orders_30d"] == exp_d["n_orders_30d"]
    assert got[(d + dt.timedelta(days=1), "s0")]["n_orders_30d"] == exp_next["n_orders_30d"]
    # the 1-star review of o0002 (s0, bought 10 days before d) was sent 2 days before d and answered
    # exactly at d 00:00: its score is unknown at d (though the survey was sent), known at d+1
    rv = [x for x in rows["order_reviews"] if x[1] == "o0002"]
    assert len(rv) == 1 and rv[0][6] == dt.datetime.combine(d, dt.time()) and rv[0][2] == 1
    assert rv[0][5] < dt.datetime.combine(d, dt.time())
    for day, exp in ((d, exp_d), (d + dt.timedelta(days=1), exp_next)):
        for n in ("n_reviews_30d", "avg_review_score_30d", "min_review_score_30d", "pct_orders_reviewed_30d"):
            assert _close(exp[n], got[(day, "s0")][n]), (day, n)
    known_d = [x for x in rows["order_reviews"] if x[6] is not None and x[6] < dt.datetime.combine(d, dt.time())]
    assert all(x[1] != "o0002" for x in known_d)
    assert exp_next["n_reviews_30d"] == exp_d["n_reviews_30d"] + 1
    assert got[(d + dt.timedelta(days=1), "s0")]["min_review_score_30d"] == 1


def test_appending_events_after_dt_ref_leaves_rows_unchanged(wh, tmp_path):
    settings, rows = wh
    d = dt.date(2017, 8, 20)
    before = sql_rows(settings, [d])
    D = dt.datetime.combine(d, dt.time())
    r = random.Random(1)
    new = {"orders": [], "order_items": [], "order_payments": [], "order_reviews": [], "customers": []}
    for k in range(30):
        oid = f"late{k}"
        ts = D + dt.timedelta(seconds=0 if k == 0 else r.randrange(1, 200 * 86400))
        new["customers"].append((f"lc{k}", "u1", "12345", "x", "SP"))
        new["orders"].append(
            (oid, f"lc{k}", "delivered", ts, ts, ts, ts + dt.timedelta(days=3), ts + dt.timedelta(days=9))
        )
        new["order_items"].append((oid, 1, "p1", f"s{k % 7}", ts, 99.0, 9.0))
        new["order_payments"].append((oid, 1, "voucher", 1, 108.0))
    # late reviews on OLD orders, created at/after dt_ref; and surveys sent BEFORE dt_ref but answered
    # at/after it (a score exists from its answer, not from the creation date)
    for k, o in enumerate(rows["orders"][:40]):
        new["order_reviews"].append(
            (f"lr{k}", o[0], 1, None, "late", D + dt.timedelta(days=k % 3), D + dt.timedelta(days=k % 3, hours=5))
        )
        new["order_reviews"].append(
            (
                f"la{k}",
                o[0],
                1,
                None,
                "ruim",
                D - dt.timedelta(days=1 + k % 4),
                D + dt.timedelta(seconds=0 if k == 0 else 3600 * k),
            )
        )
    append_rows(settings.warehouse, new)
    after = sql_rows(settings, [d])
    assert before.keys() == after.keys()
    for key in before:
        assert before[key] == pytest.approx(after[key], nan_ok=True) or before[key] == after[key]
        for n, v in before[key].items():
            assert _close(v, after[key][n]), (key, n)


def _table_frame(settings, table):
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY dt_ref, seller_id").df()
    finally:
        con.close()


def test_rebuild_reproduces_identical_rows_and_is_idempotent(wh):
    settings, _ = wh
    r1 = build(settings, start="2017-03-01", end="2017-05-31", cadence="daily")
    assert r1.rows > 0 and all(t.dt_refs == 92 for t in r1.tables)
    first = {t: _table_frame(settings, t) for t in FEATURE_TABLES}
    r2 = build(settings, start="2017-03-01", end="2017-05-31", full=True)
    assert all(t.dt_refs == 92 for t in r2.tables)
    for t in FEATURE_TABLES:
        again = _table_frame(settings, t)
        pd.testing.assert_frame_equal(first[t], again, check_exact=True)
        assert not again.duplicated(["dt_ref", "seller_id"]).any()
    # every table has exactly the same (dt_ref, seller_id) rows
    keys = {t: set(map(tuple, first[t][["dt_ref", "seller_id"]].astype(str).values)) for t in FEATURE_TABLES}
    assert len({frozenset(k) for k in keys.values()}) == 1


def test_incremental_builds_only_missing_dt_refs(wh):
    settings, rows = wh
    build(settings, start="2017-04-01", end="2017-04-30")
    r = build(settings, start="2017-04-01", end="2017-05-15")
    assert all(t.dt_refs == 15 and t.skipped == 30 for t in r.tables)
    r = build(settings, start="2017-04-01", end="2017-05-15")
    assert all(t.dt_refs == 0 for t in r.tables)
    df = _table_frame(settings, "fs_seller_sales")
    assert not df.duplicated(["dt_ref", "seller_id"]).any()
    # incremental rows equal a one-shot computation
    d = dt.date(2017, 5, 10)
    exp = oracle(rows, d)
    sub = df[df.dt_ref == pd.Timestamp(d)]
    assert set(sub.seller_id) == set(exp)
    for rec in sub.to_dict("records"):
        assert rec["gmv_180d"] == pytest.approx(exp[rec["seller_id"]]["gmv_180d"])
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        dts = available_dt_refs(con)
    finally:
        con.close()
    assert dts[0] == dt.date(2017, 4, 1) and dts[-1] == dt.date(2017, 5, 15) and len(dts) == 45


def test_incremental_day_and_batches_equal_a_full_rebuild_exactly(wh, tmp_path):
    """N days built at once == N-1 days + 1 incremental day, and == the same range cut into
    many small batches: every table, every column, bit for bit (the incremental shortcuts -
    pruned events, folded history, batching - must not change a single value)."""
    settings, rows = wh
    other = Settings(home=tmp_path / "other", threads=2, feature_chunk_rows=40)
    other.warehouse.parent.mkdir(parents=True, exist_ok=True)
    write_warehouse(other.warehouse, rows)
    start, end = "2017-05-20", "2017-07-10"
    r = build(settings, start=start, end=end, full=True)
    assert all(t.dt_refs == 52 for t in r.tables)
    r = build(other, start=start, end="2017-07-09")
    assert r.rows > 0
    r = build(other, start=start, end=end)  # the one new day
    assert all(t.dt_refs == 1 and t.skipped == 51 and t.rows > 0 for t in r.tables)
    for t in FEATURE_TABLES:
        a, b = _table_frame(settings, t), _table_frame(other, t)
        assert len(a) > 200, t
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    con = duckdb.connect(str(other.warehouse), read_only=True)
    try:  # the small chunk size really cut the backfill into several transactions
        built = con.execute(
            "SELECT count(DISTINCT built_at) FROM fs_build_log WHERE table_name = 'fs_seller_sales'"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert built > 3


def test_weekly_and_monthly_cadence(wh):
    settings, _ = wh
    r = build(settings, start="2017-03-01", end="2017-06-30", cadence="monthly", tables=["sales"])
    assert [t.table for t in r.tables] == ["fs_seller_sales"] and r.tables[0].dt_refs == 4
    r = build(settings, start="2017-03-01", end="2017-03-31", cadence="weekly", tables=["fs_seller_sales"])
    assert r.tables[0].dt_refs == 4  # Mondays 6, 13, 20, 27
    df = _table_frame(settings, "fs_seller_sales")
    assert {d.date() for d in df.dt_ref} <= {dt.date(2017, m, 1) for m in range(3, 7)} | {
        dt.date(2017, 3, x) for x in (6, 13, 20, 27)
    }


def test_spine_rule_inactive_seller_drops_out_and_new_seller_enters(wh):
    settings, rows = wh
    s6_last = max(o[3] for o in rows["orders"] for i in rows["order_items"] if i[0] == o[0] and i[3] == "s6")
    s6_first = min(o[3] for o in rows["orders"] for i in rows["order_items"] if i[0] == o[0] and i[3] == "s6")
    last_day = s6_last.date() + dt.timedelta(days=180)  # last dt_ref with the sale in [dt_ref-180, dt_ref)
    dates = [s6_first.date(), s6_first.date() + dt.timedelta(days=1), last_day, last_day + dt.timedelta(days=1)]
    got = sql_rows(settings, dates)
    assert (dates[0], "s6") not in got  # the first sale day itself: not yet known
    assert got[(dates[1], "s6")]["days_since_first_sale"] == 1
    assert got[(dates[2], "s6")]["days_since_last_sale"] == 180
    assert (dates[3], "s6") not in got


def test_resumable_after_kill_no_half_written_dt_ref(wh, tmp_path):
    settings, _ = wh
    script = (
        "import sys; from pathlib import Path; from olist_ml.config import Settings; from olist_ml.features import "
        "build\n"
        f"s = Settings(warehouse_path=Path({str(settings.warehouse)!r}), threads=1)\n"
        "for m in range(2, 13):\n"
        "    build(s, start=f'2017-{m:02d}-01', end=f'2017-{m:02d}-28')\n"
    )
    for delay in (1.2, 2.0):
        p = subprocess.Popen(
            [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
        )
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        con = duckdb.connect(str(settings.warehouse))
        try:
            for t in FEATURE_TABLES:
                if not con.execute(
                    f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{t}'"
                ).fetchall()[0][0]:
                    continue
                # every dt_ref present in a table is logged with exactly its row count, and vice versa
                bad = con.execute(
                    f"SELECT count(*) FROM (SELECT dt_ref, count(*) n FROM {t} GROUP BY dt_ref) a "
                    f"FULL JOIN (SELECT dt_ref, n_rows FROM fs_build_log WHERE table_name = '{t}' AND n_rows > 0) b "
                    "USING (dt_ref) WHERE a.n IS DISTINCT FROM b.n_rows"
                ).fetchall()[0][0]
                assert bad == 0, t
        finally:
            con.close()
    build(settings, start="2017-02-01", end="2017-12-28")
    resumed = {t: _table_frame(settings, t) for t in FEATURE_TABLES}
    for t, df in resumed.items():
        assert not df.duplicated(["dt_ref", "seller_id"]).any(), t
    con = duckdb.connect(str(settings.warehouse))
    try:
        clean = compute(con, "fs_seller_sales", sorted({d.date() for d in resumed["fs_seller_sales"].dt_ref}))
    finally:
        con.close()
    pd.testing.assert_frame_equal(
        resumed["fs_seller_sales"].reset_index(drop=True), clean.reset_index(drop=True), check_dtype=False
    )


# ------------------------------------------------------------------------------------------
# retrieval
# ------------------------------------------------------------------------------------------
def test_as_of_matches_oracle_at_latest_dt_ref(wh):
    settings, rows = wh
    build(settings, start="2017-05-01", end="2017-09-30", cadence="weekly")
    mondays = [dt.date(2017, 5, 1) + dt.timedelta(days=7 * k) for k in range(22)]
    frame = pd.DataFrame(
        {
            "seller_id": ["s0", "s1", "s2", "s3", "s0", "s4", "s6"],
            "ts": pd.to_datetime(
                [
                    "2017-06-05 00:00:00",
                    "2017-06-04 23:59:59",
                    "2017-08-01 12:00",
                    "2017-09-30 08:00",
                    "2017-04-01 00:00",
                    "2017-07-10 00:00",
                    "2017-07-10 00:00",
                ],
                format="ISO8601",
            ),
            "label": range(7),
        }
    )
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        out = as_of(con, frame)
        cols = feature_columns(con)
        sql = feature_frame_sql()
        assert len(con.execute(sql + " LIMIT 5").df().columns) == 2 + len(cols)
    finally:
        con.close()
    assert list(out.label) == list(range(7)) and len(out) == 7
    for rec in out.to_dict("records"):
        ts = rec["ts"].to_pydatetime()
        cands = [m for m in mondays if dt.datetime.combine(m, dt.time()) <= ts]
        if not cands:
            assert pd.isna(rec["feature_dt_ref"]) and pd.isna(rec["n_orders_180d"])
            continue
        d = cands[-1]
        assert pd.Timestamp(rec["feature_dt_ref"]).date() == d
        exp = oracle(rows, d).get(rec["seller_id"])
        if exp is None:
            assert pd.isna(rec["n_orders_180d"])
        else:
            for n in ("n_orders_180d", "gmv_180d", "days_since_last_sale", "avg_review_score_180d", "n_customers_30d"):
                assert _close(exp[n], rec[n]), (rec["seller_id"], d, n)


# ------------------------------------------------------------------------------------------
# catalog, windows, errors, CLI
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("windows", [(30, 90, 180), (14, 60)])
def test_catalog_covers_every_column_and_nothing_else(wh, windows):
    settings, _ = wh
    settings = settings.with_(feature_windows=windows)
    build(settings, start="2017-05-01", end="2017-05-03", full=True)
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        for t in FEATURE_TABLES:
            cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
            assert cols[:2] == ["dt_ref", "seller_id"]
            docs = catalog(windows, table=t)
            assert sorted(cols[2:]) == sorted(d.name for d in docs), t
            assert len({d.name for d in docs}) == len(docs)
            for d in docs:
                assert d.description and d.unit
                assert d.window_days in (None, *windows)
                if d.window_days:
                    assert d.name.endswith(f"_{d.window_days}d")
    finally:
        con.close()
    sql_dir = Path(__import__("olist_ml.features", fromlist=["x"]).__file__).parent
    for t in FEATURE_TABLES:
        assert (sql_dir / f"{t}.sql").read_text().startswith("-- grain: (dt_ref, seller_id)")


def test_changed_windows_rebuild_the_table_and_drop_dt_refs_built_with_the_old_ones(wh):
    settings, _ = wh
    build(settings, start="2017-05-01", end="2017-05-02", tables=["sales"])
    rep = build(settings.with_(feature_windows=(7, 28)), start="2017-05-03", end="2017-05-03", tables=["sales"])
    assert rep.tables[0].reason == "feature windows changed" and rep.tables[0].dt_refs == 1
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        cols = [r[0] for r in con.execute("DESCRIBE fs_seller_sales").fetchall()]
        dts = [r[0] for r in con.execute("SELECT DISTINCT dt_ref FROM fs_seller_sales").fetchall()]
    finally:
        con.close()
    assert "n_orders_28d" in cols and "n_orders_30d" not in cols
    assert dts in ([], [dt.date(2017, 5, 3)])  # nothing computed with the old windows survives


def test_user_errors(wh, tmp_path):
    settings, _ = wh
    with pytest.raises(UnknownNameError, match="fs_seller_sales, fs_seller_reviews"):
        build(settings, tables=["nope"])
    with pytest.raises(UnknownNameError, match="daily, weekly, monthly"):
        build(settings, cadence="hourly")
    with pytest.raises(InputError, match="outside the data"):
        build(settings, start="2010-01-01", end="2010-02-01")
    with pytest.raises(InputError, match="outside the data"):
        build(settings, start="2017-01-01", end="2030-01-01")
    with pytest.raises(MissingStepError, match="olist-ml ingest"):
        build(Settings(home=tmp_path / "nowhere"))
    empty = Settings(home=tmp_path / "empty")
    empty.warehouse.parent.mkdir(parents=True)
    duckdb.connect(str(empty.warehouse)).close()
    with pytest.raises(MissingStepError, match="olist-ml ingest"):
        build(empty)
    write_warehouse(empty.warehouse, {k: [] for k in make_rows(n_orders=5)})
    with pytest.raises(MissingStepError, match="olist-ml ingest"):
        build(empty)


def test_default_range_comes_from_the_data(wh):
    settings, rows = wh
    r = build(settings, cadence="monthly", tables=["sales"])
    first = min(o[3] for o in rows["orders"]).date().replace(day=1)
    # the fixture has no thin tail, so the observed end is the day after the last purchase:
    # that dt_ref's features use every fact of the data
    end = max(o[3] for o in rows["orders"]).date() + dt.timedelta(days=1)
    assert r.start == first and r.end == end


def test_cli_build_and_list(wh, capsys):
    from olist_ml.cli import main

    settings, _ = wh
    home = ["--warehouse", str(settings.warehouse)]
    assert (
        main(
            [
                *home,
                "features",
                "build",
                "--start",
                "2017-05-01",
                "--end",
                "2017-05-07",
                "--cadence",
                "daily",
                "--table",
                "sales",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fs_seller_sales" in out and "fs_seller_reviews" not in out
    assert main([*home, "features", "list", "--table", "reviews"]) == 0
    out = capsys.readouterr().out
    assert "avg_review_score_180d" in out and "n_orders_180d" not in out
    assert main([*home, "features", "build", "--cadence", "hourly"]) == 2
    assert "daily, weekly, monthly" in capsys.readouterr().err
