"""The MLflow pyfunc face of every registered olist-ml model.

`mlflow.pyfunc.load_model("models:/<problem>@champion").predict(frame)` returns ONE value per row,
as a pandas Series named `score` on the input's index:

  * binary problems (seller_churn, order_delay, seller_activation): P(class 1), float64, the
    calibrated probability that `olist-ml predict` writes to `scores_<problem>.score`;
  * clustering (seller_segments): the cluster id, int64 (`seller_segments.segment`).

So `mlflow.pyfunc.spark_udf(spark, uri)` gives a double (binary) or bigint (clustering) column, and
`mlflow models serve` answers `{"predictions": [...]}` with one number per row. The input is the
frame as the warehouse stores it (extra columns are ignored; NULLs are missing values; integer
columns may arrive as int64, nullable Int64 or float64): the wrapped scikit-learn Pipeline's first
step (`olist_ml_model.FrameCaster`) casts it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

SCORE = "score"


class ChampionModel(PythonModel):
    """A fitted scikit-learn Pipeline (`pipeline`) of kind "binary" or "cluster" as a pyfunc model."""

    def __init__(self, pipeline, kind: str):
        if kind not in ("binary", "cluster"):
            raise ValueError(f"kind must be 'binary' or 'cluster', not {kind!r}")
        self.pipeline = pipeline
        self.kind = kind

    def score(self, frame: pd.DataFrame) -> pd.Series:
        """One score per row of `frame` (see the module docstring)."""
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        if self.kind == "binary":
            values = np.asarray(self.pipeline.predict_proba(frame), dtype="float64")[:, 1]
        else:
            values = np.asarray(self.pipeline.predict(frame)).astype("int64")
        return pd.Series(values, index=frame.index, name=SCORE)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.Series:
        # the pd.DataFrame hint tells MLflow to validate the input by the logged signature only
        return self.score(model_input)
