"""Seller activation: will a seller won by the sales team make a first sale within 90 days?

Grain: one row per closed deal (`mql_id`). `dt_ref` is the deal's won DATE in the ABT (drives
the out-of-time split) and the scoring date in `scores_seller_activation`.

Target `activated` = 1 when the seller's first order (by purchase timestamp, any order that
holds one of its items) falls in [won_date, won_date + Settings.activation_horizon_days).
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
horizon: won_date + 90 days <= 2018-08-24, i.e. won by 2018-05-25), so `olist-ml train activation` reports the OOT ROC AUC with a
percentile bootstrap interval: `oot_confidence` is the problem's `extra_metrics` hook, applied
to every candidate's OOT predictions and logged as `oot_roc_auc_ci_low/high` (+ `best_oot_*`
on the parent run). Bootstrap resamples: Settings.extra["bootstrap"] (default 2000).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import MissingStepError, NotReadyError
from ..ml.problem import Problem, SplitConfig
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

    sql = read_sql("activation_deals.sql").format(horizon_days=int(settings.activation_horizon_days),
                                                   observed_end=pd.Timestamp(end).date().isoformat())
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
    horizon = pd.Timedelta(days=int(settings.activation_horizon_days))
    won = pd.to_datetime(df["won_date"])
    sold = pd.to_datetime(df["first_sale_ts"])
    keep = (won < d) & (won + horizon > d) & (sold.isna() | (sold >= d))
    out = df[keep].drop(columns=["observed_end", TARGET, "label_known_at"]).copy()
    out["dt_ref"] = d.date()
    return out.reset_index(drop=True)


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
    """ROC AUC with a percentile bootstrap interval (rows resampled with replacement; resamples
    holding one class only are skipped)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    auc = float(roc_auc_score(y, p)) if y.min() != y.max() else float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    n = len(y)
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        stats.append(roc_auc_score(yb, p[idx]))
    if not stats:
        return AucInterval(auc, float("nan"), float("nan"), n, int(y.sum()), 0, level)
    a = (1 - level) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return AucInterval(auc, float(lo), float(hi), n, int(y.sum()), len(stats), level)


def oot_confidence(y, p, settings: Settings) -> dict[str, float]:
    """The problem's `extra_metrics` hook: 95% bootstrap interval of the OOT ROC AUC."""
    n_boot = int((settings.extra or {}).get("bootstrap", 2000))
    ci = bootstrap_auc(y, p, n_boot=n_boot, seed=settings.seed)
    return {"roc_auc_ci_low": ci.low, "roc_auc_ci_high": ci.high, "n_positive": float(ci.n_pos),
            "n_rows": float(ci.n)}


def log_oot_confidence(settings: Settings, result, *, n_boot: int = 2000) -> dict[str, AucInterval]:
    """Recompute, after `olist_ml.ml.train.train(PROBLEM, ...)`, the bootstrap interval of every
    candidate's OOT ROC AUC with another `n_boot` and log it to its nested run (and the
    winner's to the parent run). `train` already logs it (`oot_confidence` hook); this is for
    re-running with another number of resamples on an existing result.

    Re-creates the same OOT rows from the run's lineage (ABT rows with dt_ref in the OOT range).
    """
    import mlflow.sklearn

    from ..ml import tracking
    from ..warehouse import session

    lin = result.lineage
    with session(settings, read_only=True) as con:
        oot = con.execute(
            f"SELECT * FROM {ABT} WHERE {TARGET} IS NOT NULL AND dt_ref BETWEEN ? AND ? ORDER BY dt_ref, mql_id",
            [lin["oot_dt_ref_min"], lin["oot_dt_ref_max"]],
        ).df()
    client = tracking.client(settings)
    out: dict[str, AucInterval] = {}
    for c in result.candidates:
        model = mlflow.sklearn.load_model(c.model_uri)
        p = np.asarray(model.predict_proba(oot))[:, 1]
        ci = bootstrap_auc(oot[TARGET].to_numpy(), p, n_boot=n_boot, seed=settings.seed)
        out[c.name] = ci
        for k, v in (("oot_roc_auc_ci_low", ci.low), ("oot_roc_auc_ci_high", ci.high),
                     ("oot_n_positive", ci.n_pos)):
            client.log_metric(c.run_id, k, float(v))
        if c.name == result.winner:
            client.log_metric(result.parent_run_id, "best_oot_roc_auc_ci_low", ci.low)
            client.log_metric(result.parent_run_id, "best_oot_roc_auc_ci_high", ci.high)
    return out


def readiness(abt: pd.DataFrame, settings: Settings) -> str | None:
    """Why there is nothing to learn yet: no deal's whole label horizon lies inside the observed data."""
    labelled = abt[TARGET].notna()
    h = int(settings.activation_horizon_days)
    if labelled.any() or abt.empty:
        return None
    first = (pd.to_datetime(abt["won_date"]).min() + pd.Timedelta(days=h)).date()
    return (f"no labelled deals yet: the first {h}-day window (deal won {pd.to_datetime(abt['won_date']).min().date()}) "
            f"closes on {first}, after the observed end of the data")


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
    description="P(a won seller makes a first sale within activation_horizon_days of won_date), at won_date",
    # ~5 labelled months in the real data (Dec 2017 - Jun 2018): the last 2 are out of time.
    # No purge: deals are independent and their features are fixed at won_date, so a training
    # deal whose 90-day label resolves after the OOT start leaks nothing about OOT rows; purging
    # the full horizon would leave ~80 training deals. (A strict deployment backtest would purge.)
    split=SplitConfig(oot_months=2, cv_folds=3, purge_days=0),
    build_step="ingest SOURCE",
    event_time_column="won_date",
    extra_metrics=oot_confidence,
    readiness=readiness,
)
