"""One settings object for paths, engine, windows, horizons and every problem's knobs.

Precedence: CLI flags (`--set churn.horizon_days=30`, `--home`, ...) > environment variables
(OLIST_ML_*) > defaults. Every step takes a `Settings`; nothing reads the environment on its own.

Layout (Kedro's lesson: parameters in one typed place, logged with each run):
- global fields: paths, engine, `feature_windows`, `feature_chunk_rows`, `oot_months`, `seed`, ...;
- one typed section per problem: `churn` (`ChurnSettings`), `delay`, `activation`, `segments`,
  each a `ProblemSettings` (how the labelled rows are split: test / validation months, CV folds,
  purge, tuning sample) plus the problem's own knobs (horizon, eligibility, cadence, k range...);
- `training`: the tuning budget and bootstrap size shared by every problem.

Every section field is overridden by `OLIST_ML_<SECTION>_<FIELD>` (OLIST_ML_CHURN_HORIZON_DAYS,
OLIST_ML_CHURN_CADENCE, OLIST_ML_SEGMENTS_K_RANGE=3-5, ...) or `--set <section>.<field>=<value>`;
a few fields keep an older env name (OLIST_ML_TRIALS, OLIST_ML_TRIAL_TIMEOUT, OLIST_ML_CANDIDATES).
A bad value is one line naming the variable (`InputError`).

A field's `shapes` metadata says what it changes, which decides where it is checked:
- "inputs": the features or the population a model scores (churn horizon and eligibility, the
  activation horizon, the feature windows): recorded with every model version and compared with
  the current settings when that model scores or serves (`olist_ml.ml.problem.Problem.check_settings`),
  and part of the ABT/scores lineage;
- "abt": which rows the ABT holds (churn cadence): part of the lineage;
- none: the training protocol only (split, budget): logged with every run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from .errors import InputError, UnknownNameError

ENV_PREFIX = "OLIST_ML_"
INPUTS = "inputs"  # shapes what a model scores: checked at scoring / serving, in the lineage
ABT = "abt"  # shapes which rows an ABT holds: in the lineage

# "scheme:..." with a scheme of 2+ characters (file:, s3a:, abfss:, dbfs:, hdfs:, gs:): a URI that is handed
# to Spark/Hadoop untouched. One letter (C:) is a Windows drive, i.e. a local path.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def is_uri(value: str) -> bool:
    return bool(_URI.match(str(value)))


def _env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def _f(
    default: Any, *, shapes: str | None = None, choices: tuple[str, ...] = (), env: str | None = None, doc: str = ""
) -> Any:
    """A settings field with what it shapes, its allowed values, an older env name, a one-line doc."""
    return field(default=default, metadata={"shapes": shapes, "choices": choices, "env": env, "doc": doc})


# ---- conversion of text (env vars, --set) to a field's type ------------------------------------------
def _convert(text: str, tp: Any, where: str) -> Any:
    """`text` as type `tp` (int, float, bool, str, Path, tuple[int, ...], X | None); InputError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.strip().lower() in ("none", "null", "-"):
            return None
        return _convert(text, args[0], where)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        parts = (
            [p.strip() for p in text.replace("..", ",").replace("-", ",").split(",")]
            if inner is int
            else [p.strip() for p in text.split(",")]
        )
        parts = [p for p in parts if p]
        if not parts:
            raise InputError(f"{where}={text!r} is empty: give a comma list")
        return tuple(_convert(p, inner, where) for p in parts)
    try:
        if tp is bool:
            v = text.strip().lower()
            if v not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(text)
            return v in ("1", "true", "yes", "on")
        if tp is int:
            return int(text.strip())
        if tp is float:
            return float(text.strip())
        if tp is Path:
            return Path(text)
        return text.strip()
    except ValueError:
        raise InputError(f"{where}={text!r} is not a valid {getattr(tp, '__name__', tp)}") from None


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check(obj: Any, section: str) -> None:
    """Choices and positive numbers of a section's fields (one line naming the field)."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        choices = f.metadata.get("choices") or ()
        if choices and v not in choices:
            raise UnknownNameError(
                f"{section}.{f.name} {v!r} is not one of {', '.join(choices)} "
                f"({env_name(section, f)} / --set {section}.{f.name}=...)"
            )
        vals = v if isinstance(v, tuple) else (v,)
        if any(isinstance(x, (int, float)) and not isinstance(x, bool) and x < 0 for x in vals):
            raise InputError(f"{section}.{f.name} = {v!r} must not be negative")


def env_name(section: str, f: dataclasses.Field) -> str:
    return f.metadata.get("env") or f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"


# ---- how a problem splits its labelled rows ----------------------------------------------------------
@dataclass(frozen=True)
class SplitConfig:
    """How a problem's labelled rows are split in time: train | validation | test.

    test_months: the last N labelled calendar months are the test set, measured once (None ->
        `Settings.oot_months`). `oot_months` is the older name of the same setting.
    validation_months: the N calendar months before the test months choose the winner and fit
        the calibrator (None -> test_months).
    cv_folds: time-ordered, group-disjoint folds used for tuning inside the training period.
    purge: rows whose label is not yet known at the start of the next period are dropped from
        the earlier side (`Problem.label_known_at`). False only where a problem states why (e.g.
        activation: independent deals whose features are fixed at won_date).
    purge_days: the label-known time of a problem without a `label_known_at` column or hook:
        time + purge_days.
    tune_rows: tune (CV) on a time-stratified sample of at most this many training rows (None:
        all); the models that are compared, tested and registered are always fitted on all rows.
    """

    test_months: int | None = None
    validation_months: int | None = None
    cv_folds: int = 3
    purge: bool = True
    purge_days: int | None = None
    tune_rows: int | None = None
    oot_months: int | None = None  # older name of test_months

    def purge_gap(self, settings: Settings | None = None) -> int:
        return int(self.purge_days or 0)

    def months(self, settings: Settings) -> tuple[int, int]:
        """(test months, validation months)."""
        test = int(self.test_months or self.oot_months or settings.oot_months)
        return test, int(self.validation_months or test)


@dataclass(frozen=True)
class ProblemSettings:
    """What every problem has: how its labelled rows are split (`split`). A subclass adds the
    problem's own knobs and its defaults; `SECTION` names it in env vars, `--set` and the record."""

    SECTION: ClassVar[str] = ""
    READS_FEATURE_STORE: ClassVar[bool] = True  # the feature windows shape its inputs

    test_months: int | None = _f(None, doc="last labelled months measured once (None: Settings.oot_months)")
    validation_months: int | None = _f(None, doc="months before the test months that choose and calibrate")
    cv_folds: int = _f(3, doc="time-ordered, group-disjoint tuning folds inside train")
    purge: bool = _f(True, doc="drop rows whose label is not known by the next period's start")
    purge_days: int | None = _f(None, doc="label known at time + N days (problems without label_known_at)")
    tune_rows: int | None = _f(None, doc="tune on a time-stratified sample of at most N training rows")
    retrain_every_days: int = _f(
        30, doc="the daily run retrains when the data has grown N days since the last training (0: every run)"
    )

    def __post_init__(self) -> None:
        _check(self, self.SECTION)

    @property
    def split(self) -> SplitConfig:
        return SplitConfig(
            test_months=self.test_months,
            validation_months=self.validation_months,
            cv_folds=self.cv_folds,
            purge=self.purge,
            purge_days=self.purge_days,
            tune_rows=self.tune_rows,
        )


