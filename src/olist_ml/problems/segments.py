"""Seller segmentation: cluster the active sellers of a reference date on feature-store features.

Population at dt_ref: sellers with at least one order in the largest feature window before
dt_ref (`n_orders_<W>d > 0`, W = max(Settings.feature_windows)).

Features: a curated, interpretable subset of `fs_seller_*` (volume, ticket, tenure, recency,
ratings, lateness, delivery time, assortment, repeat customers, freight share) at window W,
named through the feature catalog (`CURATED`: `olist_ml.features.catalog.F` entries; an unknown
name fails at import, a feature store lacking one is a `MissingStepError`). Settings:
`Settings.segments` (k_range, stability_runs).

Model (`segment_pipeline`): median imputation -> signed log1p on heavy-tailed (skewed,
non-negative) columns -> RobustScaler (median/IQR) -> clip to [-5, 5] -> KMeans. k is chosen
by silhouette over `segments.k_range` (default 3..8). Stability: the chosen k is refitted on bootstrap
subsamples (80%) with other seeds, and the adjusted Rand index of their assignments of the
whole population against the reference model is reported (mean/min).

Each segment is profiled (size, share, GMV share, feature means and z-scores vs the overall
mean in the scaled space) and named from its profile ("high-volume, well-rated", "new,
low-volume", "at-risk: late & badly rated", ...); names are unique.

Training and scoring go through the generic entry points: `PROBLEM.train_fn` is
`train_segments` (so `olist_ml.ml.train.train`, `olist-ml train segments` and the pipeline run
`fit_segments`) and `PROBLEM.score_fn` is `score_segments` (so `olist_ml.ml.scoring.predict`
and `olist-ml predict segments` run it). The generic k-means candidate never runs for it.

Population date: `default_dt_ref` = the latest feature dt_ref on or before
`olist_ml.warehouse.observed_end` (the real extract's stray orders after 2018-08-29 would
otherwise age every seller's recency by ~7 weeks). `abt_seller_segments` is exactly the
population the segmentation is fitted on (its content hash is the run's lineage).

`fit_segments` logs one MLflow run through the generic trainer (`olist_ml.ml.train.parent_run`;
tags role=parent, abt_content_hash; params incl. the lineage; metrics silhouette, davies_bouldin,
calinski_harabasz, stability_ari_mean/min, silhouette_by_k; artifacts segments/segment_profile.csv+html,
segment_names.json, silhouette_by_k.csv, stability_ari.csv, segments_pca.png; the model), registers it
as `seller_segments` through the generic registry (`olist_ml.ml.registry.register_and_decide`; tags:
segment_names JSON, dt_ref, k, silhouette, trained_until = dt_ref: no labels, so no validation / test
periods, calibration or baseline; the silhouette is in-sample)
and applies the clustering champion rule:

  * no champion yet -> champion;
  * the champion cannot segment this population (its feature list differs from the new one:
    features changed, or it fails) -> the newcomer is champion;
  * otherwise both models partition the SAME population (this fit's sellers at this dt_ref),
    each measured by the silhouette in its own scaled space (same sample, same seed); the
    newcomer is champion when its silhouette is higher by more than `min_delta` (default 0),
    else it becomes `challenger`.

Only this rule moves `seller_segments@champion` (or a manual `olist-ml promote`). When the new
version is champion its assignments of the fitted date are written; `score_segments` writes
those of any date with the champion. Both write through `_write_outputs`, the one writer of
`seller_segments(dt_ref, seller_id, segment, segment_name, model_version, run_id)` (a dt_ref
partition is replaced) and `scores_seller_segments(dt_ref, seller_id, score = segment, decile
NULL, model_name, model_version, run_id, scored_at, segment_name)` (rows of (dt_ref, version)
replaced).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from olist_ml_model import CLIP, HeavyTailScaler  # noqa: F401  (earlier pickles refer to segments.HeavyTailScaler)

from ..config import Settings
from ..errors import InputError, MissingStepError
from ..features.build import READS as FEATURE_READS
from ..features.catalog import F
from ..ml.problem import Problem
from ..ml.train import cluster_space as _space
from ..warehouse import observed_end, replace_table_atomically, require_tables, session, table_exists
from ._common import as_date

NAME = "seller_segments"
ABT = "abt_seller_segments"
TABLE = "seller_segments"
CANDIDATE = "kmeans_robust"

# curated features at the longest window: (catalog entry, role used for naming)
CURATED = (
    (F.gmv.longest, "volume"),
    (F.n_orders.longest, "volume"),
    (F.avg_ticket.longest, "ticket"),
    (F.days_since_first_sale, "tenure"),
    (F.days_since_last_sale, "recency"),
    (F.avg_review_score.longest, "rating"),
    (F.pct_reviews_low.longest, "low_rating"),
    (F.pct_orders_late.longest, "late"),
    (F.avg_delivery_days.longest, "delivery_days"),
    (F.n_categories.longest, "assortment"),
    (F.pct_orders_repeat_customer.longest, "loyalty"),
    (F.freight_to_price.longest, "freight"),
)
ACTIVE = F.n_orders.longest  # the population: an order in the longest window


def _features():
    from .. import features

    return features


def window(settings: Settings) -> int:
    return max(settings.feature_windows)


def _column(ref, settings: Settings) -> str:
    return ref.columns(tuple(settings.feature_windows))[0]


def curated_features(settings: Settings, available: list[str] | None = None) -> list[str]:
    """The curated feature columns at the settings' windows; with `available` (the feature store's
    columns) a `MissingStepError` names any the store lacks (never silently dropped)."""
    cols = [_column(ref, settings) for ref, _ in CURATED]
    if available is not None:
        missing = [c for c in cols if c not in set(available)]
        if missing:
            raise MissingStepError(
                f"the feature store lacks {', '.join(missing)} used by {NAME}: run "
                "`olist-ml features build` (with the current OLIST_ML_FEATURE_WINDOWS)"
            )
    return cols


def _roles(settings: Settings) -> dict[str, str]:
    return {_column(ref, settings): r for ref, r in CURATED}


# ---- data ----------------------------------------------------------------------------------------
def _require(con) -> None:
    require_tables(con, ["stg_orders", "stg_order_items"], "ingest SOURCE")
    require_tables(con, list(_features().FEATURE_TABLES), "features build")


def default_dt_ref(con: duckdb.DuckDBPyConnection) -> date:
    """The population date when none is given: the latest feature-store dt_ref on or before the
    observed end of the data (`olist_ml.warehouse.observed_end`, exclusive; a dt_ref is midnight
    and only holds facts before it), so the real extract's thin tail of stray orders does not
    age every seller's recency; the latest dt_ref when none lies before it."""
    dts = sorted(pd.Timestamp(d).date() for d in _features().available_dt_refs(con))
    if not dts:
        raise MissingStepError("the feature store has no dt_ref rows: run `olist-ml features build` first")
    end = observed_end(con)
    before = [d for d in dts if end is None or d <= end]
    return before[-1] if before else dts[-1]


