"""Every failure is one clear line with an exit status a scheduler can use: environment faults,
options, the one-writer lock, `run`'s exit status, killed trainings."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from olist_ml.cli import main
from olist_ml.config import Settings
from olist_ml.ingest import ingest


@pytest.fixture(scope="module")
def synth_dir(synthetic_csvs) -> Path:
    return synthetic_csvs(5, 0.03)


@pytest.fixture(scope="module")
def built_home(synth_dir, tmp_path_factory) -> Settings:
    """A home with an ingested warehouse (read by several tests, never written)."""
    s = Settings(home=tmp_path_factory.mktemp("built") / "home")
    ingest(synth_dir, s)
    return s


def _one_line_error(capsys, rc: int, code: int = 2) -> str:
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ---- environment faults ------------------------------------------------------------------------
def test_home_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    line = _one_line_error(capsys, main(["--home", str(f), "summary"]))
    assert "is a file, not a folder" in line


def test_warehouse_that_is_a_folder_or_not_duckdb(built_home, synth_dir, tmp_path, capsys):
    line = _one_line_error(capsys, main(["--home", str(tmp_path / "h"), "--warehouse", str(tmp_path), "summary"]))
    assert "is a folder" in line
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(os.urandom(50_000))
    for args in (["summary"], ["features", "build"], ["ingest", str(synth_dir)]):
        line = _one_line_error(capsys, main(["--home", str(tmp_path / "h2"), "--warehouse", str(junk), *args]))
        assert "DuckDB" in line or "cannot be opened" in line, line


@pytest.fixture
def read_only_home(built_home, tmp_path):
    """A copy of a good home on a read-only file system (a bind mount as root, chmod otherwise)."""
    src = tmp_path / "src"
    subprocess.run(["cp", "-r", str(built_home.home), str(src)], check=True)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0:
        mnt.rmdir()
        src.rename(mnt)
        for p in [mnt, *mnt.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        yield mnt
        for p in [mnt, *mnt.rglob("*")]:
            p.chmod(0o755)
        return
    ok = (
        subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True).returncode == 0
        and subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True).returncode == 0
    )
    if not ok:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        pytest.skip("cannot make a read-only file system here (no bind mounts, running as root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.parametrize(
    "args",
    [
        ["features", "build"],
        ["train", "churn"],
        ["predict", "churn"],
        ["run"],
        ["monitor", "churn"],
        ["ingest", "SYNTH"],
        ["report", "churn"],
    ],
)
def test_read_only_home_is_one_line(read_only_home, synth_dir, args, capsys):
    args = [str(synth_dir) if a == "SYNTH" else a for a in args]
    rc = main(["--home", str(read_only_home), *args])
    line = _one_line_error(capsys, rc)
    assert "not writable" in line or "Read-only" in line or "read-only" in line, line


def test_disk_full_during_features_build_is_one_line_and_leaves_no_half_written_table(built_home, tmp_path):
    home = tmp_path / "h"
    subprocess.run(["cp", "-r", str(built_home.home), str(home)], check=True)
    wh = home / "warehouse.duckdb"
    limit = wh.stat().st_size + 64 * 1024  # room to open the file, not to write the feature store

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "olist_ml",
            "--home",
            str(home),
            "features",
            "build",
            "--no-progress",
            "--cadence",
            "weekly",
        ],
        capture_output=True,
        text=True,
        preexec_fn=cap,
    )
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "disk full" in lines[0], p.stderr[-2000:]
    with duckdb.connect(str(wh)) as con:  # every table is whole: the build log matches the rows
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        for t in (t for t in tables if t.startswith("fs_seller_")):
            have = con.execute(f"SELECT count(DISTINCT dt_ref) FROM {t}").fetchall()[0][0]
            logged = con.execute(
                "SELECT count(*) FROM fs_build_log WHERE table_name = ? AND n_rows > 0", [t]
            ).fetchall()[0][0]
            assert have == logged, t


# ---- options --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "churn", "--trials", "-5"], "--trials"),
        (["run", "--trials", "-1"], "--trials"),
        (["train", "churn", "--candidates", ""], "empty"),
        (["run", "--candidates", " , "], "empty"),
        (["promote", "churn", "--version", "1", "--reason", "x", "--alias", "bad alias!"], "letters, digits"),
        (["promote", "churn", "--version", "1", "--reason", "x", "--alias", "latest"], "letters, digits"),
    ],
)
def test_bad_options_exit_2_before_doing_anything(tmp_path, capsys, args, needle):
    home = tmp_path / "h"
    line = _one_line_error(capsys, main(["--home", str(home), *args]))
    assert needle in line, line
    assert not (home / "warehouse.duckdb").exists()


# ---- one writer per home ------------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from olist_ml.config import Settings
    from olist_ml.home import writer_lock
    from pathlib import Path
    with writer_lock(Settings(home=Path(sys.argv[1])), "holder-for-the-test"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _hold(home: Path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_writer_gets_one_line_naming_the_holder_and_readers_do_not_block(built_home, tmp_path, capsys):
    home = tmp_path / "h"
    subprocess.run(["cp", "-r", str(built_home.home), str(home)], check=True)
    holder = _hold(home, 60)
    try:
        for args in (["features", "build"], ["ingest", str(tmp_path)], ["run"], ["predict", "churn"]):
            line = _one_line_error(capsys, main(["--home", str(home), *args]))
            assert f"pid {holder.pid}" in line and "holder-for-the-test" in line and "--wait" in line, line
        t0 = time.perf_counter()
        assert main(["--home", str(home), "summary"]) == 0  # readers never take the lock
        assert main(["--home", str(home), "problems"]) == 0
        assert time.perf_counter() - t0 < 30
    finally:
        holder.kill()
        holder.wait()


def test_wait_waits_for_the_holder(built_home, tmp_path, capsys):
    home = tmp_path / "h"
    subprocess.run(["cp", "-r", str(built_home.home), str(home)], check=True)
    holder = _hold(home, 3)
    try:
        rc = main(["--home", str(home), "--wait", "features", "build", "--no-progress", "--cadence", "monthly"])
        err = capsys.readouterr().err
        assert rc == 0 and "waiting for pid" in err, err
        assert holder.poll() is not None  # it only ran once the holder had finished
    finally:
        holder.kill()
        holder.wait()


# ---- run's exit status ----------------------------------------------------------------------------
def test_run_exits_0_when_a_problem_has_nothing_to_learn_yet(synth_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OLIST_ML_ACTIVATION_HORIZON_DAYS", "5000")  # no deal's window closes inside the data
    rc = main(
        [
            "--home",
            str(tmp_path / "h"),
            "run",
            "--data",
            str(synth_dir),
            "-p",
            "activation",
            "--cadence",
            "monthly",
            "--trials",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "skipped" in out and "no labelled deals yet: the first 5000-day window" in out


def test_run_exits_1_when_a_step_fails(synth_dir, tmp_path, capsys):
    rc = main(
        [
            "--home",
            str(tmp_path / "h"),
            "run",
            "--data",
            str(synth_dir),
            "-p",
            "delay",
            "--cadence",
            "monthly",
            "--trials",
            "0",
            "--candidates",
            "hazard_glm",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1 and "failed" in out and "exposure column" in out, out