CHURN_CADENCES = ("monthly", "weekly", "daily")


@dataclass(frozen=True)
class ChurnSettings(ProblemSettings):
    """Seller churn (`olist_ml.problems.churn`)."""

    SECTION: ClassVar[str] = "churn"

    horizon_days: int = _f(45, shapes=INPUTS, doc="churn = no sale through the last sale date + N days")
    eligibility_days: int = _f(45, shapes=INPUTS, doc="population: sellers with a sale in the N days before dt_ref")
    cadence: str = _f(
        "monthly", shapes=ABT, choices=CHURN_CADENCES, doc="ABT reference dates: first of month, Mondays or every day"
    )
    test_months: int | None = _f(3, doc="last labelled months measured once")
    validation_months: int | None = _f(3, doc="months before the test months that choose and calibrate")
    purge_days: int | None = _f(None, doc="None: the horizon (a row's label is known by dt_ref + horizon)")
    retrain_every_days: int = _f(30, doc="the monthly ABT gains one labelled reference date a month: retrain monthly")

    @property
    def split(self) -> SplitConfig:
        return replace(super().split, purge_days=self.horizon_days if self.purge_days is None else self.purge_days)


@dataclass(frozen=True)
class DelaySettings(ProblemSettings):
    """Order delivery delay as a live nowcast (`olist_ml.problems.order_delay`): a landmark ABT, one row
    per order at approval and at check points while in flight.

    purge_days 69: the fallback purge (the ABT carries label_known_at = the promised date + 1 day, which
    the protocol purges on): p99.9 of (label_known_at - purchase) on the real data (orders bought
    before 2018-08-01: p50 24.5 days, p90 35.5, p99 51.6, p99.9 68.8, max 156.1), rounded up.
    step_days 6, measured on the real data (logreg, validation 2018-04..05, weights 1 / rows per order):
    every 3 days 319,306 training rows, open-order ROC AUC mean 0.8239, new orders 0.7235, fit 81 s;
    every 6 days 188,973 rows, 0.8234, 0.7257, fit 24 s (same loaded machine): the same ranking for
    40 % fewer rows. Row weights 1 / rows per order vs none (step 3): 0.8239 / 0.7235 vs 0.8196 /
    0.7192; approval row 1 + flight rows 1 / their count: 0.8210 / 0.7310.
    tune_rows 20,000: tuning on a time-stratified sample (of ~190,000 training rows at step 6)."""

    SECTION: ClassVar[str] = "delay"
    READS_FEATURE_STORE: ClassVar[bool] = False  # order facts and market context only (no seller feature row)

    test_months: int | None = _f(3, doc="last labelled months measured once")
    validation_months: int | None = _f(2, doc="months before the test months that choose and calibrate")
    purge_days: int | None = _f(69, doc="p99.9 of label_known_at - purchase on the real data")
    tune_rows: int | None = _f(20_000, doc="tune on a time-stratified sample of at most N training rows")
    step_days: int = _f(6, shapes=ABT, doc="in-flight check points every N days after purchase (and month starts)")
    retrain_every_days: int = _f(7, doc="labels mature daily and the carriers' market moves: retrain weekly")


