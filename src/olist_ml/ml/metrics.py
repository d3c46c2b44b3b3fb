"""Evaluation metrics and plots (matplotlib Agg, PNG) for binary and clustering problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return float("nan")
    return float(ks_2samp(p[y == 1], p[y == 0]).statistic)


def decile_table(y: np.ndarray, p: np.ndarray, n: int = 10) -> pd.DataFrame:
    """Rows sorted by score, cut into n equal groups; decile 1 = highest scores."""
    order = np.argsort(-np.asarray(p), kind="stable")
    ys, ps = np.asarray(y)[order], np.asarray(p)[order]
    groups = np.array_split(np.arange(len(ys)), n)
    base = ys.mean() if len(ys) else float("nan")
    rows, cum_pos, cum_n = [], 0, 0
    for i, g in enumerate(groups, 1):
        pos = ys[g].sum()
        cum_pos += pos
        cum_n += len(g)
        rate = pos / len(g) if len(g) else float("nan")
        rows.append(
            {
                "decile": i,
                "n": len(g),
                "positives": int(pos),
                "rate": rate,
                "mean_score": float(ps[g].mean()) if len(g) else float("nan"),
                "lift": rate / base if base else float("nan"),
                "cum_capture": cum_pos / ys.sum() if ys.sum() else float("nan"),
                "cum_lift": (cum_pos / cum_n) / base if base and cum_n else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    df = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    df["bin"] = np.clip((df["p"] * bins).astype(int), 0, bins - 1)
    g = df.groupby("bin").agg(n=("y", "size"), mean_pred=("p", "mean"), frac_pos=("y", "mean")).reset_index()
    return g


def binary_metrics(y, p) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    both = y.min() != y.max()
    dec = decile_table(y, p)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ks": ks_statistic(y, p),
        "top_decile_lift": float(dec.loc[0, "lift"]),
        "top_decile_precision": float(dec.loc[0, "rate"]),
        "base_rate": float(y.mean()),
        "mean_pred": float(p.mean()),
        "n": int(len(y)),
    }


def expected_calibration_error(y, p, bins: int = 10) -> float:
    """Expected calibration error: the row-weighted mean |mean predicted - observed rate| over
    `bins` equal-width probability bins (the bins of `calibration_table`)."""
    cal = calibration_table(y, p, bins)
    n = cal["n"].sum()
    return float((cal["n"] * (cal["mean_pred"] - cal["frac_pos"]).abs()).sum() / n) if n else float("nan")


def _weighted_auc_matrix(y: np.ndarray, p: np.ndarray, W: np.ndarray, presorted: bool = False) -> np.ndarray:
    """ROC AUC (ties count 1/2) of scores p for labels y under each row of row weights W (B x n).
    `presorted`: y, p and W's columns are already in ascending order of p."""
    if not presorted:
        order = np.argsort(p, kind="stable")
        p, y, W = p[order], y[order], W[:, order]
    neg = W * (1 - y)
    pos = W - neg
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    if len(starts) < len(p):  # tied scores: one level per distinct score
        pos = np.add.reduceat(pos, starts, axis=1)
        neg = np.add.reduceat(neg, starts, axis=1)
    below = np.cumsum(neg, axis=1)
    below -= neg
    below += 0.5 * neg
    num = np.einsum("ij,ij->i", pos, below)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _weighted_metric(metric: str, y, p, w) -> float:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss

    if metric == "roc_auc":
        return float(_weighted_auc_matrix(y, p, w[None, :])[0])
    keep = w > 0
    y, p, w = y[keep], p[keep], w[keep]
    if metric == "pr_auc":
        return float(average_precision_score(y, p, sample_weight=w)) if y.min() != y.max() else float("nan")
    if metric == "log_loss":
        return float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), sample_weight=w, labels=[0, 1]))
    if metric == "brier":
        return float(brier_score_loss(y, p, sample_weight=w))
    raise ValueError(f"no bootstrap for metric {metric}")


