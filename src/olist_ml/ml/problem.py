"""A problem is a small declaration: which ABT, which keys/time/target, which features.

The generic machinery (training, registry, scoring) only ever sees a `Problem`; everything
problem-specific (the ABT SQL, the population to score) lives in `olist_ml.problems.<name>`.
Its knobs (horizon, split, ...) live in its typed settings section (`olist_ml.config`, reached
through `Problem.settings_of`); the feature-store columns it names are catalog entries
(`olist_ml.features.catalog.F`) listed in `Problem.uses_features`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from ..config import INPUTS, ProblemSettings, Settings, SplitConfig, env_name, section_fields
from ..errors import MissingStepError, SettingsMismatchError
from ..warehouse import table_exists

_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "REAL",
    "DECIMAL",
)
_CATEGORICAL = ("VARCHAR", "BOOLEAN", "ENUM")


LABEL_KNOWN_COLUMN = "label_known_at"
SETTINGS_TAG = "settings"  # JSON of Problem.settings_record on every training run and model version
__all__ = ["Baseline", "CHANCE", "LABEL_KNOWN_COLUMN", "SETTINGS_TAG", "Problem", "SplitConfig", "derive_features"]


@dataclass(frozen=True)
class Baseline:
    """The bar a binary model must clear on the test rows to be promoted (the quality gate).

    name: what the bar is, in words (logged and shown in the decision).
    score(frame) -> array: a rule's score of each row (higher = more likely class 1), measured by
        the problem's metric on the same test rows as the model; the model must beat it.
    ci_floor: the lower bound of the model's test-metric 95 % CI must exceed this (e.g. 0.5 for
        ROC AUC: better than chance).
    sql: the same rule as a SQL expression over the scoring frame's columns, for an engine that scores
        in SQL (Spark writes it as `baseline_score` beside every score, as `scoring.predict` does).
    """

    name: str
    score: Callable[[pd.DataFrame], np.ndarray] | None = None
    ci_floor: float | None = None
    sql: str | None = None


CHANCE = Baseline("chance: the test ROC AUC 95 % CI must lie above 0.5", ci_floor=0.5)


BuildAbt = Callable[[duckdb.DuckDBPyConnection, Settings], int]
ScoringFrame = Callable[[duckdb.DuckDBPyConnection, Settings, "date | None"], pd.DataFrame]
# train_fn(problem, settings, **budget) -> olist_ml.ml.train.TrainResult (budget: the keyword
# arguments of `olist_ml.ml.train.train`; a hook ignores the ones it has no use for)
TrainFn = Callable[..., Any]
# score_fn(problem, settings, as_of, top_n=...) -> olist_ml.ml.scoring.ScoreReport
ScoreFn = Callable[..., Any]
# extra_metrics(frame, y, p, settings) -> {name: value}: more metrics of a binary model's predictions
# p for the labelled rows `frame` (validation rows for every candidate, test rows for the winner)
ExtraMetrics = Callable[[pd.DataFrame, np.ndarray, np.ndarray, Settings], "dict[str, float]"]
# label_known_fn(abt frame, settings) -> Series of timestamps: when each row's label became known
LabelKnownFn = Callable[[pd.DataFrame, Settings], pd.Series]
# readiness(abt, settings) -> reason why nothing can be learned yet (None: the generic message)
Readiness = Callable[[pd.DataFrame, Settings], "str | None"]
# outcomes(con, settings, scored keys) -> keys + label + label_known_at of past scored rows, as known now
Outcomes = Callable[[duckdb.DuckDBPyConnection, Settings, pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Problem:
    """Declaration of one ML problem on the shared machinery.

    name: registered model name, MLflow experiment name and `scores_<name>` suffix.
    kind: "binary" (classifier; score = P(target = 1)) or "cluster" (score = cluster id).
    abt_table: warehouse table written by `build_abt`.
    key_columns: the row key of the ABT and of the scores table (time column included).
    time_column: the reference date (drives the train | validation | test split and CV order).
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
        `exclude_columns` (names, or shell patterns such as "seller_*_30d").
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
    extra_metrics(frame, y, p, settings) -> dict: binary problems: more metrics of a model's
        predictions p for the labelled rows `frame` (e.g. churn: ROC AUC by days left in the
        window). Computed on the validation rows of every candidate (logged `validation_<key>`)
        and on the test rows of the winner (`test_<key>`), and shown by `olist-ml train`.
    label_known_fn(frame, settings) -> Series: when each row's label became known (the split's
        purge is measured on it). Used only while the ABT has no `label_known_at` column; see
        `label_known_at`. Define it so that it does not depend on the label's value (the time by
        which the label is known whatever it turns out to be), or the purge selects on the outcome.
    baseline: the quality gate of a binary problem (`Baseline`; None -> `CHANCE` for ROC AUC).
    ci_cluster_column: the bootstrap of the test metric's interval resamples these clusters
        (None -> group_column; no group column -> each row is its own cluster).
    weight_column: binary problems: a numeric ABT column (not a feature) used as the sample weight of
        every fit (tuning folds, candidates, the pretest fit, the refit), e.g. order_delay's `row_weight`
        = 1 / the order's rows, so that an entity with many rows (check points) does not dominate.
        Metrics, calibration and the baseline stay unweighted: they measure rows as they are scored.
    settings_of(settings) -> ProblemSettings: the problem's typed section of `Settings` (e.g.
        `settings.churn`): its split (test / validation months, purge, tuning sample) and its own
        knobs; recorded with every run and model version (`settings_record`) and checked when a
        model scores or serves (`check_settings`). None (ad-hoc problems in tests): `split` is used.
    split: the split of a problem without a settings section (declared problems take theirs from it).
    uses_features: the feature-store columns the problem names, as catalog objects
        (`olist_ml.features.catalog.F.gmv.longest`, `F.days_since_last_sale`); an unknown name
        fails at import, and a test checks them all against a built feature store.
    readiness(abt, settings) -> str | None: called when the labelled rows do not hold both classes;
        returns the stated reason why there is nothing to learn yet (`errors.NotReadyError`: `olist-ml
        run` reports the problem as skipped, exit 0), e.g. when the first label horizon closes.
    reads: the stg tables its scoring population reads (directly or through the feature store); a
        score batch is fingerprinted on exactly their facts as known before its date (`olist_ml.records`:
        marked `data_revised_at` when they change later). None: every stg table.
    outcomes(con, settings, scored) -> DataFrame: binary problems: the realised label of scored rows
        (`scored`: the key columns, the time column being the scoring date) as known now: the key
        columns + `label` (NULL while unknown) + `label_known_at` (when it is known WHATEVER it turns
        out to be, so maturing never selects on the outcome). Realised performance
        (`olist_ml.serving.monitor`) is measured on it. None: not monitored.
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
    label_known_fn: LabelKnownFn | None = None
    baseline: Baseline | None = None
    ci_cluster_column: str | None = None
    readiness: Readiness | None = None
    weight_column: str | None = None
    settings_of: Callable[[Settings], ProblemSettings] | None = None
    uses_features: tuple[Any, ...] = ()
    reads: tuple[str, ...] | None = None
    outcomes: Outcomes | None = None

    @property
    def scores_table(self) -> str:
        return f"scores_{self.name}"

    @property
    def metric(self) -> str:
        return self.primary_metric or ("roc_auc" if self.kind == "binary" else "silhouette")

    @property
    def quality_gate(self) -> Baseline | None:
        if self.kind != "binary":
            return None
        if self.baseline is not None:
            return self.baseline
        return CHANCE if self.metric == "roc_auc" else None

    @property
    def cluster_column(self) -> str | None:
        return self.ci_cluster_column or self.group_column

    # ---- settings -----------------------------------------------------------------------------
    def section(self, settings: Settings) -> ProblemSettings | None:
        """The problem's typed settings section (None for a problem that declares none)."""
        return self.settings_of(settings) if self.settings_of is not None else None

    def split_of(self, settings: Settings) -> SplitConfig:
        sec = self.section(settings)
        return sec.split if sec is not None else self.split

    def settings_record(self, settings: Settings, shapes: tuple[str | None, ...] | None = None) -> dict[str, Any]:
        """{"feature_windows": "30,90,180", "<section>_<field>": value, ...}: the settings that shape this
        problem (only the fields whose `shapes` is in `shapes`, e.g. (INPUTS,)). Logged as params and
        the `settings` tag of every run and model version."""
        sec = self.section(settings)
        rec: dict[str, Any] = {}
        if (sec is None or sec.READS_FEATURE_STORE) and (shapes is None or INPUTS in shapes):
            rec["feature_windows"] = ",".join(map(str, sorted(set(settings.feature_windows))))
        if sec is not None:
            rec.update(section_fields(sec, shapes))
        return rec

    def settings_json(self, settings: Settings) -> str:
        return json.dumps(self.settings_record(settings), sort_keys=True, default=str)

    def check_champion(self, champion, settings: Settings) -> None:
        """`check_settings` of a loaded model version (its `settings` tag)."""
        self.check_settings(
            (getattr(champion, "tags", None) or {}).get(SETTINGS_TAG), settings, getattr(champion, "version", "?")
        )

    def check_settings(self, recorded: dict | str | None, settings: Settings, version: str | int) -> None:
        """Raise `SettingsMismatchError` (one line naming both values) when a model version recorded
        other values of the settings that shape what it scores (`config.INPUTS`) than the current
        ones. A version that recorded none (trained before settings were recorded) is not checked."""
        if not recorded:
            return
        try:
            rec = json.loads(recorded) if isinstance(recorded, str) else dict(recorded)
        except ValueError:
            return
        sec = self.section(settings)
        for key, now in self.settings_record(settings, shapes=(INPUTS,)).items():
            if key in rec and str(rec[key]) != str(now):
                env = "OLIST_ML_FEATURE_WINDOWS"
                if sec is not None and key.startswith(f"{sec.SECTION}_"):
                    f = {x.name: x for x in dataclasses.fields(sec)}[key[len(sec.SECTION) + 1 :]]
                    env = env_name(sec.SECTION, f)
                alias = self.aliases[0] if self.aliases else self.name
                raise SettingsMismatchError(
                    f"{self.name} v{version} was trained with {key}={rec[key]}, the current setting is {now}: "
                    f"set {env}={rec[key]} to use it, or retrain it with `olist-ml train {alias}`"
                )

    def feature_store_columns(self, settings: Settings) -> list[str]:
        """The feature-store columns this problem names (`uses_features`) at the current windows."""
        out: list[str] = []
        for ref in self.uses_features:
            out += [c for c in ref.columns(tuple(settings.feature_windows)) if c not in out]
        return out

    def label_known_at(self, df: pd.DataFrame, settings: Settings) -> pd.Series:
        """When each row's label became known: the ABT's `label_known_at` column when it has one,
        else the problem's `label_known_fn`, else the row's time + `split.purge_days`."""
        if LABEL_KNOWN_COLUMN in df.columns:
            out = pd.to_datetime(df[LABEL_KNOWN_COLUMN])
        elif self.label_known_fn is not None:
            out = pd.to_datetime(pd.Series(self.label_known_fn(df, settings), index=df.index))
        else:
            out = pd.to_datetime(df[self.time_column]) + pd.Timedelta(days=self.split_of(settings).purge_gap(settings))
        return out.astype("datetime64[ns]")

    def _non_features(self) -> set[str]:
        cols = set(self.key_columns) | {self.time_column, LABEL_KNOWN_COLUMN} | set(self.exclude_columns)
        if self.event_time_column:
            cols.add(self.event_time_column)
        if self.group_column:
            cols.add(self.group_column)
        if self.weight_column:
            cols.add(self.weight_column)
        if self.target:
            cols.add(self.target)
        return cols

    def features_of(self, con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
        """(categorical, numeric) feature names: declared ones, or derived from the ABT's columns."""
        if self.categorical_features is not None and self.numeric_features is not None:
            return list(self.categorical_features), list(self.numeric_features)
        if not table_exists(con, self.abt_table):
            raise MissingStepError(
                f"warehouse has no table {self.abt_table}: run `olist-ml train {self.name}` "
                f"(it builds the ABT) after `olist-ml {self.build_step}`"
            )
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
            [self.abt_table],
        ).fetchall()
        return derive_features(rows, self._non_features(), self.categorical_features, self.numeric_features)


def derive_features(
    columns: list[tuple[str, str]],
    skip: set[str],
    cat: tuple[str, ...] | None = None,
    num: tuple[str, ...] | None = None,
) -> tuple[list[str], list[str]]:
    dcat, dnum = [], []
    patterns = [s for s in skip if any(ch in s for ch in "*?[")]
    for name, dtype in columns:
        if name in skip or any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
            continue
        base = dtype.upper().split("(")[0]
        if base in _NUMERIC:
            dnum.append(name)
        elif base in _CATEGORICAL:
            dcat.append(name)
    return (list(cat) if cat is not None else dcat), (list(num) if num is not None else dnum)
