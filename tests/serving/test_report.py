"""`olist-ml report`: a self-contained HTML file whose plots render in headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import duckdb
import pytest

from support.serving_world import REFS, fixture_problem, segments_problem

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--virtual-time-budget=10000",
]
ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = 1280


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Binary + clustering problems trained, scored and monitored with the real machinery."""
    from olist_ml.config import Settings
    from olist_ml.ml.scoring import predict
    from olist_ml.ml.train import train
    from olist_ml.serving.monitor import monitor

    s = Settings(home=tmp_path_factory.mktemp("report") / "home")
    s.home.mkdir(parents=True)
    duckdb.connect(str(s.warehouse)).close()
    binary = fixture_problem()
    train(binary, s, n_trials=0, candidates=["logreg", "random_forest"], cv_folds=2)
    predict(binary, s, as_of=date(2017, 12, 1))
    predict(binary, s, as_of=REFS[-1])
    monitor(binary, s, log_to_mlflow=False)
    seg = segments_problem()
    train(seg, s, n_trials=0, candidates=["kmeans"], cv_folds=2)
    predict(seg, s)
    # an action list of the binary problem, in the shape `olist-ml actions churn` writes
    with duckdb.connect(str(s.warehouse)) as con:
        con.execute(
            "CREATE TABLE actions_monitor_fixture AS SELECT DATE '2018-01-01' AS dt_ref, rank, "
            "md5(CAST(rank AS VARCHAR)) AS seller_id, 0.9 - rank / 100 AS p_churn, "
            "'1' AS model_version, 1000.0 / rank AS expected_gmv, (0.9 - rank / 100) * 1000.0 / rank AS value_at_risk, "
            "'segment a' AS segment, "
            "'no sale for 38 days; sellers median 6 days' AS reason_1, 'x1 2.5; sellers median 0.1' AS reason_2 "
            "FROM range(1, 31) t(rank)"
        )
    return s, binary, seg


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def test_report_is_self_contained_with_every_section(trained, tmp_path):
    from olist_ml.serving.report import report

    s, binary, _ = trained
    out = report(binary, s, out=tmp_path / "r.html")
    text = out.read_text().replace("<wbr>", "")  # headers may break after "_": the text a person reads
    assert not re.search(r"(?:src|href)\s*=\s*[\"'](?!data:)", text), "external reference in the report"
    assert "http://" not in text and "https://" not in text and "<script" not in text
    for section in (
        "Champion vs challengers",
        "Evaluation of the champion",
        "Top features",
        "Drift",
        "Realised performance",
    ):
        assert section in text, section
    imgs = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', text)
    alts = [a for a, _ in imgs]
    for plot in ("roc", "pr", "lift", "calibration", "feature importance", "drift", "realised performance"):
        assert plot in alts, plot
    for _, b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    # the first screen: realised performance and the action list come before everything else
    first = text.index("Champion vs challengers")
    assert 0 < text.index("Realised performance of past scores") < first
    assert 0 < text.index("Action list") < first and text.index("no sale for 38 days") < first
    # features by their own names: the model's inputs, never the transformed columns (f193)
    top = re.search(r"<h2>Top features</h2>(.*?)</table>", text, re.S).group(1)
    assert set(re.findall(r'<td class="l">([^<]*)</td>', top)) == {"x1", "x2", "state"}  # not state_SP, f3
    assert "mean_abs_contribution" in top
    assert "Example rows of the test period" in text
    # both candidates appear, the champion version is marked; the drifted feature is flagged
    assert "logreg" in text and "random_forest" in text
    assert 'class="champion"' in text
    assert re.search(r'<tr class="flag"><td class="l">x2</td>', text)


def test_segment_profiles_for_a_clustering_problem(trained, tmp_path):
    from olist_ml.serving.report import report

    s, _, seg = trained
    text = report(seg, s, out=tmp_path / "seg.html").read_text().replace("<wbr>", "")
    assert "Segment profiles" in text
    m = re.search(r"Segment profiles.*?<table>(.*?)</table>", text, re.S)
    assert m, "no segment table"
    rows = re.findall(r"<tr class=\"\">(.*?)</tr>", m.group(1))
    assert len(rows) >= 2  # the two separated groups are at least two segments
    assert "gmv_180d" in m.group(1) and "n_orders_180d" in m.group(1)
    assert 'alt="clusters"' in text


def test_descriptions_show_the_settings_values():
    from olist_ml.config import Settings
    from olist_ml.problems import get
    from olist_ml.serving.report import describe

    text = describe(get("churn").description, Settings().with_(churn__horizon_days=30))
    assert "churn.horizon_days days" not in text and '<abbr title="churn.horizon_days">30</abbr> days' in text


