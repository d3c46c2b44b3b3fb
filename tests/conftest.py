"""Shared test setup: offline MLflow/Spark environment and a per-test `Settings` home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
# tests must never talk to a tracking server a developer happens to have configured
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_REGISTRY_URI", None)
for _k in [k for k in os.environ if k.startswith("OLIST_ML_")]:
    os.environ.pop(_k)

from olist_ml.config import Settings  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A fresh, empty olist-ml home (warehouse, MLflow store, artifacts) for one test."""
    return Settings(home=tmp_path / "home")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    d = os.environ.get("OLIST_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("OLIST_DATA_DIR not set: real Olist data not available")
    return Path(d)
