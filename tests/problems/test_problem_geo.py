"""Zip prefix -> coordinates (median, fallbacks) and haversine distance."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest

from olist_ml import geo


def test_haversine_known_distances():
    # Sao Paulo (Se) -> Rio de Janeiro (Centro): about 360 km great-circle
    d = geo.haversine_km(-23.5505, -46.6333, -22.9068, -43.1729)
    assert 355 < d < 365
    assert geo.haversine_km(-10.0, -50.0, -10.0, -50.0) == pytest.approx(0.0, abs=1e-9)
    # one degree of latitude is ~111.2 km anywhere
    assert geo.haversine_km(0, 0, 1, 0) == pytest.approx(111.195, rel=1e-3)
    # symmetric, arrays, NaN propagates
    a = geo.haversine_km(np.array([0.0, 1.0, np.nan]), 0.0, np.array([1.0, 0.0, 0.0]), 0.0)
    assert a[0] == pytest.approx(a[1]) and math.isnan(a[2])
    # antipodes: half the circumference
    assert geo.haversine_km(0, 0, 0, 180) == pytest.approx(math.pi * geo.EARTH_RADIUS_KM, rel=1e-9)


def test_haversine_sql_matches_numpy():
    con = duckdb.connect()
    rng = np.random.default_rng(0)
    pts = rng.uniform([-33, -73, -33, -73], [5, -35, 5, -35], size=(50, 4))
    con.execute("CREATE TABLE p(a DOUBLE, b DOUBLE, c DOUBLE, d DOUBLE)")
    con.executemany("INSERT INTO p VALUES (?, ?, ?, ?)", pts.tolist())
    got = np.array([r[0] for r in con.execute(f"SELECT {geo.haversine_sql('a', 'b', 'c', 'd')} FROM p").fetchall()])
    np.testing.assert_allclose(got, geo.haversine_km(pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 3]), rtol=1e-9)
    assert con.execute(f"SELECT {geo.haversine_sql('NULL', '1', '2', '3')}").fetchall()[0][0] is None


@pytest.fixture
def geo_con():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE stg_geolocation(geolocation_zip_code_prefix VARCHAR, geolocation_lat DOUBLE, "
        "geolocation_lng DOUBLE, geolocation_city VARCHAR, geolocation_state VARCHAR)"
    )
    rows = [
        # prefix 01037: three points + one stray point in Europe (outside Brazil: ignored)
        ("01037", -23.0, -46.0, "sp", "SP"),
        ("01037", -23.2, -46.2, "sp", "SP"),
        ("01037", -23.1, -46.9, "sp", "SP"),
        ("01037", 48.8, 2.3, "sp", "SP"),
        # prefix 01050 shares the 3-digit region 010 with 01037
        ("01050", -23.3, -46.3, "sp", "SP"),
        # a different region in RJ
        ("20000", -22.9, -43.2, "rio", "RJ"),
        ("20001", -22.7, -43.0, "rio", "RJ"),
    ]
    con.executemany("INSERT INTO stg_geolocation VALUES (?, ?, ?, ?, ?)", rows)
    con.execute(
        "CREATE TABLE stg_sellers(seller_id VARCHAR, seller_zip_code_prefix VARCHAR, seller_city VARCHAR, "
        "seller_state VARCHAR)"
    )
    con.executemany(
        "INSERT INTO stg_sellers VALUES (?, ?, ?, ?)",
        [("s1", "01037", "", "SP"), ("s2", "1099", "", "SP"), ("s3", "55555", "", "RJ"), ("s4", "77777", "", "XX")],
    )
    con.execute(
        "CREATE TABLE stg_customers(customer_id VARCHAR, customer_unique_id VARCHAR, customer_zip_code_prefix VARCHAR, "
        "customer_city VARCHAR, customer_state VARCHAR)"
    )
    con.execute("INSERT INTO stg_customers VALUES ('c1', 'u1', '20000', 'rio', 'rj')")
    return con


def test_zip_coordinates_median_and_fallbacks(geo_con):
    n = geo.build_zip_coordinates(geo_con)
    assert n == 5
    got = {
        (z, s): (lat, lng, lvl)
        for z, s, lat, lng, lvl in geo_con.execute("SELECT * FROM geo_zip_coordinates").fetchall()
    }
    # exact prefix: median of the 3 in-Brazil points (the Paris point is dropped)
    lat, lng, lvl = got[("01037", "SP")]
    assert lvl == "zip5" and lat == pytest.approx(-23.1) and lng == pytest.approx(-46.2)
    # "1099" is padded to 01099: no points, falls back to region 010 (4 points: 3 of 01037 + 01050)
    lat, lng, lvl = got[("01099", "SP")]
    assert lvl == "zip3" and lat == pytest.approx(np.median([-23.0, -23.2, -23.1, -23.3]))
    # unknown region 555 in RJ: state median
    lat, lng, lvl = got[("55555", "RJ")]
    assert lvl == "state" and lat == pytest.approx(-22.8) and lng == pytest.approx(-43.1)
    # unknown region, unknown state: NULL
    assert got[("77777", "XX")] == (None, None, "none")
    # customer state is upper-cased
    assert got[("20000", "RJ")][2] == "zip5"
    # keys are unique
    assert geo_con.execute(
        "SELECT count(*) = count(DISTINCT (zip_code_prefix, state)) FROM geo_zip_coordinates"
    ).fetchall()[0][0]


def test_locate_matches_table(geo_con):
    geo.build_zip_coordinates(geo_con)
    for z, s, lat, lng, lvl in geo_con.execute("SELECT * FROM geo_zip_coordinates").fetchall():
        l_lat, l_lng, l_lvl = geo.locate(geo_con, z, s)
        assert l_lvl == lvl
        if lat is not None:
            assert l_lat == pytest.approx(lat) and l_lng == pytest.approx(lng)


def test_no_geolocation_table_gives_nulls(geo_con):
    geo_con.execute("DROP TABLE stg_geolocation")
    geo.build_zip_coordinates(geo_con)
    assert geo_con.execute("SELECT DISTINCT geo_level, lat FROM geo_zip_coordinates").fetchall() == [("none", None)]
    assert geo.locate(geo_con, "01037", "SP") == (None, None, "none")
