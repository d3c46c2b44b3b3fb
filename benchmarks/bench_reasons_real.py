"""Reasons on the REAL data: every score row, pyfunc `explain` call and API answer adds up (issue 21, done-when).

    .venv/bin/python benchmarks/bench_reasons_real.py [--home /tmp/olist_ml_bench_actions] [--api-sellers 300]

Needs a home whose warehouse holds the real data and whose registry holds churn and delay champions
(`benchmarks/bench_actions.py` leaves one in its --home). For seller_churn and order_delay it:
  * scores the population (`olist_ml.ml.scoring.predict`, what `olist-ml predict` runs) and times it, and
    the reasons part alone (`explain.reason_columns`);
  * explains every scored row with the champion: max |base + sum(contributions) - margin| (target 1e-6),
    the margin's link to the uncalibrated probability, and that every `scores_<problem>` row's top-3
    reasons are the explanation's;
  * loads `models:/<name>@champion` with plain `mlflow.pyfunc` and calls `predict(rows, params={"explain": 3})`
    on every row: its scores equal the batch scores, its reasons the batch reasons;
  * asks the API (FastAPI's app in-process) `?explain=1000` (every feature) for --api-sellers sellers and a
    batch of open orders: max |base + sum - margin| over the answers.
Prints each figure; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _orders(con, frame: pd.DataFrame, n: int) -> list[dict]:
    """Request bodies of n open orders (raw attributes from the warehouse)."""
    ids = list(frame["order_id"].head(n))
    con.register("_ids", pd.DataFrame({"order_id": ids}))
    raw = con.execute(
        "SELECT o.order_id, any_value(i.seller_id) AS seller_id, o.customer_id, o.order_purchase_timestamp, "
        "o.order_approved_at, o.order_delivered_carrier_date, o.order_estimated_delivery_date, "
        "max(i.shipping_limit_date) AS shipping_limit_date, sum(i.price) AS order_value, "
        "sum(i.freight_value) AS freight_value, count(*) AS n_items "
        "FROM _ids JOIN stg_orders o USING (order_id) JOIN stg_order_items i USING (order_id) GROUP BY ALL"
    ).df()
    con.unregister("_ids")
    out = []
    for r in raw.to_dict("records"):
        d = {k: v for k, v in r.items() if v is not None and not pd.isna(v)}
        for k, v in list(d.items()):
            if isinstance(v, pd.Timestamp):
                d[k] = v.isoformat()
            elif hasattr(v, "item"):
                d[k] = v.item()
        out.append(d)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=os.environ.get("BENCH_HOME", "/tmp/olist_ml_bench_actions"))
    ap.add_argument("--api-sellers", type=int, default=300)
    ap.add_argument("--api-orders", type=int, default=200)
    a = ap.parse_args()

    import mlflow
    from fastapi.testclient import TestClient

    from olist_ml.config import Settings
    from olist_ml.ml import explain, registry, tracking
    from olist_ml.ml.scoring import predict
    from olist_ml.problems import get
    from olist_ml.serving.actions import current_scores
    from olist_ml.serving.api import create_app
    from olist_ml.warehouse import session
    from olist_ml_model.explain import base_estimator

    s = Settings(home=Path(a.home))
    if not s.warehouse.exists():
        print(f"no warehouse in {s.home}: run benchmarks/bench_actions.py first", file=sys.stderr)
        return 2
    ok = True
    for alias in ("churn", "delay"):
        p = get(alias)
        t0 = time.perf_counter()
        rep = predict(p, s)
        t_predict = time.perf_counter() - t0
        champ = registry.load_champion(s, p.name)
        with session(s) as con:
            frame = p.scoring_frame(con, s, rep.dt_ref)
            _, sc = current_scores(con, p.name, rep.dt_ref)
        t1 = time.perf_counter()
        explain.reason_columns(champ, frame)
        t_reasons = time.perf_counter() - t1
        ex = explain.explain(champ, frame)
        add = float(np.max(np.abs(ex.base + ex.contrib.sum(axis=1) - ex.margin)))
        est = base_estimator(champ.model.steps[-1][1])
        own = np.asarray(est.predict_proba(champ.model[:-1].transform(frame)), dtype=float)[:, 1]
        kind = type(est).__name__
        implied = np.exp(-np.exp(-ex.margin)) if kind == "HazardGLM" else 1 / (1 + np.exp(-ex.margin))
        if kind == "RandomForestClassifier":
            implied = ex.margin
        link = float(np.max(np.abs(implied - own)))
        key = [k for k in p.key_columns if k != p.time_column][0]
        stored = dict(zip(sc[key], sc["reasons"], strict=False))
        mismatched = sum(json.loads(stored[frame[key].iloc[i]]) != ex.reasons(i, 3) for i in range(len(frame)))
        tracking.configure(s)
        m = mlflow.pyfunc.load_model(f"models:/{p.name}@champion")
        t2 = time.perf_counter()
        out = m.predict(frame, params={"explain": 3})
        t_pyfunc = time.perf_counter() - t2
        batch = dict(zip(sc[key], sc["score"], strict=False))
        score_diff = float(np.max(np.abs(out["score"].to_numpy() - np.array([batch[k] for k in frame[key]]))))
        py_mismatch = sum(out["reasons"].iloc[i] != stored[frame[key].iloc[i]] for i in range(len(frame)))
        print(
            f"{p.name} v{champ.version} ({kind}), {len(frame)} rows at {rep.dt_ref}, {len(ex.features)} features: "
            f"predict {t_predict:.1f}s (reasons {t_reasons:.2f}s); max |base + sum - margin| {add:.2e}; "
            f"margin -> uncalibrated P max diff {link:.2e}; score rows whose top-3 differ from the explanation "
            f"{mismatched}; pyfunc explain on {len(frame)} rows {t_pyfunc:.2f}s, scores max diff {score_diff:.1e}, "
            f"reasons differing {py_mismatch}"
        )
        ok &= add <= 1e-6 and link <= 1e-5 and mismatched == 0 and score_diff <= 1e-9 and py_mismatch == 0
    with TestClient(create_app(s, poll_seconds=0, token="", problems=("seller_churn", "order_delay"))) as c:
        snap = c.app.state.serving.features
        sellers = list(snap.churn_scores.index[: a.api_sellers])
        worst, t3 = 0.0, time.perf_counter()
        for sid in sellers:
            r = c.get(f"/sellers/{sid}/churn?explain=1000").json()
            worst = max(worst, abs(r["base"] + sum(x["contribution"] for x in r["reasons"]) - r["margin"]))
        t_api = (time.perf_counter() - t3) / max(len(sellers), 1)
        with session(s, read_only=True) as con:
            _, open_orders = current_scores(con, "order_delay")
            bodies = _orders(con, open_orders, a.api_orders)
        r = c.post("/batch/delay?explain=1000", json={"orders": bodies})
        res = r.json()["results"] if r.status_code == 200 else []
        worst_o = max(
            (abs(x["base"] + sum(y["contribution"] for y in x["reasons"]) - x["margin"]) for x in res), default=1.0
        )
        print(
            f"API: {len(sellers)} GET /sellers/{{id}}/churn?explain=1000, max |base + sum - margin| {worst:.2e} "
            f"({1000 * t_api:.1f} ms per in-process request); POST /batch/delay?explain=1000 with {len(res)} open "
            f"orders (HTTP {r.status_code}): max {worst_o:.2e}; e.g. {res[0]['reasons'][0]['text'] if res else '-'}"
        )
        ok &= worst <= 1e-6 and worst_o <= 1e-6 and r.status_code == 200
    print("all checks passed" if ok else "A CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
