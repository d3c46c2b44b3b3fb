"""MLflow wiring: tracking/registry URI from Settings, experiments with an explicit artifact location."""

from __future__ import annotations

import os

from ..config import Settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def configure(settings: Settings):
    """Point the mlflow module at Settings.mlflow_uri (tracking and registry); return the module."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import logging

    import mlflow

    # MLflow's own chatter (pickle-format caution, pip version probing, registry notices) would
    # drown the command's summary; real problems still surface as exceptions.
    for name in ("mlflow.sklearn", "mlflow.utils.environment", "mlflow.utils.uv_utils", "mlflow.store.db.utils",
                 "mlflow.tracking._model_registry.client", "mlflow.models.model", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    # mlflow.set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI into os.environ, which
    # Settings.from_env would later read as the user's choice: keep the environment as it was.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return mlflow


def client(settings: Settings):
    configure(settings)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def experiment_id(settings: Settings, name: str) -> str:
    """Get or create the experiment `name`. A local store gets artifact_location under
    Settings.artifacts; a tracking server keeps its own artifact root unless --artifact-root
    (OLIST_ML_ARTIFACT_ROOT) was given explicitly."""
    mlflow = configure(settings)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not _is_remote(settings.mlflow_uri) or settings.artifact_root is not None:
        path = settings.artifacts / name
        path.mkdir(parents=True, exist_ok=True)
        location = path.as_uri()
    return mlflow.create_experiment(name, artifact_location=location)