def test_realised_performance_reads_the_daily_jobs_table():
    """monitor_performance as the daily job writes it: one row per (problem, dt_ref, model_version), the
    latest computed_at of each shown."""
    from olist_ml.serving.report import performance_rows

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE monitor_performance (problem VARCHAR, dt_ref DATE, model_version VARCHAR, n_scored BIGINT, "
        "n BIGINT, n_positive BIGINT, base_rate DOUBLE, roc_auc DOUBLE, roc_auc_ci_low DOUBLE, roc_auc_ci_high "
        "DOUBLE, baseline VARCHAR, baseline_roc_auc DOUBLE, below_gate BOOLEAN, computed_at TIMESTAMP)"
    )
    con.execute(
        "INSERT INTO monitor_performance VALUES "
        "('p', '2018-01-01', '1', 100, 90, 30, 0.33, 0.70, 0.6, 0.8, 'recency', 0.65, false, '2018-03-01'), "
        "('p', '2018-01-01', '1', 100, 95, 31, 0.33, 0.72, 0.62, 0.81, 'recency', 0.66, false, '2018-03-02'), "
        "('p', '2018-02-01', '1', 100, 80, 20, 0.25, 0.68, 0.55, 0.79, 'recency', 0.7, true, '2018-03-02'), "
        "('q', '2018-02-01', '1', 1, 1, 1, 1, 0.1, 0.1, 0.1, 'x', 0.1, true, '2018-03-02')"
    )
    df = performance_rows(con, "p")
    assert list(df["roc_auc"]) == [0.72, 0.68] and list(df["n"]) == [95, 80]
    assert "below_gate" in df.columns and "computed_at" not in df.columns


def test_plot_titles_fit_their_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from olist_ml.ml.metrics import fit_titles, titles_inside

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.set_title("Precision-recall - seller_churn / hazard_glm (test 2018-05-01..2018-07-01)")
    assert not titles_inside(fig)  # what the report showed: "ision-recall"
    fit_titles(fig)
    assert titles_inside(fig) and "Precision-recall" in ax.title.get_text()
    plt.close(fig)


@pytest.mark.browser
def test_report_plots_render_in_headless_chromium(trained, tmp_path):
    from olist_ml.serving.report import report

    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed on CI: run scripts/install-browser.sh")
        pytest.skip("chromium not installed (scripts/install-browser.sh installs it)")
    s, binary, _ = trained
    out = report(binary, s, out=tmp_path / "r.html")
    # a copy of the report with a probe that writes every image's natural size into the DOM
    probe = (
        "<script>window.addEventListener('load',function(){var r=[];"
        "document.querySelectorAll('img').forEach(function(i){r.push(i.alt+'='+i.naturalWidth+'x'+i.naturalHeight)});"
        "var w=[];document.querySelectorAll('img,table,h1,h2,h3,p').forEach(function(e){"
        "var b=e.getBoundingClientRect();"
        "if(b.right>window.innerWidth+0.5){w.push(e.tagName+':'+Math.round(b.right))}});"
        "var p=document.createElement('pre');p.id='img-probe';p.textContent=r.join(';');"
        "var q=document.createElement('pre');q.id='width-probe';q.textContent=document.documentElement.scrollWidth+"
        "'/'+window.innerWidth+'|'+w.join(',');document.body.appendChild(p);document.body.appendChild(q);});</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text().replace("</body>", probe + "</body>"))
    size = f"--window-size={VIEWPORT},900"
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, size, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r'<pre id="img-probe">(.*?)</pre>', proc.stdout)
    assert m, f"chromium produced no probe (rc={proc.returncode}): {proc.stderr[-1500:]}"
    sizes = dict(item.split("=") for item in m.group(1).split(";") if item)
    n_imgs = out.read_text().count("<img ")
    assert len(sizes) == n_imgs >= 7
    for alt, wh in sizes.items():
        w, h = (int(x) for x in wh.split("x"))
        assert w > 0 and h > 0, f"image {alt} did not render ({wh})"
    # no horizontal scroll at 1280 px: the page is as wide as the window, nothing sticks out
    widths = re.search(r'<pre id="width-probe">(.*?)</pre>', proc.stdout).group(1)
    page, over = widths.split("|")
    scroll, inner = (int(x) for x in page.split("/"))
    assert inner == VIEWPORT and scroll <= inner and not over, widths
    # a screenshot of the first screen, kept as a CI artefact
    shots = Path(os.environ.get("OLIST_ML_ARTIFACTS") or ROOT / ".artifacts")
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "report_1280.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            size,
            f"--user-data-dir={tmp_path / 'profile2'}",
            f"--screenshot={shot}",
            out.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
