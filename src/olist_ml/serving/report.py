"""Self-contained HTML model report for one problem.

The file has no external reference at all (no scripts, fonts, stylesheets or links): plots are
PNG images embedded as base64 `data:` URIs, styles are inline. Sections:

1. Champion vs challengers: every registered version (aliases, candidate, trained_until, test
   period and test metrics with their 95 % CI, the baseline's test metric, validation metric) and
   the candidates of the champion's training run with their validation metrics (from MLflow).
2. Evaluation plots of the champion (ROC, precision-recall, lift, calibration; clusters for a
   clustering problem): the PNG artifacts its training run logged under `evaluation/`.
3. Top features: the champion run's `evaluation/feature_importance.csv` (+ its plot).
4. Segment profiles (clustering problems, e.g. `seller_segments`): size and mean of every
   numeric feature per cluster over the latest scored population.
5. Drift and realised performance: the latest `olist-ml monitor` run (tables monitor_drift,
   monitor_performance), re-drawn as bar/line charts.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Settings

_CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{border-bottom:2px solid #345}h2{margin-top:2em;color:#345}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eef}
td.l,th.l{text-align:left}.champion{background:#e8f7e8}.flag{color:#b00;font-weight:bold}
.plots img{max-width:48%;margin:4px;border:1px solid #ddd}.note{color:#666;font-style:italic}
"""

_CANDIDATE_METRICS = (
    "validation_roc_auc",
    "validation_pr_auc",
    "validation_top_decile_lift",
    "validation_brier",
    "validation_log_loss",
    "validation_ks",
    "validation_silhouette",
    "validation_davies_bouldin",
    "test_roc_auc",
    "test_silhouette",
    "fit_seconds",
)
# metrics of a registered version's run (the refit run of the generic trainer; segments' own run)
_VERSION_METRICS = (
    "test_roc_auc",
    "test_roc_auc_ci_low",
    "test_roc_auc_ci_high",
    "baseline_test_roc_auc",
    "validation_roc_auc",
    "test_pr_auc",
    "test_top_decile_lift",
    "test_brier",
    "test_log_loss",
    "test_ece",
    "test_silhouette",
    "silhouette",
    "davies_bouldin",
)
_PLOT_ORDER = (
    "roc.png",
    "pr.png",
    "lift.png",
    "calibration.png",
    "reliability.png",
    "clusters.png",
    "feature_importance.png",
)


def _e(x) -> str:
    return html.escape(str(x))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4f}"
    if isinstance(v, pd.Timestamp):
        return _e(v.date() if v == v.normalize() else v.strftime("%Y-%m-%d %H:%M:%S"))
    return _e(v)


def _table(df: pd.DataFrame, *, left: tuple[str, ...] = (), row_class=None) -> str:
    if df is None or df.empty:
        return '<p class="note">none</p>'
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>' for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cls = row_class(r) if row_class else ""
        cells = "".join(f'<td class="{"l" if c in left else ""}">{_fmt(r[c])}</td>' for c in df.columns)
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _fig_png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------
def _versions(client, name: str) -> pd.DataFrame:
    from mlflow.exceptions import MlflowException

    rows = []
    aliases: dict[str, list[str]] = {}
    try:
        rm = client.get_registered_model(name)
        for a, v in (rm.aliases or {}).items():
            aliases.setdefault(str(v), []).append(a)
    except MlflowException:  # no such registered model: no versions to show
        return pd.DataFrame()
    for mv in client.search_model_versions(f"name = '{name}'"):
        metrics = {}
        with contextlib.suppress(MlflowException):  # its run was deleted: the version row shows its tags only
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        row = {
            "version": int(mv.version),
            "alias": ", ".join(sorted(aliases.get(str(mv.version), []))),
            "candidate": (mv.tags or {}).get("candidate", ""),
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M"),
            "trained_until": (mv.tags or {}).get("trained_until", ""),
            "test period": "..".join(
                x for x in ((mv.tags or {}).get("test_start"), (mv.tags or {}).get("test_end")) if x
            ),
        }
        for k in _VERSION_METRICS:
            if k in metrics:
                row[k] = float(metrics[k])
        row["decision"] = (mv.tags or {}).get("decision_reason", "")
        rows.append(row)
    return pd.DataFrame(rows).sort_values("version", ascending=False) if rows else pd.DataFrame()


def _candidates_of(client, run_id: str) -> pd.DataFrame:
    run = client.get_run(run_id)
    parent = run.data.tags.get("mlflow.parentRunId")
    if not parent:
        return pd.DataFrame()
    runs = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    rows = []
    for r in runs:
        row = {
            "candidate": r.data.tags.get("candidate", r.info.run_name),
            "champion run": "yes" if r.info.run_id == run_id else "",
        }
        for k, v in sorted(r.data.metrics.items()):
            if k.startswith("cv_") or k in _CANDIDATE_METRICS:
                row[k] = float(v)
        rows.append(row)
    return pd.DataFrame(rows)


