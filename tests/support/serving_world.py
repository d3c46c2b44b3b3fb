"""Helpers shared by the serving/monitor/report tests: a small feature store and real
registered models in a tmp MLflow sqlite store, plus a uvicorn subprocess on loopback.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from olist_ml.config import Settings

# The served fixtures build the feature store monthly up to FEATURES_END (in the healthy part of
# the synthetic data, before its thin tail), so the churn population at the latest dt_ref is
# large and the open orders scored in batch were all bought after it (their ABT seller row is
# the served one).
FEATURES_END = date(2018, 6, 1)


def make_feature_store(
    settings: Settings, *, scale: float = 0.05, seed: int = 1, cadence: str = "monthly", end: date | None = FEATURES_END
) -> None:
    """A real (small) warehouse: synthetic Olist CSVs -> ingest -> feature store (full rebuild)."""
    from olist_ml import features, ingest, synth

    raw = settings.home / f"raw-{seed}"
    synth.generate(raw, seed=seed, scale=scale)
    ingest.ingest(raw, settings)
    features.build(settings, cadence=cadence, end=end, full=True)


def latest_frames(settings: Settings) -> tuple[date, pd.DataFrame, pd.DataFrame]:
    """(latest dt_ref, feature-store rows at it, churn population at it), read as the server reads them."""
    from olist_ml import warehouse
    from olist_ml.serving.state import latest_feature_frames

    with warehouse.session(settings, read_only=True) as con:
        return latest_feature_frames(con, settings, ("seller_churn",))


def train_champion(settings: Settings, problem: str = "churn", candidates: tuple[str, ...] = ("logreg",)) -> str:
    """`olist_ml.ml.train.train` with a tiny budget (no tuning); returns the registered version."""
    from olist_ml.ml.train import train
    from olist_ml.problems import get

    res = train(get(problem), settings, n_trials=0, candidates=list(candidates), cv_folds=2)
    assert res.model_version is not None, res.reason
    if res.decision == "rejected":  # below its quality gate on this tiny synthetic data: serve it anyway
        promote(settings, problem, str(res.model_version))
    return str(res.model_version)


def promote(settings: Settings, problem: str, version: str) -> None:
    """Move the champion alias by hand (`olist-ml promote`)."""
    from olist_ml.ml.registry import promote as _promote
    from olist_ml.problems import get

    _promote(settings, get(problem).name, version, reason="serving test")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    settings: Settings,
    *,
    token: str | None = None,
    poll_seconds: float = 0.5,
    extra_args: tuple[str, ...] = (),
    timeout: float = 60.0,
):
    """`olist-ml serve` as a real subprocess on a free loopback port; yields its base URL."""
    import httpx

    port = free_port()
    env = dict(os.environ)
    env.pop("OLIST_ML_API_TOKEN", None)
    if token:
        env["OLIST_ML_API_TOKEN"] = token
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    cmd = [
        sys.executable,
        "-m",
        "olist_ml",
        "--home",
        str(settings.home),
        "--warehouse",
        str(settings.warehouse),
        "--tracking-uri",
        settings.mlflow_uri,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--poll-seconds",
        str(poll_seconds),
        *extra_args,
    ]
    log_path = Path(settings.home) / f"serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start in {timeout}s: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------------------------
# a small binary problem on the real ml machinery (monitor / report tests)
# ---------------------------------------------------------------------------------------
MON_ABT = "abt_monitor_fixture"
N_SELLERS = 150
REFS = [date(2017, m, 1) for m in range(1, 13)] + [date(2018, 1, 1)]


def fixture_abt(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for _i, d in enumerate(REFS):
        last = d == REFS[-1]
        x1 = rng.normal(size=N_SELLERS)
        x2 = rng.normal(loc=3.0 if last else 0.0, size=N_SELLERS)  # x2 drifts in the latest population
        cat = rng.choice(["SP", "RJ", "MG"], N_SELLERS)
        p = 1 / (1 + np.exp(-(2.0 * x1 - 0.5)))
        y = (rng.random(N_SELLERS) < p).astype(float)
        frames.append(
            pd.DataFrame(
                {
                    "dt_ref": pd.Timestamp(d),
                    "seller_id": [f"s{j:03d}" for j in range(N_SELLERS)],
                    "x1": x1,
                    "x2": x2,
                    "state": cat,
                    "target": pd.array([pd.NA] * N_SELLERS, dtype="Int64")
                    if last
                    else pd.array(y.astype(int), dtype="Int64"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def fixture_problem():
    from olist_ml.ml.problem import Problem, SplitConfig

    def build_abt(con, settings):
        df = fixture_abt()
        con.register("_abt_df", df)
        con.execute(
            f"CREATE OR REPLACE TABLE {MON_ABT} AS SELECT CAST(dt_ref AS DATE) AS dt_ref, seller_id, x1, x2, "
            f"state, CAST(target AS INTEGER) AS target FROM _abt_df"
        )
        con.unregister("_abt_df")
        return len(df)

    def scoring_frame(con, settings, as_of):
        as_of = as_of or con.execute(f"SELECT max(dt_ref) FROM {MON_ABT}").fetchall()[0][0]
        return con.execute(f"SELECT dt_ref, seller_id, x1, x2, state FROM {MON_ABT} WHERE dt_ref = ?", [as_of]).df()

    return Problem(
        name="monitor_fixture",
        kind="binary",
        abt_table=MON_ABT,
        key_columns=("dt_ref", "seller_id"),
        time_column="dt_ref",
        build_abt=build_abt,
        scoring_frame=scoring_frame,
        target="target",
        group_column="seller_id",
        categorical_features=("state",),
        numeric_features=("x1", "x2"),
        split=SplitConfig(oot_months=2, cv_folds=2),
    )


SEG_ABT = "abt_segments_fixture"


def segments_problem():
    """A small clustering problem: two well separated seller groups over 4 monthly dt_refs."""
    from olist_ml.ml.problem import Problem, SplitConfig

    def build_abt(con, settings):
        rng = np.random.default_rng(7)
        frames = []
        for m in range(1, 5):
            grp = np.arange(80) % 2
            frames.append(
                pd.DataFrame(
                    {
                        "dt_ref": pd.Timestamp(2018, m, 1),
                        "seller_id": [f"s{j:03d}" for j in range(80)],
                        "gmv_180d": np.where(grp == 1, 5000.0, 100.0) * rng.lognormal(0, 0.1, 80),
                        "n_orders_180d": np.where(grp == 1, 60.0, 3.0) + rng.normal(0, 1, 80),
                    }
                )
            )
        df = pd.concat(frames, ignore_index=True)
        con.register("_seg_df", df)
        con.execute(
            f"CREATE OR REPLACE TABLE {SEG_ABT} AS SELECT CAST(dt_ref AS DATE) AS dt_ref, seller_id, gmv_180d, "
            f"n_orders_180d FROM _seg_df"
        )
        con.unregister("_seg_df")
        return len(df)

    def scoring_frame(con, settings, as_of):
        as_of = as_of or con.execute(f"SELECT max(dt_ref) FROM {SEG_ABT}").fetchall()[0][0]
        return con.execute(f"SELECT * FROM {SEG_ABT} WHERE dt_ref = ?", [as_of]).df()

    return Problem(
        name="segments_fixture",
        kind="cluster",
        abt_table=SEG_ABT,
        key_columns=("dt_ref", "seller_id"),
        time_column="dt_ref",
        build_abt=build_abt,
        scoring_frame=scoring_frame,
        group_column="seller_id",
        categorical_features=(),
        numeric_features=("gmv_180d", "n_orders_180d"),
        split=SplitConfig(oot_months=1, cv_folds=2),
    )
