"""Registered models travel (issue "Deploy anywhere"): every problem's champion is a standard MLflow
model that loads and predicts with plain `mlflow.pyfunc` on rows as the warehouse stores them
(int64, nullable Int64 with NULLs, float64 NaN, text), in-process and in a clean environment built
only from the model's logged requirements (no olist-ml), and behind `mlflow models serve`; its
answers equal `olist-ml predict`'s. Registration is quiet unless verbose.

The world: synthetic data (scale 0.05) -> ingest -> monthly feature store -> the four problems
trained with one candidate each, chosen to cover every class a model can hold (churn: the hazard
GLM; delay: LightGBM; activation: XGBoost; segments: k-means with the heavy-tail scaler) -> scored
by `olist_ml.ml.scoring.predict` (what `olist-ml predict` runs).

Tests marked `portable` build the clean environments (`tests/support/portable_env.py`: uv, from its
cache, kept between runs under ~/.cache/olist-ml/portable-envs, keyed by the requirements' hash).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from olist_ml.config import SegmentsSettings, Settings, TrainingSettings
from olist_ml.warehouse import session
from support.portable_env import clean_env, clean_subprocess_env, python_of, uv_binary

CANDIDATES = {"churn": ["hazard_glm"], "delay": ["lightgbm"], "activation": ["xgboost"], "segments": None}
NOT_PORTABLE = ("olist", "duckdb", "pyspark")


@dataclasses.dataclass
class World:
    settings: Settings
    problems: dict  # alias -> Problem
    frames: dict  # model name -> the scoring frame `olist-ml predict` scored, as the warehouse gives it
    scores: dict  # model name -> Series of its scores by the frame's row order
    stdout: str
    stderr: str

    def problems_by_name(self) -> dict:
        return {p.name: p for p in self.problems.values()}


def _features(model_name: str, s: Settings) -> list[str]:
    from olist_ml.ml import registry

    return registry.load_champion(s, model_name).feature_names


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from olist_ml import features, ingest, problems, synth
    from olist_ml.ml import registry, scoring, train

    root = tmp_path_factory.mktemp("portable")
    synth.generate(root / "raw", scale=0.05, seed=11)
    s = Settings(
        home=root / "home",
        threads=1,
        training=TrainingSettings(bootstrap=50),
        segments=SegmentsSettings(k_range=(3, 4), stability_runs=1),
    )
    ingest.ingest(root / "raw", s)
    features.build(s, cadence="monthly")
    probs = {k: problems.get(k) for k in CANDIDATES}
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for key, p in probs.items():
            r = train.train(p, s, n_trials=0, candidates=CANDIDATES[key], cv_folds=2)
            assert r.model_version is not None, r.reason
            if r.decision != "champion":  # below its gate on this tiny data: serve it anyway
                registry.promote(s, p.name, r.model_version, reason="portable test")
            scoring.predict(p, s)
    frames, scores = {}, {}
    with session(s) as con:  # scoring frames may build helper tables (order_delay: zip coordinates)
        for p in probs.values():
            champ = registry.load_champion(s, p.name)
            frame = p.scoring_frame(con, s, None)
            keys = [k for k in p.key_columns if k != p.time_column]
            sc = con.execute(
                f"SELECT {', '.join(keys)}, score FROM {p.scores_table} WHERE model_version = ?", [champ.version]
            ).df()
            assert len(sc) == len(frame) > 0
            frames[p.name] = frame
            scores[p.name] = frame[keys].merge(sc, on=keys, how="left", validate="one_to_one")["score"]
    return World(s, probs, frames, scores, out.getvalue(), err.getvalue())


def with_nulls(frame: pd.DataFrame, signature, n: int = 24) -> pd.DataFrame:
    """The first n rows with NULLs spread over every feature the signature lets hold them (float,
    text, and integer columns that hold NULLs in the warehouse: `any`), kept in the warehouse's dtypes."""
    out = frame.head(n).copy().reset_index(drop=True)
    cols = [c.name for c in signature.inputs.inputs if c.to_dict()["type"] in ("double", "string", "any")]
    for j, c in enumerate(cols):
        rows = [i for i in range(len(out)) if (i + j) % 3 == 0]
        if pd.api.types.is_integer_dtype(out[c]) and not isinstance(out[c].dtype, pd.api.extensions.ExtensionDtype):
            out[c] = out[c].astype("Int64")
        out.loc[rows, c] = None
    return out


