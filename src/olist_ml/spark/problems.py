"""The problems on the Spark engine: their ABT and scoring population as Spark DataFrames.

The engine interface a problem plugs into is the same on both engines: the problem module renders
its SQL for an engine (`churn.abt_sql(..., engine=)`, `activation.deals_sql(..., engine)`; the
macros of `olist_ml.features.render`), and each engine runs it against tables of the same names
(`stg_*`, `fs_seller_*`: DuckDB tables there, temp views over lake tables here). An adapter below
(`SparkProblem`) says which SQL builds the ABT and which rows are scored; everything else (training
on the driver, scoring with `mlflow.pyfunc.spark_udf`, lineage) is generic.

Adding a problem: write `build_abt(env, settings) -> DataFrame` and `scoring_frame(env, settings,
as_of) -> DataFrame` from the module's SQL renderer and register `SparkProblem(name, build_abt,
scoring_frame)` in `SPARK_PROBLEMS`. Order delay declares its SQL as a `Query` (temp tables, then the
query: `order_delay.abt_query` / `scoring_query`), which `run_query` runs here and
`order_delay._run` on DuckDB.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ..config import Settings
from ..errors import MissingStepError, NotReadyError, UnknownNameError
from ..features.build import REQUIRED_STG
from ..features.catalog import FEATURE_TABLES, KEY_COLUMNS
from ..features.retrieval import SPINE
from .features import MONTH, available_dt_refs
from .lake import Lake
from .session import get_spark
from .warehouse import observed_end, register_stg, scalar, view_exists


@dataclass
class SparkEnv:
    """A session over one lake with the stg and feature tables registered as temp views."""

    spark: object
    lake: Lake
    settings: Settings
    _features: dict[str, list[str]] = field(default_factory=dict)  # table -> feature columns
    _obs_end: dt.date | None = None

    @classmethod
    def open(cls, settings: Settings, *, features: bool = True) -> SparkEnv:
        spark = get_spark(settings)
        env = cls(spark, Lake(spark, settings.lake_uri), settings)
        register_stg(env.lake, required=REQUIRED_STG)
        if features:
            for t in FEATURE_TABLES:
                if env.lake.exists(t):
                    df = env.lake.read(t).drop(MONTH)
                    df.createOrReplaceTempView(t)
                    env._features[t] = [c for c in df.columns if c not in KEY_COLUMNS]
        return env

    # ---- the feature store ------------------------------------------------------------------
    def require_features(self) -> None:
        missing = [t for t in FEATURE_TABLES if t not in self._features]
        if missing:
            raise MissingStepError(
                f"lake {self.lake.root} has no table {', '.join(missing)}: "
                "run `olist-ml --engine spark features build` first"
            )

    def feature_columns(self) -> list[str]:
        return [c for t in FEATURE_TABLES for c in self._features.get(t, [])]

    def feature_frame_sql(self) -> str:
        """`features.feature_frame_sql` with explicit column lists (portable: no `* EXCLUDE`)."""
        self.require_features()
        sel = ["s.dt_ref", "s.seller_id"]
        joins = []
        for i, t in enumerate(FEATURE_TABLES):
            alias = "s" if t == SPINE else f"t{i}"
            sel += [f"{alias}.{c}" for c in self._features[t]]
            if alias != "s":
                joins.append(f"LEFT JOIN {t} {alias} ON {alias}.dt_ref = s.dt_ref AND {alias}.seller_id = s.seller_id")
        return "SELECT " + ", ".join(sel) + f" FROM {SPINE} s " + " ".join(joins)

    def dt_refs(self) -> list[dt.date]:
        dts = available_dt_refs(self.lake)
        if not dts:
            raise MissingStepError(
                "the feature store has no dt_ref rows: run `olist-ml --engine spark features build` first"
            )
        return dts

    def observed_end(self) -> dt.date:
        if self._obs_end is None:
            self._obs_end = observed_end(self.spark)
        return self._obs_end


@dataclass(frozen=True)
class SparkProblem:
    name: str
    build_abt: Callable[[SparkEnv, Settings], object]  # -> Spark DataFrame (the ABT rows)
    scoring_frame: Callable[[SparkEnv, Settings, dt.date | None], object]  # -> Spark DataFrame
    # the scoring frame's row order as on DuckDB (SQL expressions): ties of the score are broken by it
    # when deciles are assigned, exactly as `scoring.deciles` breaks them by frame order
    frame_order: tuple[str, ...] = ("seller_id",)
    needs_features: bool = True


# ---- churn -----------------------------------------------------------------------------------------
def _churn_dates(env: SparkEnv, settings: Settings) -> list[dt.date]:
    from ..problems import churn

    return churn.cadence_dates(env.dt_refs(), settings, "olist-ml --engine spark features")


def churn_abt(env: SparkEnv, settings: Settings):
    from ..problems import churn

    sql = churn.abt_sql(
        settings,
        _churn_dates(env, settings),
        observed_end=env.observed_end(),
        feature_names=env.feature_columns(),
        features_sql=env.feature_frame_sql(),
        engine="spark",
    )
    return env.spark.sql(sql)


def churn_scoring_frame(env: SparkEnv, settings: Settings, as_of: dt.date | None = None):
    from ..problems import churn

    dts = env.dt_refs()
    d = pd.Timestamp(as_of).date() if as_of is not None else dts[-1]
    if d not in set(dts):
        raise MissingStepError(
            f"the feature store has no dt_ref {d} (it has {dts[0]}..{dts[-1]}): "
            "run `olist-ml --engine spark features build` for that date"
        )
    sql = churn.abt_sql(
        settings,
        [d],
        labelled=False,
        feature_names=env.feature_columns(),
        features_sql=env.feature_frame_sql(),
        engine="spark",
    )
    return env.spark.sql(sql).drop("churn", churn.LABEL_KNOWN_AT)


# ---- activation ------------------------------------------------------------------------------------
def _deals(env: SparkEnv, settings: Settings):
    from ..problems import activation

    missing = [t for t in activation.MARKETING if not view_exists(env.spark, t)]
    if missing:
        raise NotReadyError(
            f"lake has no {', '.join(missing)}: the marketing-funnel files "
            "(olist_marketing_qualified_leads_dataset.csv, "
            "olist_closed_deals_dataset.csv) were not ingested; add them to SOURCE and run "
            "`olist-ml --engine spark ingest SOURCE`"
        )
    return env.spark.sql(activation.deals_sql(settings, env.observed_end(), "spark"))


def activation_abt(env: SparkEnv, settings: Settings):
    from pyspark.sql import functions as F

    from ..problems import activation

    df = _deals(env, settings).drop("observed_end")
    return df.withColumn(activation.TARGET, F.col(activation.TARGET).cast("bigint")).orderBy("dt_ref", "mql_id")


def activation_scoring_frame(env: SparkEnv, settings: Settings, as_of: dt.date | None = None):
    """`activation.scoring_frame` on Spark: deals won before the date, horizon open, not sold yet."""
    from pyspark.sql import functions as F

    from ..problems import activation

    d = pd.Timestamp(as_of).date() if as_of is not None else env.observed_end()
    h = int(settings.activation.horizon_days)
    day = F.lit(d.isoformat()).cast("timestamp_ntz")
    df = _deals(env, settings)
    keep = (
        (F.col("won_date") < day)
        & (F.col("won_date") + F.expr(f"INTERVAL {h} DAY") > day)
        & (F.col("first_sale_ts").isNull() | (F.col("first_sale_ts") >= day))
    )
    return (
        df.where(keep)
        .drop("observed_end", activation.TARGET, "label_known_at")
        .withColumn("dt_ref", F.lit(d).cast("date"))
    )


# ---- segments --------------------------------------------------------------------------------------
def segments_dt_ref(env: SparkEnv) -> dt.date:
    """`segments.default_dt_ref` on the lake: the latest dt_ref on or before the observed end."""
    dts = env.dt_refs()
    end = env.observed_end()
    before = [d for d in dts if d <= end]
    return before[-1] if before else dts[-1]


def segments_population(env: SparkEnv, settings: Settings, as_of: dt.date | None = None, curated: bool = True):
    from ..problems import segments

    d = pd.Timestamp(as_of).date() if as_of is not None else segments_dt_ref(env)
    if d not in set(env.dt_refs()):
        raise MissingStepError(
            f"the feature store has no dt_ref {d}: run `olist-ml --engine spark features build --start {d} --end {d}`"
        )
    cols = env.feature_columns()
    feats = segments.curated_features(settings, cols) if curated else cols
    active = f"n_orders_{segments.window(settings)}d"
    cond = f"AND coalesce(f.{active}, 0) > 0" if active in cols else ""
    return env.spark.sql(
        f"SELECT CAST(f.dt_ref AS DATE) AS dt_ref, f.seller_id, {', '.join('f.' + c for c in feats)} "
        f"FROM ({env.feature_frame_sql()}) f WHERE f.dt_ref = DATE '{d.isoformat()}' {cond} "
        "ORDER BY f.seller_id"
    )


def segments_abt(env: SparkEnv, settings: Settings):
    return segments_population(env, settings)


# ---- order delay -----------------------------------------------------------------------------------
def _delay_env(env: SparkEnv) -> None:
    """What the order-delay SQL reads besides the stg views: `geo_zip_coordinates` (a temp view here)."""
    from .. import geo
    from ..problems import order_delay

    missing = [t for t in order_delay.STG_TABLES if not view_exists(env.spark, t)]
    if missing:
        raise MissingStepError(
            f"lake {env.lake.root} has no {', '.join(missing)}: run `olist-ml --engine spark ingest SOURCE` first"
        )
    sql = geo.zip_coordinates_sql(has_table=lambda t: view_exists(env.spark, t))
    env.spark.sql(sql).createOrReplaceTempView(geo.GEO_TABLE)


def run_query(env: SparkEnv, query):
    """A problem's `Query` (temp tables, then the query; `order_delay.Query`) on Spark, computed once. Each
    temp table is a checkpointed temp view (a leaf of the later plans: referenced from many CTEs, a view's
    whole plan would be copied into each reference, and the ABT's analysis ran out of a 1 GiB driver's
    memory), and so is the result (scoring reads it several times)."""
    made = []
    try:
        for name, sql in query.temps:
            env.spark.sql(sql).localCheckpoint(eager=True).createOrReplaceTempView(name)
            made.append(name)
        return env.spark.sql(query.sql).localCheckpoint(eager=True)
    finally:
        for name in reversed(made):  # the checkpoints' blocks go with their last reference
            env.spark.catalog.dropTempView(name)


def order_delay_abt(env: SparkEnv, settings: Settings):
    """`order_delay.build_abt` on Spark: the same rows (`order_delay.abt_query` rendered for Spark)."""
    from ..problems import order_delay

    _delay_env(env)
    delivered = scalar(env.spark, "SELECT count(order_delivered_customer_date) FROM stg_orders")
    end = observed_end(env.spark, column="order_delivered_customer_date") if delivered else None
    df = run_query(env, order_delay.abt_query(end, int(settings.delay.step_days), engine="spark"))
    return df.select(*order_delay.abt_columns(df.columns))


def order_delay_scoring_frame(env: SparkEnv, settings: Settings, as_of: dt.date | None = None):
    """`order_delay.scoring_frame` on Spark: the orders open at the date, each with its row at it."""
    from ..problems import order_delay

    _delay_env(env)
    d = pd.Timestamp(as_of).date() if as_of is not None else env.observed_end()
    return run_query(env, order_delay.scoring_query(d, engine="spark")).drop("approved_at")


SPARK_PROBLEMS: dict[str, SparkProblem] = {
    "seller_churn": SparkProblem("seller_churn", churn_abt, churn_scoring_frame),
    "seller_activation": SparkProblem(
        "seller_activation",
        activation_abt,
        activation_scoring_frame,
        frame_order=("CAST(won_date AS DATE)", "mql_id"),
        needs_features=False,
    ),
    "seller_segments": SparkProblem("seller_segments", segments_abt, segments_population),
    "order_delay": SparkProblem(
        "order_delay",
        order_delay_abt,
        order_delay_scoring_frame,
        frame_order=("purchase_ts", "order_id"),
        needs_features=False,
    ),
}


def spark_problem(name: str) -> SparkProblem:
    if name not in SPARK_PROBLEMS:
        raise UnknownNameError(f"problem {name} has no Spark adapter: valid ones are {', '.join(SPARK_PROBLEMS)}")
    return SPARK_PROBLEMS[name]
