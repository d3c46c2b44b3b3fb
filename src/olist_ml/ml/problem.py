"""A problem is a small declaration: which ABT, which keys/time/target, which features.

The generic machinery (training, registry, scoring) only ever sees a `Problem`; everything
problem-specific (the ABT SQL, the population to score) lives in `olist_ml.problems.<name>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import duckdb
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


@dataclass(frozen=True)
class Problem:
    """Declaration of one ML problem on the shared machinery.

    name: registered model name, MLflow experiment name and `scores_<name>` suffix.
    kind: "binary" (classifier; score = P(target = 1)) or "cluster" (score = cluster id).
    abt_table: warehouse table written by `build_abt`.
    key_columns: the row key of the ABT and of the scores table (time column included).
    time_column: the reference date (drives the out-of-time split and CV order).
    group_column: rows of one entity (e.g. seller) never sit on both sides of a CV fold.
    target: label column (NULL = not yet labelled / scoring only). None for clustering.
    categorical_features / numeric_features: explicit lists, or None to derive them from the
        ABT columns (VARCHAR/BOOLEAN -> categorical, numbers -> numeric) minus keys, target,
        `exclude_columns`.
    build_abt(con, settings) -> rows: builds `abt_table` atomically.
    scoring_frame(con, settings, as_of) -> DataFrame with key columns + features of the
        population to score at `as_of` (None -> the latest available reference date).
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

    @property
    def scores_table(self) -> str:
        return f"scores_{self.name}"

    @property
    def metric(self) -> str:
        return self.primary_metric or ("roc_auc" if self.kind == "binary" else "silhouette")

    def _non_features(self) -> set[str]:
        cols = set(self.key_columns) | {self.time_column} | set(self.exclude_columns)
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
