"""Zip-code prefix -> coordinates, and great-circle (haversine) distances.

The Olist geolocation table has many points per 5-digit zip prefix (one per address sample,
with a few stray points outside Brazil). A prefix is placed at the **median** latitude and
longitude of its points that fall inside Brazil's bounding box (the median shrugs off the
remaining outliers). A prefix that is not in the geolocation table falls back, in order, to:

1. ``zip5``  : the median of the prefix's own points;
2. ``zip3``  : the median of every point whose prefix shares the first 3 digits (a region
               of a few hundred km² in the Brazilian CEP scheme);
3. ``state`` : the median of every point in the given state (a coarse centroid);
4. ``none``  : NULL coordinates (no geolocation table ingested, or an unknown state).

`build_zip_coordinates` resolves every (zip prefix, state) pair used by customers and sellers
into table ``geo_zip_coordinates(zip_code_prefix, state, lat, lng, geo_level)`` in one
set-based query, so ABT SQL joins it once. Zip prefixes are compared as 5-character strings
(left-padded with zeros: ``1037`` and ``01037`` are the same prefix).
"""

from __future__ import annotations

import duckdb
import numpy as np

from .warehouse import replace_table_atomically, table_exists

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)

# Brazil's extreme points are about lat -33.75..5.27, lng -73.99..-34.79; a small margin.
BRAZIL_BOX = {"lat_min": -34.0, "lat_max": 5.5, "lng_min": -74.5, "lng_max": -34.5}

GEO_TABLE = "geo_zip_coordinates"
GEO_LEVELS = ("zip5", "zip3", "state", "none")


def normalise_zip_sql(expr: str) -> str:
    """SQL expression: a zip prefix as a 5-character zero-padded string."""
    return f"lpad(trim(CAST({expr} AS STRING)), 5, '0')"


def haversine_km(lat1, lng1, lat2, lng2, radius_km: float = EARTH_RADIUS_KM):
    """Great-circle distance in km between points in degrees (scalars or arrays; NaN propagates).
    `radius_km`: the synthetic generator keeps the 6371 km its seeded data were drawn with."""
    lat1, lng1, lat2, lng2 = (np.radians(np.asarray(x, dtype=float)) for x in (lat1, lng1, lat2, lng2))
    a = np.sin((lat2 - lat1) / 2.0) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lng2 - lng1) / 2.0) ** 2
    d = 2.0 * radius_km * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(d) if np.ndim(d) == 0 else d


def haversine_sql(lat1: str, lng1: str, lat2: str, lng2: str) -> str:
    """The same distance as a SQL expression (DuckDB and Spark both have these functions).

    NULL in, NULL out (`2 atan2(sqrt(a), sqrt(1 - a))` is `2 asin(sqrt(a))`; `greatest(0, 1 - a)` guards
    rounding at antipodes, and a NULL `a` keeps `sqrt(a)` NULL although `greatest` skips NULLs).
    """
    a = (
        f"(power(sin(radians({lat2} - {lat1}) / 2), 2) + "
        f"cos(radians({lat1})) * cos(radians({lat2})) * power(sin(radians({lng2} - {lng1}) / 2), 2))"
    )
    return f"(2 * {EARTH_RADIUS_KM} * atan2(sqrt({a}), sqrt(greatest(0.0, 1 - {a}))))"


def _points_sql() -> str:
    b = BRAZIL_BOX
    return f"""
        SELECT {normalise_zip_sql("geolocation_zip_code_prefix")} AS zip5,
               upper(trim(geolocation_state)) AS state,
               geolocation_lat AS lat, geolocation_lng AS lng
        FROM stg_geolocation
        WHERE geolocation_lat BETWEEN {b["lat_min"]} AND {b["lat_max"]}
          AND geolocation_lng BETWEEN {b["lng_min"]} AND {b["lng_max"]}
    """


