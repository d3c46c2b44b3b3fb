"""The dialect macros of the shared SQL (`olist_ml.features.render.expand_macros`): each spelled for each
engine, nested calls and string literals handled; the order-delay SQL rendered for Spark keeps no DuckDB-only
spelling (its parity with DuckDB: tests/spark/test_order_delay_spark.py, the macros' meaning on both engines:
tests/spark/test_dialect_spark.py)."""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import pytest

from olist_ml.features.render import expand_macros
from olist_ml.problems import order_delay as od


@pytest.mark.parametrize(
    ("macro", "duckdb_sql", "spark_sql"),
    [
        ("ISODOW(d)", "isodow(d)", "extract(DAYOFWEEK_ISO FROM d)"),
        ("EPOCH(ts)", "epoch(ts)", "(unix_micros(CAST(ts AS TIMESTAMP_LTZ)) / 1e6)"),
        ("ARG_MAX(v, k)", "arg_max(v, k)", "max_by(v, k)"),
        (
            "DATE_SERIES(a, b, INTERVAL 1 DAY)",
            "CAST(unnest(generate_series(a, b, INTERVAL 1 DAY)) AS DATE)",
            "explode(sequence(CAST(a AS DATE), CAST(b AS DATE), INTERVAL 1 DAY))",
        ),
        ("SPLIT_ROWS('a,b', ',')", "unnest(string_split('a,b', ','))", "explode(split('a,b', ','))"),
        ("STAR_EXCLUDE(t, x, y)", "t.* EXCLUDE (x, y)", "t.* EXCEPT (x, y)"),
    ],
)
def test_each_macro_has_a_spelling_per_engine(macro: str, duckdb_sql: str, spark_sql: str) -> None:
    assert expand_macros(f"SELECT {macro} FROM t", "duckdb") == f"SELECT {duckdb_sql} FROM t"
    assert expand_macros(f"SELECT {macro} FROM t", "spark") == f"SELECT {spark_sql} FROM t"


def test_nested_calls_and_string_literals() -> None:
    # a comma and a parenthesis inside a literal are text, '' is an escaped quote, calls nest
    sql = "SELECT ARG_MAX(DATEDIFF_DAYS(a, 'x,)'), ISODOW(b)), SPLIT_ROWS('it''s,(a)', ',') FROM t"
    assert expand_macros(sql, "spark") == (
        "SELECT max_by(datediff(CAST('x,)' AS DATE), CAST(a AS DATE)), extract(DAYOFWEEK_ISO FROM b)), "
        "explode(split('it''s,(a)', ',')) FROM t"
    )
    # an upper-case word that is no macro is left alone, and so is text after the last macro
    assert expand_macros("SELECT COUNT(x), ISODOW(d) FROM t WHERE UPPER(s) = 'A'", "duckdb") == (
        "SELECT COUNT(x), isodow(d) FROM t WHERE UPPER(s) = 'A'"
    )


def test_duckdb_spellings_run_on_duckdb() -> None:
    con = duckdb.connect()
    q = expand_macros(
        "SELECT ISODOW(DATE '2018-01-01'), EPOCH(TIMESTAMP '1970-01-02 00:00:01'), "
        "(SELECT ARG_MAX(v, k) FROM (VALUES ('a', 1), ('b', 3), ('c', 2)) t(v, k)), "
        "(SELECT count(*) FROM (SELECT DATE_SERIES(DATE '2018-01-30', DATE '2018-02-02', INTERVAL 1 DAY) AS d)), "
        "(SELECT count(*) FROM (SELECT SPLIT_ROWS('a,b,c', ',') AS x))",
        "duckdb",
    )
    assert con.execute(q).fetchall() == [(1, 86401.0, "b", 4, 3)]


def test_order_delay_sql_for_spark_keeps_no_duckdb_spelling() -> None:
    q = od.abt_query(dt.date(2018, 9, 1), 6, engine="spark")
    s = od.scoring_query(dt.date(2018, 9, 1), engine="spark")
    text = "\n".join([sql for _, sql in q.temps + s.temps] + [q.sql, s.sql])
    for pat in (
        r"\bdate_diff\(",
        r"\bquantile_cont\(",
        r"\bisodow\(",
        r"\bepoch\(",
        r"\barg_max\(",
        r"\bunnest\(",
        r"\bgenerate_series\(",
        r"\bstring_split\(",
        r"\bEXCLUDE\b",
        r"\bVARCHAR\b",
    ):
        assert not re.search(pat, text), pat
    from olist_ml.features.render import _MACROS

    assert not re.search(r"\b(" + "|".join(_MACROS["spark"]) + r")\(", text)  # every macro expanded
    assert "percentile(" in text and "max_by(" in text and "EXCEPT (" in text
    # the DuckDB text of the same plan keeps DuckDB's spellings
    d = od.abt_query(dt.date(2018, 9, 1), 6)
    assert "quantile_cont(" in d.sql and "arg_max(" in d.temps[0][1] and "EXCLUDE (" in d.temps[1][1]
