"""Seller churn: will an active seller go `churn.horizon_days` days without a sale?

Settings: `Settings.churn` (`olist_ml.config.ChurnSettings`: horizon_days, eligibility_days, cadence,
the split), recorded with every model version and checked when it scores or serves.

Population at each reference date dt_ref: sellers with >= 1 sale in the
`churn.eligibility_days` days before dt_ref. Target (the reference project's definition):
churn = 1 when the seller makes no sale from dt_ref through (its last sale date before
dt_ref) + `churn.horizon_days` days. Labelled only where dt_ref + horizon <= the exclusive
observed end of the data (`warehouse.observed_end`, robust to the real extract's thin tail).
Features: every feature-store column at dt_ref plus churn-specific point-in-time columns
(`churn_columns(windows)`, documented one line each in the SQL header; the sale-day rates
`exp_sale_days_in_horizon_<w>d` follow the feature windows). The ABT SQL is the Jinja template
`sql/abt_seller_churn.sql` (set-based: all dt_refs in one query).

Reference dates come from the feature store, filtered by `churn.cadence`: monthly (default,
first of month) | weekly (Mondays) | daily (all).
"""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd

from ..config import CHURN_CADENCES, Settings
from ..errors import MissingStepError
from ..features.build import READS as FEATURE_READS
from ..features.catalog import F
from ..features.render import render_text
from ..ml.problem import Baseline, Problem
from ..warehouse import observed_end as data_observed_end
from ..warehouse import replace_table_atomically, require_tables
from ._common import read_sql

ABT = "abt_seller_churn"
FEATURES_STEP = "features"  # `olist-ml features ...` builds the feature store
CADENCES = CHURN_CADENCES
# a marketplace-wide silence this long (no order at all) is a hole in the extract, not quiet trade
SILENCE_DAYS = 14
GP_PRIOR_DAYS = 30  # Gamma-Poisson prior: one sale day per 30 days of exposure
# when the row's label became known (first sale in the window, else the window's end): for purging, never a feature
LABEL_KNOWN_AT = "label_known_at"


def _sql_template() -> str:
    return read_sql(f"{ABT}.sql")


def _features():
    from .. import features

    return features


def _require(con: duckdb.DuckDBPyConnection) -> None:
    require_tables(con, ["stg_orders", "stg_order_items"], "ingest SOURCE")
    fs = _features()
    require_tables(con, list(fs.FEATURE_TABLES), f"{FEATURES_STEP} build")


def _available(con) -> list[date]:
    dts = [pd.Timestamp(d).date() for d in _features().available_dt_refs(con)]
    if not dts:
        raise MissingStepError(f"the feature store has no dt_ref rows: run `olist-ml {FEATURES_STEP} build` first")
    return sorted(dts)


def cadence_of(settings: Settings) -> str:
    return settings.churn.cadence  # validated by ChurnSettings


def reference_dates(con, settings: Settings) -> list[date]:
    return cadence_dates(_available(con), settings, f"olist-ml {FEATURES_STEP}")


def cadence_dates(dts: list[date], settings: Settings, features_cmd: str) -> list[date]:
    """The feature-store dt_refs `dts` that are churn reference dates at the settings' cadence (both
    engines); none is a MissingStepError naming `features_cmd build`."""
    cad = cadence_of(settings)
    if cad == "monthly":
        dts = [d for d in dts if d.day == 1]
    elif cad == "weekly":
        dts = [d for d in dts if d.weekday() == 0]
    if not dts:
        raise MissingStepError(
            f"the feature store has no {cad} dt_refs (first of month / Mondays): run "
            f"`{features_cmd} build` with a {cad} cadence or a longer range"
        )
    return dts