def _artifacts(client, run_id: str) -> dict[str, bytes]:
    """The run's evaluation/ plots and tables; none when it logged none (e.g. a segmentation run)."""
    from mlflow.exceptions import MlflowException

    out: dict[str, bytes] = {}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as d:
        try:
            local = Path(client.download_artifacts(run_id, "evaluation", d))
        except (MlflowException, OSError):  # no evaluation/ folder, or an artifact store that cannot be read
            return out
        for f in sorted(local.iterdir()):
            if f.suffix in (".png", ".csv"):
                out[f.name] = f.read_bytes()
    return out


# ---------------------------------------------------------------------------------------
# warehouse sections
# ---------------------------------------------------------------------------------------
def segment_profiles(con, settings: Settings, problem) -> pd.DataFrame:
    """Size and mean numeric features per cluster over the latest scored population."""
    from ..warehouse import table_exists

    if not table_exists(con, problem.scores_table):
        return pd.DataFrame()
    t = problem.time_column
    latest = con.execute(f"SELECT max({t}) FROM {problem.scores_table}").fetchall()[0][0]
    if latest is None:
        return pd.DataFrame()
    keys = list(problem.key_columns)
    sc = con.execute(f"SELECT {', '.join(keys)}, score FROM {problem.scores_table} WHERE {t} = ?", [latest]).df()
    frame = problem.scoring_frame(con, settings, latest)
    for d in (sc, frame):
        d[t] = pd.to_datetime(d[t]).dt.date
    df = sc.merge(frame.drop(columns=["score"], errors="ignore"), on=keys)
    num = [
        c
        for c in df.columns
        if c not in (*keys, "score") and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    prof = df.groupby("score")[num].mean()
    prof.insert(0, "share", df.groupby("score").size() / len(df))
    prof.insert(0, "n", df.groupby("score").size())
    prof.index.name = "segment"
    return prof.reset_index()


def _monitor_tables(con, problem_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from ..warehouse import table_exists

    drift = perf = pd.DataFrame()
    if table_exists(con, "monitor_drift"):
        drift = con.execute(
            "SELECT feature, kind, psi, flag, n_reference, n_current, model_version, reference_start, reference_end, "
            "current_dt_ref, run_ts FROM monitor_drift WHERE problem = ? AND run_ts = "
            "(SELECT max(run_ts) FROM monitor_drift WHERE problem = ?) ORDER BY psi DESC NULLS LAST",
            [problem_name, problem_name],
        ).df()
    if table_exists(con, "monitor_performance"):
        cols = {r[0] for r in con.execute("DESCRIBE monitor_performance").fetchall()}
        source = "AND source = 'batch' " if "source" in cols else ""
        perf = con.execute(
            "SELECT dt_ref, model_version, n, n_positive, base_rate, roc_auc, lift_top_decile FROM monitor_performance "
            f"WHERE problem = ? AND n > 0 {source}ORDER BY dt_ref, model_version",
            [problem_name],
        ).df()
    return drift, perf


def _drift_png(drift: pd.DataFrame) -> bytes:
    plt = _plt()
    d = drift.dropna(subset=["psi"]).head(30)[::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.28 * len(d) + 1)))
    ax.barh(d["feature"], d["psi"], color=["tab:red" if f else "tab:blue" for f in d["flag"]])
    ax.axvline(0.2, ls="--", color="grey", label="flag at 0.2")
    ax.set(xlabel="PSI", title="Drift: PSI vs the champion's training population")
    ax.legend(loc="lower right")
    return _fig_png(fig, plt)


def _perf_png(perf: pd.DataFrame) -> bytes:
    plt = _plt()
    fig, ax1 = plt.subplots(figsize=(7, 3.5))
    for v, g in perf.groupby("model_version"):
        x = pd.to_datetime(g["dt_ref"])
        ax1.plot(x, g["roc_auc"], "o-", label=f"ROC AUC v{v}")
    ax1.set(ylabel="ROC AUC", title="Realised performance of past scores")
    ax2 = ax1.twinx()
    for v, g in perf.groupby("model_version"):
        ax2.plot(pd.to_datetime(g["dt_ref"]), g["lift_top_decile"], "s--", alpha=0.6, label=f"top-decile lift v{v}")
    ax2.set(ylabel="top-decile lift")
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="best", fontsize=7)
    fig.autofmt_xdate()
    return _fig_png(fig, plt)


