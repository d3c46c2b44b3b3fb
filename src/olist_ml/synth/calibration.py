"""Side-by-side statistics of two Olist folders (real vs synthetic): `calibration_table`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..schema import SOURCES_BY_KEY

CHURN_REFS = ("2017-07-01", "2017-10-01", "2018-01-01", "2018-03-01", "2018-05-01")


def _read(folder: Path, key: str, cols: list[str] | None = None) -> pd.DataFrame:
    src = SOURCES_BY_KEY[key]
    for name in (src.file, src.file + ".gz"):
        p = Path(folder) / name
        if p.exists():
            return pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""], usecols=cols, encoding="utf-8-sig")
    raise InputError(f"{Path(folder) / src.file}: file not found (expected {src.file} or {src.file}.gz)")


def seller_churn_frame(
    items: pd.DataFrame,
    orders: pd.DataFrame,
    reviews: pd.DataFrame | None = None,
    refs=CHURN_REFS,
    window: int = 180,
    horizon: int = 45,
) -> pd.DataFrame:
    """(dt_ref, seller) rows for sellers with a sale in [ref-window, ref): history + churned (no sale in
    [ref, ref+horizon))."""
    x = (
        items[["order_id", "seller_id"]]
        .drop_duplicates()
        .merge(
            orders[
                [
                    "order_id",
                    "order_purchase_timestamp",
                    "order_delivered_customer_date",
                    "order_estimated_delivery_date",
                ]
            ],
            on="order_id",
        )
    )
    x["t"] = pd.to_datetime(x["order_purchase_timestamp"])
    x["late"] = pd.to_datetime(x["order_delivered_customer_date"]) > pd.to_datetime(x["order_estimated_delivery_date"])
    if reviews is not None:
        r = reviews.assign(s=reviews["review_score"].astype(float), c=pd.to_datetime(reviews["review_creation_date"]))
        x = x.merge(
            r.groupby("order_id").agg(score=("s", "mean"), created=("c", "min")).reset_index(),
            on="order_id",
            how="left",
        )
    rows = []
    for ref in refs:
        ref = pd.Timestamp(ref)
        past = x[(x.t < ref) & (x.t >= ref - pd.Timedelta(days=window))]
        fut = set(x.loc[(x.t >= ref) & (x.t < ref + pd.Timedelta(days=horizon)), "seller_id"])
        g = past.groupby("seller_id")
        h = pd.DataFrame({"n_orders": g.size(), "days_since_last": (ref - g.t.max()).dt.days})
        known_late = past[pd.to_datetime(past["order_delivered_customer_date"]) < ref]
        h["pct_late"] = known_late.groupby("seller_id").late.mean()
        if reviews is not None:
            kr = past[past.created < ref]
            h["mean_score"] = kr.groupby("seller_id").score.mean()
        h["churned"] = ~h.index.isin(fut)
        h["dt_ref"] = ref
        rows.append(h.reset_index())
    return pd.concat(rows, ignore_index=True)


def stats(folder: Path) -> dict[str, float]:
    """Calibration statistics of one Olist folder."""
    folder = Path(folder)
    o = _read(folder, "orders")
    it = _read(folder, "order_items")
    p = _read(folder, "order_payments")
    rv = _read(
        folder,
        "order_reviews",
        ["review_id", "order_id", "review_score", "review_comment_message", "review_creation_date"],
    )
    c = _read(folder, "customers")
    s = _read(folder, "sellers")
    pr = _read(folder, "products")
    out: dict[str, float] = {}
    t = pd.to_datetime(o["order_purchase_timestamp"])
    out["orders"] = len(o)
    out["customers (unique)"] = c["customer_unique_id"].nunique()
    out["sellers"] = len(s)
    out["products"] = len(pr)
    out["order items"] = len(it)
    n = it.groupby("order_id").size()
    out["items per order (with items)"] = n.mean()
    out["share orders with >1 item"] = (n > 1).mean()
    out["share orders with >1 seller"] = (it.groupby("order_id").seller_id.nunique() > 1).mean()
    for st in ("delivered", "shipped", "canceled", "unavailable", "invoiced", "processing"):
        out[f"status {st}"] = (o["order_status"] == st).mean()
    for pt in ("credit_card", "boleto", "voucher", "debit_card"):
        out[f"payment rows {pt}"] = (p["payment_type"] == pt).mean()
    out["share orders with >1 payment"] = (p.groupby("order_id").size() > 1).mean()
    out["mean price"] = it["price"].astype(float).mean()
    out["median price"] = it["price"].astype(float).median()
    out["mean freight"] = it["freight_value"].astype(float).mean()
    pay_tot = p.assign(v=p.payment_value.astype(float)).groupby("order_id").v.sum()
    it_tot = it.assign(v=it.price.astype(float) + it.freight_value.astype(float)).groupby("order_id").v.sum()
    j = pd.concat([pay_tot, it_tot], axis=1, join="inner")
    out["share orders payments == items+freight (1 cent)"] = ((j.iloc[:, 0] - j.iloc[:, 1]).abs() <= 0.011).mean()
    d = o[o["order_status"] == "delivered"].copy()
    dd = pd.to_datetime(d["order_delivered_customer_date"])
    late = dd > pd.to_datetime(d["order_estimated_delivery_date"])
    out["share late (delivered)"] = late.mean()
    out["mean days purchase->delivered"] = (
        (dd - pd.to_datetime(d["order_purchase_timestamp"])).dt.total_seconds() / 86400
    ).mean()
    out["mean days purchase->estimated"] = (
        (
            pd.to_datetime(d["order_estimated_delivery_date"]) - pd.to_datetime(d["order_purchase_timestamp"])
        ).dt.total_seconds()
        / 86400
    ).mean()
    m = (
        it[["order_id", "seller_id"]]
        .drop_duplicates("order_id")
        .merge(s, on="seller_id")
        .merge(o[["order_id", "customer_id"]], on="order_id")
        .merge(c, on="customer_id")
    )
    out["share orders seller state == customer state"] = (m.seller_state == m.customer_state).mean()
    out["share sellers in SP"] = (s.seller_state == "SP").mean()
    out["share customers in SP"] = (c.customer_state == "SP").mean()
    out["reviews per order"] = len(rv) / len(o)
    out["mean review score"] = rv["review_score"].astype(float).mean()
    out["share review with comment message"] = rv["review_comment_message"].notna().mean()
    rr = rv.merge(d.assign(late=late.values)[["order_id", "late"]], on="order_id")
    out["mean score on time"] = rr.loc[~rr.late, "review_score"].astype(float).mean()
    out["mean score late"] = rr.loc[rr.late, "review_score"].astype(float).mean()
    monthly = t.dt.to_period("M").value_counts()
    out["orders in 2016"] = int((t.dt.year == 2016).sum())
    out["peak month"] = str(monthly.idxmax())
    out["orders in 2017-11"] = int(monthly.get(pd.Period("2017-11", "M"), 0))
    daily = t.dt.date.value_counts()
    out["orders on 2017-11-24 / median day 2017-11"] = (
        daily.get(pd.Timestamp("2017-11-24").date(), 0)
        / daily[[k for k in daily.index if str(k).startswith("2017-11")]].median()
    )
    out["share orders on Sat+Sun"] = (t.dt.dayofweek >= 5).mean()
    ps = it.groupby("seller_id").order_id.nunique()
    out["orders per seller (median)"] = ps.median()
    out["orders per seller (max)"] = ps.max()
    out["products per seller (median)"] = it.groupby("seller_id").product_id.nunique().median()
    out["share products sold once"] = (it.groupby("product_id").size() == 1).mean()
    out["share products without category"] = pr["product_category_name"].isna().mean()
    ch = seller_churn_frame(it, o, rv)
    out["seller 45d churn (active in 180d)"] = ch.churned.mean()
    bad = (ch.mean_score < 3.5) | (ch.pct_late > 0.25)
    out["45d churn, bad history (score<3.5 or >25% late)"] = ch.loc[bad, "churned"].mean()
    out["45d churn, good history"] = ch.loc[~bad & ch.mean_score.notna(), "churned"].mean()
    out["45d churn, last sale >30d ago"] = ch.loc[ch.days_since_last > 30, "churned"].mean()
    out["45d churn, last sale <=30d ago"] = ch.loc[ch.days_since_last <= 30, "churned"].mean()
    try:
        q = _read(folder, "marketing_qualified_leads")
        cd = _read(folder, "closed_deals")
    except InputError:
        return out
    out["MQLs"] = len(q)
    out["closed deals"] = len(cd)
    out["deal rate (deals / MQLs)"] = len(cd) / len(q)
    x = it.merge(o[["order_id", "order_purchase_timestamp"]], on="order_id")
    first_sale = pd.to_datetime(x.groupby("seller_id").order_purchase_timestamp.min())
    cd = cd.assign(fs=cd.seller_id.map(first_sale), won=pd.to_datetime(cd.won_date))
    out["deals -> first sale rate"] = cd.fs.notna().mean()
    out["days won -> first sale (median)"] = (cd.fs - cd.won).dt.days.median()
    cd["ltype"] = cd.lead_type.fillna("")
    out["first-sale rate, online_big leads"] = cd.loc[cd.ltype == "online_big", "fs"].notna().mean()
    out["first-sale rate, offline leads"] = cd.loc[cd.ltype == "offline", "fs"].notna().mean()
    return out


def calibration_table(real_dir: Path, synth_dir: Path) -> pd.DataFrame:
    """DataFrame(statistic, real, synthetic) computed the same way on both folders."""
    a, b = stats(Path(real_dir)), stats(Path(synth_dir))
    rows = [(k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b])]
    return pd.DataFrame(rows, columns=["statistic", "real", "synthetic"])


def to_markdown(df: pd.DataFrame) -> str:
    def f(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if isinstance(v, str):
            return v
        v = float(v)
        if v == int(v) and abs(v) >= 10:
            return f"{int(v):,}"
        return f"{v:,.2f}" if abs(v) >= 10 else f"{v:.3f}"

    lines = ["| statistic | real | synthetic |", "|---|---:|---:|"]
    lines += [f"| {r.statistic} | {f(r.real)} | {f(r.synthetic)} |" for r in df.itertuples()]
    return "\n".join(lines)
