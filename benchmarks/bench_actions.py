"""Is the action list worth following? (issue 21, item 5) On the REAL data's test period.

    OLIST_DATA_DIR=/path/to/olist .venv/bin/python benchmarks/bench_actions.py [--trials 4] [--timeout 60]
        [--home H] [--reuse] [--boot 1000] [--skip-delay]

Ingests the data and builds the monthly feature store (unless --reuse), trains churn and delay by the
protocol (`olist_ml.ml.train.train`: the winner chosen on validation), then refits the registered
champion's spec on the rows before the test period, calibrated on validation as the protocol does, and
scores the test rows with it (never a row it was fitted on). Nothing is chosen on these numbers.

Churn, at each test reference date D (the last 3 labelled months): the sellers who did churn lose their
GMV of the equivalent window before D (the item value of their orders in [D - horizon, D)); the share of
that lost GMV held by the top 5 % / top 10 % / top 100 of four rankings of the scored sellers:
  * value: P(churn) x expected GMV if retained (gmv_180d / min(180, days_since_first_sale) x horizon,
    `olist_ml.serving.actions`), the action list;
  * P(churn) alone; GMV alone (the expected GMV, i.e. the recent GMV rate); recency alone
    (days_since_last_sale).
95 % intervals: bootstrap of the sellers of each date (--boot resamples; the top-k recomputed per resample).

Delay, at each test month start: the orders open then (their rows in flight, labelled), ranked by P(late)
(the expedite list) vs by days left to the promise alone; precision (share actually late) of the top 50 /
100 / 200, with Wilson 95 % intervals.

The figures are also written to the table `actions_evaluation` of --home's warehouse (the report shows
them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SHARES = (0.05, 0.10)
TOP_N = 100
PRECISION_AT = (50, 100, 200)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def test_predictions(problem, settings, n_jobs: int = 1):
    """(test rows, calibrated P(class 1)) of the champion's spec fitted on the rows before the test period."""
    from olist_ml.ml import registry
    from olist_ml.ml import train as T
    from olist_ml.ml.data import split_protocol

    df, cat, num = T._load_labelled(problem, settings, build_abt=False)
    mv = registry.alias_version(settings, problem.name, registry.CHAMPION)
    spec = T._spec_of(settings, problem, mv, df.columns)
    split = split_protocol(df, problem, settings)
    fitted = T._test_of(problem, spec, spec.categorical, spec.numeric, split, settings, n_jobs)
    return split.test.reset_index(drop=True), np.asarray(fitted.p_test, dtype=float), spec.candidate, mv.version


def churn_figures(settings, rows: pd.DataFrame, p: np.ndarray, boot: int, seed: int = 0) -> pd.DataFrame:
    from olist_ml.serving.actions import captured_share, ranking
    from olist_ml.warehouse import session

    h = int(settings.churn.horizon_days)
    w = max(settings.feature_windows)
    rows = rows.copy()
    rows["p"] = p
    first = pd.to_numeric(rows["days_since_first_sale"], errors="coerce").clip(lower=1)
    rows["expected_gmv"] = pd.to_numeric(rows[f"gmv_{w}d"], errors="coerce").fillna(0) / np.minimum(w, first) * h
    dts = sorted(pd.to_datetime(rows["dt_ref"]).dt.date.unique())
    with session(settings, read_only=True) as con:
        lost = []
        for d in dts:
            g = con.execute(
                "SELECT i.seller_id, sum(i.price) AS gmv FROM stg_order_items i JOIN stg_orders o USING (order_id) "
                "WHERE o.order_purchase_timestamp >= CAST(? AS DATE) - INTERVAL (?) DAY "
                "AND o.order_purchase_timestamp < CAST(? AS DATE) GROUP BY 1",
                [d, h, d],
            ).df()
            g["dt_ref"] = d
            lost.append(g)
    lost = pd.concat(lost)
    rows["dt"] = pd.to_datetime(rows["dt_ref"]).dt.date
    rows = rows.merge(lost.rename(columns={"dt_ref": "dt", "gmv": "gmv_before"}), on=["dt", "seller_id"], how="left")
    rows["lost"] = np.where(rows["churn"].astype(int) == 1, rows["gmv_before"].fillna(0), 0.0)
    rankings = {
        "value (P x expected GMV)": lambda r: r["p"].to_numpy() * r["expected_gmv"].to_numpy(),
        "P(churn) alone": lambda r: r["p"].to_numpy(),
        "GMV alone": lambda r: r["expected_gmv"].to_numpy(),
        "recency alone": lambda r: pd.to_numeric(r["days_since_last_sale"], errors="coerce").to_numpy(dtype=float),
    }
    rng = np.random.default_rng(seed)
    out = []
    for d in dts:
        g = rows[rows["dt"] == d].reset_index(drop=True)
        n = len(g)
        ks = {f"top {int(s * 100)}%": max(1, int(round(s * n))) for s in SHARES} | {f"top {TOP_N}": min(TOP_N, n)}
        lost_v = g["lost"].to_numpy()
        idx_boot = [rng.integers(0, n, n) for _ in range(boot)]
        for name, fn in rankings.items():
            score = fn(g)
            for kname, k in ks.items():
                val = captured_share(lost_v, ranking(score), k)
                bs = []
                for ix in idx_boot:
                    kk = max(1, int(round(k * len(ix) / n)))
                    bs.append(captured_share(lost_v[ix], ranking(score[ix]), kk))
                lo, hi = np.nanpercentile(bs, [2.5, 97.5]) if boot else (np.nan, np.nan)
                out.append(
                    {
                        "problem": "seller_churn",
                        "dt_ref": d,
                        "ranking": name,
                        "cut": kname,
                        "k": k,
                        "n": n,
                        "metric": "share of lost GMV captured",
                        "value": val,
                        "ci_low": lo,
                        "ci_high": hi,
                        "lost_gmv_total": float(lost_v.sum()),
                        "n_churned": int(g["churn"].astype(int).sum()),
                    }
                )
    return pd.DataFrame(out)