# ---------------------------------------------------------------------------------------
def build_html(problem, settings: Settings) -> str:
    from ..ml import registry, tracking
    from ..warehouse import session

    client = tracking.client(settings)
    champ_mv = registry.alias_version(settings, problem.name, registry.CHAMPION)
    parts = [f"<h1>Model report: {_e(problem.name)}</h1>"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p>{_e(problem.description or '')} Kind: <b>{_e(problem.kind)}</b>. Generated {now}.</p>")
    if champ_mv is None:
        parts.append(f'<p class="flag">No champion registered: run <code>olist-ml train {_e(problem.name)}</code>.</p>')
    else:
        parts.append(f"<p>Champion: <b>{_e(problem.name)} v{_e(champ_mv.version)}</b> (run {_e(champ_mv.run_id)}).</p>")

    # 1. champion vs challengers
    parts.append("<h2>Champion vs challengers</h2><h3>Registered versions</h3>")
    versions = _versions(client, problem.name)
    parts.append(
        _table(
            versions,
            left=("alias", "candidate", "created", "trained_until", "test period", "decision"),
            row_class=lambda r: "champion" if "champion" in str(r.get("alias", "")) else "",
        )
    )
    art: dict[str, bytes] = {}
    if champ_mv is not None and champ_mv.run_id:
        parts.append(
            "<h3>Candidates of the champion's training run (validation metrics; the refit row is the "
            "registered artefact, with the test metrics of its spec fitted before the test period)</h3>"
        )
        parts.append(
            _table(
                _candidates_of(client, champ_mv.run_id),
                left=("candidate", "champion run"),
                row_class=lambda r: "champion" if r.get("champion run") else "",
            )
        )
        art = _artifacts(client, champ_mv.run_id)

    # 2. plots
    parts.append(
        "<h2>Evaluation of the champion (test period, fitted before it; reliability before/after calibration)</h2>"
    )
    pngs = [n for n in _PLOT_ORDER if n in art and n != "feature_importance.png"]
    if pngs:
        parts.append('<div class="plots">' + "".join(_img(art[n], n[:-4]) for n in pngs) + "</div>")
    else:
        parts.append('<p class="note">the champion run logged no evaluation plots</p>')

    # 3. features
    parts.append("<h2>Top features</h2>")
    if "feature_importance.csv" in art:
        imp = pd.read_csv(io.BytesIO(art["feature_importance.csv"])).head(20)
        parts.append(_table(imp, left=("feature",)))
    if "feature_importance.png" in art:
        parts.append('<div class="plots">' + _img(art["feature_importance.png"], "feature importance") + "</div>")
    if "feature_importance.csv" not in art and "feature_importance.png" not in art:
        parts.append('<p class="note">no feature importance logged for the champion</p>')

    with session(settings, read_only=True) as con:
        # 4. segments
        if problem.kind == "cluster":
            parts.append("<h2>Segment profiles (latest scored population)</h2>")
            try:
                parts.append(_table(segment_profiles(con, settings, problem)))
            except Exception as e:  # noqa: BLE001 - a report section degrades to a note
                parts.append(f'<p class="note">segment profiles unavailable: {_e(str(e).splitlines()[0])}</p>')
        # 5. drift / performance
        drift, perf = _monitor_tables(con, problem.name)
    parts.append("<h2>Drift</h2>")
    if drift.empty:
        parts.append(f'<p class="note">no monitoring run yet: run <code>olist-ml monitor {_e(problem.name)}</code></p>')
    else:
        r0 = drift.iloc[0]
        parts.append(
            f"<p>Monitoring run {_fmt(r0['run_ts'])}: champion v{_e(r0['model_version'])}, reference "
            f"{_fmt(r0['reference_start'])}..{_fmt(r0['reference_end'])} vs scored population at "
            f"{_fmt(r0['current_dt_ref'])}; {int(drift['flag'].sum())} of {len(drift)} columns with PSI &gt; 0.2.</p>"
        )
        parts.append('<div class="plots">' + _img(_drift_png(drift), "drift") + "</div>")
        parts.append(
            _table(
                drift[["feature", "kind", "psi", "flag", "n_reference", "n_current"]],
                left=("feature", "kind"),
                row_class=lambda r: "flag" if r["flag"] else "",
            )
        )
    parts.append("<h2>Realised performance</h2>")
    if perf.empty:
        parts.append('<p class="note">no past scores with matured labels yet</p>')
    else:
        parts.append('<div class="plots">' + _img(_perf_png(perf), "realised performance") + "</div>")
        parts.append(_table(perf, left=("dt_ref", "model_version")))

    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>olist-ml report: {_e(problem.name)}'
        f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def report(problem, settings: Settings, *, out: Path | None = None) -> Path:
    """Write the report of `problem` (name, alias or Problem) to `out` (default <home>/reports/<name>.html)."""
    from .monitor import _problem

    problem = _problem(problem)
    text = build_html(problem, settings)
    path = Path(out) if out else settings.reports_dir / f"{problem.name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
