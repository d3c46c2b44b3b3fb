"""Champions of a real-data home in a clean MLflow-only environment (issue "Deploy anywhere").

    .venv/bin/olist-ml --home H run --data $OLIST_DATA_DIR
    .venv/bin/python benchmarks/bench_portable_real.py --home H [--rows 500]

For seller_churn, order_delay and seller_activation: builds (or reuses) a virtualenv from the model's
logged requirements only (`mlflow.pyfunc.get_model_dependencies`; tests/support/portable_env.py),
checks that neither olist_ml nor duckdb is importable there, predicts a seeded sample of ABT rows as
the warehouse stores them with plain `mlflow.pyfunc.load_model`, and prints the largest difference
from the same model's predictions inside olist-ml's environment.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

PROBLEMS = (
    ("seller_churn", "abt_seller_churn"),
    ("order_delay", "abt_order_delay"),
    ("seller_activation", "abt_seller_activation"),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--home", type=Path, default=None, help="an olist-ml home where `olist-ml run` registered champions"
    )
    ap.add_argument("--rows", type=int, default=500)
    args = ap.parse_args()
    if args.home is None:
        print("needs --home of an `olist-ml run --data <real>` home: nothing to check")
        return 0

    import mlflow
    import numpy as np

    from olist_ml.config import Settings
    from olist_ml.warehouse import session
    from support.portable_env import clean_env, clean_subprocess_env, python_of

    s = Settings(home=args.home)
    mlflow.set_tracking_uri(s.mlflow_uri)
    tmp = Path(tempfile.mkdtemp())
    worst = 0.0
    for name, table in PROBLEMS:
        uri = f"models:/{name}@champion"
        with session(s, read_only=True) as con:
            rows = con.execute(f"SELECT * FROM {table} USING SAMPLE {args.rows} ROWS (reservoir, 7)").df()
        ours = np.asarray(mlflow.pyfunc.load_model(uri).predict(rows), dtype=float).ravel()
        reqs = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().splitlines()
        env, rec = clean_env(reqs)
        local = mlflow.artifacts.download_artifacts(uri)
        rows.to_parquet(tmp / f"{name}.parquet")
        code = (
            "import importlib.util, mlflow, numpy as np, pandas as pd\n"
            "assert importlib.util.find_spec('olist_ml') is None and importlib.util.find_spec('duckdb') is None\n"
            f"m = mlflow.pyfunc.load_model({local!r})\n"
            f"r = pd.read_parquet({str(tmp / (name + '.parquet'))!r})\n"
            f"np.save({str(tmp / (name + '.npy'))!r}, np.asarray(m.predict(r), dtype=float).ravel())\n"
        )
        subprocess.run([str(python_of(env)), "-c", code], check=True, env=clean_subprocess_env(), cwd=tmp)
        diff = float(np.max(np.abs(np.load(tmp / f"{name}.npy") - ours)))
        worst = max(worst, diff)
        print(f"{name}: {len(rows)} rows, clean env ({', '.join(reqs)}): max |difference| {diff:.3g}")
    print(f"largest difference {worst:.3g} (target <= 1e-9): {'met' if worst <= 1e-9 else 'MISSED'}")
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
