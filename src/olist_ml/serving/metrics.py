"""Pure monitoring metrics: population stability index and realised performance.

PSI binning (the rule `olist-ml monitor` uses, and the one the tests check by hand):

* **Numeric** features: the bin edges are the reference's deciles (quantiles 0.1 ... 0.9 of
  the non-NULL reference values, duplicates dropped, so a feature with few distinct values gets
  fewer bins). Bins are right-closed: ``(-inf, q1], (q1, q2], ..., (q9, +inf)``; the same edges
  are applied to the current population, so values beyond the reference range fall in the
  outer bins.
* **Categorical** (string/bool) features: one bin per reference category; current values that
  the reference never saw share one "unseen" bin.
* **NULLs** are their own bin in both cases (a feature that starts arriving NULL drifts).
* **Empty bins**: a bin share of 0 is replaced by ``epsilon`` (default 1e-4) before the log,
  on either side, so PSI stays finite; the shares are not renormalised.

``PSI = sum_over_bins (cur_share - ref_share) * ln(cur_share / ref_share)``; the usual reading
is < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant drift (`PSI_FLAG`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PSI_FLAG = 0.2
EPSILON = 1e-4


@dataclass(frozen=True)
class PsiResult:
    psi: float
    bins: list[str]
    ref_share: list[float]
    cur_share: list[float]
    n_ref: int
    n_cur: int
    null_ref: int
    null_cur: int

    @property
    def flag(self) -> bool:
        return self.psi > PSI_FLAG


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def decile_edges(reference: pd.Series) -> np.ndarray:
    """Unique deciles (0.1..0.9) of the non-NULL reference values."""
    vals = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return np.array([], dtype=float)
    return np.unique(np.quantile(vals, np.linspace(0.1, 0.9, 9)))


def _numeric_counts(s: pd.Series, edges: np.ndarray) -> tuple[np.ndarray, int]:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    null = ~np.isfinite(v)
    # right-closed bins: index i means edges[i-1] < x <= edges[i]
    idx = np.searchsorted(edges, v[~null], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return counts, int(null.sum())


def psi(reference: pd.Series, current: pd.Series, *, epsilon: float = EPSILON) -> PsiResult:
    """Population stability index of `current` against `reference` (see the module docstring)."""
    reference = pd.Series(reference)
    current = pd.Series(current)
    if _is_numeric(reference) and (_is_numeric(current) or current.isna().all()):
        edges = decile_edges(reference)
        rc, rnull = _numeric_counts(reference, edges)
        cc, cnull = _numeric_counts(current, edges)
        labels = [f"<= {edges[0]:.6g}"] if len(edges) else []
        labels += [f"({a:.6g}, {b:.6g}]" for a, b in zip(edges[:-1], edges[1:], strict=False)]
        labels += [f"> {edges[-1]:.6g}" if len(edges) else "all"]
    else:
        ref_s = reference.astype("object")
        cur_s = current.astype("object")
        rnull, cnull = int(ref_s.isna().sum()), int(cur_s.isna().sum())
        cats = sorted({str(x) for x in ref_s.dropna()})
        rvc = ref_s.dropna().map(str).value_counts()
        cvc = cur_s.dropna().map(str).value_counts()
        rc = np.array([int(rvc.get(c, 0)) for c in cats] + [0])
        unseen = int(cvc[~cvc.index.isin(cats)].sum())
        cc = np.array([int(cvc.get(c, 0)) for c in cats] + [unseen])
        labels = cats + ["<unseen>"]
    rc = np.append(rc, rnull).astype(float)
    cc = np.append(cc, cnull).astype(float)
    labels = labels + ["<null>"]
    n_ref, n_cur = int(rc.sum()), int(cc.sum())
    if n_ref == 0 or n_cur == 0:
        return PsiResult(float("nan"), labels, [], [], n_ref, n_cur, int(rnull), int(cnull))
    rp, cp = rc / n_ref, cc / n_cur
    # a bin empty on both sides contributes nothing; drop it rather than count eps-vs-eps
    keep = (rc > 0) | (cc > 0)
    rpe, cpe = np.where(rp > 0, rp, epsilon), np.where(cp > 0, cp, epsilon)
    value = float(np.sum(((cpe - rpe) * np.log(cpe / rpe))[keep]))
    return PsiResult(
        value,
        labels,
        [float(x) for x in rp],
        [float(x) for x in cp],
        n_ref,
        n_cur,
        int(rnull),
        int(cnull),
    )


def top_decile_lift(y_true, score) -> float:
    """Positive rate among the 10% highest scores divided by the overall positive rate.

    The top decile is the ceil(10%) rows with the highest score (at least one row); ties at the
    cut are broken by a stable sort, so the figure is deterministic.
    """
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(score, dtype=float)
    if y.size == 0 or y.mean() == 0:
        return float("nan")
    k = max(1, int(np.ceil(0.1 * y.size)))
    order = np.argsort(-s, kind="stable")
    return float(y[order[:k]].mean() / y.mean())


def roc_auc(y_true, score) -> float:
    """ROC AUC (sklearn's, via `olist_ml.ml.metrics.ranking_metric`); NaN when only one class is present."""
    from ..ml.metrics import ranking_metric

    y = np.asarray(y_true, dtype=int)
    return ranking_metric("roc_auc", y, score) if y.size else float("nan")


def realised_performance(
    df: pd.DataFrame, *, group_cols: str | list[str] = "dt_ref", target_col: str = "target", score_col: str = "score"
) -> pd.DataFrame:
    """Per group (e.g. dt_ref, model_version): n, positives, base rate, ROC AUC, top-decile lift.

    Rows whose target is NULL (label not matured yet) are dropped first.
    """
    groups = [group_cols] if isinstance(group_cols, str) else list(group_cols)
    d = df[[*groups, target_col, score_col]].dropna(subset=[target_col, score_col])
    rows = []
    for key, g in d.groupby(groups, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        y = g[target_col].astype(int).to_numpy()
        s = g[score_col].astype(float).to_numpy()
        rows.append(
            {
                **dict(zip(groups, key, strict=False)),
                "n": int(y.size),
                "n_positive": int(y.sum()),
                "base_rate": float(y.mean()) if y.size else float("nan"),
                "roc_auc": roc_auc(y, s),
                "lift_top_decile": top_decile_lift(y, s),
            }
        )
    cols = [*groups, "n", "n_positive", "base_rate", "roc_auc", "lift_top_decile"]
    return pd.DataFrame(rows, columns=cols)
