"""Out-of-time quality of the order-delay, activation and segmentation problems on the REAL data.

    OLIST_DATA_DIR=/path/to/olist .venv/bin/python benchmarks/bench_problems.py [--trials N] [--home DIR]
        [--problems order_delay,seller_activation,seller_segments] [--candidates logreg,lightgbm]

Ingests OLIST_DATA_DIR into a scratch home, builds the feature store (daily cadence, so
order-level as-of joins use the previous midnight), trains each problem with the shared
machinery and prints OOT ROC AUC / PR AUC (activation with a 95% bootstrap interval) and, for
segments, k, silhouette and the stability ARI. Targets: order delay OOT ROC AUC >= 0.82.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--candidates", default="logreg,lightgbm")
    ap.add_argument("--home", type=Path, default=None, help="reuse a home (skips ingest/features if present)")
    ap.add_argument("--cadence", default="daily")
    ap.add_argument("--problems", default="order_delay,seller_activation,seller_segments",
                    help="comma list: which problems to run (e.g. order_delay)")
    a = ap.parse_args()
    data = os.environ.get("OLIST_DATA_DIR")
    if not data:
        print("OLIST_DATA_DIR is not set: nothing to benchmark")
        return 0

    from olist_ml import features, ingest
    from olist_ml.config import Settings
    from olist_ml.ml import train
    from olist_ml.problems import activation as act
    from olist_ml.problems import get
    from olist_ml.problems import segments as seg

    home = a.home or Path(tempfile.mkdtemp(prefix="bench_problems_"))
    s = Settings(home=home, threads=2)
    t0 = time.perf_counter()
    if not s.warehouse.exists():
        ingest.ingest(Path(data), s)
        print(f"ingest: {time.perf_counter() - t0:.1f} s")
        t = time.perf_counter()
        features.build(s, cadence=a.cadence)
        print(f"features build ({a.cadence}): {time.perf_counter() - t:.1f} s")
    cands = a.candidates.split(",")

    only = {p.strip() for p in a.problems.split(",")}
    for name in [n for n in ("order_delay", "seller_activation") if n in only]:
        t = time.perf_counter()
        r = train.train(get(name), s, n_trials=a.trials, candidates=cands)
        print(f"\n== {name}: train {time.perf_counter() - t:.1f} s, rows train {r.lineage['train_rows']} / "
              f"OOT {r.lineage['oot_rows']} ({r.lineage['oot_dt_ref_min']}..{r.lineage['oot_dt_ref_max']})")
        cis = act.log_oot_confidence(s, r, n_boot=2000) if name == "seller_activation" else {}
        for c in r.candidates:
            line = f"  {c.name:14s} OOT ROC AUC {c.oot['roc_auc']:.4f}  PR AUC {c.oot['pr_auc']:.4f}  base {c.oot['base_rate']:.3f}"
            if c.name in cis:
                ci = cis[c.name]
                line += f"  95% CI [{ci.low:.3f}, {ci.high:.3f}] (n={ci.n}, pos={ci.n_pos})"
            print(line)
        best = max(r.candidates, key=lambda c: c.oot["roc_auc"])
        if name == "order_delay":
            print(f"  best {best.name}: {best.oot['roc_auc']:.4f}  target >= 0.82: "
                  f"{'MET' if best.oot['roc_auc'] >= 0.82 else 'NOT MET'}")

    if "seller_segments" not in only:
        print(f"\ntotal {time.perf_counter() - t0:.1f} s (home {home})")
        return 0
    t = time.perf_counter()
    res = seg.fit_segments(s, k_range=(3, 8), n_stability=5)
    print(f"\n== seller_segments at {res.dt_ref}: {res.n_sellers} active sellers, {time.perf_counter() - t:.1f} s")
    print(f"  k {res.k}  silhouette {res.silhouette:.3f}  stability ARI mean {res.ari_mean:.3f} "
          f"min {min(res.stability_ari):.3f}")
    print("  silhouette by k: " + ", ".join(f"{k}:{v:.3f}" for k, v in res.silhouette_by_k.items()))
    cols = ["segment", "segment_name", "n_sellers", "share"] + (["gmv_share"] if "gmv_share" in res.profile else [])
    print(res.profile[cols].to_string(index=False))
    print(f"\ntotal {time.perf_counter() - t0:.1f} s (home {home})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
