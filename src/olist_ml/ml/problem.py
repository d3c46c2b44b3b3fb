"""A problem is a small declaration: which ABT, which keys/time/target, which features.

The generic machinery (training, registry, scoring) only ever sees a `Problem`; everything
problem-specific (the ABT SQL, the population to score) lives in `olist_ml.problems.<name>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import MissingStepError
from ..warehouse import table_exists

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL")
_CATEGORICAL = ("VARCHAR", "BOOLEAN", "ENUM")


@dataclass(frozen=True)
class SplitConfig:
    """How a problem's labelled rows are split in time.

    oot_months: the last N labelled calendar months are the out-of-time test set (None ->
        `Settings.oot_months`).
    cv_folds: time-ordered, group-disjoint folds used for model selection inside the training period.
    purge_days: rows whose label horizon reaches into the next period are dropped from the
        training side (int, or the name of a `Settings` attribute such as "churn_horizon_days").
    """

    oot_months: int | None = None
    cv_folds: int = 3
    purge_days: int | str | None = None

    def purge(self, settings: Settings) -> int:
        if self.purge_days is None:
            return 0
        if isinstance(self.purge_days, str):
            return int(getattr(settings, self.purge_days))
        return int(self.purge_days)


BuildAbt = Callable[[duckdb.DuckDBPyConnection, Settings], int]
ScoringFrame = Callable[[duckdb.DuckDBPyConnection, Settings, "date | None"], pd.DataFrame]
# train_fn(problem, settings, **budget) -> olist_ml.ml.train.TrainResult (budget: the keyword
# arguments of `olist_ml.ml.train.train`; a hook ignores the ones it has no use for)
TrainFn = Callable[..., Any]
# score_fn(problem, settings, as_of, top_n=...) -> olist_ml.ml.scoring.ScoreReport
ScoreFn = Callable[..., Any]
# extra_metrics(y, p, settings) -> {name: value}: more OOT metrics of a binary candidate
ExtraMetrics = Callable[[np.ndarray, np.ndarray, Settings], "dict[str, float]"]
# readiness(abt, settings) -> reason why nothing can be learned yet (None: the generic message)
Readiness = Callable[[pd.DataFrame, Settings], "str | None"]


@dataclass(frozen=True)
class Problem:
    """Declaration of one ML problem on the shared machinery.

    name: registered model name, MLflow experiment name and `scores_<name>` suffix.
    kind: "binary" (classifier; score = P(target = 1)) or "cluster" (score = cluster id).
    abt_table: warehouse table written by `build_abt`.
    key_columns: the row key of the ABT and of the scores table (time column included).
    time_column: the reference date (drives the out-of-time split and CV order).
        Score-date convention: in the output of `scoring_frame` and in `scores_<name>` the time
        column is ALWAYS the scoring date (as_of), one value per frame. For panel problems
        (one row per entity x dt_ref: churn, segments) the ABT's time column is that date too.
        For event problems (one row per order / deal: order_delay, activation) the ABT's time
        column is the event's date (purchase / won date); their `scoring_frame` overwrites it
        with the scoring date and `event_time_column` keeps the event time.
    event_time_column: event problems only: the column holding the event's time (e.g.
        `purchase_ts`). `scoring.predict` checks that every scored event happened strictly
        before the scoring date (nothing from the future is scored).
    group_column: rows of one entity (e.g. seller) never sit on both sides of a CV fold.
    target: label column (NULL = not yet labelled / scoring only). None for clustering.
    categorical_features / numeric_features: explicit lists, or None to derive them from the
        ABT columns (VARCHAR/BOOLEAN -> categorical, numbers -> numeric) minus keys, target,
        `exclude_columns`.
    build_abt(con, settings) -> rows: builds `abt_table` atomically.
    scoring_frame(con, settings, as_of) -> DataFrame with key columns + features of the
        population to score at `as_of` (None -> the problem's default scoring date).
    Hooks (None -> the generic machinery):
    train_fn(problem, settings, **budget) -> TrainResult: replaces `olist_ml.ml.train.train`'s
        generic path (e.g. segments: k by silhouette, stability, profiles and names). It must
        log to the experiment `name`, tag its top run `role=parent` + `abt_content_hash`,
        and own the `champion` alias of the registered model `name` (only one path writes it).
    score_fn(problem, settings, as_of, top_n=...) -> ScoreReport: replaces
        `olist_ml.ml.scoring.predict`'s generic path; it must still write `scores_<name>`.
    exposure_column: binary problems whose target is 1 when NO event happens during a window
        whose length (> 0) is this column (e.g. churn: no sale during `horizon_days_left` days):
        enables the `hazard_glm` candidate (P(y=1) = exp(-rate x exposure)), which then joins the
        default candidates.
    extra_metrics(y, p, settings) -> dict: binary problems: more metrics of every candidate's
        OOT predictions (e.g. a bootstrap interval of the ROC AUC), merged into its OOT
        metrics, logged as `oot_<key>` on the candidate's run (`best_oot_<key>` on the
        parent for the winner) and shown by `olist-ml train`.
    readiness(abt, settings) -> str | None: called when the labelled rows do not hold both classes;
        returns the stated reason why there is nothing to learn yet (`errors.NotReadyError`: `olist-ml
        run` reports the problem as skipped, exit 0), e.g. when the first label horizon closes.
    """

    name: str
    kind: Literal["binary", "cluster"]
    abt_table: str
    key_columns: tuple[str, ...]
    time_column: str
    build_abt: BuildAbt
    scoring_frame: ScoringFrame
    target: str | None = None
    group_column: str | None = None
    categorical_features: tuple[str, ...] | None = None
    numeric_features: tuple[str, ...] | None = None
    exclude_columns: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    description: str = ""
    split: SplitConfig = field(default_factory=SplitConfig)
    candidates: tuple[str, ...] | None = None  # None -> the default candidates of `kind`
    primary_metric: str | None = None  # None -> roc_auc (binary) / silhouette (cluster)
    build_step: str = "features build"  # the `olist-ml ...` step that must run before build_abt
    event_time_column: str | None = None
    train_fn: TrainFn | None = None
    score_fn: ScoreFn | None = None
    extra_metrics: ExtraMetrics | None = None
    exposure_column: str | None = None
    readiness: Readiness | None = None

    @property
    def scores_table(self) -> str:
        return f"scores_{self.name}"

    @property
    def metric(self) -> str:
        return self.primary_metric or ("roc_auc" if self.kind == "binary" else "silhouette")

    def _non_features(self) -> set[str]:
        cols = set(self.key_columns) | {self.time_column} | set(self.exclude_columns)
        if self.event_time_column:
            cols.add(self.event_time_column)
        if self.group_column:
            cols.add(self.group_column)
        if self.target:
            cols.add(self.target)
        return cols

    def features_of(self, con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
        """(categorical, numeric) feature names: declared ones, or derived from the ABT's columns."""
        if self.categorical_features is not None and self.numeric_features is not None:
            return list(self.categorical_features), list(self.numeric_features)
        if not table_exists(con, self.abt_table):
            raise MissingStepError(f"warehouse has no table {self.abt_table}: run `olist-ml train {self.name}` "
                                   f"(it builds the ABT) after `olist-ml {self.build_step}`")
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position", [self.abt_table]
        ).fetchall()
        return derive_features(rows, self._non_features(), self.categorical_features, self.numeric_features)


def derive_features(columns: list[tuple[str, str]], skip: set[str], cat: tuple[str, ...] | None = None,
                    num: tuple[str, ...] | None = None) -> tuple[list[str], list[str]]:
    dcat, dnum = [], []
    for name, dtype in columns:
        if name in skip:
            continue
        base = dtype.upper().split("(")[0]
        if base in _NUMERIC:
            dnum.append(name)
        elif base in _CATEGORICAL:
            dcat.append(name)
    return (list(cat) if cat is not None else dcat), (list(num) if num is not None else dnum)
