"""One settings object for paths, engine, windows and horizons.

Precedence: CLI flags > environment variables (OLIST_ML_*) > defaults. Every step takes a
`Settings`; nothing reads the environment on its own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

# "scheme:..." with a scheme of 2+ characters (file:, s3a:, abfss:, dbfs:, hdfs:, gs:): a URI that is handed
# to Spark/Hadoop untouched. One letter (C:) is a Windows drive, i.e. a local path.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def is_uri(value: str) -> bool:
    return bool(_URI.match(str(value)))


def _env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(name)
    return v if v not in (None, "") else default


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
    spark_conf: tuple[tuple[str, str], ...] = ()  # extra spark.* settings (OLIST_ML_SPARK_CONF="k=v,k=v")
    spark_train_max_rows: int = 2_000_000  # an ABT above this is sampled (time-stratified) for training
    feature_windows: tuple[int, ...] = (30, 90, 180)
    churn_horizon_days: int = 45
    churn_eligibility_days: int = 45
    activation_horizon_days: int = 90
    oot_months: int = 6
    seed: int = 42
    threads: int | None = None
    memory_limit: str | None = None
    verbose: bool = False  # show MLflow's own output (run URLs, registration notices)
    extra: dict = field(default_factory=dict)

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

    def with_(self, **kw) -> "Settings":
        """Copy with overrides; `None` values are ignored (so unset CLI flags keep the env/default)."""
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        s = cls()
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
            "threads": _env("OLIST_ML_THREADS"),
            "memory_limit": _env("OLIST_ML_MEMORY_LIMIT"),
            "verbose": _env("OLIST_ML_VERBOSE"),
            "seed": _env("OLIST_ML_SEED"),
            "oot_months": _env("OLIST_ML_OOT_MONTHS"),
            "churn_horizon_days": _env("OLIST_ML_CHURN_HORIZON_DAYS"),
            "activation_horizon_days": _env("OLIST_ML_ACTIVATION_HORIZON_DAYS"),
        }
        conv = {
            "home": Path,
            "warehouse_path": Path,
            "artifact_root": Path,
            "spark_shuffle_partitions": int,
            "spark_train_max_rows": int,
            "threads": int,
            "verbose": lambda v: v.strip().lower() in ("1", "true", "yes", "on"),
            "engine": lambda v: v.strip().lower(),
            "seed": int,
            "oot_months": int,
            "churn_horizon_days": int,
            "activation_horizon_days": int,
        }
        vals = {k: conv.get(k, str)(v) for k, v in env.items() if v is not None}
        windows = _env("OLIST_ML_FEATURE_WINDOWS")
        if windows:
            vals["feature_windows"] = tuple(int(x) for x in windows.split(","))
        conf = _env("OLIST_ML_SPARK_CONF")
        if conf:
            vals["spark_conf"] = tuple(tuple(kv.split("=", 1)) for kv in conf.split(",") if "=" in kv)
        s = s.with_(**vals)
        return s.with_(**overrides)
