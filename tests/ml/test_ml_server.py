"""Train, register and score against a REAL `mlflow server` process (sqlite backend, proxied artifacts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from olist_ml.ml import registry, scoring
from olist_ml.ml.train import train
from olist_ml.warehouse import connect
from support.toy_problem import toy_abt, toy_problem


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = open(store / "server.log", "w")  # noqa: SIM115 - the server writes it until the fixture ends
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited early: {(store / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("mlflow server did not become healthy in 90 s")
            time.sleep(0.5)
        yield url, store
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.server
def test_train_register_score_against_mlflow_server(mlflow_server, settings, capfd):
    url, store = mlflow_server
    s = settings.with_(tracking_uri=url)
    connect(s, must_exist=False).close()
    p = toy_problem(toy_abt())
    res = train(p, s, n_trials=1, timeout=20, candidates=["logreg"])
    assert res.decision == "champion" and res.model_version == "1"
    out, err = capfd.readouterr()  # MLflow's run links (printed for http stores) and registry notices: quiet
    assert not any(
        line in out + err for line in ("View run", "View experiment", "Successfully registered", "Created version")
    ), (out + err)[-2000:]
    champ = registry.load_champion(s, p.name)
    assert champ.version == "1" and champ.run_id == res.refit_run_id  # the artefact refit on all labelled rows
    rep = scoring.predict(p, s)
    assert rep.n_scored > 0 and rep.model_version == "1"
    # everything landed on the server: its own store holds the run and the artifacts
    assert not (s.home / "mlflow.db").exists()
    files = {f.name for f in (store / "artifacts").rglob("*") if f.is_file()}
    assert {"MLmodel", "roc.png", "calibration.png", "lift.png", "reliability.png"} <= files
    r = httpx.get(f"{url}/api/2.0/mlflow/registered-models/alias", params={"name": p.name, "alias": "champion"})
    assert r.status_code == 200 and r.json()["model_version"]["version"] == "1"
