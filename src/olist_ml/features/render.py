"""Tiny template + dialect layer for the feature SQL (no third-party SQL translator needed).

The `.sql` files in this package are written in the subset of SQL that DuckDB 2 and Spark 4
both run. Two things cannot be written portably, so the files use a small template language:

* window blocks: lines between ``-- @for w in windows`` and ``-- @end`` are repeated once per
  feature window (``Settings.feature_windows``); inside a block ``{w}`` is the window in days
  and ``{w2}`` twice that. ``{windows}`` is a one-column VALUES table ``wn(w)`` of the windows. ``trend_windows`` are the windows whose previous window (``[dt_ref-2w,
  dt_ref-w)``) still fits in the longest window. ``{max_w}`` is the longest window anywhere;
* macros: ``DAYNUM(expr)`` = whole days from 1970-01-01 to the DATE of ``expr`` (DuckDB and
  Spark spell date differences differently and disagree on TIMESTAMP differences);
  ``EXPLODE_RANGE(a, b)`` in a select list = one output row per integer in [a, b) (the caller
  keeps only rows with a < b: Spark's ``sequence`` would count down otherwise).

A line ``-- @include NAME [k=v ...]`` is replaced by the file ``NAME.sql`` of this package,
with ``{k}`` replaced by ``v`` (the shared window-delta CTE lives in ``_window_deltas.sql``, the
explosion of day lines to dt_refs in ``_explode_to_dt_refs.sql``). A comma left dangling before ``FROM`` by the
last repeated line is removed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

ENGINES = ("duckdb", "spark")

_BLOCK = re.compile(r"^[ \t]*--[ \t]*@for[ \t]+(\w+)[ \t]+in[ \t]+(\w+)[ \t]*\n(.*?)^[ \t]*--[ \t]*@end[ \t]*\n", re.M | re.S)
_INCLUDE = re.compile(r"^[ \t]*--[ \t]*@include[ \t]+(\w+)((?:[ \t]+\w+=\S+)*)[ \t]*\n", re.M)
_DANGLING = re.compile(r",(\s*(?:--[^\n]*\n\s*)*)(FROM\b)")


@lru_cache(maxsize=None)
def read_sql(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


def _include(m: re.Match) -> str:
    """`-- @include NAME k=v ...` -> NAME.sql with every `{k}` replaced by v."""
    sql = read_sql(m.group(1))
    for kv in m.group(2).split():
        k, v = kv.split("=", 1)
        sql = sql.replace("{" + k + "}", v)
    return sql


def trend_windows(windows: tuple[int, ...]) -> tuple[int, ...]:
    m = max(windows)
    return tuple(w for w in windows if 2 * w <= m)


def _expand_blocks(sql: str, windows: tuple[int, ...]) -> str:
    lists = {"windows": windows, "trend_windows": trend_windows(windows)}

    def repl(m: re.Match) -> str:
        var, lst, body = m.group(1), m.group(2), m.group(3)
        if lst not in lists:
            raise ValueError(f"unknown template list {lst!r}")
        out = []
        for w in lists[lst]:
            out.append(body.replace("{" + var + "2}", str(2 * w)).replace("{" + var + "}", str(w)))
        return "".join(out)

    return _BLOCK.sub(repl, sql)


def _split_args(s: str, start: int) -> tuple[list[str], int]:
    """Arguments of a call whose '(' is at s[start]; returns (args, index after ')')."""
    depth, args, cur, i = 0, [], [], start
    while i < len(s):
        ch = s[i]
        if ch == "(":
            depth += 1
            if depth > 1:
                cur.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args, i + 1
            cur.append(ch)
        elif ch == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    raise ValueError("unbalanced parentheses in macro call")


# Macros of the portable SQL (feature files and the ABT SQL of olist_ml.problems):
#   DAYNUM(x)                 whole days from 1970-01-01 to the DATE of x
#   EXPLODE_RANGE(a, b)       one row per integer in [a, b) (select list; callers keep a < b)
#   DATEDIFF_DAYS(a, b)       whole days from DATE(a) to DATE(b) (both cast to DATE first: the engines
#                             count TIMESTAMP differences differently)
#   QUANTILE_CONT(x, q)       exact interpolated quantile (aggregate)
#   LIST_DESC(v, k, cond)     aggregate: the values v of the rows where cond holds, ordered by k
#                             descending (NULL on DuckDB / empty on Spark when no row: LIST_AT and
#                             LIST_AVG_FIRST give NULL for both)
#   LIST_AT(list, i)          1-based element, NULL past the end
#   LIST_AVG_FIRST(list, n)   mean of the first n elements (NULL when empty)
_MACROS = {
    "duckdb": {
        "DAYNUM": lambda a: f"CAST(date_diff('day', DATE '1970-01-01', CAST({a[0]} AS DATE)) AS INTEGER)",
        "EXPLODE_RANGE": lambda a: f"unnest(range({a[0]}, {a[1]}))",
        "DATEDIFF_DAYS": lambda a: f"date_diff('day', CAST({a[0]} AS DATE), CAST({a[1]} AS DATE))",
        "QUANTILE_CONT": lambda a: f"quantile_cont({a[0]}, {a[1]})",
        "LIST_DESC": lambda a: f"list({a[0]} ORDER BY {a[1]} DESC) FILTER (WHERE {a[2]})",
        "LIST_AT": lambda a: f"({a[0]})[{a[1]}]",
        "LIST_AVG_FIRST": lambda a: f"list_avg(({a[0]})[1:{a[1]}])",
    },
    "spark": {
        "DAYNUM": lambda a: f"datediff(CAST({a[0]} AS DATE), DATE '1970-01-01')",
        "EXPLODE_RANGE": lambda a: f"explode(sequence({a[0]}, ({a[1]}) - 1))",
        "DATEDIFF_DAYS": lambda a: f"datediff(CAST({a[1]} AS DATE), CAST({a[0]} AS DATE))",
        "QUANTILE_CONT": lambda a: f"percentile({a[0]}, {a[1]})",
        "LIST_DESC": lambda a: (f"transform(sort_array(collect_list(struct({a[1]} AS k, {a[0]} AS v)) "
                                f"FILTER (WHERE {a[2]}), false), x -> x.v)"),
        "LIST_AT": lambda a: f"try_element_at({a[0]}, {a[1]})",
        "LIST_AVG_FIRST": lambda a: (f"aggregate(slice({a[0]}, 1, {a[1]}), CAST(0 AS DOUBLE), (acc, x) -> acc + x) "
                                     f"/ NULLIF(size(slice({a[0]}, 1, {a[1]})), 0)"),
    },
}


def expand_macros(sql: str, engine: str) -> str:
    """Expand the macros above for `engine` (nested calls included)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    macros = _MACROS[engine]
    pat = re.compile(r"\b(" + "|".join(macros) + r")\s*\(")
    while True:
        m = pat.search(sql)
        if not m:
            return sql
        args, end = _split_args(sql, m.end() - 1)
        args = [expand_macros(a, engine) for a in args]
        sql = sql[: m.start()] + macros[m.group(1)](args) + sql[end:]


def render(name: str, windows: tuple[int, ...], engine: str = "duckdb") -> str:
    """The SQL of one feature file (or the `_events` prelude) for the given windows and engine."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    windows = tuple(sorted(set(int(w) for w in windows)))
    sql = _INCLUDE.sub(_include, read_sql(name))
    sql = _expand_blocks(sql, windows)
    sql = sql.replace("{max_w}", str(max(windows)))
    sql = sql.replace("{windows}", "(VALUES " + ", ".join(f"({w})" for w in windows) + ") AS wn(w)")
    sql = _DANGLING.sub(r"\1\2", sql)
    return expand_macros(sql, engine)


def statements(sql: str) -> list[str]:
    """Split a multi-statement file on ';' at line ends (the prelude has no ';' inside literals)."""
    return [s.strip() for s in re.split(r";[ \t]*(?:\n|$)", sql) if s.strip() and not _only_comments(s)]


def _only_comments(s: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in s.splitlines())
