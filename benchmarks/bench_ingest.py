"""Ingest benchmark: wall time and peak RSS of `olist_ml.ingest.ingest` on the real data and synthetic data.

Each scenario runs in a fresh child process (so peak RSS is that run's own), on 2 DuckDB threads:

  real-folder    OLIST_DATA_DIR as given (gzip CSVs), into an empty warehouse
  real-reingest  the same again over the existing warehouse (ATTACH + carry-over + swap)
  real-zip       a Kaggle-style zip (plain CSVs, deflated) built from OLIST_DATA_DIR
  synth-<scale>  olist_ml.synth.generate(scale=...) output, when the generator exists

Target: the full real data (incl. 1M geolocation rows) in <= 15 s on 2 cores.

    OLIST_DATA_DIR=/work/shared/data/olist .venv/bin/python benchmarks/bench_ingest.py [--synth-scale 1.0]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

TARGET_S = 15.0

CHILD = r"""
import json, sys, time
from pathlib import Path
from olist_ml.config import Settings
from olist_ml.ingest import ingest
src, home, threads = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
rep = ingest(src, Settings(home=home, threads=threads))
print(json.dumps({"wall_s": time.perf_counter() - t, "rows": sum(x.loaded for x in rep.tables),
                  "quarantined": rep.quarantined, "kept": len(rep.kept_tables)}))
"""


def run_child(src: Path, home: Path, threads: int) -> dict:
    t = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(src), str(home), str(threads)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(p.pid, 0)
    out, err = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ingest of {src} failed:\n{err}")
    res = json.loads(out.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t  # incl. interpreter start and imports
    res["peak_rss_mb"] = usage.ru_maxrss / 1024
    return res


def make_zip(data_dir: Path, dest: Path) -> Path:
    """A Kaggle-style zip: plain CSVs at the root, deflated."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for p in sorted(data_dir.iterdir()):
            if p.name.endswith(".csv.gz") and "known_differences" not in p.name:
                with gzip.open(p, "rb") as src, zf.open(p.name[:-3], "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("OLIST_DATA_DIR"))
    ap.add_argument("--synth-scale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-zip", action="store_true")
    args = ap.parse_args()

    results: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        if args.data_dir and Path(args.data_dir).is_dir():
            data = Path(args.data_dir)
            results.append(("real-folder", run_child(data, tmp / "h1", args.threads)))
            results.append(("real-reingest", run_child(data, tmp / "h1", args.threads)))
            if not args.no_zip:
                t = time.perf_counter()
                z = make_zip(data, tmp / "brazilian-ecommerce.zip")
                print(f"(built {z.name}: {z.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - t:.1f}s)")
                results.append(("real-zip", run_child(z, tmp / "h2", args.threads)))
                z.unlink()
        else:
            print("OLIST_DATA_DIR not set: real-data scenarios skipped")
        try:
            from olist_ml import synth

            generate = synth.generate
        except (ImportError, AttributeError):
            generate = None
            print("olist_ml.synth.generate not available: synthetic scenario skipped")
        if generate is not None:
            out = tmp / "synth"
            t = time.perf_counter()
            generate(out, seed=42, scale=args.synth_scale)
            print(f"(generated synthetic scale {args.synth_scale} in {time.perf_counter() - t:.1f}s)")
            results.append((f"synth-{args.synth_scale:g}", run_child(out, tmp / "h3", args.threads)))

    print(
        f"\ningest benchmark, threads={args.threads}, cpus={os.cpu_count()}, target <= {TARGET_S:.0f}s for the real "
        "data"
    )
    print(
        f"{'scenario':<15}{'rows':>12}{'quar.':>7}{'ingest s':>10}{'process s':>11}{'peak RSS MB':>13}{'vs target':>11}"
    )
    for name, r in results:
        ratio = r["wall_s"] / TARGET_S
        print(
            f"{name:<15}{r['rows']:>12,}{r['quarantined']:>7}{r['wall_s']:>10.2f}{r['process_s']:>11.2f}"
            f"{r['peak_rss_mb']:>13.0f}{ratio:>10.2f}x"
        )


if __name__ == "__main__":
    main()
