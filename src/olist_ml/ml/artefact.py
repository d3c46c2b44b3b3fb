"""The registered model as a standard, self-contained MLflow model (DESIGN.md, principle 9).

What `log_model` writes (every problem, seller_segments included):

  * flavour `python_function` with `olist_ml_model.pyfunc.ChampionModel` around the fitted
    scikit-learn Pipeline: `predict(frame)` returns one value per row, a Series named `score`
    (binary: P(class 1), float64; clustering: the cluster id, int64), so `spark_udf` gets a
    double / bigint column and `mlflow models serve` one number per row;
  * `code/olist_ml_model/`: the only project code the pickle refers to (estimator classes, the
    frame caster, the pyfunc wrapper), logged with `code_paths`. It imports numpy, pandas,
    scikit-learn (and scipy, MLflow) only, so the model loads without olist-ml installed;
  * `requirements.txt`: exact pins (`==` the versions it was trained with) of what the pickle and
    that code import: numpy, pandas, scipy, scikit-learn, cloudpickle, lightgbm / xgboost-cpu only
    when the model holds one, and mlflow (added by MLflow). No olist-ml, DuckDB or PySpark.
    `requirements` walks the fitted object and refuses to log a model that refers to `olist_ml`;
  * a signature inferred from the training frame AS THE WAREHOUSE GIVES IT (DuckDB's `.df()`), one
    column per feature: `double` for floating columns, `long` for integer columns that hold no
    NULL, `string` for text, `boolean` for booleans. A column that holds NULLs in the training rows
    and is integer (nullable Int64) or boolean is declared `any`: MLflow cannot enforce `long` on a
    column with missing values (pandas nullable Int64 fails its cast, Spark and JSON give float64),
    and the model's first step casts every feature itself (numerics to float64, NULL to NaN);
  * an input example: the first rows of that frame;
  * binary models: the parameter `explain` (long, default 0) in the signature's `params` and the
    model's `Explainer` (training references, medians, feature descriptions) inside the wrapper, so
    `predict(rows, params={"explain": k})` returns the score and k reasons per row
    (`olist_ml_model.explain`), also where olist-ml is not installed.

Inside olist-ml `load` unwraps the Pipeline, so batch scores, serving, monitoring and the champion
rule run the same fitted Pipeline as before (and models registered before this format still load).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CODE_PACKAGE = "olist_ml_model"
# always pinned: the pickle's containers and the code in `olist_ml_model` (scipy: sklearn's numerics,
# cloudpickle: MLflow's loader of a python_function model)
BASE_REQUIREMENTS = ("numpy", "pandas", "scipy", "scikit-learn", "cloudpickle")
# modules that must never be needed to load a registered model
NOT_PORTABLE = ("olist_ml", "duckdb", "pyspark")


def code_path() -> str:
    """The folder of the `olist_ml_model` package, logged with every model."""
    import olist_ml_model

    return str(Path(olist_ml_model.__file__).parent)


# ---- signature -----------------------------------------------------------------------------------
def _col_spec(name: str, s: pd.Series):
    from mlflow.types.schema import AnyType, ColSpec, DataType

    dtype = s.dtype
    nulls = bool(s.isna().any())
    if pd.api.types.is_bool_dtype(dtype):
        return ColSpec(AnyType() if nulls else DataType.boolean, name)
    if pd.api.types.is_integer_dtype(dtype):
        return ColSpec(AnyType() if nulls else DataType.long, name)
    if pd.api.types.is_float_dtype(dtype) and not isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return ColSpec(DataType.double, name)
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(s, skipna=True)
        if inferred in ("string", "empty"):
            return ColSpec(DataType.string, name)
    return ColSpec(AnyType(), name)  # anything else (nullable floats, mixed objects): the model casts


def input_schema(frame: pd.DataFrame, features: list[str]):
    """The signature's inputs: `features` as `frame` (the warehouse's pandas form) types them."""
    from mlflow.types.schema import Schema

    return Schema([_col_spec(c, frame[c]) for c in features])


def output_schema(kind: str):
    from mlflow.types.schema import ColSpec, DataType, Schema

    from olist_ml_model.pyfunc import SCORE

    return Schema([ColSpec(DataType.double if kind == "binary" else DataType.long, SCORE)])


def params_schema(kind: str):
    """The predict parameters a model takes: `explain` (reasons per row, 0 = the score only) for binary
    models; MLflow passes `params` to `predict` only when the signature declares them."""
    from mlflow.types.schema import DataType, ParamSchema, ParamSpec

    from olist_ml_model.pyfunc import EXPLAIN

    return ParamSchema([ParamSpec(EXPLAIN, DataType.long, 0)]) if kind == "binary" else None


def signature(frame: pd.DataFrame, features: list[str], kind: str):
    from mlflow.models import ModelSignature

    return ModelSignature(inputs=input_schema(frame, features), outputs=output_schema(kind), params=params_schema(kind))


# ---- requirements --------------------------------------------------------------------------------
def _referenced_modules(obj: Any) -> set[str]:
    """Top-level module names of every object class and function reachable from a fitted model
    (its attributes, lists, tuples and dicts); arrays and frames count as numpy / pandas."""
    seen: set[int] = set()
    out: set[str] = set()
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or o is None or isinstance(o, (str, bytes, int, float, bool, complex)):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            out.add("numpy")
            if o.dtype == object:
                stack.extend(o.ravel().tolist())
            continue
        if isinstance(o, (pd.DataFrame, pd.Series, pd.Index)):
            out.add("pandas")
            continue
        if isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
            continue
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
            continue
        if isinstance(o, (type, types.FunctionType, types.BuiltinFunctionType)):
            out.add(str(getattr(o, "__module__", "") or "").split(".")[0])
            continue
        out.add(type(o).__module__.split(".")[0])
        if hasattr(o, "__dict__"):
            stack.extend(vars(o).values())
    return {m for m in out if m}


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # ~0.5 s: once per process


def requirements(model: Any) -> list[str]:
    """Exact pins of the distributions that loading and running `model` imports (see the module
    docstring). ValueError when the model refers to a module that must not be needed."""
    mods = _referenced_modules(model)
    bad = sorted(m for m in mods if m in NOT_PORTABLE)
    if bad:
        raise ValueError(
            f"the model refers to {', '.join(bad)}: a registered model may only use the classes of "
            f"{CODE_PACKAGE} and its logged requirements"
        )
    dists = _distributions()
    names = list(BASE_REQUIREMENTS)
    for m in sorted(mods - {CODE_PACKAGE, "builtins", "__main__"} - set(sys.stdlib_module_names)):
        for d in dists.get(m, []):
            if d not in names:
                names.append(d)
    out = []
    for d in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out.append(f"{d}=={importlib.metadata.version(d)}")
    return out


# ---- logging and loading -------------------------------------------------------------------------
def features_of(model) -> list[str]:
    """The columns a fitted Pipeline reads: its first step's (`olist_ml_model.FrameCaster`)."""
    cast = model.named_steps.get("cast") if hasattr(model, "named_steps") else None
    if cast is None:
        raise ValueError("a registered model must be a Pipeline whose first step 'cast' is a FrameCaster")
    return [str(c) for c in [*(cast.categorical or []), *(cast.numeric or [])]]