def delay_figures(rows: pd.DataFrame, p: np.ndarray) -> pd.DataFrame:
    from olist_ml.serving.actions import precision_at, ranking

    rows = rows.copy()
    rows["p"] = p
    t = pd.to_datetime(rows["dt_ref"])
    out = []
    for m in sorted(set(t[t.dt.day == 1])):
        g = rows[(t == m) & (pd.to_numeric(rows["days_in_flight"], errors="coerce") > 0)].reset_index(drop=True)
        if g.empty:
            continue
        y = g["is_late"].astype(int).to_numpy()
        left = pd.to_numeric(g["days_left"], errors="coerce").to_numpy(dtype=float)
        for name, score, tb in (
            ("P(late) (expedite list)", g["p"].to_numpy(), None),
            ("days left alone", -left, None),
        ):
            order = ranking(score, tb)
            for k in PRECISION_AT:
                kk = min(k, len(g))
                prec = precision_at(y, order, kk)
                lo, hi = wilson(int(round(prec * kk)), kk)
                out.append(
                    {
                        "problem": "order_delay",
                        "dt_ref": pd.Timestamp(m).date(),
                        "ranking": name,
                        "cut": f"top {k}",
                        "k": kk,
                        "n": len(g),
                        "metric": "precision (share late)",
                        "value": prec,
                        "ci_low": lo,
                        "ci_high": hi,
                        "lost_gmv_total": float("nan"),
                        "n_churned": int(y.sum()),
                    }
                )
    return pd.DataFrame(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--home", default=os.environ.get("BENCH_HOME", "/tmp/olist_ml_bench_actions"))
    ap.add_argument("--reuse", action="store_true", help="reuse the warehouse, feature store and champions in --home")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--skip-delay", action="store_true")
    a = ap.parse_args()
    data = os.environ.get("OLIST_DATA_DIR")
    if not a.reuse and (not data or not Path(data).is_dir()):
        print("OLIST_DATA_DIR is not set to the folder of the real Olist CSVs: nothing to benchmark", file=sys.stderr)
        return 2

    from olist_ml import features
    from olist_ml.config import Settings
    from olist_ml.ingest import ingest
    from olist_ml.ml.train import train
    from olist_ml.problems import get
    from olist_ml.warehouse import session

    s = Settings(home=Path(a.home))
    s.home.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    problems = ["churn"] + ([] if a.skip_delay else ["delay"])
    if not a.reuse:
        ingest(Path(data), s)
        features.build(s, cadence="monthly", full=True)
        for alias in problems:
            r = train(get(alias), s, n_trials=a.trials, timeout=a.timeout)
            print(f"{r.problem}: {r.winner} v{r.model_version} {r.decision} ({time.perf_counter() - t0:.0f}s)")
    frames = []
    rows, p, cand, v = test_predictions(get("churn"), s)
    print(f"\nseller_churn v{v} ({cand}), test rows {len(rows)} at {sorted(rows['dt_ref'].astype(str).unique())}")
    churn = churn_figures(s, rows, p, a.boot)
    frames.append(churn)
    piv = churn.assign(fig=churn.apply(lambda r: f"{r['value']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})", axis=1))
    for d, g in piv.groupby("dt_ref"):
        print(
            f"\n{d}: {int(g['n'].iloc[0])} sellers, {int(g['n_churned'].iloc[0])} churned, "
            f"lost GMV R$ {g['lost_gmv_total'].iloc[0]:,.0f}: share captured [95 % CI]"
        )
        print(g.pivot(index="ranking", columns="cut", values="fig").to_string())
    mean = churn.groupby(["ranking", "cut"])["value"].mean().unstack()
    print("\nmean over the test dates:\n" + mean.to_string(float_format=lambda x: f"{x:.3f}"))
    if not a.skip_delay:
        rows, p, cand, v = test_predictions(get("delay"), s)
        delay = delay_figures(rows, p)
        frames.append(delay)
        print(f"\norder_delay v{v} ({cand}): precision of the top k open orders at each test month start")
        d2 = delay.assign(fig=delay.apply(lambda r: f"{r['value']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})", axis=1))
        for d, g in d2.groupby("dt_ref"):
            print(f"\n{d}: {int(g['n'].iloc[0])} open orders, {int(g['n_churned'].iloc[0])} late")
            print(g.pivot(index="ranking", columns="cut", values="fig").to_string())
    res = pd.concat(frames, ignore_index=True)
    res["measured_at"] = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    res["command"] = "benchmarks/bench_actions.py " + " ".join(sys.argv[1:])
    with session(s) as con:
        con.register("_bench", res)
        con.execute("CREATE OR REPLACE TABLE actions_evaluation AS SELECT * FROM _bench")
        con.unregister("_bench")
    print(f"\n{len(res)} figures -> actions_evaluation in {s.warehouse} ({time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
