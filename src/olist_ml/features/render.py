"""Templates + dialect layer for the feature SQL (no third-party SQL translator needed).

The `.sql` files in this package are written in the subset of SQL that DuckDB 2 and Spark 4
both run, as Jinja templates (`render`):

* context: ``windows`` (the feature windows, ``Settings.feature_windows``, sorted), ``trend_windows``
  (those whose previous window ``[dt_ref-2w, dt_ref-w)`` still fits in the longest one), ``max_w``
  (the longest window) and ``windows_table`` (a one-column VALUES table ``wn(w)`` of the windows);
  loops are ``{% for w in windows %} ... {{ w }} ... {% endfor %}``;
* partials: ``{% include "_window_deltas.sql" %}`` (facts -> +/- deltas per window, the CTE ``x``);
* ``running_sums(...)`` (a Python macro, below): the running-sum shape every table shares - the
  per-day deltas ``d``, their running sums ``c`` and the copy of each running-sum row to the dt_refs it
  holds for (``e``, ``r``, from ``_explode_to_dt_refs.sql``). A table declares each running sum ONCE
  (name, condition, value) and reads it in its final SELECT as ``c.<name>_<w>``;
* dialect functions: ``DAYNUM(expr)`` = whole days from 1970-01-01 to the DATE of ``expr`` (DuckDB and
  Spark spell date differences differently and disagree on TIMESTAMP differences);
  ``EXPLODE_RANGE(a, b)`` in a select list = one output row per integer in [a, b) (the caller keeps
  only rows with a < b: Spark's ``sequence`` would count down otherwise). They are SQL-shaped calls
  mapped per engine after the template is rendered, so the templates read as SQL.

A comma left dangling before ``FROM`` by the last line of a loop is removed.

Why Jinja and not the former ``-- @for`` / ``-- @include`` comment layer: the repeated shape needed
macros with arguments (one declaration of a running sum expands into the ``d`` and ``c`` CTEs at every
window), which that layer could only gain by growing a parser of its own; Jinja is the language dbt
uses for exactly this (models plus macros for repeated SQL shapes), undefined names fail loudly
(``StrictUndefined``), and templates are compiled once per process. The rendered SQL is the same query
as before (tests/features/test_features.py oracles, tests/spark/test_features_spark.py parity, the feature
benchmark).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from importlib import resources

import jinja2

ENGINES = ("duckdb", "spark")

_DANGLING = re.compile(r",(\s*(?:--[^\n]*\n\s*)*)(FROM\b)")


@cache
def read_sql(name: str, package: str = __package__) -> str:
    """The text of `<name>.sql` in `package` (default: the feature store's); the one reader of the
    packaged SQL files (the problems read theirs through `olist_ml.problems._common.read_sql`)."""
    return resources.files(package).joinpath(f"{name}.sql").read_text(encoding="utf-8")


def trend_windows(windows: tuple[int, ...]) -> tuple[int, ...]:
    m = max(windows)
    return tuple(w for w in windows if 2 * w <= m)


# ---- the running-sum shape ---------------------------------------------------------------------------
def _sum(name: str, cond: str, value: str, w: int | None = None) -> str:
    if w is None:  # a lifetime fact enters once (sgn = +1) and never leaves
        return f"CAST(sum(CASE WHEN {cond} THEN {value} ELSE 0 END) AS DOUBLE) AS {name}"
    return f"CAST(sum(CASE WHEN w = {w} AND {cond} THEN sgn * ({value}) ELSE 0 END) AS DOUBLE) AS {name}"


@jinja2.pass_context
def running_sums(ctx, per_window=(), *, per_trend=(), longest=(), lifetime=(), spine: str) -> str:
    """The CTEs d, c, e, r shared by every fs_seller_* query (the rows of `x`: seller_id, day, w, sgn, ...).

    per_window: (name, condition, value) -> column `<name>_<w>` for every feature window w: the running
        sum of sgn * value over the deltas of window w whose row matches `condition`;
    per_trend: the same for every trend window;
    longest: (name, condition, value) -> `<name>`: the same at the longest window only (e.g. a spine);
    lifetime: (name, condition, value[, agg]) -> `<name>`: the running sum of value over the lifetime
        facts matching `condition` (they enter once, sgn = +1, and never leave), or with agg "max" / "min"
        the running max / min of value;
    spine: the running column that is > 0 while the seller is active (the table's rows).
    d holds each (seller, delta day)'s deltas, c their running sums per seller: a row of c holds for the
    days [day, next_day); e/r copy it to each requested dt_ref in that span (`_explode_to_dt_refs.sql`).
    """
    windows, trend, max_w = ctx["windows"], ctx["trend_windows"], ctx["max_w"]
    day: list[str] = []
    cum: list[str] = []
    for ws, decl in ((windows, per_window), (trend, per_trend)):
        for w in ws:
            for name, cond, value in decl:
                day.append(_sum(f"{name}_{w}", cond, value, w))
                cum.append(f"sum({name}_{w}) OVER cum AS {name}_{w}")
    for name, cond, value in longest:
        day.append(_sum(name, cond, value, max_w))
        cum.append(f"sum({name}) OVER cum AS {name}")
    for name, cond, value, *agg in lifetime:
        fn = agg[0] if agg else "sum"
        day.append(_sum(name, cond, value) if fn == "sum" else f"{fn}(CASE WHEN {cond} THEN {value} END) AS {name}")
        cum.append(f"{fn}({name}) OVER cum AS {name}")
    sep = ",\n    "
    explode = _ENV.get_template("_explode_to_dt_refs").render(spine=spine).strip()
    return (
        "d AS (\n"
        "  -- one row per (seller, delta day): the deltas of every running sum on that day\n"
        "  SELECT\n"
        "    seller_id,\n"
        "    day,\n"
        f"    {sep.join(day)}\n"
        "  FROM x\n"
        "  GROUP BY seller_id, day\n"
        "),\n"
        "c AS (\n"
        "  -- running sums of the deltas per seller (DOUBLE holding integers: exact in any order); a row\n"
        "  -- holds for the days [day, next_day) up to the next delta day of the seller\n"
        "  SELECT\n"
        "    seller_id,\n"
        "    day,\n"
        "    lead(day) OVER (PARTITION BY seller_id ORDER BY day) AS next_day,\n"
        f"    {sep.join(cum)}\n"
        "  FROM d\n"
        "  WINDOW cum AS (PARTITION BY seller_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)\n"
        "),\n"
        f"{explode}"
    )


def _load(name: str) -> str:
    return read_sql(name[:-4] if name.endswith(".sql") else name)


_ENV = jinja2.Environment(
    loader=jinja2.FunctionLoader(_load),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
_ENV.globals["running_sums"] = running_sums


def render_text(template: str, **context) -> str:
    """Render a Jinja SQL template given as text (e.g. a problem's ABT SQL) with the same rules as the
    feature SQL (undefined names fail, block lines leave no blank lines). No dialect mapping."""
    return _compiled(template).render(**context)


@lru_cache(maxsize=32)
def _compiled(template: str) -> jinja2.Template:
    return _ENV.from_string(template)


# ---- dialect functions ---------------------------------------------------------------------------------
def _split_args(s: str, start: int) -> tuple[list[str], int]:
    """Arguments of a call whose '(' is at s[start]; returns (args, index after ')'). Commas and
    parentheses inside '...' string literals are text, not syntax."""
    depth, args, cur, i = 0, [], [], start
    while i < len(s):
        ch = s[i]
        if ch == "'":  # a string literal, '' escapes included: copied as it is
            end = i + 1
            while True:
                end = s.index("'", end)
                if s.startswith("''", end):
                    end += 2
                    continue
                break
            cur.append(s[i : end + 1])
            i = end + 1
            continue
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
#   ROW_HASH(a, b, ...)       a 64-bit hash of the values as a wide exact integer (sums of millions stay
#                             exact); each engine has its own hash function, so values differ by engine
#   ISODOW(x)                 ISO day of the week of x (Monday 1 .. Sunday 7)
#   EPOCH(ts)                 seconds from 1970-01-01 00:00 to the naive timestamp ts (DOUBLE; Spark: the
#                             session time zone is UTC, olist_ml.spark.session)
#   ARG_MAX(v, k)             aggregate: v of the row with the largest k
#   DATE_SERIES(a, b, step)   select list: one row per DATE a, a + step, ... <= b (step an INTERVAL; no row
#                             when a or b is NULL; callers keep a <= b: Spark's `sequence` refuses a > b)
#   SPLIT_ROWS(s, sep)        select list: one row per piece of the string s split at the one character sep
#   STAR_EXCLUDE(t, c, ...)   in a select list: every column of t but c, ... (DuckDB EXCLUDE, Spark EXCEPT)
_MACROS = {
    "duckdb": {
        "DAYNUM": lambda a: f"CAST(date_diff('day', DATE '1970-01-01', CAST({a[0]} AS DATE)) AS INTEGER)",
        "ROW_HASH": lambda a: f"CAST(hash({', '.join(a)}) AS HUGEINT)",
        "EXPLODE_RANGE": lambda a: f"unnest(range({a[0]}, {a[1]}))",
        "DATEDIFF_DAYS": lambda a: f"date_diff('day', CAST({a[0]} AS DATE), CAST({a[1]} AS DATE))",
        "QUANTILE_CONT": lambda a: f"quantile_cont({a[0]}, {a[1]})",
        "LIST_DESC": lambda a: f"list({a[0]} ORDER BY {a[1]} DESC) FILTER (WHERE {a[2]})",
        "LIST_AT": lambda a: f"({a[0]})[{a[1]}]",
        "LIST_AVG_FIRST": lambda a: f"list_avg(({a[0]})[1:{a[1]}])",
        "ISODOW": lambda a: f"isodow({a[0]})",
        "EPOCH": lambda a: f"epoch({a[0]})",
        "ARG_MAX": lambda a: f"arg_max({a[0]}, {a[1]})",
        "DATE_SERIES": lambda a: f"CAST(unnest(generate_series({a[0]}, {a[1]}, {a[2]})) AS DATE)",
        "SPLIT_ROWS": lambda a: f"unnest(string_split({a[0]}, {a[1]}))",
        "STAR_EXCLUDE": lambda a: f"{a[0]}.* EXCLUDE ({', '.join(a[1:])})",
    },
    "spark": {
        "DAYNUM": lambda a: f"datediff(CAST({a[0]} AS DATE), DATE '1970-01-01')",
        "ROW_HASH": lambda a: f"CAST(xxhash64({', '.join(a)}) AS DECIMAL(38, 0))",
        "EXPLODE_RANGE": lambda a: f"explode(sequence({a[0]}, ({a[1]}) - 1))",
        "DATEDIFF_DAYS": lambda a: f"datediff(CAST({a[1]} AS DATE), CAST({a[0]} AS DATE))",
        "QUANTILE_CONT": lambda a: f"percentile({a[0]}, {a[1]})",
        "LIST_DESC": lambda a: (
            f"transform(sort_array(collect_list(struct({a[1]} AS k, {a[0]} AS v)) "
            f"FILTER (WHERE {a[2]}), false), x -> x.v)"
        ),
        "LIST_AT": lambda a: f"try_element_at({a[0]}, {a[1]})",
        "LIST_AVG_FIRST": lambda a: (
            f"aggregate(slice({a[0]}, 1, {a[1]}), CAST(0 AS DOUBLE), (acc, x) -> acc + x) "
            f"/ NULLIF(size(slice({a[0]}, 1, {a[1]})), 0)"
        ),
        "ISODOW": lambda a: f"extract(DAYOFWEEK_ISO FROM {a[0]})",
        "EPOCH": lambda a: f"(unix_micros(CAST({a[0]} AS TIMESTAMP_LTZ)) / 1e6)",
        "ARG_MAX": lambda a: f"max_by({a[0]}, {a[1]})",
        "DATE_SERIES": lambda a: f"explode(sequence(CAST({a[0]} AS DATE), CAST({a[1]} AS DATE), {a[2]}))",
        "SPLIT_ROWS": lambda a: f"explode(split({a[0]}, {a[1]}))",
        "STAR_EXCLUDE": lambda a: f"{a[0]}.* EXCEPT ({', '.join(a[1:])})",
    },
}


# a macro name: upper-case letters and '_' (cheap to scan for; the name is then looked up)
_MACRO_CALL = re.compile(r"\b([A-Z][A-Z_]*[A-Z])\s*\(")


def expand_macros(sql: str, engine: str) -> str:
    """Expand the macros above for `engine` (nested calls included). One pass: an expansion holds no
    macro (its arguments are expanded first), so the scan goes on after it."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    macros = _MACROS[engine]
    out, pos = [], 0
    while True:
        m = _MACRO_CALL.search(sql, pos)
        while m and m.group(1) not in macros:
            m = _MACRO_CALL.search(sql, m.end())
        if not m:
            out.append(sql[pos:])
            return "".join(out)
        args, end = _split_args(sql, m.end() - 1)
        out += [sql[pos : m.start()], macros[m.group(1)]([expand_macros(a, engine) for a in args])]
        pos = end


def context(windows: tuple[int, ...]) -> dict:
    """The template context of the feature windows `windows`."""
    windows = tuple(sorted(set(int(w) for w in windows)))
    return {
        "windows": windows,
        "trend_windows": trend_windows(windows),
        "max_w": max(windows),
        "windows_table": "(VALUES " + ", ".join(f"({w})" for w in windows) + ") AS wn(w)",
    }


def render(name: str, windows: tuple[int, ...], engine: str = "duckdb") -> str:
    """The SQL of one feature file (or the `_events` prelude) for the given windows and engine."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    sql = _ENV.get_template(name).render(**context(windows))
    sql = _DANGLING.sub(r"\1\2", sql)
    return expand_macros(sql, engine)


def statements(sql: str) -> list[str]:
    """Split a multi-statement file on ';' at line ends (the prelude has no ';' inside literals)."""
    return [s.strip() for s in re.split(r";[ \t]*(?:\n|$)", sql) if s.strip() and not _only_comments(s)]


def _only_comments(s: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in s.splitlines())
