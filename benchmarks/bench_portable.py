"""The portable registered model: size, load time, logging cost, and the clean environment.

For every champion in an olist-ml home (default: a fresh synthetic one, scale 0.05, one candidate per
problem as in tests/ml/test_portable.py; or --home of e.g. `olist-ml run`):

  * artefact size: the model folder (MLmodel, python_model.pkl, code/, requirements, example), and
    of it the pickle and the logged code;
  * load time in olist-ml (`registry.load_champion`, imports warm) and of plain
    `mlflow.pyfunc.load_model` in a fresh process of the clean environment;
  * logging cost: `olist_ml.ml.artefact.log_model` vs the format before it
    (`mlflow.sklearn.log_model` + `infer_signature`, cloudpickle), same fitted Pipeline, same store;
  * the clean environment from the model's logged requirements: cold (empty env cache; packages
    from uv's cache) and cached (the env reused).

    .venv/bin/python benchmarks/bench_portable.py [--home HOME] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

CANDIDATES = {"churn": ["hazard_glm"], "delay": ["lightgbm"], "activation": ["xgboost"], "segments": None}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _world(root: Path):
    from olist_ml import features, ingest, problems, synth
    from olist_ml.config import Settings
    from olist_ml.ml import registry, train

    synth.generate(root / "raw", scale=0.05, seed=11)
    s = Settings(home=root / "home", threads=1, extra={"bootstrap": 50, "k_range": "3-4", "stability_runs": 1})
    ingest.ingest(root / "raw", s)
    features.build(s, cadence="monthly")
    for key, cands in CANDIDATES.items():
        p = problems.get(key)
        r = train.train(p, s, n_trials=0, candidates=cands, cv_folds=2)
        if r.decision != "champion":
            registry.promote(s, p.name, r.model_version, reason="benchmark")
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="an olist-ml home with champions (default: a fresh synthetic one)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from olist_ml import problems
    from olist_ml.config import Settings
    from olist_ml.ml import artefact, registry, tracking
    from olist_ml.warehouse import session
    from support.portable_env import clean_env, clean_subprocess_env, python_of

    tmp = Path(tempfile.mkdtemp(prefix="bench_portable_"))
    s = Settings(home=args.home) if args.home else _world(tmp)
    tracking.configure(s)
    cl = tracking.client(s)
    names = [p.name for p in problems.REGISTRY.values() if registry.alias_version(s, p.name)]
    out: dict = {}
    for name in names:
        uri = f"models:/{name}@champion"
        d = Path(mlflow.artifacts.download_artifacts(uri))
        champ = registry.load_champion(s, name)
        loads = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            registry.load_champion(s, name)
            loads.append(time.perf_counter() - t0)
        with session(s, read_only=True) as con:  # what training logs the model with: the ABT
            artefact_frame = con.execute(f"SELECT * FROM {problems.get(name).abt_table}").df()
        exp = cl.get_model_version(name, champ.version).run_id
        exp_id = cl.get_run(exp).info.experiment_id
        new_t, old_t = [], []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run(experiment_id=exp_id, run_name="bench_portable logging"):
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    artefact.log_model(mlflow, champ.model, champ.kind, artefact_frame)
                    new_t.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    ex = artefact_frame[champ.feature_names].head(5)
                    exf = ex.apply(
                        lambda c: (
                            c.astype("float64") if c.dtype.kind in "iuf" or str(c.dtype) in ("Int64", "Int32") else c
                        )
                    )
                    fn = "predict_proba" if champ.kind == "binary" else "predict"
                    sig = infer_signature(exf, getattr(champ.model, fn)(exf))
                    mlflow.sklearn.log_model(
                        champ.model,
                        name="model_old",
                        signature=sig,
                        input_example=exf,
                        pip_requirements=artefact.requirements(champ.model),
                        serialization_format="cloudpickle",
                        pyfunc_predict_fn=fn,
                    )
                    old_t.append(time.perf_counter() - t0)
        reqs = (d / "requirements.txt").read_text().splitlines()
        out[name] = {
            "artefact_kb": round(_size(d) / 1024, 1),
            "pickle_kb": round((d / "python_model.pkl").stat().st_size / 1024, 1),
            "code_kb": round(_size(d / "code") / 1024, 1),
            "requirements": reqs,
            "load_in_olist_ml_s": round(statistics.median(loads), 3),
            "log_model_new_s": round(statistics.median(new_t), 3),
            "log_model_old_s": round(statistics.median(old_t), 3),
        }
        print(name, json.dumps(out[name]), flush=True)

    # the clean environments: cold (an empty env cache) and cached
    cache = tmp / "env-cache"
    envs: dict[str, Path] = {}
    for name in names:
        reqs = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{name}@champion")).read_text().splitlines()
        env, cold = clean_env(reqs, root=cache)
        t0 = time.perf_counter()
        _, cached = clean_env(reqs, root=cache)
        cached_s = time.perf_counter() - t0
        envs[name] = env
        script = (
            "import time; t0 = time.perf_counter(); import mlflow.pyfunc; t1 = time.perf_counter(); "
            f"m = mlflow.pyfunc.load_model('models:/{name}@champion'); t2 = time.perf_counter(); "
            "print(round(t1 - t0, 3), round(t2 - t1, 3))"
        )
        runs = []
        for _ in range(2):  # the first run of an env compiles its bytecode
            r = subprocess.run(
                [str(python_of(env)), "-c", script],
                capture_output=True,
                text=True,
                cwd=tmp,
                env=clean_subprocess_env(MLFLOW_TRACKING_URI=s.mlflow_uri),
            )
            runs.append(r.stdout.strip().splitlines()[-1] if r.returncode == 0 else f"failed: {r.stderr[-300:]}")
        out[name].update(
            {
                "env_key": cold["key"],
                "env_cold_s": cold["seconds"] if not cold["cached"] else "shared",
                "env_cached_s": round(cached_s, 4),
                "clean_import_mlflow_then_load_s (first, second run)": runs,
            }
        )
        print(name, "clean env:", json.dumps({k: out[name][k] for k in list(out[name])[-4:]}), flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
