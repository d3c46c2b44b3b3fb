"""Shared test setup: offline MLflow/Spark environment, a per-test `Settings` home, seeded synthetic
CSVs shared by the session, the real data when present. Helpers (not fixtures): tests/support/."""

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
def synthetic_csvs(tmp_path_factory):
    """`synthetic_csvs(seed, scale) -> folder` of seeded synthetic Olist CSVs, generated once per
    test session for each (seed, scale) and shared: tests copy it before editing files in it."""
    from olist_ml.synth import generate

    made: dict[tuple[int, float], Path] = {}

    def get(seed: int, scale: float) -> Path:
        if (seed, scale) not in made:
            made[seed, scale] = d = tmp_path_factory.mktemp(f"synth-{seed}-{scale}")
            generate(d, seed=seed, scale=scale)
        return made[seed, scale]

    return get


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    d = os.environ.get("OLIST_DATA_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip("OLIST_DATA_DIR not set: real Olist data not available")
    return Path(d)
