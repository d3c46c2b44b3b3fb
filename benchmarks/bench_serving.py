"""Serving latency benchmark: `olist-ml serve` under a fixed request rate.

Starts the API as a subprocess on a free loopback port over a warehouse + champion that it
prepares (synthetic Olist data -> ingest -> features -> `train churn` with a small budget) or one
given by env (OLIST_ML_HOME, plus OLIST_ML_WAREHOUSE / MLFLOW_TRACKING_URI if not under it), then
drives `GET /sellers/{id}/churn` open-loop at --rate requests/s for --duration seconds (bounded:
at most rate*duration requests and duration+15 s of wall time; it stops by itself), and prints
p50/p90/p99/max latency and the achieved throughput. Target: p99 <= 20 ms for one seller at
200 requests/s on 2 cores, also with the score's reasons (`--explain 3`: `?explain=3`, the top-3
contributions to the margin, read from the snapshot's explanation computed once per model version
and dt_ref).

    .venv/bin/python benchmarks/bench_serving.py [--rate 200] [--duration 15] [--scale 0.2] [--explain 3]

Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_P99_MS = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(home: Path, scale: float, seed: int) -> None:
    """Synthetic data -> warehouse -> feature store -> churn champion (the real pipeline steps)."""
    from olist_ml import features, ingest, synth
    from olist_ml.config import Settings
    from olist_ml.ml.train import train
    from olist_ml.problems import get

    s = Settings(home=home)
    t0 = time.perf_counter()
    raw = home / "raw"
    synth.generate(raw, seed=seed, scale=scale)
    ingest.ingest(raw, s)
    features.build(s)
    print(f"prepared warehouse + features in {time.perf_counter() - t0:.1f}s", flush=True)
    t0 = time.perf_counter()
    train(get("churn"), s, n_trials=0, candidates=["lightgbm"])
    print(f"trained the churn champion in {time.perf_counter() - t0:.1f}s", flush=True)


def _pick_seller(settings) -> str:
    from olist_ml.problems import get
    from olist_ml.warehouse import session

    with session(settings, read_only=True) as con:
        frame = get("churn").scoring_frame(con, settings, None)
    if frame.empty:
        raise SystemExit("the churn population is empty: nothing to benchmark")
    return str(frame["seller_id"].iloc[0])


async def _drive(
    url: str, path: str, rate: float, duration: float, max_in_flight: int
) -> tuple[list[float], int, float]:
    import httpx

    n = int(rate * duration)
    lat: list[float] = []
    errors = 0
    sem = asyncio.Semaphore(max_in_flight)
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=5.0) as client:
        for _ in range(20):  # warm-up (connections, caches), not measured
            await client.get(path)

        async def one():
            nonlocal errors
            async with sem:
                t = time.perf_counter()
                try:
                    r = await client.get(path)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t
            if ok:
                lat.append(dt)
            else:
                errors += 1

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() - start > duration + 5:
                break  # the client cannot keep up: stop rather than run on
            tasks.append(asyncio.create_task(one()))
        done, pending = await asyncio.wait(tasks, timeout=10) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        errors += len(pending)
        wall = time.perf_counter() - start
    return lat, errors, wall


def _pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of load (default 15)")
    ap.add_argument("--scale", type=float, default=0.2, help="synthetic data scale when preparing (default 0.2)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-in-flight", type=int, default=32)
    ap.add_argument("--seller", default=None, help="seller id to query (default: the first of the churn population)")
    ap.add_argument("--keep", action="store_true", help="keep the prepared folder")
    ap.add_argument("--explain", type=int, default=0, help="reasons per answer (?explain=K; default 0: score only)")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from olist_ml.config import Settings

    tmp = None
    if os.environ.get("OLIST_ML_HOME"):
        settings = Settings.from_env()
        print(f"using the warehouse + registry under {settings.home} (env)")
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench_serving_"))
        settings = Settings(home=tmp / "home")
        prepare(settings.home, args.scale, args.seed)
    proc = None
    try:
        seller = args.seller or _pick_seller(settings)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "OLIST_ML_API_TOKEN"}
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
            "--problem",
            "churn",
            "--log-level",
            "warning",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                r = httpx.get(url + "/ready", timeout=1.0)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready after 120 s: {r.text if 'r' in dir() else ''}")
            time.sleep(0.2)
        print(f"server ready in {time.perf_counter() - t0:.1f}s on {url} (pid {proc.pid}); seller {seller}")
        path = f"/sellers/{seller}/churn" + (f"?explain={args.explain}" if args.explain else "")
        probe = httpx.get(url + path, timeout=5.0).json()
        if args.explain:
            assert len(probe.get("reasons") or []) == min(args.explain, 10**6), probe
            print(f"explain={args.explain}: e.g. {probe['reasons'][0]['text']}")
        lat, errors, wall = asyncio.run(_drive(url, path, args.rate, args.duration, args.max_in_flight))
        n = len(lat)
        p50, p90, p99 = _pct(lat, 50), _pct(lat, 90), _pct(lat, 99)
        print(
            f"requests: {n} ok, {errors} failed, target rate {args.rate:.0f}/s for {args.duration:.0f}s, "
            f"cores {os.cpu_count()}"
        )
        print(f"throughput: {n / wall:.1f} req/s (wall {wall:.2f}s)")
        print(
            f"latency ms: p50 {p50:.2f}  p90 {p90:.2f}  p99 {p99:.2f}  max "
            f"{max(lat) * 1000 if lat else float('nan'):.2f}"
        )
        print(
            f"p99 vs target {TARGET_P99_MS:.0f} ms: ratio {p99 / TARGET_P99_MS:.2f} "
            f"({'MET' if p99 <= TARGET_P99_MS and errors == 0 else 'MISSED'})"
        )
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