@dataclass(frozen=True)
class ActivationSettings(ProblemSettings):
    """Seller activation (`olist_ml.problems.activation`); not purged (see its declaration)."""

    SECTION: ClassVar[str] = "activation"
    READS_FEATURE_STORE: ClassVar[bool] = False  # deal attributes only

    horizon_days: int = _f(90, shapes=INPUTS, doc="activated = first sale within N days of won_date")
    test_months: int | None = _f(2, doc="last labelled months measured once")
    validation_months: int | None = _f(1, doc="months before the test months that choose and calibrate")
    purge: bool = _f(False, doc="deals are independent and fixed at won_date: not purged")
    retrain_every_days: int = _f(30, doc="a month labels about a month of deals (won 90 days before): retrain monthly")


@dataclass(frozen=True)
class SegmentsSettings(ProblemSettings):
    """Seller segmentation (`olist_ml.problems.segments`): no labels, so no split."""

    SECTION: ClassVar[str] = "segments"

    k_range: tuple[int, int] = _f((3, 8), doc="k is chosen by silhouette in lo..hi")
    stability_runs: int = _f(5, doc="bootstrap refits measuring the stability ARI")
    retrain_every_days: int = _f(30, doc="segment names the account managers use stay put for a month")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.k_range) != 2 or not 2 <= self.k_range[0] <= self.k_range[1]:
            raise InputError(
                f"segments.k_range {self.k_range!r} must be lo-hi with 2 <= lo <= hi (OLIST_ML_SEGMENTS_K_RANGE=3-8)"
            )


