"""Self-contained HTML model report for one problem.

The file has no external reference at all (no scripts, fonts, stylesheets or links): plots are
PNG images embedded as base64 `data:` URIs, styles are inline. Sections:

0. At a glance (the first screen): the champion and its test metric, realised performance of past
   scores (`monitor_performance`) and the head of the action list (`actions_<problem>`).
1. Champion vs challengers: every registered version (aliases, candidate, trained_until, test
   period and test metrics with their 95 % CI, the baseline's test metric, validation metric) and
   the candidates of the champion's training run with their validation metrics (from MLflow).
2. Evaluation plots of the champion (ROC, precision-recall, lift, calibration; clusters for a
   clustering problem): the PNG artifacts its training run logged under `evaluation/`.
3. Why: global importance by ORIGINAL feature name, the mean |contribution| to the margin over the
   test rows (`evaluation/reasons_importance.csv`, logged at training; `olist_ml.ml.explain`), and a
   few example rows with their top reasons as sentences (`evaluation/reasons_examples.csv`).
3b. Action list (binary problems with one: churn, delay): its head with reasons, and "is the list worth
   following?" when `benchmarks/bench_actions.py` measured it in this warehouse (`actions_evaluation`).
4. Segment profiles (clustering problems, e.g. `seller_segments`): size and mean of every
   numeric feature per cluster over the latest scored population.
5. Drift and realised performance: the latest `olist-ml monitor` run (tables monitor_drift,
   monitor_performance), re-drawn as bar/line charts.

Readable at 1280 px: every description shows the settings' values (`churn.horizon_days` -> 45), plot
titles are wrapped to fit their figure (`olist_ml.ml.metrics.fit_titles`), tables wrap their cells so
that the page never scrolls sideways (checked in headless Chromium by tests/serving/test_report.py).
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
*{box-sizing:border-box}
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:1em auto;max-width:1180px;padding:0 12px;color:#222;
overflow-wrap:anywhere}
h1{border-bottom:2px solid #345;margin:.2em 0 .4em}h2{margin-top:1.6em;color:#345}
table{border-collapse:collapse;margin:.5em 0;font-size:12px;max-width:100%}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;overflow-wrap:break-word;vertical-align:top}
th{background:#eef}td.l,th.l{text-align:left}td.l{overflow-wrap:anywhere}.champion{background:#e8f7e8}.flag{color:#b00;font-weight:bold}
.plots img{max-width:calc(50% - 10px);height:auto;margin:4px;border:1px solid #ddd}.plots img.wide{max-width:100%}
.note{color:#666;font-style:italic}td.id{word-break:break-all;min-width:8em}
abbr{text-decoration:underline dotted}
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


_SETTING = __import__("re").compile(r"\b(churn|delay|activation|segments|training)\.([a-z_]+)\b")


def describe(text: str, settings: Settings) -> str:
    """HTML of a description with every `section.field` setting replaced by its value (the name in a
    tooltip): "churn.horizon_days days" -> "45 days"."""
    out, last = [], 0
    for m in _SETTING.finditer(text or ""):
        sec = getattr(settings, m.group(1), None)
        if sec is None or not hasattr(sec, m.group(2)):
            continue
        value = getattr(sec, m.group(2))
        value = "-".join(map(str, value)) if isinstance(value, tuple) else value
        out.append(_e(text[last : m.start()]))
        out.append(f'<abbr title="{_e(m.group(0))}">{_e(value)}</abbr>')
        last = m.end()
    out.append(_e((text or "")[last:]))
    return "".join(out)


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


def _cell_class(column: str, value, left: tuple[str, ...]) -> str:
    """ "l" for text columns; "id" too for one long token (a 32-character seller id), which may break
    anywhere rather than widen its table past the page."""
    cls = "l" if column in left else ""
    if isinstance(value, str) and len(value) > 16 and " " not in value:
        cls += " id"
    return cls.strip()


def _table(df: pd.DataFrame, *, left: tuple[str, ...] = (), row_class=None) -> str:
    if df is None or df.empty:
        return '<p class="note">none</p>'
    # headers break after their underscores (test_roc_auc_ci_low), never inside a word
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c).replace("_", "_<wbr>")}</th>' for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cls = row_class(r) if row_class else ""
        cells = "".join(f'<td class="{_cell_class(c, r[c], left)}">{_fmt(r[c])}</td>' for c in df.columns)
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _fig_png(fig, plt) -> bytes:
    from ..ml.metrics import fit_titles

    buf = io.BytesIO()
    fit_titles(fig)
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
        perf = performance_rows(con, problem_name)
    return drift, perf


_PERF_COLUMNS = (
    "dt_ref",
    "model_version",
    "n_scored",
    "n",
    "n_positive",
    "base_rate",
    "roc_auc",
    "roc_auc_ci_low",
    "roc_auc_ci_high",
    "baseline",
    "baseline_roc_auc",
    "below_gate",
    "lift_top_decile",
)


def performance_rows(con, problem_name: str) -> pd.DataFrame:
    """Realised performance of past scores: `monitor_performance` as the daily job writes it (one row per
    (problem, dt_ref, model_version), latest `computed_at`), or as older monitoring runs did (the rows of
    the latest `run_ts`)."""
    cols = [r[0] for r in con.execute("SELECT * FROM monitor_performance LIMIT 0").description]
    keep = [c for c in _PERF_COLUMNS if c in cols]
    if "computed_at" in cols:
        batch = "AND source = 'batch' AND n > 0 " if "source" in cols else ""  # the batch scores that matured
        sql = (
            f"SELECT {', '.join(keep)} FROM monitor_performance WHERE problem = ? {batch}"
            "QUALIFY row_number() OVER (PARTITION BY dt_ref, model_version ORDER BY computed_at DESC) = 1 "
            "ORDER BY dt_ref, model_version"
        )
        return con.execute(sql, [problem_name]).df()
    if "run_ts" in cols:
        sql = (
            f"SELECT {', '.join(keep)} FROM monitor_performance WHERE problem = ? AND run_ts = "
            "(SELECT max(run_ts) FROM monitor_performance WHERE problem = ?) ORDER BY dt_ref, model_version"
        )
        return con.execute(sql, [problem_name, problem_name]).df()
    return con.execute(f"SELECT {', '.join(keep)} FROM monitor_performance WHERE problem = ?", [problem_name]).df()


def _action_head(con, problem_name: str, n: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(the head of the latest action list, the benchmark's evaluation of such lists), each None if absent."""
    from ..warehouse import table_exists
    from .actions import read_latest

    al = read_latest(con, problem_name)
    ev = None
    if table_exists(con, "actions_evaluation"):
        ev = con.execute("SELECT * FROM actions_evaluation WHERE problem = ?", [problem_name]).df()
        ev = ev if len(ev) else None
    return (al.head(n) if al is not None else None), ev