def _population_date(con: duckdb.DuckDBPyConnection, dt_ref: date | None) -> date:
    """`dt_ref` (default: `default_dt_ref`), which the feature store must hold."""
    dts = {pd.Timestamp(d).date() for d in _features().available_dt_refs(con)}
    if not dts:
        raise MissingStepError("the feature store has no dt_ref rows: run `olist-ml features build` first")
    d = as_date(dt_ref) or default_dt_ref(con)
    if d not in dts:
        raise MissingStepError(
            f"the feature store has no dt_ref {d}: run `olist-ml features build --start {d} --end {d}`"
        )
    return d


def population(con: duckdb.DuckDBPyConnection, settings: Settings, dt_ref: date | None = None) -> pd.DataFrame:
    """Active sellers at `dt_ref` (default: `default_dt_ref`) with their features."""
    _require(con)
    fs = _features()
    d = _population_date(con, dt_ref)
    active = _column(ACTIVE, settings)
    cols = fs.feature_columns(con)
    cond = f"AND coalesce(f.{active}, 0) > 0" if active in cols else ""
    df = con.execute(
        f"SELECT * FROM ({fs.feature_frame_sql()}) f WHERE f.dt_ref = ? {cond} ORDER BY f.seller_id", [d]
    ).df()
    df["dt_ref"] = pd.to_datetime(df["dt_ref"]).dt.date
    return df


# ---- model ---------------------------------------------------------------------------------------
# HeavyTailScaler (signed log1p on skewed columns, RobustScaler, clip) lives in `olist_ml_model`, the code
# logged with the registered model (`olist_ml.ml.artefact`); imported above under its old name here.