@dataclass(frozen=True)
class MonitoringSettings:
    """Realised performance and score drift of the champions (`olist_ml.serving.monitor`), and when
    they make the daily run retrain before its due date."""

    SECTION: ClassVar[str] = "monitoring"

    min_rows: int = _f(200, doc="matured rows a scored dt_ref needs before its realised metric can raise an alert")
    drift_psi: float = _f(
        0.25, doc="PSI of the champion's scores (first vs latest scored dt_ref) that makes a retrain due"
    )

    def __post_init__(self) -> None:
        _check(self, self.SECTION)


@dataclass(frozen=True)
class TrainingSettings:
    """The tuning budget and the bootstrap of every binary problem (`olist_ml.ml.train`)."""

    SECTION: ClassVar[str] = "training"

    trials: int = _f(4, env="OLIST_ML_TRIALS", doc="Optuna trials per candidate besides the defaults")
    timeout: float = _f(60.0, env="OLIST_ML_TRIAL_TIMEOUT", doc="tuning seconds per candidate")
    candidates: tuple[str, ...] | None = _f(None, env="OLIST_ML_CANDIDATES", doc="None: the problem's")
    cv_folds: int | None = _f(None, doc="None: the problem's")
    bootstrap: int = _f(1000, doc="resamples of the clustered bootstrap CI of the test metric")

    def __post_init__(self) -> None:
        _check(self, self.SECTION)