def _model_dir(world: World, name: str) -> Path:
    import mlflow

    from olist_ml.ml import tracking

    tracking.configure(world.settings)
    return Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion"))


# ---- unit: signature and requirements ------------------------------------------------------------
def test_signature_declares_the_warehouse_types():
    from olist_ml.ml.artefact import signature

    frame = pd.DataFrame(
        {
            "n": pd.array([1, 2, 3], dtype="int64"),
            "n32": pd.array([1, 2, 3], dtype="int32"),
            "maybe": pd.array([1, None, 3], dtype="Int64"),
            "x": [0.5, np.nan, 1.0],
            "s": pd.array(["a", None, "b"], dtype="str"),
            "o": np.array(["a", None, "c"], dtype=object),
            "flag": [True, False, True],
            "other": ["x", 1, None],
        }
    )
    sig = signature(frame, list(frame.columns), "binary")
    types = {c.name: c.to_dict()["type"] for c in sig.inputs.inputs}
    assert types == {
        "n": "long",
        "n32": "long",
        "maybe": "any",
        "x": "double",
        "s": "string",
        "o": "string",
        "flag": "boolean",
        "other": "any",
    }
    assert [(c.name, c.to_dict()["type"]) for c in sig.outputs.inputs] == [("score", "double")]
    assert signature(frame, ["n"], "cluster").outputs.inputs[0].to_dict()["type"] == "long"


def _fitted(name: str):
    from olist_ml.ml.candidates import resolve

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "days": rng.integers(1, 45, 200), "c": rng.choice(["x", "y"], 200)})
    y = (X["a"] + rng.normal(size=200) > 0).astype(int)
    cand = resolve([name], "binary", "days" if name == "hazard_glm" else None)[0]
    return cand.build(["c"], ["a", "days"], cand.default, 0, 1).fit(X, y)


def test_requirements_are_exact_and_minimal():
    from importlib.metadata import version

    from olist_ml.ml.artefact import requirements

    base = {f"{d}=={version(d)}" for d in ("numpy", "pandas", "scipy", "scikit-learn", "cloudpickle")}
    assert set(requirements(_fitted("logreg"))) == base
    assert set(requirements(_fitted("hazard_glm"))) == base
    assert set(requirements(_fitted("lightgbm"))) == base | {f"lightgbm=={version('lightgbm')}"}
    assert set(requirements(_fitted("xgboost"))) == base | {f"xgboost-cpu=={version('xgboost-cpu')}"}
    # a model holding anything of the project itself is refused at logging time
    leaky = _fitted("logreg")
    leaky.named_steps["cast"].settings_ = Settings()
    with pytest.raises(ValueError, match="refers to olist_ml"):
        requirements(leaky)


# ---- in-process: plain MLflow on the registered champions -----------------------------------------
def test_champions_load_and_predict_with_plain_mlflow(world):
    """The issue's call, `mlflow.pyfunc.load_model("models:/<name>@champion").predict(rows)`, on the
    rows `olist-ml predict` scored, as the warehouse gives them: one score per row, equal to the batch."""
    import mlflow

    from olist_ml.ml import registry, tracking

    tracking.configure(world.settings)
    for p in world.problems.values():
        frame = world.frames[p.name]
        m = mlflow.pyfunc.load_model(f"models:/{p.name}@champion")
        pred = m.predict(frame)
        assert isinstance(pred, pd.Series) and pred.name == "score" and len(pred) == len(frame)
        want = world.scores[p.name].to_numpy()
        if p.kind == "binary":
            assert pred.dtype == "float64"
            np.testing.assert_allclose(pred.to_numpy(), want, rtol=0, atol=1e-12)
        else:
            assert pred.dtype == "int64"
            np.testing.assert_array_equal(pred.to_numpy(), want.astype("int64"))
        types = {c.name: c.to_dict()["type"] for c in m.metadata.signature.inputs.inputs}
        for c, t in types.items():  # declared as the warehouse types them
            s = frame[c]
            if pd.api.types.is_integer_dtype(s) and not isinstance(s.dtype, pd.api.extensions.ExtensionDtype):
                assert t in ("long", "any"), (p.name, c, t)  # any: the column holds NULLs in the ABT
            elif pd.api.types.is_float_dtype(s):
                assert t == "double", (p.name, c, t)
        nulls = with_nulls(frame, m.metadata.signature)
        np.testing.assert_allclose(
            m.predict(nulls).to_numpy(dtype=float),
            registry.load_champion(world.settings, p.name).score(nulls).astype(float),
            rtol=0,
            atol=1e-12,
        )
    churn = world.problems["churn"].name
    assert "long" in {
        c.to_dict()["type"]
        for c in mlflow.pyfunc.load_model(f"models:/{churn}@champion").metadata.signature.inputs.inputs
    }  # the int64 columns


