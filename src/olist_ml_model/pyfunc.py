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

Reasons (binary problems): `predict(rows, params={"explain": k})` returns a DataFrame on the input's
index: `score` as above, `margin` and `base` (margin = base + the sum of every feature's contribution,
on the model's own additive scale: log-odds, -log expected events for the hazard GLM, P(class 1) for a
random forest; `olist_ml_model.explain`), and for i = 1..k `reason_<i>` (the feature with the i-th
largest |contribution|), `reason_<i>_value`, `reason_<i>_reference`, `reason_<i>_contribution` and
`reason_<i>_text` (a sentence: "no sale for 38 days; sellers median 6 days"). `explain` 0 (the
default) keeps the one-score output. The signature declares the parameter (`params_schema`), which is
how MLflow passes it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

SCORE = "score"
EXPLAIN = "explain"  # the predict parameter: number of reasons per row (0: the score only)


class ChampionModel(PythonModel):
    """A fitted scikit-learn Pipeline (`pipeline`) of kind "binary" or "cluster" as a pyfunc model."""

    def __init__(self, pipeline, kind: str, explainer=None):
        if kind not in ("binary", "cluster"):
            raise ValueError(f"kind must be 'binary' or 'cluster', not {kind!r}")
        self.pipeline = pipeline
        self.kind = kind
        self.explainer = explainer  # olist_ml_model.explain.Explainer (binary); None: unfitted references

    def explain(self, frame: pd.DataFrame):
        """The `olist_ml_model.explain.Explanation` of every row of `frame` (binary models)."""
        from .explain import Explainer

        if self.kind != "binary":
            raise ValueError("reasons exist for binary models only (a cluster id has no margin)")
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        explainer = getattr(self, "explainer", None) or Explainer()  # models logged before reasons existed
        return explainer.explain(self.pipeline, frame)

    def score(self, frame: pd.DataFrame) -> pd.Series:
        """One score per row of `frame` (see the module docstring)."""
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        if self.kind == "binary":
            values = np.asarray(self.pipeline.predict_proba(frame), dtype="float64")[:, 1]
        else:
            values = np.asarray(self.pipeline.predict(frame)).astype("int64")
        return pd.Series(values, index=frame.index, name=SCORE)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        # the pd.DataFrame hint tells MLflow to validate the input by the logged signature only
        k = int((params or {}).get(EXPLAIN) or 0)
        if k == 0:
            return self.score(model_input)
        if k < 0 or self.kind != "binary":
            raise ValueError(f"params explain={k}: reasons exist for binary models only, with explain >= 0")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        out = self.explain(frame).frame(k, index=frame.index)
        out.insert(0, SCORE, self.score(frame).to_numpy())
        return out