def _action_table(al: pd.DataFrame) -> pd.DataFrame:
    if "seller_id" in al.columns and "value_at_risk" in al.columns:
        cols = ["rank", "seller_id", "value_at_risk", "p_churn", "expected_gmv", "segment", "reason_1", "reason_2"]
    else:
        cols = ["rank", "order_id", "p_late", "days_left", "carrier_status", "reason_1", "reason_2"]
    out = al[[c for c in cols if c in al.columns]].copy()
    for c in ("value_at_risk", "expected_gmv"):  # BRL: whole reais
        if c in out.columns:
            out[c] = [f"R$ {x:,.0f}" if pd.notna(x) else None for x in out[c]]
    for c in ("p_churn", "p_late"):
        if c in out.columns:
            out[c] = [f"{x:.3f}" if pd.notna(x) else None for x in out[c]]
    if "days_left" in out.columns:
        out["days_left"] = [None if pd.isna(x) else int(x) for x in out["days_left"]]
    return out


def _evaluation_table(ev: pd.DataFrame) -> pd.DataFrame:
    """Mean over the measured dates of each (ranking, cut), with the per-date range."""
    g = ev.groupby(["ranking", "cut"])["value"]
    out = pd.DataFrame({"mean": g.mean(), "min": g.min(), "max": g.max(), "dates": g.size()}).reset_index()
    return out.pivot(index="ranking", columns="cut", values="mean").reset_index()


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
    h2, l2 = [], []
    if "lift_top_decile" in perf.columns:
        ax2 = ax1.twinx()
        for v, g in perf.groupby("model_version"):
            x = pd.to_datetime(g["dt_ref"])
            ax2.plot(x, g["lift_top_decile"], "s--", alpha=0.6, label=f"top-decile lift v{v}")
        ax2.set(ylabel="top-decile lift")
        h2, l2 = ax2.get_legend_handles_labels()
    elif "roc_auc_ci_low" in perf.columns:
        for _v, g in perf.groupby("model_version"):
            x = pd.to_datetime(g["dt_ref"])
            ax1.fill_between(x, g["roc_auc_ci_low"], g["roc_auc_ci_high"], alpha=0.2)
    h1, l1 = ax1.get_legend_handles_labels()
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
    parts.append(
        f"<p>{describe(problem.description or '', settings)} Kind: <b>{_e(problem.kind)}</b>. Generated {now}.</p>"
    )
    versions = _versions(client, problem.name)
    if champ_mv is None:
        parts.append(f'<p class="flag">No champion registered: run <code>olist-ml train {_e(problem.name)}</code>.</p>')
    else:
        line = f"Champion: <b>{_e(problem.name)} v{_e(champ_mv.version)}</b>"
        tags = champ_mv.tags or {}
        if tags.get("candidate"):
            line += f" ({_e(tags['candidate'])})"
        m = problem.metric
        row = versions[versions["version"] == int(champ_mv.version)] if len(versions) else versions
        if len(row) and f"test_{m}" in row.columns and pd.notna(row[f"test_{m}"].iloc[0]):
            r0 = row.iloc[0]
            ci = ""
            if f"test_{m}_ci_low" in row.columns and pd.notna(r0.get(f"test_{m}_ci_low")):
                ci = f" (95 % CI {_fmt(r0[f'test_{m}_ci_low'])}-{_fmt(r0[f'test_{m}_ci_high'])})"
            base = ""
            if f"baseline_test_{m}" in row.columns and pd.notna(r0.get(f"baseline_test_{m}")):
                base = f", baseline {_fmt(r0[f'baseline_test_{m}'])}"
            line += f": test {_e(m)} {_fmt(r0[f'test_{m}'])}{ci}{base}, test period {_e(r0.get('test period', ''))}"
        parts.append(f"<p>{line}; run {_e(champ_mv.run_id)}.</p>")

    with session(settings, read_only=True) as con:
        drift, perf = _monitor_tables(con, problem.name)
        actions_head, evaluation = _action_head(con, problem.name, 20)
        profiles = None
        if problem.kind == "cluster":
            try:
                profiles = segment_profiles(con, settings, problem)
            except Exception as e:  # noqa: BLE001 - a report section degrades to a note
                profiles = f"segment profiles unavailable: {str(e).splitlines()[0]}"

    # 0. at a glance: realised performance and the action list, first
    parts.append("<h2>Realised performance of past scores</h2>")
    if perf.empty:
        parts.append(
            '<p class="note">no past scores with matured labels yet (<code>monitor_performance</code> is empty)</p>'
        )
    else:
        recent = perf.tail(6)
        show = [
            c
            for c in (
                "dt_ref",
                "model_version",
                "n",
                "base_rate",
                "roc_auc",
                "roc_auc_ci_low",
                "roc_auc_ci_high",
                "baseline_roc_auc",
                "below_gate",
            )
            if c in recent.columns
        ]
        parts.append(_table(recent[show], left=("dt_ref", "model_version")))
    parts.append("<h2>Action list</h2>")
    if actions_head is not None:
        d = pd.Timestamp(actions_head["dt_ref"].iloc[0]).date()
        parts.append(f"<p>At {_e(d)}, model v{_e(actions_head['model_version'].iloc[0])}; the first rows:</p>")
        parts.append(
            _table(
                _action_table(actions_head.head(5)),
                left=("seller_id", "order_id", "segment", "carrier_status", "reason_1", "reason_2"),
            )
        )
    elif problem.kind == "binary":
        alias = (problem.aliases or (problem.name,))[0]
        parts.append(f'<p class="note">no action list yet: run <code>olist-ml actions {_e(alias)}</code></p>')
    else:
        parts.append('<p class="note">no action list for a clustering problem</p>')

    # 1. champion vs challengers
    parts.append("<h2>Champion vs challengers</h2><h3>Registered versions</h3>")
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

    # 3. why: reasons by original feature
    parts.append("<h2>Top features</h2>")
    if "reasons_importance.csv" in art:
        imp = pd.read_csv(io.BytesIO(art["reasons_importance.csv"])).head(20)
        parts.append(
            "<p>Mean |contribution| to the model's margin over the test rows, by original feature (reasons, "
            "<code>olist_ml.ml.explain</code>: exact for linear models, TreeSHAP for boosted trees, tree paths "
            "for a random forest). The calibrator is monotone: reasons explain the margin.</p>"
        )
        parts.append(_table(imp, left=("feature",)))
        if "reasons_importance.png" in art:
            parts.append('<div class="plots">' + _img(art["reasons_importance.png"], "feature importance") + "</div>")
        if "reasons_examples.csv" in art:
            ex = pd.read_csv(io.BytesIO(art["reasons_examples.csv"]))
            parts.append("<h3>Example rows of the test period and their top reasons</h3>")
            keep = [c for c in ex.columns if not c.endswith("_contribution")]
            parts.append(_table(ex[keep], left=tuple(c for c in keep if c != "score")))
    elif "feature_importance.csv" in art:
        imp = pd.read_csv(io.BytesIO(art["feature_importance.csv"])).head(20)
        parts.append('<p class="note">model-native importance (this champion was trained before reasons)</p>')
        parts.append(_table(imp, left=("feature",)))
        if "feature_importance.png" in art:
            parts.append('<div class="plots">' + _img(art["feature_importance.png"], "feature importance") + "</div>")
    else:
        parts.append('<p class="note">no feature importance logged for the champion</p>')

    # 3b. the action list and whether it is worth following
    if actions_head is not None or evaluation is not None:
        parts.append("<h2>Action list and whether it is worth following</h2>")
        if actions_head is not None:
            parts.append(
                _table(
                    _action_table(actions_head),
                    left=("seller_id", "order_id", "segment", "carrier_status", "reason_1", "reason_2"),
                )
            )
        if evaluation is not None:
            metric = evaluation["metric"].iloc[0]
            dates = ", ".join(sorted({str(pd.Timestamp(x).date()) for x in evaluation["dt_ref"]}))
            parts.append(
                f"<p>Measured on the test period ({_e(dates)}) by <code>{_e(evaluation['command'].iloc[0])}</code>: "
                f"{_e(metric)}, mean over the dates, by ranking (nothing was chosen on these numbers).</p>"
            )
            parts.append(_table(_evaluation_table(evaluation), left=("ranking",)))

    # 4. segments
    if problem.kind == "cluster":
        parts.append("<h2>Segment profiles (latest scored population)</h2>")
        if isinstance(profiles, str):
            parts.append(f'<p class="note">{_e(profiles)}</p>')
        else:
            parts.append(_table(profiles))
    # 5. drift / performance
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
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>olist-ml report: '
        f"{_e(problem.name)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
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