def bootstrap_ci(
    y, p, clusters=None, *, metric: str = "roc_auc", n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, int]:
    """(low, high, resamples used) of a percentile bootstrap interval of `metric` of scores p.

    Clustered: whole clusters (e.g. every row of one seller) are resampled with replacement, as
    rows of one cluster are not independent; `clusters` None -> each row is its own cluster.
    Each resample is a vector of cluster multiplicities, i.e. row weights, so ROC AUC is computed
    for a block of resamples at once from one sort of the scores. Resamples holding one class
    only are skipped."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    n = len(y)
    if n == 0 or y.min() == y.max():
        return float("nan"), float("nan"), 0
    if clusters is None:
        codes, k = np.arange(n), n
    else:
        codes, uniq = pd.factorize(pd.Series(clusters).astype(str), sort=True)
        k = len(uniq)
    rng = np.random.default_rng(seed)
    order = np.argsort(p, kind="stable")
    ys, ps, cs = y[order], p[order], codes[order]
    stats: list[np.ndarray] = []
    block = max(1, min(n_boot, 2_000_000 // max(n, k)))
    done = 0
    while done < n_boot:
        b = min(block, n_boot - done)
        draws = rng.integers(0, k, size=(b, k)) + (np.arange(b) * k)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * k).reshape(b, k).astype(float)  # b x clusters
        W = counts[:, cs]
        if metric == "roc_auc":
            stats.append(_weighted_auc_matrix(ys, ps, W, presorted=True))
        else:
            stats.append(np.array([_weighted_metric(metric, ys, ps, w) for w in W]))
        done += b
    vals = np.concatenate(stats)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return float("nan"), float("nan"), 0
    a = (1 - level) / 2
    lo, hi = np.quantile(vals, [a, 1 - a])
    return float(lo), float(hi), int(len(vals))


def auc_delong(y, s, level: float = 0.95) -> tuple[float, float, float]:
    """(ROC AUC, low, high): the AUC with DeLong's asymptotic interval (DeLong, DeLong & Clarke-Pearson
    1988; the midrank form of Sun & Xu 2014), clipped to [0, 1]. For independent rows (one row per
    entity, e.g. the sellers or orders of one scored dt_ref); O(n log n), no resampling. NaN with one
    class."""
    from scipy.stats import norm, rankdata

    y = np.asarray(y).astype(int)
    s = np.asarray(s, dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return float("nan"), float("nan"), float("nan")
    tz = rankdata(np.concatenate([pos, neg]))
    tx, ty = rankdata(pos), rankdata(neg)
    auc = float((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
    v10 = (tz[:m] - tx) / n  # per positive: the share of negatives it outranks
    v01 = 1.0 - (tz[m:] - ty) / m  # per negative: the share of positives that outrank it
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    half = float(norm.ppf(0.5 + level / 2) * np.sqrt(max(var, 0.0)))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def ranking_metric(metric: str, y, s) -> float:
    """ROC AUC or PR AUC of any score s (higher = more likely class 1), e.g. a baseline rule's."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return float("nan")
    fn = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score}[metric]
    return float(fn(y, np.asarray(s, dtype=float)))


def cluster_metrics(X: np.ndarray, labels: np.ndarray, sample: int = 5000, seed: int = 0) -> dict[str, float]:
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    labels = np.asarray(labels)
    k = len(np.unique(labels))
    if k < 2 or k >= len(labels):
        return {
            "silhouette": float("nan"),
            "davies_bouldin": float("nan"),
            "calinski_harabasz": float("nan"),
            "n_clusters": k,
            "n": int(len(labels)),
        }
    return {
        "silhouette": float(silhouette_score(X, labels, sample_size=min(sample, len(labels)), random_state=seed)),
        "davies_bouldin": float(davies_bouldin_score(X, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(X, labels)),
        "n_clusters": int(k),
        "n": int(len(labels)),
        "min_cluster_share": float(pd.Series(labels).value_counts(normalize=True).min()),
    }


# ---- plots ---------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def binary_plots(y, p, out_dir: Path, title: str) -> list[Path]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    paths = []
    m = binary_metrics(y, p)

    fig, ax = plt.subplots(figsize=(5, 5))
    if y.min() != y.max():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"AUC = {m['roc_auc']:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC - {title}")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out_dir / "roc.png", plt))

    fig, ax = plt.subplots(figsize=(5, 5))
    if y.min() != y.max():
        prec, rec, _ = precision_recall_curve(y, p)
        ax.plot(rec, prec, label=f"AP = {m['pr_auc']:.3f}")
    ax.axhline(y.mean(), ls="--", color="grey", label=f"base rate {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall - {title}")
    ax.legend(loc="upper right")
    paths.append(_save(fig, out_dir / "pr.png", plt))

    dec = decile_table(y, p)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(dec["decile"], dec["lift"], color="tab:blue", label="lift")
    ax.plot(dec["decile"], dec["cum_lift"], "o-", color="tab:orange", label="cumulative lift")
    ax.axhline(1.0, ls="--", color="grey")
    ax.set(xlabel="decile (1 = highest score)", ylabel="lift", title=f"Lift - {title}", xticks=list(dec["decile"]))
    ax.legend()
    paths.append(_save(fig, out_dir / "lift.png", plt))

    cal = calibration_table(y, p)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(cal["mean_pred"], cal["frac_pos"], "o-")
    ax.set(xlabel="mean predicted", ylabel="observed rate", title=f"Calibration - {title}", xlim=(0, 1), ylim=(0, 1))
    paths.append(_save(fig, out_dir / "calibration.png", plt))
    return paths