# the churn-specific columns; exp_sale_days_in_horizon_<w>d for every feature window w
_CHURN_COLUMNS = (
    "horizon_days_left",
    "exp_sale_days_in_horizon_{w}d",
    "exp_sale_days_in_horizon_lifetime",
    "median_gap_days",
    "p90_gap_days",
    "max_gap_days",
    "pct_gaps_over_horizon",
    "recency_over_median_gap",
    "n_active_weeks_84d",
    "n_sale_days_7d",
    "n_sale_days_14d",
    "n_sale_days_28d",
    "n_orders_7d",
    "n_orders_14d",
    "sale_rate_accel_7_28d",
    "sale_rate_accel_28_90d",
    "p_no_sale_poisson_14d",
    "p_no_sale_poisson_28d",
    "p_no_sale_poisson_90d",
    "p_no_sale_poisson_lifetime",
    "p_gap_over_horizon_given_recency",
    "days_since_2nd_last_sale_day",
    "days_since_3rd_last_sale_day",
    "days_since_5th_last_sale_day",
    "avg_last5_gaps_days",
    "last_gap_days",
    "recency_over_tenure",
    "share_sale_days_last_90d",
    "n_orders_awaiting_carrier",
    "n_orders_in_flight",
    "n_orders_due_after_dt_ref",
    "n_orders_overdue_handover",
    "pct_orders_overdue_handover",
    "neg_log_p_no_sale_gamma_poisson",
    "neg_log_p_no_sale_gamma_poisson_90d",
    "n_products_lifetime",
    "top_product_share_90d",
    "product_hhi_90d",
    "mkt_orders_ratio_30d",
    "mkt_share_orders_30d",
    "mkt_share_orders_ratio",
)
# the sale-day counts the churn columns read besides the feature windows' (7/14/28/90 days)
_SALE_DAY_WINDOWS = (7, 14, 28, 90)


def churn_columns(windows: tuple[int, ...]) -> tuple[str, ...]:
    """The churn-specific columns of the ABT for the feature windows `windows`."""
    out: list[str] = []
    for c in _CHURN_COLUMNS:
        out += [c.format(w=w) for w in sorted(set(windows))] if "{w}" in c else [c]
    return tuple(out)


CHURN_COLUMNS = churn_columns(Settings().feature_windows)  # at the default windows


def abt_sql(
    settings: Settings,
    dts: list[date],
    *,
    labelled: bool = True,
    observed_end: date | None = None,
    feature_names: list[str] = (),
    features_sql: str | None = None,
    engine: str = "duckdb",
) -> str:
    """The ABT query for reference dates `dts`. Churn-specific columns whose name the feature
    store already uses are left out (the feature store's column wins). `features_sql` (default:
    the feature store's `feature_frame_sql()`) must yield dt_ref, seller_id, <features>.

    `observed_end` is the exclusive end of the observed data (`warehouse.observed_end`): a dt_ref
    is labelled iff dt_ref + horizon days <= observed_end. Required when `labelled`.
    `engine`: the SQL dialect ("duckdb" or "spark"; `olist_ml.features.render` macros)."""
    from ..features.render import expand_macros

    if labelled and observed_end is None:
        raise ValueError("abt_sql(labelled=True) needs observed_end (olist_ml.warehouse.observed_end(con))")
    end_sql = f"DATE '{pd.Timestamp(observed_end).date().isoformat()}'" if observed_end is not None else "NULL"
    values = ", ".join(f"(DATE '{d.isoformat()}')" for d in dts)
    windows = tuple(sorted(set(settings.feature_windows)))
    clash = set(feature_names)
    cfg = settings.churn
    sql = render_text(
        _sql_template(),
        # explicit column list (not DuckDB's `c.* EXCLUDE`): the same text runs on Spark
        churn_select=", ".join(f"c.{c}" for c in churn_columns(windows) if c not in clash),
        dates_sql=f"SELECT CAST(d AS DATE) AS dt_ref FROM (VALUES {values}) AS t(d)",
        features_sql=features_sql if features_sql is not None else _features().feature_frame_sql(),
        eligibility_days=int(cfg.eligibility_days),
        horizon_days=int(cfg.horizon_days),
        windows=windows,
        sale_day_windows=sorted(set(windows) | set(_SALE_DAY_WINDOWS)),
        labelled="TRUE" if labelled else "FALSE",
        observed_end=end_sql,
        silence_days=SILENCE_DAYS,
        gp_prior_days=GP_PRIOR_DAYS,
    )
    return expand_macros(sql, engine)


