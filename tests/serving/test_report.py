"""`olist-ml report`: a self-contained HTML file whose plots render in headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from datetime import date

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
    text = out.read_text()
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
    # both candidates appear, the champion version is marked; the drifted feature is flagged
    assert "logreg" in text and "random_forest" in text
    assert 'class="champion"' in text
    assert re.search(r'<tr class="flag"><td class="l">x2</td>', text)


def test_segment_profiles_for_a_clustering_problem(trained, tmp_path):
    from olist_ml.serving.report import report

    s, _, seg = trained
    text = report(seg, s, out=tmp_path / "seg.html").read_text()
    assert "Segment profiles" in text
    m = re.search(r"Segment profiles.*?<table>(.*?)</table>", text, re.S)
    assert m, "no segment table"
    rows = re.findall(r"<tr class=\"\">(.*?)</tr>", m.group(1))
    assert len(rows) >= 2  # the two separated groups are at least two segments
    assert "gmv_180d" in m.group(1) and "n_orders_180d" in m.group(1)
    assert 'alt="clusters"' in text


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
        "var p=document.createElement('pre');p.id='img-probe';p.textContent=r.join(';');"
        "document.body.appendChild(p);});</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text().replace("</body>", probe + "</body>"))
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probed.as_uri()],
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
