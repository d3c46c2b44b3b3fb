"""A training counts as done only when its MLflow run FINISHED and registered a model; a run left
RUNNING by a killed process is marked FAILED at the next start and never counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from olist_ml import lineage
from olist_ml.config import ChurnSettings, Settings
from olist_ml.ml import registry, tracking
from olist_ml.ml.data import content_hash, load_abt
from olist_ml.pipeline import run_pipeline
from olist_ml.problems import get


@pytest.fixture(scope="module")
def synth_dir(synthetic_csvs) -> Path:
    return synthetic_csvs(3, 0.05)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_training_never_counts_as_done(synth_dir, tmp_path):
    s = Settings(home=tmp_path / "h", churn=ChurnSettings(cadence="weekly"))  # enough labelled months
    budget = {"n_trials": 0, "candidates": "logreg"}
    run_pipeline(s, data=synth_dir, problems=["churn"], cadence="weekly", **budget)
    assert str(registry.alias_version(s, "seller_churn").version) == "1"

    # a new horizon changes the ABT; a training on it was killed mid-way: its run stays RUNNING
    s2 = s.with_(churn__horizon_days=40)
    churn = get("churn")
    with duckdb.connect(str(s2.warehouse)) as con:
        lineage.refresh_abt(con, churn, s2)
        abt_hash = content_hash(load_abt(con, churn))
    c = tracking.client(s2)
    exp = tracking.experiment_id(s2, "seller_churn")
    dead = c.create_run(
        exp,
        run_name="killed",
        tags={
            "role": "parent",
            "problem": "seller_churn",
            "abt_content_hash": abt_hash,
            **tracking.owner_tags(),
            "olist_ml.pid": str(_dead_pid()),
        },
    )

    rep = run_pipeline(s2, data=synth_dir, problems=["churn"], cadence="weekly", **budget)
    train = next(r for r in rep.steps if r.step == "seller_churn: train")
    assert train.status == "done", train  # not "already trained on this ABT"
    assert c.get_run(dead.info.run_id).info.status == "FAILED"
    assert "owner process gone" in c.get_run(dead.info.run_id).data.tags["olist_ml.reaped"]
    versions = {str(v.version) for v in c.search_model_versions("name = 'seller_churn'")}
    assert versions == {"1", "2"}

    # a run of a live process is never touched
    live = c.create_run(exp, run_name="live", tags={"role": "parent", **tracking.owner_tags()})
    assert tracking.reap_dead_runs(s2, "seller_churn") == []
    assert c.get_run(live.info.run_id).info.status == "RUNNING"
    c.set_terminated(live.info.run_id)
