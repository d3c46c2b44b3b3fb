"""Tests of the seeded synthetic Olist generator (olist_ml.synth)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from olist_ml.errors import InputError
from olist_ml.schema import FOREIGN_KEYS, SOURCES, SOURCES_BY_KEY
from olist_ml.synth import generate
from olist_ml.synth.calibration import seller_churn_frame

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _read(folder: Path, key: str) -> pd.DataFrame:
    src = SOURCES_BY_KEY[key]
    path = folder / src.file
    if not path.exists():
        path = folder / (src.file + ".gz")
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("synth_small")
    return out, generate(out, seed=7, scale=0.05)


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_medium")
    generate(out, seed=11, scale=0.3)
    return out


@pytest.fixture(scope="module")
def tables(small) -> dict[str, pd.DataFrame]:
    folder, _ = small
    return {s.key: _read(folder, s.key) for s in SOURCES}


def test_file_names_headers_and_row_counts_match_schema(small):
    folder, rows = small
    assert sorted(rows) == sorted(s.file for s in SOURCES)
    for s in SOURCES:
        path = folder / s.file
        assert path.exists(), s.file
        header = path.read_text(encoding="utf-8-sig").split("\n", 1)[0].rstrip("\r")
        assert header.split(",") == s.source_names, s.file
        assert len(_read(folder, s.key)) == rows[s.file] > 0


def test_values_parse_as_schema_types_and_required_columns_are_filled(tables):
    for s in SOURCES:
        df = tables[s.key]
        for c in s.columns:
            col = df[c.source]
            if not c.nullable:
                assert col.notna().all(), f"{s.file}:{c.source} has empty values"
            v = col.dropna()
            if c.type == "TIMESTAMP":
                pd.to_datetime(v, format="%Y-%m-%d %H:%M:%S")
            elif c.type == "DATE":
                pd.to_datetime(v, format="%Y-%m-%d")
            elif c.type == "INTEGER":
                assert v.str.fullmatch(r"-?\d+").all(), f"{s.file}:{c.source}"
            elif c.type == "DOUBLE":
                v.astype(float)
            elif c.type == "BOOLEAN":
                assert set(v) <= {"True", "False"}, f"{s.file}:{c.source}"


def test_formats_ids_zips_money_and_midnight_dates(tables):
    o, it, rv, c = tables["orders"], tables["order_items"], tables["order_reviews"], tables["customers"]
    for df, cols in (
        (o, ["order_id", "customer_id"]),
        (it, ["order_id", "product_id", "seller_id"]),
        (rv, ["review_id", "order_id"]),
        (c, ["customer_id", "customer_unique_id"]),
        (tables["closed_deals"], ["mql_id", "seller_id", "sdr_id", "sr_id"]),
    ):
        for col in cols:
            assert df[col].str.fullmatch(HEX32.pattern).all(), col
    for df, col in (
        (c, "customer_zip_code_prefix"),
        (tables["sellers"], "seller_zip_code_prefix"),
        (tables["geolocation"], "geolocation_zip_code_prefix"),
    ):
        assert df[col].str.fullmatch(r"\d{5}").all(), col
    assert (c["customer_zip_code_prefix"].str.startswith("0")).any()  # leading zeros kept (SP 01xxx-09xxx)
    for col in ("price", "freight_value"):
        assert it[col].str.fullmatch(r"\d+\.\d{2}").all()
    assert tables["order_payments"]["payment_value"].str.fullmatch(r"\d+\.\d{2}").all()
    assert o["order_estimated_delivery_date"].str.endswith(" 00:00:00").all()
    assert rv["review_creation_date"].str.endswith(" 00:00:00").all()
    # real-like nulls: mostly empty comments, some products without category
    assert 0.8 < rv["review_comment_title"].isna().mean() < 0.95
    assert 0.45 < rv["review_comment_message"].isna().mean() < 0.7
    assert tables["closed_deals"]["has_company"].isna().mean() > 0.5


def test_primary_keys_are_unique(tables):
    for s in SOURCES:
        if s.primary_key:
            cols = [next(c.source for c in s.columns if c.name == k) for k in s.primary_key]
            assert not tables[s.key].duplicated(cols).any(), f"{s.file}: duplicate {cols}"


def test_referential_integrity(tables):
    for child, ccols, parent, pcols in FOREIGN_KEYS:
        src_c, src_p = SOURCES_BY_KEY[child], SOURCES_BY_KEY[parent]
        cc = [next(c.source for c in src_c.columns if c.name == k) for k in ccols]
        pc = [next(c.source for c in src_p.columns if c.name == k) for k in pcols]
        missing = ~tables[child][cc[0]].isin(set(tables[parent][pc[0]]))
        assert not missing.any(), f"{child}.{cc} -> {parent}.{pc}: {missing.sum()} orphans"
    # every product and seller was sold at least once, like the real tables
    it = tables["order_items"]
    assert set(tables["products"]["product_id"]) == set(it["product_id"])
    assert set(tables["sellers"]["seller_id"]) == set(it["seller_id"])
    # customer zips exist in geolocation
    assert (
        tables["customers"]["customer_zip_code_prefix"]
        .isin(set(tables["geolocation"]["geolocation_zip_code_prefix"]))
        .all()
    )


def test_timestamps_ordered_and_nulls_follow_status(tables):
    o = tables["orders"]
    ts = {c: pd.to_datetime(o[c]) for c in o.columns[3:]}
    p, a, cr, d = (ts[c] for c in o.columns[3:7])
    assert (a.isna() | (a >= p)).all()
    assert (cr.isna() | a.isna() | (cr >= a)).all()
    assert (d.isna() | cr.isna() | (d >= cr)).all()
    dl = o["order_status"] == "delivered"
    assert cr[dl].notna().all() and d[dl].notna().all()
    assert d[o["order_status"].isin(["shipped", "invoiced", "processing", "unavailable"])].isna().all()
    assert a[o["order_status"] == "created"].isna().all()
    assert p.min() >= pd.Timestamp("2016-09-01") and p.max() < pd.Timestamp("2018-11-01")
    assert 0.94 < dl.mean() < 0.995
    # reviews of delivered orders are created after the delivery
    rv = tables["order_reviews"].merge(o[dl], on="order_id")
    assert (pd.to_datetime(rv["review_creation_date"]) >= pd.to_datetime(rv["order_delivered_customer_date"])).all()
    assert (pd.to_datetime(rv["review_answer_timestamp"]) > pd.to_datetime(rv["review_creation_date"])).all()


def test_payments_equal_items_plus_freight(tables):
    it, pay = tables["order_items"], tables["order_payments"]
    cents = lambda s: (s.astype(float) * 100).round().astype(int)  # noqa: E731
    items = (cents(it["price"]) + cents(it["freight_value"])).groupby(it["order_id"]).sum()
    paid = cents(pay["payment_value"]).groupby(pay["order_id"]).sum()
    j = pd.concat([items.rename("items"), paid.rename("paid")], axis=1, join="inner")
    assert len(j) == it["order_id"].nunique()
    assert (j["items"] == j["paid"]).all()
    assert set(pay["payment_type"]) <= {"credit_card", "boleto", "voucher", "debit_card"}
    assert (pay.loc[pay["payment_type"] != "credit_card", "payment_installments"] == "1").all()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    def digest(folder: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ra = generate(a, seed=5, scale=0.02, gzip=True)
    generate(b, seed=5, scale=0.02, gzip=True)
    generate(c, seed=6, scale=0.02, gzip=True)
    assert all(k.endswith(".csv.gz") for k in ra)
    da, db, dc = digest(a), digest(b), digest(c)
    assert da == db
    assert da["olist_orders_dataset.csv.gz"] != dc["olist_orders_dataset.csv.gz"]
    assert da["olist_order_items_dataset.csv.gz"] != dc["olist_order_items_dataset.csv.gz"]
    # plain and gzip twins never coexist after a regeneration
    generate(a, seed=5, scale=0.02)
    assert not list(a.glob("*.gz")) and len(list(a.glob("*.csv"))) == len(SOURCES)


def test_bad_arguments_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="scale"):
        generate(tmp_path / "x", scale=0)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        generate(f, scale=0.02)


def test_late_orders_get_lower_reviews_and_distance_drives_lateness(medium):
    o, rv = _read(medium, "orders"), _read(medium, "order_reviews")
    d = o[o["order_status"] == "delivered"].copy()
    d["late"] = pd.to_datetime(d["order_delivered_customer_date"]) > pd.to_datetime(d["order_estimated_delivery_date"])
    assert 0.04 < d["late"].mean() < 0.14
    r = rv.merge(d, on="order_id")
    r["s"] = r["review_score"].astype(int)
    assert r.loc[r.late, "s"].mean() < r.loc[~r.late, "s"].mean() - 1.0
    it, s, c = _read(medium, "order_items"), _read(medium, "sellers"), _read(medium, "customers")
    m = d.merge(it.drop_duplicates("order_id"), on="order_id").merge(s, on="seller_id").merge(c, on="customer_id")
    same = m.seller_state == m.customer_state
    assert m.loc[~same, "late"].mean() > m.loc[same, "late"].mean()
    assert m.loc[~same, "freight_value"].astype(float).mean() > m.loc[same, "freight_value"].astype(float).mean()


def test_seasonality_black_friday_and_growth(medium):
    t = pd.to_datetime(_read(medium, "orders")["order_purchase_timestamp"])
    monthly = t.dt.to_period("M").value_counts()
    # Nov 2017 (Black Friday) is a peak month, well above the months around it in 2017
    assert "2017-11" in {str(k) for k in monthly.nlargest(3).index}
    assert monthly[pd.Period("2017-11", "M")] > 1.3 * monthly[pd.Period("2017-10", "M")]
    assert (t.dt.year == 2016).mean() < 0.01
    assert monthly[pd.Period("2018-03", "M")] > 1.5 * monthly[pd.Period("2017-03", "M")]
    daily = t.dt.date.value_counts()
    nov = daily[[k for k in daily.index if str(k).startswith("2017-11")]]
    assert daily[pd.Timestamp("2017-11-24").date()] > 3 * nov.median()


def test_sellers_with_bad_history_churn_more(medium):
    it, o, rv = _read(medium, "order_items"), _read(medium, "orders"), _read(medium, "order_reviews")
    ch = seller_churn_frame(it, o, rv)
    assert len(ch) > 500
    bad = (ch.mean_score < 3.5) | (ch.pct_late > 0.25)
    good = ~bad & ch.mean_score.notna()
    assert bad.sum() > 50 and good.sum() > 50
    assert ch.loc[bad, "churned"].mean() > ch.loc[good, "churned"].mean() + 0.15
    # recency is informative too
    assert ch.loc[ch.days_since_last > 30, "churned"].mean() > ch.loc[ch.days_since_last <= 30, "churned"].mean() + 0.2


def test_deals_link_to_sellers_whose_activation_depends_on_lead_attributes(medium):
    q, cd = _read(medium, "marketing_qualified_leads"), _read(medium, "closed_deals")
    it, o, s = _read(medium, "order_items"), _read(medium, "orders"), _read(medium, "sellers")
    assert 0.06 < len(cd) / len(q) < 0.15
    fc = pd.to_datetime(q["first_contact_date"])
    assert fc.min() >= pd.Timestamp("2017-06-01") and fc.max() < pd.Timestamp("2018-06-01")
    m = cd.merge(q, on="mql_id")
    won = pd.to_datetime(m["won_date"])
    assert (won >= pd.to_datetime(m["first_contact_date"])).all()
    x = it.merge(o[["order_id", "order_purchase_timestamp"]], on="order_id")
    first_sale = pd.to_datetime(x.groupby("seller_id")["order_purchase_timestamp"].min())
    fs = m["seller_id"].map(first_sale)
    active = fs.notna()
    assert 0.25 < active.mean() < 0.7
    assert m.loc[active, "seller_id"].isin(set(s["seller_id"])).all()
    assert (fs[active] > won[active]).all()
    good = m["lead_type"].isin(["online_big", "online_medium"])
    poor = m["lead_type"].isin(["offline", "industry", "online_small", "other"])
    assert active[good].mean() > active[poor].mean() + 0.1


def test_cli_prints_rows_and_says_synthetic(tmp_path, capsys):
    from olist_ml.cli import main

    rc = main(["synth", "--out", str(tmp_path / "o"), "--scale", "0.02", "--seed", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "SYNTHETIC" in out and "olist_orders_dataset.csv" in out
    assert (tmp_path / "o" / "olist_orders_dataset.csv").exists()
    assert main(["synth", "--out", str(tmp_path / "o"), "--scale", "-1"]) == 2


@pytest.mark.realdata
def test_calibration_table_against_real_data(tmp_path):
    import os

    real = os.environ.get("OLIST_DATA_DIR")
    if not real:
        pytest.skip("OLIST_DATA_DIR not set")
    from olist_ml.synth import calibration_table

    generate(tmp_path, seed=42, scale=0.2)
    df = calibration_table(Path(real), tmp_path).set_index("statistic")
    assert df.loc["peak month", "real"] == df.loc["peak month", "synthetic"] == "2017-11"
    for stat, tol in (
        ("share late (delivered)", 0.04),
        ("status delivered", 0.02),
        ("payment rows credit_card", 0.03),
        ("deal rate (deals / MQLs)", 0.04),
    ):
        assert abs(float(df.loc[stat, "real"]) - float(df.loc[stat, "synthetic"])) < tol, stat
