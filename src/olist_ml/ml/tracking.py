"""MLflow wiring: tracking/registry URI from Settings, experiments with an explicit artifact location."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def configure(settings: Settings):
    """Point the mlflow module at Settings.mlflow_uri (tracking) and Settings.model_registry_uri (the
    registry: MLFLOW_REGISTRY_URI / OLIST_ML_REGISTRY_URI, default the tracking store); return the module."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if not settings.verbose:  # no "View run ... / View experiment ..." lines after every run
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import logging

    import mlflow

    # MLflow's own chatter (pickle-format caution, pip version probing, registry notices) would
    # drown the command's summary; real problems still surface as exceptions. `--verbose` keeps it.
    for name in (
        "mlflow",
        "mlflow.sklearn",
        "mlflow.utils.environment",
        "mlflow.utils.uv_utils",
        "mlflow.store.db.utils",
        "mlflow.tracking._model_registry.client",
        "mlflow.models.model",
        "alembic",
    ):
        logging.getLogger(name).setLevel(logging.INFO if settings.verbose else logging.ERROR)
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        from pathlib import Path

        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    # mlflow.set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI into os.environ, which
    # Settings.from_env would later read as the user's choice: keep the environment as it was.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(settings.model_registry_uri)
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

    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.model_registry_uri)


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


# ---- run ownership: a run left RUNNING by a dead process is FAILED, never "done" -------------------
def _proc_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, from /proc), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_tags() -> dict[str, str]:
    """Tags naming the process that runs a training, so a later start can tell a live run from a dead one."""
    import socket

    pid = os.getpid()
    return {
        "olist_ml.host": socket.gethostname(),
        "olist_ml.pid": str(pid),
        "olist_ml.proc_start": _proc_start(pid) or "",
    }


def _owner_dead(tags: dict) -> bool | None:
    """True/False when the owner process is known to be dead/alive; None when the run names none."""
    import socket

    if "olist_ml.pid" not in tags:
        return None
    if tags.get("olist_ml.host") != socket.gethostname():
        return False  # another machine's run: not ours to judge
    pid = int(tags["olist_ml.pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    started = tags.get("olist_ml.proc_start")
    return bool(started) and _proc_start(pid) != started  # the pid was reused by another process


def reap_dead_runs(settings: Settings, experiment_name: str) -> list[str]:
    """Mark FAILED the runs of `experiment_name` left RUNNING by a process that no longer exists (killed
    during training): they never count as done. A run that names no owner (older olist-ml) is reaped
    only on a local store, where the caller holds the home's writer lock, so no live writer can own it."""
    mlflow = configure(settings)
    exp = mlflow.get_experiment_by_name(experiment_name)
    if exp is None:
        return []
    c = client(settings)
    running = c.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=500)
    by_id = {r.info.run_id: r for r in running}
    reaped = []
    for r in running:
        tags = dict(r.data.tags)
        parent = by_id.get(tags.get("mlflow.parentRunId", ""))
        dead = _owner_dead(tags)
        if dead is None and parent is not None:
            dead = _owner_dead(dict(parent.data.tags))
        if dead is None:
            dead = not _is_remote(settings.mlflow_uri)
        if dead:
            c.set_tag(r.info.run_id, "olist_ml.reaped", "owner process gone: marked FAILED at the next start")
            c.set_terminated(r.info.run_id, status="FAILED")
            reaped.append(r.info.run_id)
    return reaped
