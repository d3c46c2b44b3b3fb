"""Problem hooks on the generic machinery: train_fn / score_fn dispatch, extra_metrics logged
with every candidate, and the score-date convention (`Problem.time_column`, `event_time_column`)."""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import pandas as pd
import pytest

from olist_ml.config import Settings
from olist_ml.errors import InputError
from olist_ml.ml import scoring, tracking
from olist_ml.ml.problem import Problem
from olist_ml.ml.train import train
from olist_ml.warehouse import connect
from support.toy_problem import toy_abt, toy_problem


def _event_problem(**kw) -> Problem:
    return Problem(
        name="toy_event",
        kind="binary",
        abt_table="abt_toy_event",
        key_columns=("dt_ref", "event_id"),
        time_column="dt_ref",
        target="y",
        build_abt=lambda con, s: 0,
        scoring_frame=lambda con, s, as_of: pd.DataFrame(),
        event_time_column="event_ts",
        **kw,
    )


def test_score_date_convention():
    p = _event_problem()
    frame = pd.DataFrame(
        {
            "dt_ref": [date(2018, 3, 1)] * 2,
            "event_id": ["a", "b"],
            "event_ts": pd.to_datetime(["2018-02-27 10:00", "2018-02-28 23:59"]),
        }
    )
    assert scoring.score_date(p, frame) == date(2018, 3, 1)
    assert scoring.score_date(p, frame, as_of=date(2018, 3, 1)) == date(2018, 3, 1)
    with pytest.raises(InputError, match="must hold the scoring date"):
        scoring.score_date(p, frame, as_of=date(2018, 3, 2))
    # the ABT's convention (dt_ref = the event's date) is not a scoring frame
    abt_like = frame.assign(dt_ref=pd.to_datetime(frame["event_ts"]).dt.date)
    with pytest.raises(InputError, match="spans 2 values of dt_ref"):
        scoring.score_date(p, abt_like)
    future = frame.assign(event_ts=pd.to_datetime(["2018-02-27 10:00", "2018-03-01 00:00"]))
    with pytest.raises(InputError, match="event_id=b is not before the scoring date"):
        scoring.score_date(p, future)
    # the event time is never a feature
    assert "event_ts" in p._non_features()


def test_train_fn_and_score_fn_replace_the_generic_paths(settings: Settings):
    calls = {}

    def my_train(problem, s, **budget):
        calls["train"] = (problem.name, budget)
        return "trained"

    def my_score(problem, s, as_of, *, top_n=10):
        calls["score"] = (problem.name, as_of, top_n)
        return "scored"

    p = _event_problem(train_fn=my_train, score_fn=my_score)
    assert train(p, settings, n_trials=2, test_end=date(2018, 1, 1), build_abt=False) == "trained"
    name, budget = calls["train"]
    assert name == "toy_event" and budget["n_trials"] == 2 and budget["test_end"] == date(2018, 1, 1)
    assert budget["build_abt"] is False and budget["register"] is True
    assert scoring.predict(p, settings, date(2018, 2, 1), top_n=3) == "scored"
    assert calls["score"] == ("toy_event", date(2018, 2, 1), 3)
    assert not settings.warehouse.exists()  # the generic paths never ran


def test_write_scores_adds_extra_columns_to_an_older_table(settings: Settings):
    p = _event_problem()
    con = connect(settings, must_exist=False)
    base = pd.DataFrame(
        {
            "dt_ref": [date(2018, 3, 1)],
            "event_id": ["a"],
            "score": [0.5],
            "decile": pd.array([1], dtype="Int64"),
            "model_name": ["toy_event"],
            "model_version": ["1"],
            "run_id": ["r"],
            "scored_at": [pd.Timestamp("2018-03-01 01:00")],
        }
    )
    assert scoring.write_scores(con, p, base, date(2018, 3, 1), "1") == 1
    scoring.write_scores(con, p, base.assign(event_id="b", segment_name="x"), date(2018, 3, 1), "1")
    rows = con.execute("SELECT event_id, segment_name FROM scores_toy_event").fetchall()
    con.close()
    assert rows == [("b", "x")]  # (dt_ref, version) replaced, the new column added


def test_extra_metrics_are_computed_logged_and_shown(settings: Settings):
    connect(settings, must_exist=False).close()
    seen = []

    def hook(frame, y, p, s):
        seen.append((len(frame), len(y)))
        return {"mean_p": float(np.mean(p)), "n_rows": float(len(y)), "max_dt": float(frame["dt_ref"].dt.month.max())}

    p = dataclasses.replace(toy_problem(toy_abt()), extra_metrics=hook)
    res = train(p, settings, n_trials=0, candidates=["logreg"])
    c = res.candidates[0]
    lin = res.lineage
    # on the validation rows of each candidate, then on the test rows of the winner
    assert seen == [(lin["validation_rows"],) * 2, (lin["test_rows"],) * 2]
    assert c.validation["n_rows"] == lin["validation_rows"] and 0 < c.validation["mean_p"] < 1
    assert res.test["n_rows"] == lin["test_rows"] and res.test["max_dt"] == 12  # the frame is the test rows
    assert res.extra_keys == ["mean_p", "n_rows", "max_dt"] and {"mean_p", "n_rows"} <= set(res.table().columns)
    cl = tracking.client(settings)
    assert cl.get_run(c.run_id).data.metrics["validation_mean_p"] == pytest.approx(c.validation["mean_p"])
    assert cl.get_run(res.parent_run_id).data.metrics["test_n_rows"] == lin["test_rows"]
    assert cl.get_run(res.refit_run_id).data.metrics["test_mean_p"] == pytest.approx(res.test["mean_p"])