def segment_pipeline(features: list[str], k: int, seed: int) -> Pipeline:
    from ..ml.candidates import FrameCaster

    return Pipeline(
        [
            ("cast", FrameCaster([], features)),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", HeavyTailScaler()),
            ("model", KMeans(n_clusters=k, n_init=10, random_state=seed)),
        ]
    )


def _silhouette(X: np.ndarray, labels, seed: int, sample: int = 4000) -> float:
    """Silhouette in the scaled space X (on a seeded sample of at most `sample` rows)."""
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(X, labels, sample_size=min(sample, len(X)), random_state=seed))


def choose_k(
    df: pd.DataFrame, features: list[str], k_range: tuple[int, int], seed: int, sample: int = 4000
) -> tuple[int, dict[int, float]]:
    lo, hi = k_range
    hi = min(hi, len(df) - 1)
    if hi < lo or lo < 2:
        raise InputError(
            f"{len(df)} active sellers cannot form {lo}..{k_range[1]} segments: build features over a "
            "longer range or lower the k range"
        )
    scores = {}
    for k in range(lo, hi + 1):
        pipe = segment_pipeline(features, k, seed).fit(df)
        labels = pipe[-1].labels_
        if len(np.unique(labels)) < 2:
            scores[k] = float("nan")
            continue
        scores[k] = _silhouette(_space(pipe, df), labels, seed, sample)
    valid = {k: v for k, v in scores.items() if not np.isnan(v)}
    if not valid:
        raise InputError("no k in the range gives two or more distinct segments: the sellers' features are constant")
    best = max(valid, key=lambda k: (valid[k], -k))
    return best, scores


def stability(
    df: pd.DataFrame, features: list[str], k: int, ref_labels: np.ndarray, seed: int, n_runs: int = 5, frac: float = 0.8
) -> list[float]:
    """ARI of models refitted on bootstrap subsamples (other seeds) against the reference labels."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    aris = []
    for i in range(n_runs):
        idx = rng.choice(len(df), size=max(k + 1, int(frac * len(df))), replace=False)
        pipe = segment_pipeline(features, k, seed + 1 + i).fit(df.iloc[idx])
        aris.append(float(adjusted_rand_score(ref_labels, pipe.predict(df))))
    return aris


# ---- profile and names -----------------------------------------------------------------------------
def profile(
    df: pd.DataFrame, labels: np.ndarray, features: list[str], X: np.ndarray, gmv_col: str | None
) -> pd.DataFrame:
    """One row per segment: size, share, GMV share, raw feature means and z-scores (scaled space)."""
    lab = np.asarray(labels)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    sd[sd == 0] = 1.0
    total_gmv = float(pd.to_numeric(df[gmv_col], errors="coerce").fillna(0).sum()) if gmv_col else 0.0
    rows = []
    for s in sorted(np.unique(lab)):
        m = lab == s
        r = {"segment": int(s), "n_sellers": int(m.sum()), "share": float(m.mean())}
        if gmv_col:
            g = float(pd.to_numeric(df.loc[m, gmv_col], errors="coerce").fillna(0).sum())
            r["gmv_share"] = g / total_gmv if total_gmv else float("nan")
        for j, f in enumerate(features):
            r[f"mean_{f}"] = float(pd.to_numeric(df.loc[m, f], errors="coerce").mean())
            r[f"z_{f}"] = float((X[m, j].mean() - mu[j]) / sd[j])
        rows.append(r)
    return pd.DataFrame(rows)


def _z(row: pd.Series, roles: dict[str, str], role: str) -> float:
    vals = [row[f"z_{f}"] for f, r in roles.items() if r == role and f"z_{f}" in row.index]
    return float(np.mean(vals)) if vals else 0.0


def name_segments(prof: pd.DataFrame, features: list[str], settings: Settings, t: float = 0.4) -> dict[int, str]:
    """Readable, unique names from each segment's z-scores."""
    roles = {f: r for f, r in _roles(settings).items() if f in features}
    names: dict[int, str] = {}
    for _, row in prof.iterrows():
        z = {r: _z(row, roles, r) for r in set(roles.values())}
        risk = []
        if z.get("late", 0) > t or z.get("delivery_days", 0) > t:
            risk.append("late")
        if z.get("rating", 0) < -t or z.get("low_rating", 0) > t:
            risk.append("badly rated")
        parts = []
        if z.get("recency", 0) > t:
            parts.append("fading")
        if z.get("tenure", 0) < -t:
            parts.append("new")
        elif z.get("tenure", 0) > t:
            parts.append("established")
        for role in ("volume", "ticket"):
            if z.get(role, 0) > t:
                parts.append(f"high-{role}")
            elif z.get(role, 0) < -t:
                parts.append(f"low-{role}")
        if not risk and (z.get("rating", 0) > t / 2 or z.get("low_rating", 0) < -t / 2):
            parts.append("well-rated")
        if not parts and not risk:
            # nothing stands out on the named roles: describe by the most extreme feature
            zs = {f: row[f"z_{f}"] for f in features if f"z_{f}" in row.index}
            f = max(zs, key=lambda c: abs(zs[c])) if zs else None
            parts.append(f"{'high' if f and zs[f] > 0 else 'low'} {f}" if f else "typical")
        name = ", ".join(parts)
        if risk:
            name = f"at-risk: {' & '.join(risk)}" + (f" ({name})" if name else "")
        names[int(row["segment"])] = name
    # unique: suffix duplicates with their size rank
    seen: dict[str, int] = {}
    for s in sorted(names, key=lambda s: -int(prof.loc[prof.segment == s, "n_sellers"].iloc[0])):
        n = names[s]
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[s] = f"{n} #{seen[n]}"
    return names


