"""Order delay as a live nowcast, on the REAL data, by the evaluation protocol.

    OLIST_DATA_DIR=/path/to/olist .venv/bin/python benchmarks/bench_delay_nowcast.py [--home DIR]
        [--trials N] [--timeout S] [--candidates lightgbm,logreg] [--step-days 3] [--no-weights]

Ingests OLIST_DATA_DIR into a scratch home (or reuses --home), then times what `olist-ml run -p delay`
does for this problem: build the landmark ABT (`abt_order_delay`: one row per order at approval and at
its check points in flight) and train it (tuning in train, the winner chosen on validation, tested once
by the spec fitted before the test months, refit, registered). Prints, for the TEST period:
- each month start: the ROC AUC over the orders open at that date (their rows at it) beside days-left
  to the promise alone, the gain, and the mean over the months;
- the ROC AUC over the new orders (rows at approval) beside the promise slack;
- the ABT build and training wall times.
Targets (issue 13): mean >= 0.85, every month >= days-left + 0.05, new orders >= 0.798, training no
slower than before the nowcast (order delay trained in ~51 s on the development machine).
`--step-days` / `--no-weights` measure the landmark choices (Settings.delay.step_days, row weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _targets(te: dict) -> list[tuple[str, float, float, bool]]:
    months = sorted(k[len("roc_auc_open_") :] for k in te if k.startswith("roc_auc_open_20"))
    rows = []
    for m in months:
        a, b = te[f"roc_auc_open_{m}"], te[f"roc_auc_open_days_left_{m}"]
        rows.append((m.replace("_", "-") + "-01", a, b, a >= b + 0.05))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=None, help="reuse a home (skips the ingest if present)")
    ap.add_argument("--trials", type=int, default=None, help="default: Settings.training.trials")
    ap.add_argument("--timeout", type=float, default=None, help="default: Settings.training.timeout")
    ap.add_argument("--candidates", default=None, help="comma list (default: the problem's)")
    ap.add_argument("--step-days", type=int, default=None, help="check points every N days (Settings.delay)")
    ap.add_argument("--no-weights", action="store_true", help="train without the 1 / rows-per-order weights")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    data = os.environ.get("OLIST_DATA_DIR")
    if not data:
        print("OLIST_DATA_DIR is not set: nothing to benchmark")
        return 0

    from olist_ml import ingest
    from olist_ml.config import Settings
    from olist_ml.ml import train
    from olist_ml.problems import order_delay as od
    from olist_ml.warehouse import session

    home = a.home or Path(tempfile.mkdtemp(prefix="bench_delay_"))
    s = Settings(home=home, threads=a.threads)
    if a.step_days:
        s = dataclasses.replace(s, delay=dataclasses.replace(s.delay, step_days=a.step_days))
    problem = dataclasses.replace(od.PROBLEM, weight_column=None) if a.no_weights else od.PROBLEM
    t0 = time.perf_counter()
    if not s.warehouse.exists():
        ingest.ingest(Path(data), s)
        print(f"ingest: {time.perf_counter() - t0:.1f} s")

    t = time.perf_counter()
    with session(s) as con:
        n = problem.build_abt(con, s)
        per = con.execute(
            f"SELECT count(*) FILTER (WHERE days_in_flight = 0), count(DISTINCT order_id), count(is_late) FROM {od.ABT}"
        ).fetchone()
    t_abt = time.perf_counter() - t
    print(
        f"ABT {od.ABT} (step {s.delay.step_days} d): {n} rows ({per[0]} at approval, {n - per[0]} in flight) "
        f"of {per[1]} orders, {per[2]} labelled; built in {t_abt:.1f} s"
    )

    t, c = time.perf_counter(), time.process_time()
    cands = a.candidates.split(",") if a.candidates else None
    r = train.train(problem, s, n_trials=a.trials, timeout=a.timeout, candidates=cands, build_abt=False)
    t_train = time.perf_counter() - t
    lin, m, te, b = r.lineage, r.metric, r.test, r.baseline
    print(
        f"\ntrain: {t_train:.1f} s wall, {time.process_time() - c:.1f} s CPU (+ ABT {t_abt:.1f} s = "
        f"{t_train + t_abt:.1f} s); weights: {problem.weight_column or 'none'}"
    )
    print(
        f"rows: train {lin['split_train_rows']} | validation {lin['validation_rows']} ({lin['validation_start']}.."
        f"{lin['validation_end']}) | test {lin['test_rows']} ({lin['test_start']}..{lin['test_end']})"
    )
    for n_ in r.notes:
        print(f"  note: {n_}")
    for cr in r.candidates:
        v = cr.validation
        print(
            f"  {cr.name:10s} validation ROC AUC {v['roc_auc']:.4f}  open-order mean "
            f"{v.get('roc_auc_open_mean', float('nan')):.4f}  new orders "
            f"{v.get('roc_auc_new_orders', float('nan')):.4f}"
            f"  ({cr.n_trials} trials, {cr.fit_seconds:.1f} s)"
        )
    print(
        f"\nTEST, winner {r.winner} fitted before {lin['test_start']}: all rows ROC AUC {te[m]:.4f} "
        f"(baseline {b.get('name')}: {b.get('test_' + m, float('nan')):.4f})"
    )
    print(f"{'month start':<12} {'open orders AUC':>16} {'days-left alone':>16} {'gain':>7}  >= +0.05")
    rows = _targets(te)
    for day, x, y, ok in rows:
        print(f"{day:<12} {x:>16.4f} {y:>16.4f} {x - y:>+7.4f}  {'yes' if ok else 'NO'}")
    mean = te.get("roc_auc_open_mean", float("nan"))
    print(f"{'mean':<12} {mean:>16.4f} {te.get('roc_auc_open_days_left_mean', float('nan')):>16.4f}")
    new = te.get("roc_auc_new_orders", float("nan"))
    print(
        f"new orders (rows at approval): ROC AUC {new:.4f} (promise slack alone "
        f"{te.get('roc_auc_new_orders_promise_slack', float('nan')):.4f})"
    )
    print(
        f"\ntargets: mean >= 0.85 {'MET' if mean >= 0.85 else 'NOT MET'}; every month >= days-left + 0.05 "
        f"{'MET' if rows and all(ok for *_, ok in rows) else 'NOT MET'}; new orders >= 0.798 "
        f"{'MET' if new >= 0.798 else 'NOT MET'}; training {t_train + t_abt:.1f} s (ABT + train) vs ~51 s before"
    )
    print(f"-> v{r.model_version} {r.decision}: {r.reason}")
    print(f"total {time.perf_counter() - t0:.1f} s (home {home})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
