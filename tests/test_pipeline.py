"""`olist-ml run`: the whole pipeline end to end on small synthetic data, then incrementally."""

from __future__ import annotations

from olist_ml.cli import main
from olist_ml.pipeline import problems_status, run_pipeline


def test_run_trains_registers_and_scores_all_four_problems_then_skips_what_is_current(settings, capsys):
    budget = {"n_trials": 0, "candidates": "logreg"}
    # a weekly feature store holds a first-of-month dt_ref only when the 1st is a Monday: churn's
    # monthly reference dates would leave 2 labelled months, too few for train | validation | test
    settings = settings.with_(churn__cadence="weekly")
    first = run_pipeline(settings, scale=0.05, seed=3, cadence="weekly", **budget)
    assert first.synthetic
    status = {s.step: s.status for s in first.steps}
    assert status["synthetic data"] == "done" and status["ingest"] == "done"
    rows = {r["problem"]: r for r in problems_status(settings)}
    assert set(rows) == {"seller_churn", "order_delay", "seller_activation", "seller_segments"}
    detail = {s.step: s.detail for s in first.steps}
    for name, r in rows.items():
        assert status[f"{name}: train"] == "done", (name, status)
        assert r["trained_runs"] == 1, r
        if r["champion"] is None:  # registered below its quality gate on this tiny data: not promoted, not scored
            assert "rejected" in detail[f"{name}: train"] and status[f"{name}: score"] == "skipped", (name, detail)
            assert "below its quality gate" in detail[f"{name}: score"] and r["last_scored"] is None, r
        else:
            assert r["champion"] == "v1" and status[f"{name}: score"] == "done", (name, status)
            assert r["last_scored"] is not None and r["scored_rows"] and r["scored_rows"] > 0, r
    assert rows["order_delay"]["champion"] == "v1" and rows["seller_segments"]["champion"] == "v1"

    # nothing changed: no re-ingest, no new feature dates, no retraining; scoring stays idempotent
    second = run_pipeline(settings, scale=0.05, seed=3, cadence="weekly", **budget)
    status2 = {s.step: s.status for s in second.steps}
    assert status2["synthetic data"] == "skipped" and status2["ingest"] == "skipped"
    assert status2["feature store"] == "skipped"
    assert all(status2[f"{n}: train"] == "skipped" for n in rows), status2
    again = {r["problem"]: r for r in problems_status(settings)}
    assert {k: (v["trained_runs"], v["scored_rows"]) for k, v in again.items()} == {
        k: (v["trained_runs"], v["scored_rows"]) for k, v in rows.items()
    }


def test_run_with_a_missing_data_path_is_one_line_and_exit_2(settings, tmp_path, capsys):
    rc = main(["--home", str(settings.home), "run", "--data", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "no such folder or zip" in err and err.count("\n") == 1
