"""A clean Python environment built only from a registered model's logged requirements.

`clean_env(requirements)` is a virtualenv (uv, Python of this interpreter) holding exactly those
requirements and what they depend on, and NOT olist-ml: what a user outside the project gets from
`mlflow.pyfunc.get_model_dependencies(uri)`. Packages come from uv's cache (the project's own
`make install` fills it with the same pinned versions), else from the package index.

The environment is cached between runs, outside the repository, keyed by the hash of the sorted
requirements and the Python version: `$OLIST_ML_PORTABLE_CACHE` or `~/.cache/olist-ml/portable-envs/
<key>/` (a file lock serialises concurrent builders; the `READY` file marks a complete build, so an
interrupted one is rebuilt). `READY` records how long the build took.

Processes in it run without PYTHONDONTWRITEBYTECODE, so the first run compiles what it imports and
later runs start warm.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def uv_binary() -> str | None:
    for cand in (ROOT / ".tools" / "bin" / "uv", Path(sys.executable).parent / "uv"):
        if cand.exists():
            return str(cand)
    return shutil.which("uv")


def cache_root() -> Path:
    return Path(os.environ.get("OLIST_ML_PORTABLE_CACHE") or Path.home() / ".cache" / "olist-ml" / "portable-envs")


def env_key(requirements: list[str]) -> str:
    text = "\n".join(sorted(r.strip() for r in requirements if r.strip())) + f"\npython {sys.version_info[:3]}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def clean_subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a process in a clean env: no project paths, no virtualenv of ours,
    bytecode written (a cached env starts warm), MLflow offline."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME")
    }
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra)
    return env


def clean_env(requirements: list[str], *, root: Path | None = None) -> tuple[Path, dict]:
    """(the env's folder, its build record: key, seconds, cached) for `requirements` (pip lines)."""
    from filelock import FileLock

    reqs = [r.strip() for r in requirements if r.strip() and not r.strip().startswith("#")]
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = env_key(reqs)
    env = root / key
    ready = env / "READY"
    with FileLock(str(root / f"{key}.lock"), timeout=900):
        if ready.exists():
            rec = json.loads(ready.read_text())
            return env, {**rec, "cached": True}
        uv = uv_binary()
        if uv is None:
            raise RuntimeError("uv not found (run `make install`)")
        shutil.rmtree(env, ignore_errors=True)
        t0 = time.perf_counter()
        base = getattr(sys, "_base_executable", None) or sys.executable
        run_env = {**clean_subprocess_env(), "UV_PYTHON_DOWNLOADS": "never"}
        run_env.pop("UV_COMPILE_BYTECODE", None)
        subprocess.run(
            [uv, "venv", "--quiet", "--python", base, str(env)], check=True, env=run_env, capture_output=True, text=True
        )
        (env / "requirements.txt").write_text("\n".join(reqs) + "\n")
        r = subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(python_of(env)), "-r", str(env / "requirements.txt")],
            env=run_env,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise RuntimeError(f"uv pip install failed for {reqs}: {r.stderr[-2000:]}")
        rec = {"key": key, "requirements": reqs, "seconds": round(time.perf_counter() - t0, 2)}
        ready.write_text(json.dumps(rec))
        return env, {**rec, "cached": False}
