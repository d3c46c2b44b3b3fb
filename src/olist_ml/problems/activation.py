"""Seller activation: will a seller won by the sales team make a first sale within 90 days?

Grain: one row per closed deal (`mql_id`). `dt_ref` is the deal's won DATE in the ABT (drives
the train | validation | test split) and the scoring date in `scores_seller_activation`.

Target `activated` = 1 when the seller's first order (by purchase timestamp, any order that
holds one of its items) falls in [won_date, won_date + `activation.horizon_days`) (Settings.activation, 90 by default).
Only deals whose whole horizon lies inside the observed data are labelled:
won_date + horizon <= `olist_ml.warehouse.observed_end(con)` (the exclusive end of the data,
2018-08-24 on the real extract, whose last stray orders run to 2018-10-17); the others stay in
the ABT with a NULL target and form the scoring population (together with labelled-later deals
when scoring a past date). The default scoring date is that observed end.

Features are the lead and deal attributes fixed at won_date (activation_deals.sql): origin,
landing page, business segment, lead type, behaviour profile, business type, declared catalog
size and monthly revenue, has_company, has_gtin, average stock, days from first contact to
win, the SDR and SR as categories, and the won month.

The marketing-funnel tables are optional in the warehouse: without them this problem raises
`MissingStepError` naming the two files to ingest.

The labelled set is small (on the real data 842 won deals, 654 labelled with the 90-day
horizon: won_date + 90 days <= 2018-08-24, i.e. won by 2018-05-25), so the quality gate is the bootstrap interval of the
test ROC AUC (one deal per cluster; `olist_ml.ml.metrics.bootstrap_ci`, `training.bootstrap`
resamples, default 1000): a model is promoted only when its lower bound clears 0.5.
Deal attributes the funnel fills only for later deals (declared_product_catalog_size,
has_company, average_stock are empty for every labelled deal on the real data) are dropped by
the generic trainer as features empty in every training row, so they cannot skew scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import MissingStepError, NotReadyError
from ..ml.problem import Baseline, Problem
from ..warehouse import observed_end, require_tables, table_exists
from ._common import as_date, read_sql, write_frame_atomically

NAME = "seller_activation"
ABT = "abt_seller_activation"
TARGET = "activated"
MARKETING = ("stg_closed_deals", "stg_marketing_qualified_leads")
# columns of the ABT that are not features (timestamps are skipped by type anyway)
NON_FEATURES = ("seller_id", "label_known_at")


def _require(con: duckdb.DuckDBPyConnection) -> None:
    missing = [t for t in MARKETING if not table_exists(con, t)]
    if missing:  # optional inputs: `run` skips the problem with this reason
        raise NotReadyError(
            f"warehouse has no {', '.join(missing)}: the marketing-funnel files "
            "(olist_marketing_qualified_leads_dataset.csv, olist_closed_deals_dataset.csv) were not ingested; "
            "add them to SOURCE and run `olist-ml ingest SOURCE`"
        )
    require_tables(con, ["stg_orders", "stg_order_items"], "ingest SOURCE")


def deals_sql(settings: Settings, end: date, engine: str = "duckdb") -> str:
    """The deals query (activation_deals.sql) for `engine` ("duckdb" or "spark")."""
    from ..features.render import expand_macros

    sql = read_sql("activation_deals.sql").format(
        horizon_days=int(settings.activation.horizon_days), observed_end=pd.Timestamp(end).date().isoformat()
    )
    return expand_macros(sql, engine)


def _deals(con: duckdb.DuckDBPyConnection, settings: Settings) -> pd.DataFrame:
    _require(con)
    end = observed_end(con)
    if end is None:
        raise MissingStepError("stg_orders is empty: run `olist-ml ingest SOURCE` first")
    return con.execute(deals_sql(settings, end) + " ORDER BY dt_ref, mql_id").df()


def build_abt(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """Build `abt_seller_activation` (every won deal; NULL target where the horizon is unobserved)."""
    df = _deals(con, settings)
    df = df.drop(columns=["observed_end"])
    df[TARGET] = df[TARGET].astype("Int64")
    return write_frame_atomically(con, ABT, df)


def scoring_frame(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date | None = None) -> pd.DataFrame:
    """Deals won before `as_of` whose horizon is still open at `as_of` and that have not sold yet.

    Default `as_of`: the observed end of the data (`olist_ml.warehouse.observed_end`, exclusive),
    i.e. exactly the unlabelled deals that have not sold yet (a deal that already sold is known
    to be activated: nothing to score). `dt_ref` of the frame is the scoring date (the
    convention of `Problem.time_column`); `won_date` keeps the deal's date.
    """
    df = _deals(con, settings)
    if df.empty:
        return df
    end = df["observed_end"].iloc[0]
    d = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(as_date(end))
    horizon = pd.Timedelta(days=int(settings.activation.horizon_days))
    won = pd.to_datetime(df["won_date"])
    sold = pd.to_datetime(df["first_sale_ts"])
    keep = (won < d) & (won + horizon > d) & (sold.isna() | (sold >= d))
    out = df[keep].drop(columns=["observed_end", TARGET, "label_known_at"]).copy()
    out["dt_ref"] = d.date()
    return out.reset_index(drop=True)


def outcomes(con: duckdb.DuckDBPyConnection, settings: Settings, scored: pd.DataFrame) -> pd.DataFrame:
    """`Problem.outcomes`: each scored deal's label as known now (the ABT's own query), known whatever it
    turns out to be at won_date + the horizon."""
    deals = _deals(con, settings)[["mql_id", "won_date", TARGET]]
    out = scored[["dt_ref", "mql_id"]].merge(deals, on="mql_id", how="left")
    out["label"] = out.pop(TARGET).astype("Int64")
    out["label_known_at"] = label_known_at(out, settings)
    return out.drop(columns=["won_date"])


def label_known_at(df: pd.DataFrame, settings: Settings) -> pd.Series:
    """When a deal's label is known whatever it turns out to be: won_date + the horizon (a first
    sale inside the horizon settles activated = 1 earlier, but purging on that would select on
    the outcome)."""
    return pd.to_datetime(df["won_date"]).dt.normalize() + pd.Timedelta(days=int(settings.activation.horizon_days))


# ---- honest uncertainty on a small test set ----------------------------------------------------
@dataclass(frozen=True)
class AucInterval:
    auc: float
    low: float
    high: float
    n: int
    n_pos: int
    n_boot: int
    level: float


def bootstrap_auc(y, p, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> AucInterval:
    """ROC AUC with a percentile bootstrap interval (deals resampled with replacement; resamples
    holding one class only are skipped): `olist_ml.ml.metrics.bootstrap_ci` with one deal per
    cluster, the interval `train` reports for this problem."""
    from sklearn.metrics import roc_auc_score

    from ..ml.metrics import bootstrap_ci

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    auc = float(roc_auc_score(y, p)) if y.min() != y.max() else float("nan")
    lo, hi, used = bootstrap_ci(y, p, None, n_boot=n_boot, level=level, seed=seed)
    return AucInterval(auc, lo, hi, len(y), int(y.sum()), used, level)


def readiness(abt: pd.DataFrame, settings: Settings) -> str | None:
    """Why there is nothing to learn yet: no deal's whole label horizon lies inside the observed data."""
    labelled = abt[TARGET].notna()
    h = int(settings.activation.horizon_days)
    if labelled.any() or abt.empty:
        return None
    first = (pd.to_datetime(abt["won_date"]).min() + pd.Timedelta(days=h)).date()
    return (
        f"no labelled deals yet: the first {h}-day window (deal won {pd.to_datetime(abt['won_date']).min().date()}) "
        f"closes on {first}, after the observed end of the data"
    )