def test_artefact_carries_its_code_and_only_its_requirements(world):
    for key, p in world.problems.items():
        d = _model_dir(world, p.name)
        mlmodel = (d / "MLmodel").read_text()
        assert "python_function" in mlmodel and "loader_module: mlflow.pyfunc.model" in mlmodel
        assert (d / "code" / "olist_ml_model" / "__init__.py").exists()
        assert (d / "code" / "olist_ml_model" / "pyfunc.py").exists()
        reqs = [r for r in (d / "requirements.txt").read_text().splitlines() if r.strip()]
        assert reqs and all("==" in r for r in reqs), reqs
        names = {r.split("==")[0] for r in reqs}
        assert not {n for n in names if n.startswith(NOT_PORTABLE)}, reqs
        assert ("lightgbm" in names) == (key == "delay") and ("xgboost-cpu" in names) == (key == "activation")
        assert {"mlflow", "numpy", "pandas", "scikit-learn", "cloudpickle"} <= names
        # the pickle refers to no project module (olist_ml_model is shipped in code/)
        pickled = (d / "python_model.pkl").read_bytes()
        assert b"olist_ml.ml" not in pickled and b"olist_ml.problems" not in pickled


def test_registration_is_quiet_unless_verbose(world, capsys):
    from olist_ml.ml import registry, tracking

    assert "Successfully registered model" not in world.stderr + world.stdout
    assert "Created version" not in world.stderr + world.stdout
    assert "View run" not in world.stderr + world.stdout
    churn = world.problems["churn"].name
    mv = tracking.client(world.settings).get_model_version_by_alias(churn, "champion")
    loud = dataclasses.replace(world.settings, verbose=True)
    v = registry.register(loud, "verbose_probe", mv.source, mv.run_id, {"probe": "1"})
    err = capsys.readouterr().err
    assert "Successfully registered model 'verbose_probe'." in err and f"Created version '{v.version}'" in err
    assert tracking.client(world.settings).get_model_version("verbose_probe", v.version).tags["probe"] == "1"


# ---- a clean environment from the logged requirements ---------------------------------------------
CLEAN_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys, time
    spec = json.load(open(sys.argv[1]))
    before = {m: importlib.util.find_spec(m) is not None for m in ("olist_ml", "olist_ml_model", "duckdb", "pyspark")}
    import mlflow, pandas as pd
    out = {"importable_before": before}
    for name, paths in spec.items():
        t0 = time.perf_counter()
        m = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        res = {"load_seconds": time.perf_counter() - t0}
        for part, path in paths.items():
            frame = pd.read_parquet(path)
            pred = m.predict(frame)
            res[part] = {"values": [float(v) for v in pred], "name": pred.name, "dtype": str(pred.dtype),
                         "dtypes": {c: str(t) for c, t in frame.dtypes.items()}}
            if part == "batch" and m.metadata.signature.params is not None:  # binary: reasons too
                ex = m.predict(frame, params={"explain": 3})
                res["explain"] = {"score": [float(v) for v in ex["score"]], "margin": [float(v) for v in ex["margin"]],
                                  "reasons": [json.loads(r) for r in ex["reasons"]],
                                  "text": [str(t) for t in ex["reason_1_text"]]}
        out[name] = res
    import olist_ml_model
    out["olist_ml_model_from"] = olist_ml_model.__file__
    out["olist_ml_importable_after"] = importlib.util.find_spec("olist_ml") is not None
    json.dump(out, open(sys.argv[2], "w"))