def _wanted_sql(has_table) -> str:
    parts = []
    if has_table("stg_customers"):
        parts.append(
            f"SELECT {normalise_zip_sql('customer_zip_code_prefix')} AS zip_code_prefix, "
            "upper(trim(customer_state)) AS state FROM stg_customers"
        )
    if has_table("stg_sellers"):
        parts.append(
            f"SELECT {normalise_zip_sql('seller_zip_code_prefix')} AS zip_code_prefix, "
            "upper(trim(seller_state)) AS state FROM stg_sellers"
        )
    if not parts:
        parts.append("SELECT CAST(NULL AS STRING) AS zip_code_prefix, CAST(NULL AS STRING) AS state WHERE false")
    return " UNION ".join(parts)


def zip_coordinates_sql(con: duckdb.DuckDBPyConnection | None = None, *, has_table=None) -> str:
    """One SELECT resolving every customer/seller (zip prefix, state) to coordinates with fallbacks, in the
    SQL both engines run. `has_table(name) -> bool` says which stg tables exist (default: those of `con`;
    the Spark engine passes its temp views')."""
    has_table = has_table or (lambda name: table_exists(con, name))
    wanted = _wanted_sql(has_table)
    if not has_table("stg_geolocation"):
        return f"""
            SELECT zip_code_prefix, state, CAST(NULL AS DOUBLE) AS lat, CAST(NULL AS DOUBLE) AS lng,
                   'none' AS geo_level
            FROM ({wanted}) w
        """
    return f"""
        WITH pts AS ({_points_sql()}),
        z5 AS (SELECT zip5, median(lat) AS lat, median(lng) AS lng FROM pts GROUP BY zip5),
        z3 AS (SELECT substr(zip5, 1, 3) AS zip3, median(lat) AS lat, median(lng) AS lng FROM pts GROUP BY 1),
        st AS (SELECT state, median(lat) AS lat, median(lng) AS lng FROM pts WHERE state IS NOT NULL GROUP BY state),
        wanted AS (SELECT DISTINCT zip_code_prefix, state FROM ({wanted}) w)
        SELECT w.zip_code_prefix, w.state,
               coalesce(z5.lat, z3.lat, st.lat) AS lat,
               coalesce(z5.lng, z3.lng, st.lng) AS lng,
               CASE WHEN z5.lat IS NOT NULL THEN 'zip5'
                    WHEN z3.lat IS NOT NULL THEN 'zip3'
                    WHEN st.lat IS NOT NULL THEN 'state'
                    ELSE 'none' END AS geo_level
        FROM wanted w
        LEFT JOIN z5 ON z5.zip5 = w.zip_code_prefix
        LEFT JOIN z3 ON z3.zip3 = substr(w.zip_code_prefix, 1, 3)
        LEFT JOIN st ON st.state = w.state
    """


def build_zip_coordinates(con: duckdb.DuckDBPyConnection) -> int:
    """(Re)build `geo_zip_coordinates` atomically; returns its row count.

    Keyed by (zip_code_prefix, state) -- both normalised (5-char zero-padded zip, upper-case state).
    """
    return replace_table_atomically(con, GEO_TABLE, zip_coordinates_sql(con))


def locate(
    con: duckdb.DuckDBPyConnection, zip_code_prefix: str, state: str | None = None
) -> tuple[float | None, float | None, str]:
    """Coordinates of one zip prefix (and state, for the last fallback): (lat, lng, geo_level)."""
    if not table_exists(con, "stg_geolocation"):
        return None, None, "none"
    rows = con.execute(
        f"""
        WITH pts AS ({_points_sql()}),
        q AS (SELECT {normalise_zip_sql("?")} AS zip5, upper(trim(?)) AS state)
        SELECT
          (SELECT [median(lat), median(lng)] FROM pts, q WHERE pts.zip5 = q.zip5 HAVING count(*) > 0),
          (SELECT [median(lat), median(lng)] FROM pts, q
           WHERE substr(pts.zip5, 1, 3) = substr(q.zip5, 1, 3) HAVING count(*) > 0),
          (SELECT [median(lat), median(lng)] FROM pts, q WHERE pts.state = q.state HAVING count(*) > 0)
        """,
        [zip_code_prefix, state],
    ).fetchall()[0]
    for level, v in zip(GEO_LEVELS, rows, strict=False):
        if v is not None:
            return float(v[0]), float(v[1]), level
    return None, None, "none"
