"""Each dialect macro of the shared SQL means the same on DuckDB and on Spark: the same query text, expanded for
each engine, over the same small fixture, gives the same rows (STACK.md: a parity test that runs every query on
both engines over a fixture catches the dialects' silent differences)."""

from __future__ import annotations

import duckdb
import pytest

from olist_ml.features.render import expand_macros
from support.frames import assert_same
from support.spark import session

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")

FIXTURE = """(VALUES
    (1, TIMESTAMP '2018-01-01 08:00:00', TIMESTAMP '2018-01-03 20:30:00', DATE '2018-01-28', 2.0, 'a'),
    (2, TIMESTAMP '2018-02-04 23:59:59', TIMESTAMP '2018-02-04 23:59:59', DATE '2018-02-28', 5.0, 'b'),
    (3, TIMESTAMP '2018-03-05 00:00:00', NULL, NULL, 3.0, 'b'),
    (4, TIMESTAMP '2018-12-31 12:00:00', TIMESTAMP '2019-01-01 00:00:01', DATE '2019-01-02', 7.5, 'c')
) AS t(i, ts, ts2, d, v, k)"""

QUERIES = {
    "day numbers": "SELECT i, DAYNUM(ts) AS n, DATEDIFF_DAYS(ts, ts2) AS dd, ISODOW(ts) AS dow, ISODOW(d) AS dow_d "
    "FROM {t}",
    "epoch": "SELECT i, EPOCH(ts) AS e, (EPOCH(ts2) - EPOCH(ts)) / 3600.0 AS hours FROM {t}",
    "aggregates": "SELECT k, ARG_MAX(i, v) AS top, QUANTILE_CONT(v, 0.9) AS p90, QUANTILE_CONT(v, 0.5) AS p50, "
    "count(*) AS n FROM {t} GROUP BY ALL",
    "date series": "SELECT i, DATE_SERIES(CAST(ts AS DATE), d, INTERVAL 7 DAY) AS day FROM {t} "
    "WHERE d >= CAST(ts AS DATE)",
    "month series": "SELECT DATE_SERIES(date_trunc('month', min(ts)), max(d), INTERVAL 1 MONTH) AS m FROM {t}",
    "split rows": "SELECT CAST(split_part(x, ':', 2) AS DATE) AS day, split_part(x, ':', 1) AS state "
    "FROM (SELECT SPLIT_ROWS(':2018-01-01,SP:2018-01-25,RJ:2018-03-01', ',') AS x) s",
    "star exclude": "SELECT STAR_EXCLUDE(t, ts, ts2, d) FROM {t}",
    "qualify": "SELECT k, i FROM {t} QUALIFY row_number() OVER (PARTITION BY k ORDER BY v DESC, i) = 1",
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_macro_means_the_same_on_both_engines(name: str) -> None:
    spark = session()
    sql = QUERIES[name].replace("{t}", FIXTURE)
    duck = duckdb.connect().execute(expand_macros(sql, "duckdb")).df()
    sp = spark.sql(expand_macros(sql, "spark")).toPandas()
    assert len(duck) > 0, name
    assert_same(duck, sp, list(duck.columns), name, tol=1e-9)
