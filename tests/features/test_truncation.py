"""The strongest point-in-time test (DESIGN.md): cut the data at a date AS IT REALLY LOOKED THEN
and every feature row before the cut, in every feature table and every ABT, equals the
full-data build.

Build everything once on the full synthetic data (`olist_ml.ingest.ingest`, `features.build`, each
problem's `build_abt`); then, for each cut date C, rebuild from the data as it was at C 00:00:
- orders purchased on/after C are gone, with their items, payments and reviews;
- approval, carrier hand-over and delivery timestamps on/after C have not happened (NULL);
- reviews answered on/after C are gone (a review's score and comment exist from its answer);
- closed deals won and leads first contacted on/after C are gone;
- every order without a delivery before C gets an in-flight status from its timestamps at C
  (shipped / approved / created). The data holds no cancellation time, so whether such an order
  was already canceled at C is unknown: a feature that reads the order_status snapshot fails here.
Then every row with dt_ref <= C (event ABTs: < C, an event on C does not exist yet) must be
identical in the feature columns (exact for integers and
strings, 1e-9 for floats). Targets, `label_known_at` and other non-feature columns are not
compared (a label may only be known later). Populations: the feature tables, churn, segments and
activation rows before C must be the same rows; order-delay rows may be fewer at C (an order
bought before C but approved after it is not in the ABT yet) but never more.

The order-delay ABT is a landmark table (a row per order at approval and at its check points while
in flight): its rows at check points before C -- the order's state then (handed to a carrier, days
left) and the market then -- are compared like the rest, and a test checks that many such in-flight
rows, of orders still undelivered at C among them, are compared. And the orders open at C, each
with its row at C (`order_delay.scoring_frame`: what `olist-ml predict delay --dt-ref C` scores),
are the same orders with the same feature rows from the data as it was at C as from the full data:
a feature that peeks at the day of C or later differs there.

Kept fast: synthetic scale 0.05, three cuts, daily dt_refs only in the 4 days up to each cut.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pytest

from olist_ml import features, ingest, synth
from olist_ml.config import Settings
from olist_ml.problems import activation, churn, order_delay, segments
from olist_ml.warehouse import session

SCALE, SEED = 0.05, 5
CUTS = (dt.date(2017, 11, 21), dt.date(2018, 3, 7), dt.date(2018, 6, 19))
DAYS_BEFORE = 4  # daily dt_refs C-4 .. C around each cut
FLOAT_TOL = 1e-9

PROBLEMS = {
    "abt_seller_churn": churn.PROBLEM,
    "abt_order_delay": order_delay.PROBLEM,
    "abt_seller_activation": activation.PROBLEM,
    "abt_seller_segments": segments.PROBLEM,
}
SAME_POPULATION = set(features.FEATURE_TABLES) | {"abt_seller_churn", "abt_seller_segments", "abt_seller_activation"}
TABLES = [*features.FEATURE_TABLES, *PROBLEMS]
# event ABTs: dt_ref is the event's date (an event on the cut day does not exist yet at the cut);
# the others: dt_ref is a reference date, compared up to the cut itself (it sees only facts before it)
EVENT_TABLES = {"abt_order_delay", "abt_seller_activation"}


@dataclass
class Built:
    frame: pd.DataFrame  # every row of the table (segments: one population per cut, stacked)
    keys: list[str]
    feature_cols: list[str]


def truncate(con: duckdb.DuckDBPyConnection, cut: dt.date) -> None:
    """The stg_* tables as they were at `cut` 00:00 (see the module doc)."""
    c = f"TIMESTAMP '{cut.isoformat()} 00:00:00'"
    con.execute(f"DELETE FROM stg_orders WHERE order_purchase_timestamp >= {c}")
    for t in ("stg_order_items", "stg_order_payments", "stg_order_reviews"):
        con.execute(f"DELETE FROM {t} WHERE order_id NOT IN (SELECT order_id FROM stg_orders)")
    con.execute(f"DELETE FROM stg_order_reviews WHERE review_answer_timestamp >= {c} OR review_creation_date >= {c}")
    for col in ("order_approved_at", "order_delivered_carrier_date", "order_delivered_customer_date"):
        con.execute(f"UPDATE stg_orders SET {col} = NULL WHERE {col} >= {c}")
    con.execute("""
        UPDATE stg_orders SET order_status = CASE WHEN order_delivered_carrier_date IS NOT NULL THEN 'shipped'
                                                  WHEN order_approved_at IS NOT NULL THEN 'approved'
                                                  ELSE 'created' END
        WHERE order_delivered_customer_date IS NULL""")
    con.execute(f"DELETE FROM stg_closed_deals WHERE won_date >= {c}")
    con.execute(f"DELETE FROM stg_marketing_qualified_leads WHERE first_contact_date >= {c}")


def build_all(s: Settings, cuts: tuple[dt.date, ...]) -> dict[str, Built]:
    """Feature store (daily dt_refs before each cut), every ABT; their frames and feature columns."""
    for cut in cuts:
        features.build(s, start=cut - dt.timedelta(days=DAYS_BEFORE), end=cut, cadence="daily")
    out: dict[str, Built] = {}
    with session(s) as con:
        for t in features.FEATURE_TABLES:
            df = con.execute(f"SELECT * FROM {t}").df()
            out[t] = Built(df, list(features.KEY_COLUMNS), [c for c in df.columns if c not in features.KEY_COLUMNS])
        for name in ("abt_seller_churn", "abt_order_delay", "abt_seller_activation"):
            p = PROBLEMS[name]
            p.build_abt(con, s)
            cat, num = p.features_of(con)
            out[name] = Built(con.execute(f"SELECT * FROM {name}").df(), list(p.key_columns), cat + num)
        for cut in cuts:  # order delay: the orders open at each cut, each with its row at the cut
            out[f"delay_scoring@{cut}"] = Built(
                order_delay.scoring_frame(con, s, cut), ["dt_ref", "order_id"], out["abt_order_delay"].feature_cols
            )
        pops = []
        for cut in cuts:  # a segmentation population at each cut (it sees only facts before it)
            segments.write_abt(con, s, cut)
            pops.append(con.execute(f"SELECT * FROM {segments.ABT}").df())
        cat, num = segments.PROBLEM.features_of(con)
        out[segments.ABT] = Built(pd.concat(pops, ignore_index=True), list(segments.PROBLEM.key_columns), cat + num)
    return out


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
    """{"full": {table: Built}, cut: {table: Built}} for every cut."""
    root = tmp_path_factory.mktemp("truncation")
    synth.generate(root / "raw", scale=SCALE, seed=SEED)
    full = Settings(home=root / "full", threads=2).with_(churn__cadence="daily")
    ingest.ingest(root / "raw", full)
    pristine = root / "ingested.duckdb"
    shutil.copyfile(full.warehouse, pristine)
    out: dict = {"full": build_all(full, CUTS)}
    for cut in CUTS:
        s = Settings(home=root / f"cut_{cut}", threads=2).with_(churn__cadence="daily")
        s.warehouse.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pristine, s.warehouse)
        con = duckdb.connect(str(s.warehouse))
        try:
            truncate(con, cut)
        finally:
            con.close()
        out[cut] = build_all(s, tuple(c for c in CUTS if c <= cut))
    return out


def _before(df: pd.DataFrame, cut: dt.date, inclusive: bool) -> pd.DataFrame:
    """Rows the cut must not change: a reference date up to the cut itself (a dt_ref only sees facts
    strictly before its own 00:00, i.e. the truncated data), an event strictly before it."""
    t = pd.to_datetime(df["dt_ref"])
    return df[t <= pd.Timestamp(cut)] if inclusive else df[t < pd.Timestamp(cut)]


def _same(a, b) -> bool:
    a_na = a is None or a is pd.NA or a is pd.NaT or (isinstance(a, float) and math.isnan(a))
    b_na = b is None or b is pd.NA or b is pd.NaT or (isinstance(b, float) and math.isnan(b))
    if a_na or b_na:
        return a_na and b_na
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        return math.isclose(float(a), float(b), rel_tol=FLOAT_TOL, abs_tol=FLOAT_TOL)
    return a == b


def differences(
    full: Built, at_cut: Built, cut: dt.date, same_population: bool, inclusive: bool
) -> tuple[dict[str, int], int, str]:
    """({feature column: rows that differ}, rows compared, population problem or "")."""
    keys = full.keys
    f = _before(full.frame, cut, inclusive).copy()
    c = _before(at_cut.frame, cut, inclusive).copy()
    for df in (f, c):
        df["dt_ref"] = pd.to_datetime(df["dt_ref"]).dt.date
    f, c = f.set_index(keys), c.set_index(keys)
    problem = ""
    extra = c.index.difference(f.index)
    missing = f.index.difference(c.index)
    if len(extra):
        problem = f"{len(extra)} rows exist at the cut but not in the full build, e.g. {extra[0]}"
    elif same_population and len(missing):
        problem = f"{len(missing)} rows of the full build are missing at the cut, e.g. {missing[0]}"
    common = c.index.intersection(f.index)
    f, c = f.loc[common], c.loc[common]
    diffs: dict[str, int] = {}
    for col in full.feature_cols:
        n = sum(not _same(x, y) for x, y in zip(f[col].tolist(), c[col].tolist(), strict=False))
        if n:
            diffs[col] = n
    return diffs, len(common), problem


def test_the_cut_really_removes_the_future(builds):
    """The truncated data differs from the full data where it matters (or the test proves nothing)."""
    full = builds["full"]
    for cut in CUTS:
        n_full = (pd.to_datetime(full["abt_order_delay"].frame["purchase_ts"]) >= pd.Timestamp(cut)).sum()
        n_cut = (pd.to_datetime(builds[cut]["abt_order_delay"].frame["purchase_ts"]) >= pd.Timestamp(cut)).sum()
        assert n_full > 0 and n_cut == 0
        # orders bought before the cut and delivered after it: not delivered yet at the cut
        # (one row per order: its row at approval; the landmark ABT also has rows in flight)
        od = builds[cut]["abt_order_delay"].frame.query("days_in_flight == 0").set_index("order_id")
        fd = full["abt_order_delay"].frame.query("days_in_flight == 0").set_index("order_id").loc[od.index]
        late_delivery = pd.to_datetime(fd["delivered_at"]) >= pd.Timestamp(cut)
        assert late_delivery.sum() > 0 and od.loc[late_delivery, "delivered_at"].isna().all()


@pytest.mark.parametrize(
    "name, target, event",
    [
        ("abt_seller_churn", "churn", "dt_ref"),
        ("abt_order_delay", "is_late", "purchase_ts"),
        ("abt_seller_activation", "activated", "won_date"),
    ],
)
def test_label_known_at_is_set_exactly_where_labelled_and_never_a_feature(builds, name, target, event):
    """Every labelled ABT row says when its label became known (after its event), for purging."""
    b = builds["full"][name]
    df = b.frame
    assert "label_known_at" in df.columns and "label_known_at" not in b.feature_cols
    assert "label_known_at" in PROBLEMS[name].exclude_columns
    assert (df["label_known_at"].notna() == df[target].notna()).all()
    lab = df[df[target].notna()]
    assert len(lab) > 0 and (pd.to_datetime(lab["label_known_at"]) >= pd.to_datetime(lab[event])).all()


@pytest.mark.parametrize("table", TABLES)
def test_rows_before_the_cut_equal_the_full_build(builds, table):
    full = builds["full"][table]
    assert full.feature_cols, f"{table}: no feature columns"
    failures, compared = [], 0
    for cut in CUTS:
        diffs, n, problem = differences(
            full, builds[cut][table], cut, table in SAME_POPULATION, inclusive=table not in EVENT_TABLES
        )
        compared += n
        if problem:
            failures.append(f"cut {cut}: {problem}")
        if diffs:
            failures.append(f"cut {cut}: " + ", ".join(f"{c} ({k} rows)" for c, k in sorted(diffs.items())))
    assert not failures, f"{table}: feature rows before the cut differ from the full build:\n" + "\n".join(failures)
    assert compared >= (10 if table == "abt_seller_activation" else 100), f"{table}: only {compared} rows compared"


def test_order_delay_check_points_in_flight_are_compared(builds):
    """The landmark rows in flight before the cut are in both builds (the comparison above covers
    them), including rows of orders the cut leaves undelivered or not yet handed to a carrier."""
    full = builds["full"]["abt_order_delay"].frame
    n_flight, n_open = 0, 0
    for cut in CUTS:
        c = builds[cut]["abt_order_delay"].frame
        c = c[(pd.to_datetime(c["dt_ref"]) < pd.Timestamp(cut)) & (c["days_in_flight"] > 0)]
        f = full[(pd.to_datetime(full["dt_ref"]) < pd.Timestamp(cut)) & (full["days_in_flight"] > 0)]
        both = c.merge(f[["dt_ref", "order_id", "delivered_at"]], on=["dt_ref", "order_id"], suffixes=("", "_full"))
        assert len(both) == len(c), f"cut {cut}: in-flight rows at the cut that the full build lacks"
        n_flight += len(both)
        n_open += int((both["delivered_at"].isna() & both["delivered_at_full"].notna()).sum())
    assert n_flight >= 200 and n_open >= 20, (n_flight, n_open)


def test_order_delay_scoring_at_the_cut_equals_the_full_data(builds):
    """`predict delay --dt-ref C` on the data as it was at C scores the same open orders with the same
    rows as on the full data (an in-flight feature reading facts of day C or later would differ)."""
    failures, compared = [], 0
    for cut in CUTS:
        full, at_cut = builds["full"][f"delay_scoring@{cut}"], builds[cut][f"delay_scoring@{cut}"]
        assert set(full.frame["order_id"]) == set(at_cut.frame["order_id"]), f"cut {cut}: other open orders"
        diffs, n, problem = differences(full, at_cut, cut, True, inclusive=True)
        compared += n
        if problem or diffs:
            failures.append(f"cut {cut}: {problem} " + ", ".join(f"{c} ({k} rows)" for c, k in sorted(diffs.items())))
        assert (at_cut.frame["days_in_flight"] > 0).all()
    assert not failures, "scoring rows at the cut differ from the full data:\n" + "\n".join(failures)
    assert compared >= 30, compared
