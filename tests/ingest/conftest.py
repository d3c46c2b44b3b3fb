"""Fixtures of the ingest tests: an empty home, and a good warehouse a failed ingest must leave intact."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from olist_ml.config import Settings
from olist_ml.ingest import ingest
from support.raw_files import sha, write_source


@pytest.fixture
def wh(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def previous(tmp_path: Path, wh: Settings) -> str:
    """A good warehouse that every failed ingest must leave byte-for-byte intact."""
    ingest(write_source(tmp_path / "good"), wh)
    con = duckdb.connect(str(wh.warehouse))
    con.execute(
        "CREATE TABLE fs_seller_sales AS SELECT DATE '2017-06-01' AS dt_ref, 's1' AS seller_id, 3 AS n_orders_30d"
    )
    con.close()
    return sha(wh.warehouse)