PROBLEM = Problem(
    name=NAME,
    kind="binary",
    abt_table=ABT,
    key_columns=("dt_ref", "mql_id"),
    time_column="dt_ref",
    target=TARGET,
    build_abt=build_abt,
    scoring_frame=scoring_frame,
    exclude_columns=NON_FEATURES,
    aliases=("activation", "seller-activation"),
    description="P(a won seller makes a first sale within activation.horizon_days of won_date), at won_date",
    # ~6 labelled months in the real data (won Dec 2017 - May 2018; 3, 73, 113, 147, 207, 122 deals):
    # test = the last 2 (Apr-May), validation = Mar, train = Dec-Feb. Not purged: with the label known
    # only at won_date + 90 days, no March deal is known by the test start (nor any training deal by
    # the validation start), so a purged split has no validation rows at all. Deals are independent
    # and their features are fixed at won_date, so an unpurged training deal whose label resolves
    # later leaks no fact about later deals; what it does not reproduce is the label delay of a
    # deployment (a model at the test start could not have known the last 90 days' outcomes).
    # The split and the horizon: Settings.activation (olist_ml.config.ActivationSettings).
    settings_of=lambda s: s.activation,
    build_step="ingest SOURCE",
    reads=(*MARKETING, "stg_orders", "stg_order_items"),  # deals and leads, and the sellers' first sales
    outcomes=outcomes,
    event_time_column="won_date",
    readiness=readiness,
    label_known_fn=label_known_at,
    baseline=Baseline("chance: the test ROC AUC 95 % CI must lie above 0.5", ci_floor=0.5),
    ci_cluster_column="mql_id",  # one deal per row: the deals are the clusters
)
