"""The daily job, replayed on the real data: one home, one `olist-ml run` per daily extract.

    OLIST_DATA_DIR=../shared/data/olist .venv/bin/python benchmarks/bench_daily.py \
        [--start 2018-06-01] [--days 2018-06-02,2018-06-03,...,2018-06-09] [--home DIR] [--verify]

Each day's extract is the real data as it stood at that day 00:00 (`olist_ml.extract.extract_as_of`:
later orders absent; later approvals, hand-overs, deliveries and review answers not there yet;
statuses as they were then). The first day is the first full run; every later day is what a
scheduler runs: `olist-ml --home H run --data <that day's extract>` in a fresh process (its start
counts). Printed per day: exit code, seconds per step, feature table-dates recomputed, model versions
registered, score rows kept per table, and the ratio to the first run. Targets: every day exits 0,
a day with no retrain due costs <= 25 % of the first run and under 20 s, no version is registered on
a day with no retrain due, every earlier day's scores are kept. `--verify` then builds a fresh home
from the last day's extract and checks that its feature store equals the replayed one, and prints
`olist-ml monitor delay` (realised performance of the first day's scores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CLI = [sys.executable, "-m", "olist_ml"]
STEP = re.compile(r"^\s*(done|skipped|failed)\s+(.+?)\s+(\d+\.\d)s\s+(.*)$")


def _env() -> dict:
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}


def run_day(home: Path, data: Path, extra: list[str]) -> tuple[int, float, list[tuple[str, str, float, str]], str]:
    t0 = time.perf_counter()
    p = subprocess.run(
        [*CLI, "--home", str(home), "run", "--data", str(data), *extra], capture_output=True, text=True, env=_env()
    )
    wall = time.perf_counter() - t0
    steps, last = [], None
    for line in p.stdout.splitlines():
        m = STEP.match(line)
        if m:
            last = [m.group(1), m.group(2).strip(), float(m.group(3)), m.group(4).strip()]
            steps.append(last)
        elif last is not None and line.startswith(" ") and not line.strip().startswith(("ALERT", "next:")):
            last[3] += " " + line.strip()  # a detail wrapped by the console
    return p.returncode, wall, [tuple(s) for s in steps], p.stdout + p.stderr


def registry_versions(home: Path) -> int:
    import sqlite3

    db = home / "mlflow.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM model_versions").fetchall()[0][0])
    finally:
        con.close()


def kept_rows(home: Path) -> dict[str, tuple[int, int]]:
    """{scores table: (rows, dt_refs)}"""
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        out = {}
        for (t,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'scores_%' "
            "OR table_name = 'seller_segments' ORDER BY 1"
        ).fetchall():
            out[t] = tuple(con.execute(f"SELECT count(*), count(DISTINCT dt_ref) FROM {t}").fetchall()[0])
        return out
    finally:
        con.close()


def table_dates(steps) -> int:
    for _, step, _, detail in steps:
        if step == "feature store":
            m = re.search(r"(\d+) table-dates computed", detail)
            return int(m.group(1)) if m else 0
    return -1


def verify(home: Path, last_extract: Path, tmp: Path) -> None:
    """A fresh home from the last extract: its feature store equals the replayed one (every row)."""
    import duckdb

    from olist_ml import features, ingest
    from olist_ml.config import Settings

    fresh = Settings(home=tmp / "fresh")
    t0 = time.perf_counter()
    ingest.ingest(last_extract, fresh)
    features.build(fresh)
    print(f"fresh home from {last_extract.name}: ingest + feature store in {time.perf_counter() - t0:.1f}s")
    con = duckdb.connect(str(fresh.warehouse), read_only=True)
    con.execute(f"ATTACH '{home / 'warehouse.duckdb'}' AS replay (READ_ONLY)")
    try:
        for t in features.FEATURE_TABLES:
            n = con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            a = con.execute(f"SELECT count(*) FROM (SELECT * FROM {t} EXCEPT ALL SELECT * FROM replay.{t})").fetchall()
            b = con.execute(f"SELECT count(*) FROM (SELECT * FROM replay.{t} EXCEPT ALL SELECT * FROM {t})").fetchall()
            same = a[0][0] == 0 and b[0][0] == 0
            print(f"  {t:<22} {n:>9,} rows  {'equal to a fresh build' if same else f'DIFFERS ({a[0][0]} / {b[0][0]})'}")
    finally:
        con.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=os.environ.get("OLIST_DATA_DIR"))
    ap.add_argument("--start", default="2018-06-01", help="the first day (its run is the first full run)")
    ap.add_argument(
        "--days", default="2018-06-02,2018-06-03,2018-06-04,2018-06-05,2018-06-06,2018-06-07,2018-06-08,2018-06-09"
    )
    ap.add_argument("--home", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--verify", action="store_true", help="compare with a fresh build and print `monitor delay`")
    args = ap.parse_args()
    if not args.data or not Path(args.data).exists():
        print("set OLIST_DATA_DIR (or --data) to the real Olist data folder", file=sys.stderr)
        return 2
    from olist_ml.extract import extract_as_of

    tmp = Path(tempfile.mkdtemp(prefix="bench-daily-"))
    home = args.home or tmp / "home"
    days = [dt.date.fromisoformat(args.start)] + [dt.date.fromisoformat(d) for d in args.days.split(",") if d]
    print(f"replaying {len(days)} daily extracts of {args.data} into {home} (machine load {os.getloadavg()[0]:.1f})")
    first = None
    rows = []
    for day in days:
        ext = tmp / "extracts" / day.isoformat()
        t0 = time.perf_counter()
        extract_as_of(Path(args.data), ext, day)
        t_ext = time.perf_counter() - t0
        before = registry_versions(home)
        rc, wall, steps, out = run_day(home, ext, [])
        versions = registry_versions(home) - before
        kept = kept_rows(home) if (home / "warehouse.duckdb").exists() else {}
        first = first or wall
        trained = [s[1].split(":")[0] for s in steps if s[1].endswith(": train") and s[0] == "done"]
        rows.append((day, rc, wall, versions, table_dates(steps), trained))
        print(
            f"\n== {day} (extract {t_ext:.1f}s): exit {rc}, {wall:.1f}s = {wall / first:.0%} of the first run; "
            f"{table_dates(steps)} feature table-dates computed; {versions} version(s) registered"
            + (f" ({', '.join(trained)} retrained)" if trained else "")
        )
        for status, step, sec, detail in steps:
            print(f"   {status:>7} {step:<28} {sec:6.1f}s  {detail[:150]}")
        print("   kept: " + ", ".join(f"{t} {n:,} rows / {d} dt_refs" for t, (n, d) in kept.items()))
        if rc != 0:
            print(out[-3000:])
    print("\nday        exit  seconds  of first  table-dates  versions  retrained")
    for day, rc, wall, versions, td, trained in rows:
        print(f"{day}  {rc:>4}  {wall:7.1f}  {wall / first:8.0%}  {td:>11}  {versions:>8}  {','.join(trained) or '-'}")
    quiet = [r for r in rows[1:] if not r[5]]
    if quiet:
        worst = max(r[2] for r in quiet)
        print(
            f"days with no retrain: max {worst:.1f}s = {worst / first:.0%} of the first run "
            f"(targets: <= 25 %, < 20 s: {'met' if worst / first <= 0.25 and worst < 20 else 'MISSED'}); "
            f"versions registered on them: {sum(r[3] for r in quiet)} (target 0)"
        )
    if args.verify:
        verify(home, tmp / "extracts" / days[-1].isoformat(), tmp)
        p = subprocess.run([*CLI, "--home", str(home), "monitor", "delay"], capture_output=True, text=True, env=_env())
        print(f"\n`olist-ml monitor delay` (exit {p.returncode}), its realised-performance table:")
        lines = p.stdout.splitlines()
        start = next((i for i, line in enumerate(lines) if "realised performance of past scores" in line), len(lines))
        print("\n".join(line for line in lines[start:] if "│" in line or "realised" in line or "┃" in line))
    return 0 if all(r[1] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