def reliability_plot(y, p_before, p_after, out_dir: Path, title: str, bins: int = 10) -> Path:
    """Reliability diagram of the same rows before and after calibration, with each one's ECE."""
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    for label, p in (("before", p_before), ("after", p_after)):
        cal = calibration_table(y, p, bins)
        ax.plot(
            cal["mean_pred"],
            cal["frac_pos"],
            "o-",
            label=f"{label} calibration (ECE {expected_calibration_error(y, p, bins):.3f})",
        )
    ax.set(xlabel="mean predicted", ylabel="observed rate", title=f"Reliability - {title}", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out_dir / "reliability.png", plt)


def importance_plot(
    imp: pd.Series,
    out_dir: Path,
    title: str,
    top: int = 25,
    *,
    name: str = "feature_importance.png",
    xlabel: str = "importance",
) -> Path | None:
    if imp is None or imp.empty:
        return None
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    s = imp.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.28 * len(s) + 1)))
    ax.barh([str(i) for i in s.index], s.values)
    ax.set(title=f"Feature importance - {title}", xlabel=xlabel)
    return _save(fig, out_dir / name, plt)


def cluster_plot(X2: np.ndarray, labels: np.ndarray, out_dir: Path, title: str) -> Path:
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(X2[:, 0], X2[:, 1], c=labels, s=6, cmap="tab10")
    ax.legend(*sc.legend_elements(), title="cluster", loc="best", fontsize=7)
    ax.set(title=f"Clusters (PCA) - {title}", xlabel="PC1", ylabel="PC2")
    return _save(fig, out_dir / "clusters.png", plt)


def fit_titles(fig) -> None:
    """Wrap every axes title onto as many lines as it needs to fit the figure's width (a long title,
    e.g. "Precision-recall - seller_churn / hazard_glm (test ...)", is otherwise clipped at both
    edges of the PNG), then lay the figure out."""
    import textwrap

    fig.tight_layout()
    fig.canvas.draw()
    width = fig.bbox.width
    for ax in fig.axes:
        t = ax.title
        text = t.get_text()
        if not text:
            continue
        guess = int(width / (0.6 * t.get_fontsize() * fig.dpi / 72))  # characters of ~0.6 em
        for chars in range(max(min(len(text), guess), 9), 8, -3):
            t.set_text("\n".join(textwrap.wrap(text, chars)) or text)
            fig.canvas.draw()
            bb = t.get_window_extent()
            if bb.x0 >= 0 and bb.x1 <= width:
                break
    fig.tight_layout()


def titles_inside(fig) -> bool:
    """True when every axes title lies inside the figure (what `fit_titles` ensures)."""
    fig.canvas.draw()
    return all(
        ax.title.get_window_extent().x0 >= 0 and ax.title.get_window_extent().x1 <= fig.bbox.width
        for ax in fig.axes
        if ax.title.get_text()
    )


def _save(fig, path: Path, plt) -> Path:
    fit_titles(fig)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