SECTIONS: dict[str, type] = {
    c.SECTION: c
    for c in (ChurnSettings, DelaySettings, ActivationSettings, SegmentsSettings, TrainingSettings, MonitoringSettings)
}


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".olist_ml")
    warehouse_path: Path | None = None  # default: <home>/warehouse.duckdb
    tracking_uri: str | None = None  # default: sqlite:///<home>/mlflow.db
    registry_uri: str | None = None  # default: the tracking URI (e.g. "databricks-uc" for Unity Catalog)
    artifact_root: Path | None = None  # default: <home>/mlartifacts
    engine: str = "duckdb"  # "duckdb" | "spark"
    # ---- Spark engine (olist_ml.spark) ----
    # lake: where the Spark engine keeps its tables (Parquet): a URI handed to Spark/Hadoop untouched
    # (file://..., s3a://bucket/prefix, abfss://..., dbfs:/..., hdfs://...) or a local folder; default <home>/lake
    spark_dir: str | None = None
    spark_master: str = "local[2]"
    spark_shuffle_partitions: int = 4  # spark.sql.shuffle.partitions (AQE coalesces them further)
    spark_driver_memory: str = "2g"  # local modes: the executors live in the driver JVM
    spark_conf: tuple[str, ...] = ()  # extra "spark.k=v" settings (OLIST_ML_SPARK_CONF="k=v,k=v")
    spark_train_max_rows: int = 2_000_000  # an ABT above this is sampled (time-stratified) for training
    spark_table_format: str = "parquet"  # "parquet" | "delta" (Delta Lake in the session; the lake: Parquet)
    feature_windows: tuple[int, ...] = _f((30, 90, 180), shapes=INPUTS, doc="feature windows in days")
    feature_chunk_rows: int = 2_000_000  # rows per batch of dt_refs in a feature build (bounded memory)
    oot_months: int = 6  # test months of a problem that declares none
    seed: int = 42
    threads: int | None = None
    memory_limit: str | None = None
    verbose: bool = False  # show MLflow's own output (run URLs, registration notices)
    churn: ChurnSettings = field(default_factory=ChurnSettings)
    delay: DelaySettings = field(default_factory=DelaySettings)
    activation: ActivationSettings = field(default_factory=ActivationSettings)
    segments: SegmentsSettings = field(default_factory=SegmentsSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)

    def __post_init__(self) -> None:
        if not self.feature_windows or any(int(w) <= 0 for w in self.feature_windows):
            raise InputError(
                f"feature_windows {self.feature_windows!r} must be positive days (OLIST_ML_FEATURE_WINDOWS=30,90,180)"
            )

    # ---- derived paths -------------------------------------------------------------
    @property
    def warehouse(self) -> Path:
        return (self.warehouse_path or self.home / "warehouse.duckdb").absolute()

    @property
    def mlflow_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').absolute()}"

    @property
    def model_registry_uri(self) -> str:
        return self.registry_uri or self.mlflow_uri

    @property
    def artifacts(self) -> Path:
        return (self.artifact_root or self.home / "mlartifacts").absolute()

    @property
    def lake_uri(self) -> str:
        """The Spark engine's table root as a URI, never a `Path` (`s3a://b/x` stays exactly that)."""
        raw = self.spark_dir
        if raw is not None and is_uri(str(raw)):
            return str(raw).rstrip("/")
        folder = Path(raw) if raw is not None else self.home / "lake"
        return folder.absolute().as_uri()

    @property
    def synthetic_dir(self) -> Path:
        return (self.home / "synthetic").absolute()

    @property
    def reports_dir(self) -> Path:
        return (self.home / "reports").absolute()

    def with_(self, **kw) -> Settings:
        """Copy with overrides; `None` values are ignored (so unset CLI flags keep the env/default).
        A section field is given as `section__field` (e.g. `churn__horizon_days=30`)."""
        return self._with({k: v for k, v in kw.items() if v is not None})

    def _with(self, kw: dict[str, Any]) -> Settings:
        """Copy with `kw` applied as given (None included); `section__field` keys go into the section."""
        kw = dict(kw)
        nested: dict[str, dict[str, Any]] = {}
        for k in [k for k in kw if "__" in k]:
            sec, name = k.split("__", 1)
            nested.setdefault(sec, {})[name] = kw.pop(k)
        out = replace(self, **kw)
        for sec, vals in nested.items():
            if sec not in SECTIONS:
                raise UnknownNameError(f"unknown settings section {sec!r}: choose from {', '.join(SECTIONS)}")
            out = replace(out, **{sec: replace(getattr(out, sec), **vals)})
        return out

    def with_set(self, assignments: list[str] | tuple[str, ...] | None) -> Settings:
        """Apply `--set section.field=value` assignments (typed like the env vars)."""
        out = self
        for a in assignments or ():
            key, sep, text = a.partition("=")
            sec, dot, name = key.strip().partition(".")
            if not sep or not dot:
                raise InputError(f"--set {a!r}: write section.field=value, e.g. churn.horizon_days=30")
            cls = SECTIONS.get(sec)
            if cls is None:
                raise UnknownNameError(f"--set {a!r}: unknown section {sec!r}; choose from {', '.join(SECTIONS)}")
            f = {x.name: x for x in fields(cls)}.get(name)
            if f is None:
                raise UnknownNameError(
                    f"--set {a!r}: {sec} has no field {name!r}; it has {', '.join(x.name for x in fields(cls))}"
                )
            out = out._with({f"{sec}__{name}": _convert(text, _hints(cls)[name], f"--set {key.strip()}")})
        return out

    @classmethod
    def from_env(cls, sets: list[str] | tuple[str, ...] | None = None, **overrides) -> Settings:
        env = {
            "home": _env("OLIST_ML_HOME"),
            "warehouse_path": _env("OLIST_ML_WAREHOUSE"),
            "tracking_uri": _env("OLIST_ML_TRACKING_URI", _env("MLFLOW_TRACKING_URI")),
            "registry_uri": _env("OLIST_ML_REGISTRY_URI", _env("MLFLOW_REGISTRY_URI")),
            "artifact_root": _env("OLIST_ML_ARTIFACT_ROOT"),
            "engine": _env("OLIST_ML_ENGINE"),
            "spark_dir": _env("OLIST_ML_LAKE", _env("OLIST_ML_SPARK_DIR")),
            "spark_master": _env("OLIST_ML_SPARK_MASTER"),
            "spark_shuffle_partitions": _env("OLIST_ML_SPARK_SHUFFLE_PARTITIONS"),
            "spark_driver_memory": _env("OLIST_ML_SPARK_DRIVER_MEMORY"),
            "spark_train_max_rows": _env("OLIST_ML_SPARK_TRAIN_MAX_ROWS"),
            "spark_conf": _env("OLIST_ML_SPARK_CONF"),
            "spark_table_format": _env("OLIST_ML_SPARK_TABLE_FORMAT"),
            "threads": _env("OLIST_ML_THREADS"),
            "memory_limit": _env("OLIST_ML_MEMORY_LIMIT"),
            "verbose": _env("OLIST_ML_VERBOSE"),
            "seed": _env("OLIST_ML_SEED"),
            "oot_months": _env("OLIST_ML_OOT_MONTHS"),
            "feature_windows": _env("OLIST_ML_FEATURE_WINDOWS"),
            "feature_chunk_rows": _env("OLIST_ML_FEATURE_CHUNK_ROWS"),
        }
        env_names = {
            "tracking_uri": "OLIST_ML_TRACKING_URI",
            "registry_uri": "OLIST_ML_REGISTRY_URI",
            "warehouse_path": "OLIST_ML_WAREHOUSE",
            "home": "OLIST_ML_HOME",
            "spark_dir": "OLIST_ML_LAKE",
            "artifact_root": "OLIST_ML_ARTIFACT_ROOT",
        }
        hints = _hints(cls)
        vals: dict[str, Any] = {
            k: _convert(v, hints[k], env_names.get(k, f"{ENV_PREFIX}{k.upper()}"))
            for k, v in env.items()
            if v is not None
        }
        sections: dict[str, Any] = {}
        if "feature_windows" in vals:
            vals["feature_windows"] = tuple(sorted(set(vals["feature_windows"])))
        if "engine" in vals:
            vals["engine"] = vals["engine"].lower()
        for sec, scls in SECTIONS.items():
            sh = _hints(scls)
            for f in fields(scls):
                name = env_name(sec, f)
                text = _env(name)
                if text is not None:
                    sections[f"{sec}__{f.name}"] = _convert(text, sh[f.name], name)
        return cls().with_(**vals)._with(sections).with_(**overrides).with_set(sets)


def section_fields(section: Any, shapes: tuple[str | None, ...] | None = None) -> dict[str, Any]:
    """{"<section>_<field>": value} of a section's fields (only those whose `shapes` is in `shapes`)."""
    out = {}
    for f in fields(section):
        if shapes is None or f.metadata.get("shapes") in shapes:
            v = getattr(section, f.name)
            out[f"{section.SECTION}_{f.name}"] = ",".join(map(str, v)) if isinstance(v, tuple) else v
    return out


def describe() -> list[dict[str, Any]]:
    """Every section field: name, env var, default, what it shapes, its doc (for docs and `--help`)."""
    rows = []
    for sec, cls in SECTIONS.items():
        for f in fields(cls):
            rows.append(
                {
                    "setting": f"{sec}.{f.name}",
                    "env": env_name(sec, f),
                    "default": f.default,
                    "shapes": f.metadata.get("shapes") or "protocol",
                    "doc": f.metadata.get("doc", ""),
                }
            )
    return rows
