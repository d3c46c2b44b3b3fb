"""Seller segmentation: cluster the active sellers of a reference date on feature-store features.

Population at dt_ref: sellers with at least one order in the largest feature window before
dt_ref (`n_orders_<W>d > 0`, W = max(Settings.feature_windows)).

Features: a curated, interpretable subset of `fs_seller_*` (volume, ticket, tenure, recency,
ratings, lateness, delivery time, assortment, repeat customers, freight share) at window W;
whichever are present are used (all numeric features if fewer than 4 are).

Model (`segment_pipeline`): median imputation -> signed log1p on heavy-tailed (skewed,
non-negative) columns -> RobustScaler (median/IQR) -> clip to [-5, 5] -> KMeans. k is chosen
by silhouette over `k_range` (default 3..8). Stability: the chosen k is refitted on bootstrap
subsamples (80%) with other seeds, and the adjusted Rand index of their assignments of the
whole population against the reference model is reported (mean/min).

Each segment is profiled (size, share, GMV share, feature means and z-scores vs the overall
mean in the scaled space) and named from its profile ("high-volume, well-rated", "new,
low-volume", "at-risk: late & badly rated", ...); names are unique.

`fit_segments` logs one MLflow run (params, metrics, profile CSV + HTML, PCA PNG, the model),
registers the model as `seller_segments` (alias champion; segment names in a version tag) and
writes the assignments to table `seller_segments(dt_ref, seller_id, segment, segment_name,
model_version, run_id)`. `assign_segments` scores another dt_ref with the champion.
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
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler

from ..config import Settings
from ..errors import InputError, MissingStepError
from ..ml.problem import Problem, SplitConfig
from ..warehouse import require_tables, session, table_exists
from ._common import as_date

NAME = "seller_segments"
ABT = "abt_seller_segments"
TABLE = "seller_segments"
CLIP = 5.0

# curated features: (template, role used for naming)
CURATED = (
    ("gmv_{w}d", "volume"),
    ("n_orders_{w}d", "volume"),
    ("avg_ticket_{w}d", "ticket"),
    ("days_since_first_sale", "tenure"),
    ("days_since_last_sale", "recency"),
    ("avg_review_score_{w}d", "rating"),
    ("pct_reviews_low_{w}d", "low_rating"),
    ("pct_orders_late_{w}d", "late"),
    ("avg_delivery_days_{w}d", "delivery_days"),
    ("n_categories_{w}d", "assortment"),
    ("pct_repeat_customers_{w}d", "loyalty"),
    ("freight_to_price_{w}d", "freight"),
)


def _features():
    from .. import features

    return features


def window(settings: Settings) -> int:
    return max(settings.feature_windows)


def curated_features(available: list[str], settings: Settings) -> list[str]:
    w = window(settings)
    cols = [t.format(w=w) for t, _ in CURATED if t.format(w=w) in available]
    return cols if len(cols) >= 4 else list(available)


def _roles(settings: Settings) -> dict[str, str]:
    w = window(settings)
    return {t.format(w=w): r for t, r in CURATED}


# ---- data ----------------------------------------------------------------------------------------
def _require(con) -> None:
    require_tables(con, ["stg_orders", "stg_order_items"], "ingest SOURCE")
    require_tables(con, list(_features().FEATURE_TABLES), "features build")


def population(con: duckdb.DuckDBPyConnection, settings: Settings, dt_ref: date | None = None) -> pd.DataFrame:
    """Active sellers at `dt_ref` (default: the latest dt_ref of the feature store) with their features."""
    _require(con)
    fs = _features()
    dts = sorted(pd.Timestamp(d).date() for d in fs.available_dt_refs(con))
    if not dts:
        raise MissingStepError("the feature store has no dt_ref rows: run `olist-ml features build` first")
    d = as_date(dt_ref) or dts[-1]
    if d not in set(dts):
        raise MissingStepError(f"the feature store has no dt_ref {d}: run `olist-ml features build --start {d} --end {d}`")
    active = f"n_orders_{window(settings)}d"
    cols = fs.feature_columns(con)
    cond = f"AND coalesce(f.{active}, 0) > 0" if active in cols else ""
    df = con.execute(
        f"SELECT * FROM ({fs.feature_frame_sql()}) f WHERE f.dt_ref = ? {cond} ORDER BY f.seller_id", [d]
    ).df()
    df["dt_ref"] = pd.to_datetime(df["dt_ref"]).dt.date
    return df


# ---- model ---------------------------------------------------------------------------------------
class HeavyTailScaler(BaseEstimator, TransformerMixin):
    """Signed log1p on skewed non-negative columns, then RobustScaler, then clip to [-clip, clip]."""

    def __init__(self, skew_threshold: float = 1.0, clip: float = CLIP):
        self.skew_threshold = skew_threshold
        self.clip = clip

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        skew = pd.DataFrame(X).skew().fillna(0).to_numpy()
        self.log_cols_ = (skew > self.skew_threshold) & (np.nanmin(X, axis=0) >= 0)
        self.scaler_ = RobustScaler(quantile_range=(10.0, 90.0)).fit(self._log(X))
        # a constant column has IQR 0: RobustScaler keeps scale 1, so it contributes 0 after centring
        return self

    def _log(self, X):
        X = np.array(X, dtype=float, copy=True)
        X[:, self.log_cols_] = np.log1p(X[:, self.log_cols_])
        return X

    def transform(self, X):
        return np.clip(self.scaler_.transform(self._log(np.asarray(X, dtype=float))), -self.clip, self.clip)


def segment_pipeline(features: list[str], k: int, seed: int) -> Pipeline:
    from ..ml.candidates import FrameCaster

    return Pipeline([
        ("cast", FrameCaster([], features)),
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("scale", HeavyTailScaler()),
        ("model", KMeans(n_clusters=k, n_init=10, random_state=seed)),
    ])


def _space(pipe: Pipeline, df: pd.DataFrame) -> np.ndarray:
    return np.asarray(pipe[:-1].transform(df), dtype=float)


def choose_k(df: pd.DataFrame, features: list[str], k_range: tuple[int, int], seed: int,
             sample: int = 4000) -> tuple[int, dict[int, float]]:
    from sklearn.metrics import silhouette_score

    lo, hi = k_range
    hi = min(hi, len(df) - 1)
    if hi < lo or lo < 2:
        raise InputError(f"{len(df)} active sellers cannot form {lo}..{k_range[1]} segments: build features over a "
                         "longer range or lower the k range")
    scores = {}
    for k in range(lo, hi + 1):
        pipe = segment_pipeline(features, k, seed).fit(df)
        labels = pipe[-1].labels_
        if len(np.unique(labels)) < 2:
            scores[k] = float("nan")
            continue
        scores[k] = float(silhouette_score(_space(pipe, df), labels, sample_size=min(sample, len(df)),
                                           random_state=seed))
    valid = {k: v for k, v in scores.items() if not np.isnan(v)}
    if not valid:
        raise InputError("no k in the range gives two or more distinct segments: the sellers' features are constant")
    best = max(valid, key=lambda k: (valid[k], -k))
    return best, scores


def stability(df: pd.DataFrame, features: list[str], k: int, ref_labels: np.ndarray, seed: int,
              n_runs: int = 5, frac: float = 0.8) -> list[float]:
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
def profile(df: pd.DataFrame, labels: np.ndarray, features: list[str], X: np.ndarray,
            gmv_col: str | None) -> pd.DataFrame:
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
        if z.get("volume", 0) > t:
            parts.append("high-volume")
        elif z.get("volume", 0) < -t:
            parts.append("low-volume")
        if z.get("ticket", 0) > t:
            parts.append("high-ticket")
        elif z.get("ticket", 0) < -t:
            parts.append("low-ticket")
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
    notes: list[str] = field(default_factory=list)

    @property
    def ari_mean(self) -> float:
        return float(np.mean(self.stability_ari)) if self.stability_ari else float("nan")


def _write_assignments(con, dt_ref: date, df: pd.DataFrame, labels, names: dict[int, str], version, run_id) -> int:
    out = pd.DataFrame({
        "dt_ref": [dt_ref] * len(df),
        "seller_id": df["seller_id"].astype(str).to_numpy(),
        "segment": np.asarray(labels, dtype=int),
    })
    out["segment_name"] = out["segment"].map(lambda s: names.get(int(s), f"segment {s}"))
    out["model_version"] = str(version) if version is not None else None
    out["run_id"] = run_id
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (dt_ref DATE, seller_id VARCHAR, segment INTEGER, "
                    "segment_name VARCHAR, model_version VARCHAR, run_id VARCHAR)")
        con.execute(f"DELETE FROM {TABLE} WHERE dt_ref = ?", [dt_ref])
        con.register("_olist_segments", out)
        con.execute(f"INSERT INTO {TABLE} SELECT CAST(dt_ref AS DATE), seller_id, segment, segment_name, "
                    "model_version, run_id FROM _olist_segments")
        con.unregister("_olist_segments")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
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


def fit_segments(settings: Settings, dt_ref: date | None = None, *, k_range: tuple[int, int] = (3, 8),
                 n_stability: int = 5, log: bool = True, register: bool = True) -> SegmentsResult:
    """Choose k, fit, measure stability, profile and name; log to MLflow; write `seller_segments`."""
    seed = settings.seed
    with session(settings) as con:
        df = population(con, settings, dt_ref)
        if df.empty:
            raise MissingStepError(f"no active sellers at {dt_ref or 'the latest dt_ref'}: build features over a "
                                   "range that contains sales")
        d = df["dt_ref"].iloc[0]
        feats = curated_features(list(_features().feature_columns(con)), settings)
        k, sil = choose_k(df, feats, k_range, seed)
        pipe = segment_pipeline(feats, k, seed).fit(df)
        labels = pipe[-1].labels_
        X = _space(pipe, df)
        aris = stability(df, feats, k, labels, seed, n_runs=n_stability)
        gmv = f"gmv_{window(settings)}d"
        prof = profile(df, labels, feats, X, gmv if gmv in df.columns else None)
        names = name_segments(prof, feats, settings)
        prof.insert(1, "segment_name", prof["segment"].map(names))
        res = SegmentsResult(dt_ref=d, n_sellers=len(df), k=k, silhouette=sil[k], silhouette_by_k=sil,
                             stability_ari=aris, names=names, profile=prof, features=feats)
        if log:
            _log_run(settings, res, pipe, df, X, labels, register)
        _write_assignments(con, d, df, labels, names, res.model_version, res.run_id)
    return res


def _log_run(settings: Settings, res: SegmentsResult, pipe, df, X, labels, register: bool) -> None:
    from ..ml import registry, tracking
    from ..ml.train import _pip_requirements

    mlflow = tracking.configure(settings)
    exp = tracking.experiment_id(settings, NAME)
    with mlflow.start_run(experiment_id=exp, run_name=f"{NAME}-{time.strftime('%Y%m%d-%H%M%S')}") as run:
        mlflow.set_tags({"problem": NAME, "kind": "cluster", "role": "segments"})
        mlflow.log_params({"dt_ref": str(res.dt_ref), "n_sellers": res.n_sellers, "k": res.k,
                           "k_range": f"{min(res.silhouette_by_k)}..{max(res.silhouette_by_k)}",
                           "features": ",".join(res.features), "scaling": "log1p(skewed)+robust(10-90)+clip5",
                           "seed": settings.seed, "n_stability_runs": len(res.stability_ari)})
        mlflow.log_metrics({"silhouette": res.silhouette, "stability_ari_mean": res.ari_mean,
                            "stability_ari_min": float(np.min(res.stability_ari)) if res.stability_ari else float("nan")})
        for k, v in res.silhouette_by_k.items():
            mlflow.log_metric("silhouette_by_k", v, step=int(k))
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            res.profile.to_csv(t / "segment_profile.csv", index=False)
            (t / "segment_profile.html").write_text(res.profile.round(3).to_html(index=False), encoding="utf-8")
            (t / "segment_names.json").write_text(json.dumps({str(k): v for k, v in res.names.items()}, indent=1))
            _pca_png(X, labels, res.names, t / "segments_pca.png", f"{NAME} at {res.dt_ref} (k={res.k})")
            mlflow.log_artifacts(tmp, artifact_path="segments")
        from mlflow.models import infer_signature

        import mlflow.sklearn

        ex = df[res.features].head(5).astype("float64")
        info = mlflow.sklearn.log_model(pipe, name="model", signature=infer_signature(ex, pipe.predict(ex)),
                                        input_example=ex, pip_requirements=_pip_requirements(),
                                        serialization_format="cloudpickle", pyfunc_predict_fn="predict")
        res.run_id = run.info.run_id
        if register:
            c = tracking.client(settings)
            mv = mlflow.register_model(info.model_uri, NAME, tags={"kind": "cluster"})
            res.model_version = str(mv.version)
            c.set_model_version_tag(NAME, res.model_version, "segment_names", json.dumps(res.names))
            c.set_model_version_tag(NAME, res.model_version, "run_id", res.run_id)
            c.set_registered_model_alias(NAME, registry.CHAMPION, res.model_version)
            mlflow.set_tag("registered_version", res.model_version)


def champion_names(settings: Settings) -> tuple[dict[int, str], object]:
    from ..ml import registry

    champ = registry.load_champion(settings, NAME)
    raw = (champ.tags or {}).get("segment_names")
    names = {int(k): v for k, v in json.loads(raw).items()} if raw else {}
    return names, champ


def assign_segments(settings: Settings, dt_ref: date | None = None) -> int:
    """Assign the active sellers of `dt_ref` with the champion segmentation; returns rows written."""
    names, champ = champion_names(settings)
    with session(settings) as con:
        df = population(con, settings, dt_ref)
        labels = champ.predict(df)
        return _write_assignments(con, df["dt_ref"].iloc[0], df, labels, names, champ.version, champ.run_id)


# ---- declaration on the generic machinery ---------------------------------------------------------
def build_abt(con: duckdb.DuckDBPyConnection, settings: Settings) -> int:
    """`abt_seller_segments`: the active sellers of every first-of-month dt_ref with the curated features."""
    from ..warehouse import replace_table_atomically

    _require(con)
    fs = _features()
    cols = fs.feature_columns(con)
    feats = curated_features(list(cols), settings)
    active = f"n_orders_{window(settings)}d"
    cond = f"AND coalesce(f.{active}, 0) > 0" if active in cols else ""
    return replace_table_atomically(
        con, ABT,
        f"SELECT CAST(f.dt_ref AS DATE) AS dt_ref, f.seller_id, {', '.join('f.' + c for c in feats)} "
        f"FROM ({fs.feature_frame_sql()}) f WHERE day(f.dt_ref) = 1 {cond}",
    )


def scoring_frame(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date | None = None) -> pd.DataFrame:
    df = population(con, settings, as_of)
    feats = curated_features(list(_features().feature_columns(con)), settings)
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
    split=SplitConfig(oot_months=1, cv_folds=2),
    build_step="features build",
)


def segments_table_exists(settings: Settings) -> bool:
    with session(settings, read_only=True) as con:
        return table_exists(con, TABLE)
