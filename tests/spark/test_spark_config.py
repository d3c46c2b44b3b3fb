"""The Spark engine's lake location is a URI handed through untouched (no PySpark needed here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from olist_ml.config import Settings, is_uri


@pytest.mark.parametrize(
    "uri",
    [
        "s3a://bucket/x",
        "s3://bucket/fs",
        "abfss://c@acct.dfs.core.windows.net/olist",
        "dbfs:/olist/lake",
        "hdfs://nn:8020/olist",
        "file:///data/lake",
        "gs://b/p",
    ],
)
def test_lake_uri_is_passed_through_untouched(uri: str, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OLIST_ML_LAKE", uri)
    s = Settings.from_env()
    assert s.lake_uri == uri
    assert isinstance(s.spark_dir, str)
    assert not any(tmp_path.iterdir())  # nothing local was created for it


def test_legacy_spark_dir_variable_and_trailing_slash(monkeypatch) -> None:
    monkeypatch.setenv("OLIST_ML_SPARK_DIR", "s3a://bucket/fs/")
    assert Settings.from_env().lake_uri == "s3a://bucket/fs"
    monkeypatch.setenv("OLIST_ML_LAKE", "s3a://other/x")  # the new name wins
    assert Settings.from_env().lake_uri == "s3a://other/x"


def test_local_lake_is_a_file_uri(tmp_path: Path) -> None:
    assert Settings(home=tmp_path / "h").lake_uri == (tmp_path / "h" / "lake").absolute().as_uri()
    assert Settings(spark_dir=str(tmp_path / "l")).lake_uri == (tmp_path / "l").absolute().as_uri()
    rel = Settings(spark_dir="rel/lake").lake_uri
    assert rel == (Path(os.getcwd()) / "rel" / "lake").as_uri()
    assert not is_uri("C:/lake") and is_uri("s3a://b") and not is_uri("relative/path")


def test_engine_and_spark_settings_from_env(monkeypatch) -> None:
    monkeypatch.setenv("OLIST_ML_ENGINE", " Spark ")
    monkeypatch.setenv("OLIST_ML_SPARK_MASTER", "local-cluster[2,1,1024]")
    monkeypatch.setenv("OLIST_ML_SPARK_TRAIN_MAX_ROWS", "1000")
    monkeypatch.setenv("OLIST_ML_SPARK_CONF", "spark.hadoop.fs.s3a.endpoint=http://minio:9000,spark.executor.memory=4g")
    s = Settings.from_env()
    assert s.engine == "spark" and s.spark_master == "local-cluster[2,1,1024]" and s.spark_train_max_rows == 1000
    assert s.spark_conf == ("spark.hadoop.fs.s3a.endpoint=http://minio:9000", "spark.executor.memory=4g")


def test_cli_rejects_an_unknown_engine(tmp_path: Path, capsys) -> None:
    from olist_ml.cli import main

    rc = main(["--home", str(tmp_path / "h"), "--engine", "flink", "features", "list"])
    assert rc == 2
    assert "unknown engine 'flink'" in capsys.readouterr().err


def test_spark_engine_without_pyspark_is_one_line_saying_how_to_install(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    from olist_ml.cli import main

    monkeypatch.setitem(sys.modules, "pyspark", None)  # as if the `spark` extra were not installed
    rc = main(["--home", str(tmp_path / "h"), "--engine", "spark", "run", "-p", "churn"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: the spark engine needs PySpark") and "olist-ml[spark]" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "h" / "synthetic").exists()  # stopped before generating anything
