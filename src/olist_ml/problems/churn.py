"""Seller churn: will an active seller go `churn_horizon_days` days without a sale?

Population at each reference date dt_ref: sellers with >= 1 sale in the
`churn_eligibility_days` days before dt_ref. Target (the reference project's definition):
churn = 1 when the seller makes no sale from dt_ref through (its last sale date before
dt_ref) + `churn_horizon_days` days. Labelled only where dt_ref + horizon <= the exclusive
observed end of the data (`warehouse.observed_end`, robust to the real extract's thin tail).
Features: every feature-store column at dt_ref plus churn-specific point-in-time columns
(`CHURN_COLUMNS`, documented one line each in the SQL header). The ABT SQL is
`sql/abt_seller_churn.sql` (set-based: all dt_refs in one query).

Reference dates come from the feature store, filtered by cadence (Settings.extra
["churn_cadence"]: monthly (default, first of month) | weekly (Mondays) | daily (all)).
"""

from __future__ import annotations

from datetime import date
from importlib.resources import files

import duckdb
import pandas as pd

from ..config import Settings
from ..errors import MissingStepError, UnknownNameError
from ..ml.problem import Problem, SplitConfig
from ..warehouse import observed_end as data_observed_end
from ..warehouse import replace_table_atomically, require_tables

ABT = "abt_seller_churn"
FEATURES_STEP = "features"  # `olist-ml features ...` builds the feature store
CADENCES = ("monthly", "weekly", "daily")
# a marketplace-wide silence this long (no order at all) is a hole in the extract, not quiet trade
SILENCE_DAYS = 14
GP_PRIOR_DAYS = 30  # Gamma-Poisson prior: one sale day per 30 days of exposure
# when the row's label became known (first sale in the window, else the window's end): for purging, never a feature
LABEL_KNOWN_AT = "label_known_at"


def _sql_template() -> str:
    return files("olist_ml.problems").joinpath("sql", f"{ABT}.sql").read_text(encoding="utf-8")


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
    c = str((settings.extra or {}).get("churn_cadence", "monthly")).lower()
    if c not in CADENCES:
        raise UnknownNameError(f"unknown churn cadence '{c}': choose from {', '.join(CADENCES)}")
    return c


def reference_dates(con, settings: Settings) -> list[date]:
    dts = _available(con)
    cad = cadence_of(settings)
    if cad == "monthly":
        dts = [d for d in dts if d.day == 1]
    elif cad == "weekly":
        dts = [d for d in dts if d.weekday() == 0]
    if not dts:
        raise MissingStepError(f"the feature store has no {cad} dt_refs (first of month / Mondays): run "
                               f"`olist-ml {FEATURES_STEP} build` with a {cad} cadence or a longer range")
    return dts


CHURN_COLUMNS = ("horizon_days_left", "exp_sale_days_in_horizon_30d", "exp_sale_days_in_horizon_90d",
                 "exp_sale_days_in_horizon_180d", "exp_sale_days_in_horizon_lifetime", "median_gap_days",
                 "p90_gap_days", "max_gap_days", "pct_gaps_over_horizon", "recency_over_median_gap",
                 "n_active_weeks_84d", "n_sale_days_7d", "n_sale_days_14d", "n_sale_days_28d", "n_orders_7d",
                 "n_orders_14d", "sale_rate_accel_7_28d", "sale_rate_accel_28_90d", "p_no_sale_poisson_14d",
                 "p_no_sale_poisson_28d", "p_no_sale_poisson_90d", "p_no_sale_poisson_lifetime",
                 "p_gap_over_horizon_given_recency", "days_since_2nd_last_sale_day", "days_since_3rd_last_sale_day",
                 "days_since_5th_last_sale_day", "avg_last5_gaps_days", "last_gap_days", "recency_over_tenure",
                 "share_sale_days_last_90d", "n_orders_awaiting_carrier", "n_orders_in_flight",
                 "n_orders_due_after_dt_ref", "n_orders_overdue_handover", "pct_orders_overdue_handover",
                 "neg_log_p_no_sale_gamma_poisson", "neg_log_p_no_sale_gamma_poisson_90d", "n_products_lifetime",
                 "top_product_share_90d", "product_hhi_90d",
                 "mkt_orders_ratio_30d", "mkt_share_orders_30d", "mkt_share_orders_ratio")


def abt_sql(settings: Settings, dts: list[date], *, labelled: bool = True, observed_end: date | None = None,
            feature_names: list[str] = (), features_sql: str | None = None, engine: str = "duckdb") -> str:
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
    clash = set(feature_names)
    sql = _sql_template().format(
        churn_columns=", ".join(f"c.{c}" for c in CHURN_COLUMNS if c not in clash),
        horizon_plus_one=int(settings.churn_horizon_days) + 1,
        dates_sql=f"SELECT CAST(d AS DATE) AS dt_ref FROM (VALUES {values}) AS t(d)",
        features_sql=features_sql if features_sql is not None else _features().feature_frame_sql(),
        eligibility_days=int(settings.churn_eligibility_days),
        horizon_days=int(settings.churn_horizon_days),
        labelled="TRUE" if labelled else "FALSE",
        observed_end=end_sql,
        silence_days=SILENCE_DAYS,
        gp_prior_days=GP_PRIOR_DAYS,
    )
    return expand_macros(sql, engine)


def build_abt(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """(Re)build `abt_seller_churn` over every reference date of the cadence, atomically."""
    _require(con)
    sql = abt_sql(settings, reference_dates(con, settings), observed_end=data_observed_end(con),
                  feature_names=_features().feature_columns(con))
    return replace_table_atomically(con, ABT, sql)


def scoring_frame(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date | None = None) -> pd.DataFrame:
    """Eligible sellers at `as_of` (default: the latest feature-store dt_ref) with their features."""
    _require(con)
    dts = _available(con)
    if as_of is None:
        as_of = dts[-1]
    as_of = pd.Timestamp(as_of).date()
    if as_of not in set(dts):
        raise MissingStepError(f"the feature store has no dt_ref {as_of} (it has {dts[0]}..{dts[-1]}): "
                               f"run `olist-ml {FEATURES_STEP} build` for that date")
    df = con.execute(abt_sql(settings, [as_of], labelled=False, feature_names=_features().feature_columns(con))).df()
    return df.drop(columns=["churn", LABEL_KNOWN_AT])


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
    description="P(an active seller completes churn_horizon_days days without a sale)",
    split=SplitConfig(oot_months=None, cv_folds=3, purge_days="churn_horizon_days"),
    build_step=f"{FEATURES_STEP} build",
    exposure_column="horizon_days_left",  # churn = no sale during these days: the hazard_glm candidate
    exclude_columns=(LABEL_KNOWN_AT,),
)
