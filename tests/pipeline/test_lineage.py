"""Derived state follows its inputs (olist_ml.lineage): new data makes exactly what depends on it
stale, the next step recomputes it and says so; appending later data keeps the past current."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from olist_ml import lineage
from olist_ml.config import ChurnSettings, Settings
from olist_ml.features import build
from olist_ml.ingest import ingest

ITEMS = "olist_order_items_dataset.csv"
ORDERS = "olist_orders_dataset.csv"


@pytest.fixture(scope="module")
def synth_dir(synthetic_csvs) -> Path:
    return synthetic_csvs(3, 0.05)


def _variant(src: Path, dst: Path, edit) -> Path:
    """A copy of the synthetic files with `edit(name, frame) -> frame` applied to each CSV (as text)."""
    shutil.copytree(src, dst)
    for f in dst.glob("*.csv"):
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        out = edit(f.name, df)
        if out is not df:
            out.to_csv(f, index=False)
    return dst


def _prices_x10(name: str, df: pd.DataFrame) -> pd.DataFrame:
    if name != ITEMS:
        return df
    df = df.copy()
    df["price"] = (df["price"].astype(float) * 10).map(lambda x: f"{x:.2f}")
    return df


def _gmv_at_last(settings: Settings) -> float:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return float(
            con.execute(
                "SELECT sum(gmv_180d) FROM fs_seller_sales WHERE dt_ref = (SELECT max(dt_ref) FROM fs_seller_sales)"
            ).fetchall()[0][0]
        )
    finally:
        con.close()


def test_other_data_makes_the_feature_store_and_abt_stale_and_they_are_recomputed(synth_dir, tmp_path):
    from olist_ml.problems import get

    used = Settings(home=tmp_path / "used")
    ingest(synth_dir, used)
    build(used, cadence="weekly")
    gmv_before = _gmv_at_last(used)
    churn = get("churn")
    with duckdb.connect(str(used.warehouse)) as con:
        assert lineage.refresh_abt(con, churn, used).rebuilt
        assert not lineage.refresh_abt(con, churn, used).rebuilt  # nothing changed: kept

    x10 = _variant(synth_dir, tmp_path / "x10", _prices_x10)
    ingest(x10, used)
    rep = build(used, cadence="weekly")
    sales = next(t for t in rep.tables if t.table == "fs_seller_sales")
    assert sales.stale > 90 and sales.reason == "data changed"
    assert sales.skipped <= 1  # only a dt_ref before the first order (nothing known yet) stays current

    fresh = Settings(home=tmp_path / "fresh")
    ingest(x10, fresh)
    build(fresh, cadence="weekly")
    assert _gmv_at_last(used) == pytest.approx(_gmv_at_last(fresh), rel=1e-12)
    assert _gmv_at_last(used) == pytest.approx(10 * gmv_before, rel=1e-6)

    with duckdb.connect(str(used.warehouse)) as con:
        again = lineage.refresh_abt(con, churn, used)
        assert again.rebuilt and again.reason == "data changed"
        # a changed setting shapes the ABT too
        assert lineage.refresh_abt(con, churn, used.with_(churn__horizon_days=30)).reason == "settings/code changed"


def test_appending_later_orders_keeps_earlier_feature_dates_current(synth_dir, tmp_path):
    cut = dt.date(2018, 3, 1)

    def before_cut(name: str, df: pd.DataFrame) -> pd.DataFrame:
        if name == ORDERS:
            return df[pd.to_datetime(df["order_purchase_timestamp"]) < pd.Timestamp(cut)]
        return df

    early = _variant(synth_dir, tmp_path / "early", before_cut)
    s = Settings(home=tmp_path / "h")
    ingest(early, s)  # items/payments/reviews of the missing orders are quarantined as orphans
    build(s, cadence="weekly", end="2018-02-26")
    ingest(synth_dir, s)  # the full data: the same past plus the orders bought from `cut` on
    rep = build(s, cadence="weekly", end="2018-02-26")
    assert all(t.dt_refs == 0 for t in rep.tables), [(t.table, t.dt_refs) for t in rep.tables]

    later = build(s, cadence="weekly", start="2018-02-26", end="2018-03-12")
    assert all(t.dt_refs == 2 and t.skipped == 1 for t in later.tables)  # 02-26 current; 03-05, 03-12 new

    # the incremental result equals a build from scratch on the full data
    fresh = Settings(home=tmp_path / "fresh")
    ingest(synth_dir, fresh)
    build(fresh, cadence="weekly", end="2018-03-12")
    q = "SELECT * FROM fs_seller_sales WHERE dt_ref <= DATE '2018-03-12' ORDER BY dt_ref, seller_id"
    with (
        duckdb.connect(str(s.warehouse), read_only=True) as a,
        duckdb.connect(str(fresh.warehouse), read_only=True) as b,
    ):
        pd.testing.assert_frame_equal(a.execute(q).df(), b.execute(q).df())


def test_asof_fingerprint_changes_exactly_from_the_day_a_fact_becomes_known(synth_dir, tmp_path):
    s = Settings(home=tmp_path / "h")
    ingest(synth_dir, s)
    with duckdb.connect(str(s.warehouse)) as con:
        oid, delivered = con.execute(
            "SELECT order_id, order_delivered_customer_date FROM stg_orders WHERE order_delivered_customer_date "
            "BETWEEN TIMESTAMP '2017-06-01' AND TIMESTAMP '2017-07-01' ORDER BY order_id LIMIT 1"
        ).fetchall()[0]
        day = delivered.date()
        days = [day - dt.timedelta(days=1), day, day + dt.timedelta(days=1), day + dt.timedelta(days=30)]
        before = lineage.asof_fingerprints(con, days)
        con.execute(
            "UPDATE stg_orders SET order_delivered_customer_date = order_delivered_customer_date "
            "+ INTERVAL 2 HOUR WHERE order_id = ?",
            [oid],
        )
        after = lineage.asof_fingerprints(con, days)
    # known strictly before dt_ref 00:00: the delivery of `day` counts from day + 1 on
    assert before[days[0]] == after[days[0]] and before[days[1]] == after[days[1]]
    assert before[days[2]] != after[days[2]] and before[days[3]] != after[days[3]]


def test_the_asof_fingerprint_covers_exactly_what_the_features_read_when_they_know_it(synth_dir, tmp_path):
    """A review counts from its answer (not its creation), an order's status never, a customer through
    its orders; a product's attribute through the items that sell it. Each edit below is made on a copy
    of one warehouse and compared with the untouched one (FEATURE store scope: `features.READS`)."""
    from olist_ml.features import READS

    s = Settings(home=tmp_path / "h")
    ingest(synth_dir, s)
    with duckdb.connect(str(s.warehouse)) as con:
        oid, bought, answered, created = con.execute(
            "SELECT o.order_id, o.order_purchase_timestamp, r.review_answer_timestamp, r.review_creation_date "
            "FROM stg_orders o JOIN stg_order_reviews r USING (order_id) "
            "WHERE CAST(r.review_answer_timestamp AS DATE) >= CAST(r.review_creation_date AS DATE) + 3 "
            "AND o.order_purchase_timestamp > TIMESTAMP '2017-06-01' ORDER BY o.order_id LIMIT 1"
        ).fetchall()[0]
        ans, made = answered.date(), created.date()
        days = sorted({made, made + dt.timedelta(days=1), ans, ans + dt.timedelta(days=1), ans + dt.timedelta(days=40)})
        base = lineage.asof_fingerprints(con, days, READS)

        def after(sql: str, params=()) -> dict:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(sql, list(params))
                return lineage.asof_fingerprints(con, days, READS)
            finally:
                con.execute("ROLLBACK")

        # the review's score changes: known from the day after its answer, not from its creation
        r = after("UPDATE stg_order_reviews SET review_score = 6 - review_score WHERE order_id = ?", [oid])
        assert [r[d] == base[d] for d in days] == [d <= ans for d in days], (made, ans)
        # the status of an order (a snapshot at extraction): no dt_ref changes
        assert after("UPDATE stg_orders SET order_status = 'canceled' WHERE order_id = ?", [oid]) == base
        # a customer row no order refers to (a new customer of a future order): no dt_ref changes
        assert (
            after(
                "INSERT INTO stg_customers SELECT 'no-such-customer', customer_unique_id, customer_zip_code_prefix, "
                "customer_city, customer_state FROM stg_customers LIMIT 1"
            )
            == base
        )
        # the customer of the order moves state: it changes from the day after the purchase on
        r = after(
            "UPDATE stg_customers SET customer_state = 'XX' WHERE customer_id = "
            "(SELECT customer_id FROM stg_orders WHERE order_id = ?)",
            [oid],
        )
        assert all(r[d] != base[d] for d in days if d > bought.date())
    # the churn scores (scope: the feature store) do not read the geolocation; order delay's do
    with duckdb.connect(str(s.warehouse)) as con:
        from olist_ml.problems import get

        churn, delay = get("churn"), get("delay")
        a = (lineage.asof_fingerprints(con, days, churn.reads), lineage.asof_fingerprints(con, days, delay.reads))
        con.execute("UPDATE stg_geolocation SET geolocation_lat = geolocation_lat + 1")
        b = (lineage.asof_fingerprints(con, days, churn.reads), lineage.asof_fingerprints(con, days, delay.reads))
    assert a[0] == b[0] and all(a[1][d] != b[1][d] for d in days)


def test_scores_of_other_data_are_kept_and_marked_and_summary_says_so(synth_dir, tmp_path, capsys):
    """Predictions are records: ingesting other data (history rewritten) keeps every earlier score batch,
    marks it data_revised_at, `summary` counts it; the policy retrains (the champion's data was revised)."""
    from olist_ml.cli import main
    from olist_ml.pipeline import run_pipeline

    s = Settings(home=tmp_path / "h", churn=ChurnSettings(cadence="weekly"))  # enough labelled months
    budget = {"n_trials": 0, "candidates": "logreg"}
    run_pipeline(s, data=synth_dir, problems=["churn"], cadence="weekly", **budget)
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        first = con.execute("SELECT * FROM scores_seller_churn ORDER BY seller_id").df()
    x10 = _variant(synth_dir, tmp_path / "x10", _prices_x10)
    ingest(x10, s)
    capsys.readouterr()
    assert main(["--home", str(s.home), "summary"]) == 0
    out = capsys.readouterr().out
    assert "fs_seller_sales" in out and "stale: data changed" in out and "score history" in out

    rep = run_pipeline(s, data=x10, problems=["churn"], cadence="weekly", **budget)
    steps = {r.step: r for r in rep.steps}
    assert steps["seller_churn: ABT"].status == "done" and "data changed" in steps["seller_churn: ABT"].detail
    assert "revised since" in steps["seller_churn: train"].detail, steps["seller_churn: train"].detail
    assert "marked data_revised_at" in steps["seller_churn: score"].detail
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        fp = first["data_fp"][0]
        kept = con.execute("SELECT * FROM scores_seller_churn WHERE data_fp = ? ORDER BY seller_id", [fp]).df()
        new = con.execute("SELECT * FROM scores_seller_churn WHERE data_fp <> ?", [fp]).df()
    # the first batch is still there, value for value, now marked; the new one (same dt_ref) is current
    assert kept["data_revised_at"].notna().all() and len(new) > 0 and new["data_revised_at"].isna().all()
    pd.testing.assert_frame_equal(kept.drop(columns=["data_revised_at"]), first.drop(columns=["data_revised_at"]))
    from olist_ml.commands.data import derived_status

    derived, records = derived_status(s)  # `olist-ml summary`'s tables, with this test's settings (weekly churn)
    assert {r["table"] for r in derived} >= {"fs_seller_sales", "abt_seller_churn"}
    assert all(r["status"] == "current" for r in derived), derived
    (churn,) = [r for r in records if r["table"] == "scores_seller_churn"]
    assert churn["revised"] == 1 and churn["batches"] == 2 and churn["dt_refs"] == 1, churn
    # only an explicit command removes history
    assert main(["--home", str(s.home), "scores", "delete", "churn", "--revised"]) == 2  # needs --yes
    assert main(["--home", str(s.home), "scores", "delete", "churn", "--revised", "--yes"]) == 0
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scores_seller_churn").fetchall()[0][0] == len(new)


def test_run_reingests_its_source_after_an_ingest_of_other_data(synth_dir, tmp_path):
    from olist_ml.pipeline import _remember_source, _source_is_current

    s = Settings(home=tmp_path / "h")
    rep = ingest(synth_dir, s)
    _remember_source(s, synth_dir, rep.run_id)
    assert _source_is_current(s, synth_dir)
    ingest(_variant(synth_dir, tmp_path / "x10", _prices_x10), s)  # `olist-ml ingest` of other data
    assert not _source_is_current(s, synth_dir)