def build_abt(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """(Re)build `abt_seller_churn` over every reference date of the cadence, atomically."""
    _require(con)
    sql = abt_sql(
        settings,
        reference_dates(con, settings),
        observed_end=data_observed_end(con),
        feature_names=_features().feature_columns(con),
    )
    return replace_table_atomically(con, ABT, sql)


def scoring_frame(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date | None = None) -> pd.DataFrame:
    """Eligible sellers at `as_of` (default: the latest feature-store dt_ref) with their features."""
    _require(con)
    dts = _available(con)
    if as_of is None:
        as_of = dts[-1]
    as_of = pd.Timestamp(as_of).date()
    if as_of not in set(dts):
        raise MissingStepError(
            f"the feature store has no dt_ref {as_of} (it has {dts[0]}..{dts[-1]}): "
            f"run `olist-ml {FEATURES_STEP} build` for that date"
        )
    df = con.execute(abt_sql(settings, [as_of], labelled=False, feature_names=_features().feature_columns(con))).df()
    return df.drop(columns=["churn", LABEL_KNOWN_AT])


def label_known_at(df: pd.DataFrame, settings: Settings) -> pd.Series:
    """When a row's churn label is known whatever it turns out to be: the end of its no-sale
    window, dt_ref + horizon_days_left days (the window runs through the last sale date + horizon;
    a sale inside it would settle churn = 0 earlier, but purging on that would select on the
    outcome). Without horizon_days_left: dt_ref + the full horizon."""
    t = pd.to_datetime(df["dt_ref"])
    horizon = int(settings.churn.horizon_days)
    if "horizon_days_left" in df.columns:
        left = pd.to_numeric(df["horizon_days_left"], errors="coerce").fillna(horizon).clip(upper=horizon)
        return t + pd.to_timedelta(left, unit="D")
    return t + pd.Timedelta(days=horizon)


def outcomes(con: duckdb.DuckDBPyConnection, settings: Settings, scored: pd.DataFrame) -> pd.DataFrame:
    """`Problem.outcomes`: the churn label of scored (dt_ref, seller) rows as known now, by the ABT's rule
    (no sale from dt_ref through the last sale date before dt_ref + horizon days): 0 from the first sale in
    that window (decided early), 1 once the window closed without one. `label_known_at` is the window's
    end, dt_ref + horizon_days_left, when the label is known whatever it turns out to be."""
    end = pd.Timestamp(data_observed_end(con))
    h = int(settings.churn.horizon_days)
    con.register("_olist_scored", scored[["dt_ref", "seller_id"]].drop_duplicates())
    try:
        return con.execute(
            f"""
            WITH sc AS (SELECT CAST(dt_ref AS DATE) AS dt_ref, seller_id FROM _olist_scored),
            sales AS (
                SELECT DISTINCT i.seller_id, o.order_purchase_timestamp AS ts
                FROM stg_order_items i JOIN stg_orders o ON o.order_id = i.order_id
                WHERE i.seller_id IN (SELECT seller_id FROM sc) AND o.order_purchase_timestamp < ?
            ),
            w AS (
                SELECT sc.dt_ref, sc.seller_id,
                       CAST(CAST(max(s.ts) AS DATE) + INTERVAL {h + 1} DAY AS TIMESTAMP) AS window_end
                FROM sc LEFT JOIN sales s ON s.seller_id = sc.seller_id AND s.ts < sc.dt_ref
                GROUP BY ALL
            ),
            f AS (
                SELECT w.dt_ref, w.seller_id, w.window_end, min(s.ts) AS first_sale
                FROM w LEFT JOIN sales s ON s.seller_id = w.seller_id AND s.ts >= w.dt_ref AND s.ts < w.window_end
                GROUP BY ALL
            )
            SELECT dt_ref, seller_id,
                   CAST(CASE WHEN first_sale IS NOT NULL THEN 0 WHEN window_end <= ? THEN 1 END AS INTEGER) AS label,
                   window_end AS label_known_at
            FROM f
            """,
            [end, end],
        ).df()
    finally:
        con.unregister("_olist_scored")


def recency(df: pd.DataFrame) -> np.ndarray:
    """The baseline: days since the seller's last sale (longer silence, more likely churn)."""
    return pd.to_numeric(df[RECENCY], errors="coerce").to_numpy(dtype=float)


RECENCY = F.days_since_last_sale.column()
RECENT_SALE_DAYS = 14


def horizon_buckets(horizon_days: int) -> tuple[tuple[int, int], ...]:
    """Thirds of the no-sale window by days left: (1, 15), (16, 30), (31, 45) for 45 days."""
    h = int(horizon_days)
    cuts = [0, round(h / 3), round(2 * h / 3), h]
    return tuple((cuts[i] + 1, cuts[i + 1]) for i in range(3) if cuts[i + 1] > cuts[i])


HORIZON_BUCKETS = horizon_buckets(Settings().churn.horizon_days)  # at the default horizon


def actionable_metrics(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, settings: Settings) -> dict[str, float]:
    """The problem's extra metrics: how well the model ranks sellers one can still act on.

    The no-sale window shrinks with recency (horizon - days since the last sale), so a seller with few
    days left is mostly already silent: ROC AUC per third of the window by days left (<= 15, 16-30,
    31-45 for the default 45 days) and for sellers who sold in the last 14 days (`roc_auc_sold_14d`),
    with row counts and churn rates."""
    from ..ml.metrics import ranking_metric

    out: dict[str, float] = {}
    left = (
        pd.to_numeric(frame["horizon_days_left"], errors="coerce").to_numpy(dtype=float)
        if "horizon_days_left" in frame.columns
        else np.full(len(y), np.nan)
    )
    rec = (
        pd.to_numeric(frame[RECENCY], errors="coerce").to_numpy(dtype=float)
        if RECENCY in frame.columns
        else np.full(len(y), np.nan)
    )
    buckets = horizon_buckets(settings.churn.horizon_days)
    groups = [(f"left_{lo}_{hi}d", (left >= lo) & (left <= hi)) for lo, hi in buckets]
    groups.append((f"sold_{RECENT_SALE_DAYS}d", rec <= RECENT_SALE_DAYS))
    for name, m in groups:
        out[f"roc_auc_{name}"] = ranking_metric("roc_auc", y[m], p[m]) if m.sum() > 1 else float("nan")
        out[f"n_{name}"] = float(m.sum())
        out[f"churn_rate_{name}"] = float(y[m].mean()) if m.any() else float("nan")
    return out


PROBLEM = Problem(
    name="seller_churn",
    kind="binary",
    abt_table=ABT,
    key_columns=("dt_ref", "seller_id"),
    time_column="dt_ref",
    group_column="seller_id",
    target="churn",
    build_abt=build_abt,
    scoring_frame=scoring_frame,
    aliases=("churn",),
    description="P(an active seller completes churn.horizon_days days without a sale)",
    # split (test: the last 3 labelled months; validation: the 3 before; purged by label_known_at),
    # horizon, eligibility and cadence: Settings.churn (olist_ml.config.ChurnSettings)
    settings_of=lambda s: s.churn,
    reads=FEATURE_READS,  # the feature store's facts (the churn columns read orders and items too)
    outcomes=outcomes,
    uses_features=(F.days_since_last_sale,),
    build_step=f"{FEATURES_STEP} build",
    exposure_column="horizon_days_left",  # churn = no sale during these days: the hazard_glm candidate
    exclude_columns=(LABEL_KNOWN_AT,),
    label_known_fn=label_known_at,
    baseline=Baseline(
        "recency alone (days_since_last_sale as the score)", score=recency, sql=f"CAST({RECENCY} AS DOUBLE)"
    ),
    extra_metrics=actionable_metrics,
)