""")


def _envs(world: World) -> dict[str, tuple[Path, dict, list[str]]]:
    """The clean environment of every champion, grouped: env key -> (env, build record, model names)."""
    import mlflow

    from olist_ml.ml import tracking

    if uv_binary() is None:
        pytest.skip("uv not found: run `make install`")
    tracking.configure(world.settings)
    out: dict[str, tuple[Path, dict, list[str]]] = {}
    for p in world.problems.values():
        reqs = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{p.name}@champion")).read_text().splitlines()
        env, rec = clean_env(reqs)
        out.setdefault(rec["key"], (env, rec, []))[2].append(p.name)
    return out


@pytest.mark.portable
@pytest.mark.slow  # builds / starts a clean environment
def test_clean_env_predictions_equal_olist_ml_predict(world, tmp_path):
    """In an environment with only the model's logged requirements (no olist-ml, no DuckDB, no Spark),
    `mlflow.pyfunc.load_model(models:/<name>@champion).predict` on the rows `olist-ml predict` scored
    (parquet, read back with the warehouse's dtypes) gives the batch scores, and rows with NULLs give
    what olist-ml gives them."""
    import mlflow

    from olist_ml.ml import registry, tracking

    tracking.configure(world.settings)
    want, frames = {}, {}
    for p in world.problems.values():
        sig = mlflow.models.get_model_info(f"models:/{p.name}@champion").signature
        frames[p.name] = {"batch": world.frames[p.name], "nulls": with_nulls(world.frames[p.name], sig)}
        want[p.name] = {
            "batch": world.scores[p.name].to_numpy(dtype=float),
            "nulls": registry.load_champion(world.settings, p.name).score(frames[p.name]["nulls"]),
        }
    script = tmp_path / "clean_predict.py"
    script.write_text(CLEAN_SCRIPT)
    runs = []
    for key, (env, rec, names) in _envs(world).items():  # one process per environment, side by side
        spec = {}
        for n in names:
            spec[n] = {}
            for part, f in frames[n].items():
                path = tmp_path / f"{n}.{part}.parquet"
                f.to_parquet(path, index=False)
                spec[n][part] = str(path)
        (tmp_path / f"{key}.json").write_text(json.dumps(spec))
        proc = subprocess.Popen(
            [str(python_of(env)), str(script), str(tmp_path / f"{key}.json"), str(tmp_path / f"{key}.out")],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_subprocess_env(MLFLOW_TRACKING_URI=world.settings.mlflow_uri),
        )
        runs.append((key, rec, names, proc))
    for key, rec, names, proc in runs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        got = json.loads((tmp_path / f"{key}.out").read_text())
        assert got["importable_before"] == {
            "olist_ml": False,
            "olist_ml_model": False,
            "duckdb": False,
            "pyspark": False,
        }, rec["requirements"]
        assert not got["olist_ml_importable_after"]
        assert "/code/olist_ml_model/" in got["olist_ml_model_from"]  # the code logged with the model
        for n in names:
            for part in ("batch", "nulls"):
                res = got[n][part]
                assert res["name"] == "score"
                assert res["dtypes"] == {c: str(t) for c, t in frames[n][part].dtypes.items()}
                np.testing.assert_allclose(
                    res["values"], np.asarray(want[n][part], dtype=float), rtol=0, atol=1e-9, err_msg=f"{n} {part}"
                )
            if world.problems_by_name()[n].kind == "binary":  # `explain` in the clean environment
                from olist_ml.ml import explain

                ex = explain.explain(registry.load_champion(world.settings, n), frames[n]["batch"])
                got_ex = got[n]["explain"]
                np.testing.assert_allclose(got_ex["score"], want[n]["batch"], rtol=0, atol=1e-9)
                np.testing.assert_allclose(got_ex["margin"], ex.margin, rtol=0, atol=1e-9)
                assert got_ex["reasons"] == ex.all_reasons(3), n
                assert all(("median" in t or "most" in t) and t for t in got_ex["text"]), got_ex["text"][:3]


def _free_port() -> int:
    from support.serving_world import free_port

    return free_port()


def _payload(frame: pd.DataFrame, columns: list[str]) -> dict:
    """dataframe_split JSON with exact floats and NULLs as null."""
    data = [
        [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in row]
        for row in frame[columns].itertuples(index=False)
    ]
    return {"dataframe_split": {"columns": columns, "data": data}}


@dataclasses.dataclass
class _Server:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _start_server(world: World, env: Path, name: str) -> _Server:
    """`mlflow models serve -m models:/<name>@champion --env-manager local` with the clean env's Python
    (its bin/ first on PATH, as when activated: MLflow execs `uvicorn`), in its own process group."""
    port = _free_port()
    log = world.settings.home / f"serve-{name}.log"
    penv = clean_subprocess_env(
        MLFLOW_TRACKING_URI=world.settings.mlflow_uri, PATH=f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(python_of(env)),
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                f"models:/{name}@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ],
            env=penv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=world.settings.home,
        )
    return _Server(name, port, proc, log)


def _stop(server: _Server) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()


@pytest.mark.portable
@pytest.mark.slow  # builds / starts a clean environment
@pytest.mark.server
def test_mlflow_models_serve_from_clean_env(world):
    """`mlflow models serve` in the clean environment, on loopback: POSTed rows (dataframe_split JSON,
    NULLs as null) get olist-ml's scores, one {"score": value} per row."""
    import httpx
    import mlflow

    from olist_ml.ml import registry, tracking

    tracking.configure(world.settings)
    servers: list[_Server] = []
    try:
        for env, _rec, names in _envs(world).values():
            servers += [_start_server(world, env, n) for n in names]
        deadline = time.monotonic() + 240
        for sv in servers:
            while True:
                assert sv.proc.poll() is None, sv.tail()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{sv.port}/ping", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"{sv.name} did not start: {sv.tail()}"
                time.sleep(0.5)
        for sv in servers:
            sig = mlflow.models.get_model_info(f"models:/{sv.name}@champion").signature
            nulls = with_nulls(world.frames[sv.name], sig)
            want = registry.load_champion(world.settings, sv.name).score(nulls)
            r = httpx.post(
                f"http://127.0.0.1:{sv.port}/invocations",
                json=_payload(nulls, [c.name for c in sig.inputs.inputs]),
                timeout=60,
            )
            assert r.status_code == 200, r.text[:2000]
            got = r.json()["predictions"]  # the pyfunc's Series named score, as records
            assert len(got) == len(nulls) and all(set(g) == {"score"} for g in got)
            np.testing.assert_allclose(
                np.asarray([g["score"] for g in got], dtype=float),
                np.asarray(want, dtype=float),
                rtol=0,
                atol=1e-9,
                err_msg=sv.name,
            )
    finally:
        for sv in servers:
            _stop(sv)


# ---- inside olist-ml: the same fitted model scores the same, whatever the artefact format -----------
def test_batch_scores_unchanged_for_the_same_model(world):
    """The churn champion's fitted Pipeline logged in the format before this one (sklearn flavour)
    and promoted: `olist-ml predict` (scoring.predict) gives exactly the same scores as with the
    portable artefact, so loading, scoring, serving and the champion rule see the same model."""
    import mlflow
    import mlflow.sklearn

    from olist_ml.ml import registry, scoring, tracking

    s = world.settings
    p = world.problems["churn"]
    champ = registry.load_champion(s, p.name)
    mlflow_ = tracking.configure(s)
    with mlflow_.start_run(experiment_id=tracking.experiment_id(s, p.name), run_name="old format") as run:
        info = mlflow.sklearn.log_model(
            champ.model,
            name="model",
            serialization_format="cloudpickle",
            pyfunc_predict_fn="predict_proba",
            pip_requirements=["scikit-learn"],
        )
    old = registry.register(s, p.name, info.model_uri, run.info.run_id, {"kind": "binary"})
    try:
        registry.promote(s, p.name, old.version, reason="old artefact format")
        loaded = registry.load_champion(s, p.name)
        assert loaded.version == str(old.version) and loaded.feature_names == champ.feature_names
        scoring.predict(p, s)
        with session(s, read_only=True) as con:
            a = con.execute(
                f"SELECT seller_id, score, decile FROM {p.scores_table} WHERE model_version = ? ORDER BY seller_id",
                [champ.version],
            ).df()
            b = con.execute(
                f"SELECT seller_id, score, decile FROM {p.scores_table} WHERE model_version = ? ORDER BY seller_id",
                [str(old.version)],
            ).df()
        assert len(a) == len(b) > 0
        pd.testing.assert_frame_equal(a, b)
    finally:
        registry.promote(s, p.name, champ.version, reason="back to the portable artefact")