def log_model(
    mlflow, model, kind: str, frame: pd.DataFrame, *, name: str = "model", n_example: int = 5, explainer=None
):
    """Log the fitted Pipeline `model` as this module's docstring says, in the active run; returns
    MLflow's ModelInfo (`model_uri` to register). `frame`: the ABT (or the rows the model was fitted
    on) as the warehouse gives them; the signature's types and NULLs are read from it. `explainer`: the
    `olist_ml_model.explain.Explainer` of a binary model (`olist_ml.ml.explain.explainer_for`), logged
    inside the pyfunc wrapper (`predict(rows, params={"explain": k})`)."""
    import mlflow.pyfunc

    from olist_ml_model.pyfunc import ChampionModel

    features = features_of(model)
    example = frame[features].head(n_example).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=ChampionModel(model, kind, explainer),
            code_paths=[code_path()],
            signature=signature(frame, features, kind),
            input_example=example,
            pip_requirements=requirements(model),
        )


def unwrap(pyfunc_model) -> Any:
    """The fitted scikit-learn Pipeline inside a loaded pyfunc model: this format's ChampionModel, or
    the sklearn flavour of models registered before it."""
    from mlflow.exceptions import MlflowException

    try:
        inner = pyfunc_model.unwrap_python_model()
    except MlflowException:
        inner = None
    if inner is not None:
        return getattr(inner, "pipeline", inner)
    return pyfunc_model.get_raw_model()


def load(uri: str):
    """(pyfunc model, fitted Pipeline) of the model at `uri`, inside olist-ml: the project's own
    `olist_ml_model` is imported first, so the model's copy of it (its `code/`, which MLflow puts
    first on sys.path while loading) never replaces it in this process; sys.path is restored after."""
    import mlflow.pyfunc

    import olist_ml_model.pyfunc  # noqa: F401  (see the docstring)

    saved = list(sys.path)
    try:
        pm = mlflow.pyfunc.load_model(uri)
    finally:
        sys.path[:] = saved
    return pm, unwrap(pm)
