"""Serving, monitoring and reports on top of the registry's champions.

* `olist_ml.serving.api`: FastAPI app (`create_app`, `serve`) behind `olist-ml serve`; its parts in
  `schemas` (request/response models), `guards` (token, strict JSON, body limit, 422 bodies) and `routes`.
* `olist_ml.serving.actions`: the action lists (`olist-ml actions churn|delay`, `actions_<problem>`).
* `olist_ml.serving.state`: what a serving process caches (champions, latest feature rows).
* `olist_ml.serving.monitor`: `monitor(problem, settings)` -> drift (PSI) + realised performance.
* `olist_ml.serving.metrics`: the pure PSI / ROC AUC / lift functions (binning rule documented there).
* `olist_ml.serving.report`: `report(problem, settings, out=None)` -> self-contained HTML file.
"""