# ---- training / assignment ------------------------------------------------------------------------
@dataclass
class SegmentsResult:
    dt_ref: date
    n_sellers: int
    k: int
    silhouette: float
    silhouette_by_k: dict[int, float]
    stability_ari: list[float]
    names: dict[int, str]
    profile: pd.DataFrame
    features: list[str]
    run_id: str | None = None
    model_version: str | None = None
    model_uri: str | None = None
    experiment_id: str | None = None
    decision: str = "not registered"  # "champion" | "challenger" | "not registered"
    reason: str = ""
    previous_champion: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    fit_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ari_mean(self) -> float:
        return float(np.mean(self.stability_ari)) if self.stability_ari else float("nan")

    @property
    def ari_min(self) -> float:
        return float(np.min(self.stability_ari)) if self.stability_ari else float("nan")

    def sizes(self) -> dict[int, int]:
        return {int(r.segment): int(r.n_sellers) for r in self.profile.itertuples()}


def _write_outputs(
    con, settings: Settings, dt_ref: date, df: pd.DataFrame, labels, names: dict[int, str], version, run_id
) -> int:
    """The one writer of segment assignments: a batch of `seller_segments` and of
    `scores_seller_segments` (`olist_ml.records`: history kept, idempotent per (dt_ref, version, data)).
    Earlier batches computed from data that changed since are kept and marked revised."""
    from .. import lineage, records
    from ..ml import scoring

    d = as_date(dt_ref)
    records.mark_revised(con, TABLE, PROBLEM.reads)
    scoring.mark_revised_scores(con, PROBLEM)
    data_fp = lineage.asof_fingerprints(con, [d], PROBLEM.reads)[d]
    scored_at = scoring.now_utc()
    out = pd.DataFrame(
        {
            "dt_ref": [d] * len(df),
            "seller_id": df["seller_id"].astype(str).to_numpy(),
            "segment": np.asarray(labels, dtype=int),
        }
    )
    out["segment_name"] = out["segment"].map(lambda s: names.get(int(s), f"segment {s}"))
    out["model_version"] = str(version) if version is not None else None
    out["run_id"] = run_id
    out["scored_at"] = scored_at
    records.write_batch(
        con,
        TABLE,
        out,
        f"CREATE TABLE IF NOT EXISTS {TABLE} (dt_ref DATE, seller_id VARCHAR, segment INTEGER, "
        "segment_name VARCHAR, model_version VARCHAR, run_id VARCHAR, scored_at TIMESTAMP, data_fp VARCHAR, "
        "data_revised_at TIMESTAMP)",
        dt_ref=d,
        model_version=None if version is None else str(version),
        data_fp=data_fp,
        types={"scored_at": "TIMESTAMP"},
    )
    if version is not None:  # scores_<name> rows always carry a registered version
        sc = pd.DataFrame(
            {
                "dt_ref": out["dt_ref"],
                "seller_id": out["seller_id"],
                "score": out["segment"],
                "decile": pd.array([pd.NA] * len(out), dtype="Int64"),
                "model_name": NAME,
                "model_version": str(version),
                "run_id": run_id,
                "scored_at": scored_at,
                "segment_name": out["segment_name"],
            }
        )
        scoring.write_scores(
            con, PROBLEM, sc.sort_values(["score", "seller_id"]).reset_index(drop=True), d, str(version)
        )
    return len(out)


def _pca_png(X: np.ndarray, labels, names: dict[int, str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    X2 = PCA(n_components=2, random_state=0).fit_transform(X) if X.shape[1] >= 2 else np.c_[X, X]
    fig, ax = plt.subplots(figsize=(7, 5))
    for s in sorted(names):
        m = np.asarray(labels) == s
        ax.scatter(X2[m, 0], X2[m, 1], s=6, alpha=0.6, label=f"{s}: {names[s]} ({m.sum()})")
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _population_sql(settings: Settings, feats: list[str], cols: list[str]) -> str:
    active = _column(ACTIVE, settings)
    cond = f"AND coalesce(f.{active}, 0) > 0" if active in cols else ""
    return (
        f"SELECT CAST(f.dt_ref AS DATE) AS dt_ref, f.seller_id, {', '.join('f.' + c for c in feats)} "
        f"FROM ({_features().feature_frame_sql()}) f WHERE f.dt_ref = $d {cond}"
    )


def write_abt(con: duckdb.DuckDBPyConnection, settings: Settings, dt_ref: date | None = None) -> int:
    """`abt_seller_segments`: the population a segmentation is fitted on, i.e. the active
    sellers at `dt_ref` (default: `default_dt_ref`) with the curated features."""
    _require(con)
    cols = list(_features().feature_columns(con))
    feats = curated_features(settings, cols)
    d = _population_date(con, dt_ref)
    return replace_table_atomically(
        con, ABT, _population_sql(settings, feats, cols) + " ORDER BY f.seller_id", {"d": d}
    )


def build_abt(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """The Problem's `build_abt`: `write_abt` at the default population date."""
    return write_abt(con, settings)


def _k_range(settings: Settings, k_range) -> tuple[int, int]:
    lo, hi = k_range if k_range is not None else settings.segments.k_range
    return int(lo), int(hi)


def fit_segments(
    settings: Settings,
    dt_ref: date | None = None,
    *,
    k_range: tuple[int, int] | None = None,
    n_stability: int | None = None,
    log: bool = True,
    register: bool = True,
    build_abt: bool = True,
    min_delta: float = 0.0,
) -> SegmentsResult:
    """Choose k, fit, measure stability, profile and name on the active sellers at `dt_ref`
    (default: `default_dt_ref`); log to MLflow; register and apply the clustering champion rule;
    when the new version is champion, write its assignments (`seller_segments` and
    `scores_seller_segments`) for the fitted dt_ref.

    build_abt=False fits on the existing `abt_seller_segments` (the pipeline builds it first and
    hashes it). k_range default: `segments.k_range` (3..8); stability runs: `segments.stability_runs` (5).
    """
    from ..ml import metrics as M
    from ..ml.data import content_hash, data_end, load_abt

    seed = settings.seed
    k_range = _k_range(settings, k_range)
    n_stability = int(n_stability if n_stability is not None else settings.segments.stability_runs)
    t0 = time.perf_counter()
    with session(settings) as con:
        if build_abt or not table_exists(con, ABT):
            write_abt(con, settings, dt_ref)
        df = con.execute(f"SELECT * FROM {ABT} ORDER BY seller_id").df()
        abt_hash = content_hash(load_abt(con, PROBLEM)) if not df.empty else ""
        end = data_end(con)
    if df.empty:
        raise MissingStepError(
            f"no active sellers at {dt_ref or 'the default dt_ref'}: build features over a range that contains sales"
        )
    df["dt_ref"] = pd.to_datetime(df["dt_ref"]).dt.date
    d = df["dt_ref"].iloc[0]
    feats = [c for c in df.columns if c not in ("dt_ref", "seller_id")]
    k, sil = choose_k(df, feats, k_range, seed)
    pipe = segment_pipeline(feats, k, seed).fit(df)
    labels = pipe[-1].labels_
    X = _space(pipe, df)
    aris = stability(df, feats, k, labels, seed, n_runs=n_stability)
    gmv = _column(F.gmv.longest, settings)
    prof = profile(df, labels, feats, X, gmv if gmv in df.columns else None)
    names = name_segments(prof, feats, settings)
    prof.insert(1, "segment_name", prof["segment"].map(names))
    res = SegmentsResult(
        dt_ref=d,
        n_sellers=len(df),
        k=k,
        silhouette=sil[k],
        silhouette_by_k=sil,
        stability_ari=aris,
        names=names,
        profile=prof,
        features=feats,
    )
    res.metrics = {
        **M.cluster_metrics(X, labels, seed=seed),
        "silhouette": sil[k],
        "stability_ari_mean": res.ari_mean,
        "stability_ari_min": res.ari_min,
    }
    res.lineage = {
        "abt_table": ABT,
        "abt_rows": len(df),
        "abt_labelled_rows": len(df),
        "abt_dt_ref_min": str(d),
        "abt_dt_ref_max": str(d),
        "abt_content_hash": abt_hash,
        "train_rows": len(df),
        "train_dt_ref_min": str(d),
        "train_dt_ref_max": str(d),
        "trained_until": str(d),
        "n_features": len(feats),
        "features": feats,
    }
    if end is not None:
        res.lineage["data_end"] = str(end)
    res.fit_seconds = time.perf_counter() - t0
    if log:
        _log_run(settings, res, pipe, df, X, labels, register, min_delta)
    if res.decision == "champion":
        with session(settings) as con:
            _write_outputs(con, settings, d, df, labels, names, res.model_version, res.run_id)
    elif res.model_version is not None:
        res.notes.append(
            f"v{res.model_version} is {res.decision}: assignments stay with the champion v{res.previous_champion}"
        )
    else:
        res.notes.append("not registered: no assignments written")
    return res


def _log_run(settings: Settings, res: SegmentsResult, pipe, df, X, labels, register: bool, min_delta: float) -> None:
    """The parent run (`olist_ml.ml.train.parent_run`, as every problem's) with the clustering metrics
    and segments/ artifacts, the model (`olist_ml.ml.artefact`), then `_register`."""
    from ..ml import artefact, tracking
    from ..ml.train import parent_run

    mlflow = tracking.configure(settings)
    exp = res.experiment_id = tracking.experiment_id(settings, NAME)
    params = {
        "dt_ref": str(res.dt_ref),
        "n_sellers": res.n_sellers,
        "k": res.k,
        "k_range": f"{min(res.silhouette_by_k)}..{max(res.silhouette_by_k)}",
        "features": ",".join(res.features),
        "scaling": "log1p(skewed)+robust(10-90)+clip5",
        "seed": settings.seed,
        "n_stability_runs": len(res.stability_ari),
        "metric": "silhouette",
    }
    with parent_run(
        mlflow, exp, PROBLEM, settings, res.lineage, res.notes, params, tags={"candidate": CANDIDATE}
    ) as run:
        mlflow.log_metrics({k: float(v) for k, v in res.metrics.items()})
        mlflow.set_tags({"trained_until": str(res.dt_ref)})
        mlflow.log_metric("fit_seconds", res.fit_seconds)
        for k, v in res.silhouette_by_k.items():
            mlflow.log_metric("silhouette_by_k", v, step=int(k))
        with tempfile.TemporaryDirectory() as tmp:
            _write_artifacts(Path(tmp), res, X, labels)
            mlflow.log_artifacts(tmp, artifact_path="segments")
        info = artefact.log_model(mlflow, pipe, "cluster", df)
        res.run_id = run.info.run_id
        res.model_uri = info.model_uri
        if register:
            _register(settings, res, df, min_delta)
            mlflow.set_tags(
                {
                    "registered_version": res.model_version,
                    "decision": res.decision,
                    "decision_reason": res.reason,
                    "winner": CANDIDATE,
                }
            )


def _write_artifacts(t: Path, res: SegmentsResult, X: np.ndarray, labels) -> None:
    """segments/: profile (csv + html), names, silhouette by k, stability ARIs, the PCA plot."""
    res.profile.to_csv(t / "segment_profile.csv", index=False)
    (t / "segment_profile.html").write_text(res.profile.round(3).to_html(index=False), encoding="utf-8")
    (t / "segment_names.json").write_text(json.dumps({str(k): v for k, v in res.names.items()}, indent=1))
    pd.DataFrame({"k": list(res.silhouette_by_k), "silhouette": list(res.silhouette_by_k.values())}).to_csv(
        t / "silhouette_by_k.csv", index=False
    )
    pd.DataFrame({"run": range(len(res.stability_ari)), "ari": res.stability_ari}).to_csv(
        t / "stability_ari.csv", index=False
    )
    _pca_png(X, labels, res.names, t / "segments_pca.png", f"{NAME} at {res.dt_ref} (k={res.k})")


def _champion_silhouette(champ, df: pd.DataFrame, features: list[str], seed: int) -> float:
    """Silhouette of the champion's partition of `df`, in the champion's own scaled space."""
    if sorted(champ.feature_names) != sorted(features):
        raise InputError(f"features changed (champion: {len(champ.feature_names)}, new: {len(features)})")
    labels = champ.predict(df)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return _silhouette(_space(champ.model, df), labels, seed)


def _register(settings: Settings, res: SegmentsResult, df: pd.DataFrame, min_delta: float) -> None:
    """Register the fitted model (`registry.register_and_decide`, as every problem) by the clustering
    champion rule (module docstring)."""
    from ..ml import registry
    from ..ml.problem import SETTINGS_TAG

    tags = {
        "segment_names": json.dumps({str(k): n for k, n in res.names.items()}),
        "silhouette": f"{res.silhouette:.6f}",
        "stability_ari_mean": f"{res.ari_mean:.4f}",
        "dt_ref": str(res.dt_ref),
        "k": str(res.k),
        # no labels: no validation / test periods; the one population it was fitted on
        "trained_until": str(res.dt_ref),
        SETTINGS_TAG: PROBLEM.settings_json(settings),
    }
    if res.lineage.get("data_end"):  # the retrain policy counts the days since (olist_ml.ml.policy)
        tags["data_end"] = res.lineage["data_end"]

    def decide(version: str, current) -> tuple[str, str]:
        if current is None:
            return registry.CHAMPION, f"first champion (silhouette {res.silhouette:.4f}, k={res.k})"
        try:
            champ = registry.load_version(settings, NAME, current.version, registry.CHAMPION)
            old = _champion_silhouette(champ, df, res.features, settings.seed)
        except Exception as e:  # noqa: BLE001 - features changed or the old model cannot assign today's population
            why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            return registry.CHAMPION, (
                f"champion v{current.version} cannot segment this population ({why}): newcomer promoted"
            )
        registry.set_version_tag(settings, NAME, version, f"champion_v{current.version}_silhouette", f"{old:.6f}")
        on = f"the same {res.n_sellers} sellers at {res.dt_ref}"
        if np.isnan(old):  # the champion puts every seller in one segment: no silhouette to beat
            return registry.CHAMPION, (
                f"champion v{current.version} has no silhouette (one segment) on {on}: newcomer promoted"
            )
        return registry.champion_rule(
            res.silhouette, old, label="silhouette", champion_version=current.version, on=on, min_delta=min_delta
        )

    d = registry.register_and_decide(
        settings, NAME, res.model_uri, res.run_id, kind="cluster", candidate=CANDIDATE, tags=tags, decide=decide
    )
    res.model_version, res.decision, res.reason, res.previous_champion = d.version, d.decision, d.reason, d.previous


def champion_names(settings: Settings) -> tuple[dict[int, str], object]:
    from ..ml import registry

    champ = registry.load_champion(settings, NAME)
    raw = (champ.tags or {}).get("segment_names")
    names = {int(k): v for k, v in json.loads(raw).items()} if raw else {}
    return names, champ


# ---- hooks on the generic machinery ---------------------------------------------------------------
def train_segments(
    problem: Problem,
    settings: Settings,
    *,
    build_abt: bool = True,
    register: bool = True,
    min_delta: float = 0.0,
    test_end: date | None = None,
    **_budget,
):
    """`Problem.train_fn`: `olist_ml.ml.train.train(PROBLEM, ...)` lands here. `test_end` (the CLI's
    --test-end) picks the population date; the Optuna budget and the train | validation | test
    split do not apply (no labels: k is searched on the one population)."""
    from ..ml.train import CandidateResult, TrainResult

    res = fit_segments(settings, test_end, build_abt=build_abt, register=register, min_delta=min_delta)
    params = {"k": res.k, "k_range": f"{min(res.silhouette_by_k)}..{max(res.silhouette_by_k)}", "n_init": 10}
    cand = CandidateResult(
        CANDIDATE,
        params,
        res.silhouette,
        len(res.silhouette_by_k),
        res.metrics,
        res.run_id or "",
        res.model_uri or "",
        res.fit_seconds,
    )
    notes = [
        f"population: {res.n_sellers} active sellers at {res.dt_ref}; k={res.k} by silhouette "
        f"({', '.join(f'{k}:{v:.3f}' for k, v in res.silhouette_by_k.items())}); stability ARI mean "
        f"{res.ari_mean:.3f} min {res.ari_min:.3f}"
    ]
    sizes = res.sizes()
    notes += [f"segment {s} ({sizes[s]} sellers): {n}" for s, n in sorted(res.names.items())]
    notes += res.notes
    return TrainResult(
        problem=NAME,
        experiment_id=res.experiment_id or "",
        parent_run_id=res.run_id or "",
        metric="silhouette",
        candidates=[cand],
        winner=CANDIDATE,
        model_version=res.model_version,
        decision=res.decision if register else "not registered",
        reason=res.reason or "register=False",
        previous_champion=res.previous_champion,
        lineage=res.lineage,
        notes=notes,
        extra_keys=["stability_ari_mean", "stability_ari_min"],
    )


def score_segments(problem: Problem, settings: Settings, as_of: date | None = None, *, top_n: int = 10):
    """`Problem.score_fn`: assign the active sellers at `as_of` (default: `default_dt_ref`) with
    `seller_segments@champion`; writes `seller_segments` and `scores_seller_segments`."""
    from ..ml import scoring

    t0 = time.perf_counter()
    names, champ = champion_names(settings)
    PROBLEM.check_champion(champ, settings)
    with session(settings) as con:
        df = population(con, settings, as_of)
        if df.empty:
            raise MissingStepError(
                f"no active sellers at {as_of or default_dt_ref(con)}: build features over a range that contains sales"
            )
        missing = [f for f in champ.feature_names if f not in df.columns]
        if missing:
            raise MissingStepError(
                f"the feature store lacks {', '.join(missing[:3])} used by {NAME} "
                f"v{champ.version}: run `olist-ml train segments` again"
            )
        labels = champ.predict(df)
        d = df["dt_ref"].iloc[0]
        n = _write_outputs(con, settings, d, df, labels, names, champ.version, champ.run_id)
    lab = pd.Series(np.asarray(labels, dtype=int))
    counts = lab.value_counts().sort_index()
    top = [
        {"segment": int(s), "segment_name": names.get(int(s), f"segment {s}"), "n_sellers": int(c)}
        for s, c in counts.sort_values(ascending=False).head(top_n).items()
    ]
    return scoring.ScoreReport(
        problem=NAME,
        table=PROBLEM.scores_table,
        dt_ref=d,
        n_scored=n,
        model_name=NAME,
        model_version=str(champ.version),
        run_id=champ.run_id,
        distribution=scoring.distribution(PROBLEM, lab),
        top=top,
        seconds=time.perf_counter() - t0,
    )


# ---- declaration on the generic machinery ---------------------------------------------------------
def scoring_frame(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date | None = None) -> pd.DataFrame:
    df = population(con, settings, as_of)
    feats = curated_features(settings, list(_features().feature_columns(con)))
    return df[["dt_ref", "seller_id"] + feats]


PROBLEM = Problem(
    name=NAME,
    kind="cluster",
    abt_table=ABT,
    key_columns=("dt_ref", "seller_id"),
    time_column="dt_ref",
    group_column="seller_id",
    build_abt=build_abt,
    scoring_frame=scoring_frame,
    aliases=("segments", "segmentation"),
    description="Segments of active sellers (k-means on robust-scaled feature-store features), named from profiles",
    settings_of=lambda s: s.segments,  # k_range, stability_runs (no labels: the split is unused)
    reads=FEATURE_READS,  # its population and features come from the feature store
    uses_features=tuple(ref for ref, _ in CURATED) + (ACTIVE,),
    build_step="features build",
    train_fn=train_segments,
    score_fn=score_segments,
)
