"""Lineage of derived tables: what each one was computed from, and whether it is still current.

Every derived table (fs_seller_*, abt_*) records two fingerprints when it is written:

- a DATA fingerprint of the stg tables it reads, and
- a CONFIG fingerprint of the settings and code that shape it (feature windows, horizons,
  cadence, the SQL text, the problem's code).

When either differs from what the warehouse holds now, the table (or the part of it) is stale and
the next `features build` / `train` / `predict` / `run` recomputes it, saying so in one line;
`olist-ml summary` shows per derived table whether it is current (`olist_ml.pipeline.derived_status`).

Granularity (chosen for speed and for history):
- The feature store's dt_ref partitions use the facts it reads AS KNOWN STRICTLY BEFORE each dt_ref
  (`asof_fingerprints`, the rule written once above `asof_facts_sql`), the same cut as the
  point-in-time contract and its truncation test: an order from its purchase, its approval /
  hand-over / delivery from when they happened (never its status: a snapshot no feature reads), a
  review from its answer, a deal from its won date, a lead from its first contact; customers, products
  and sellers through the facts that read them. So a daily extract (new orders, later deliveries,
  late review answers, status changes) leaves every past partition current: the feature store
  recomputes only the dt_refs the new facts reach. Rewriting history (other prices, another data
  set) makes every partition it touches stale.
- Score batches are records, not derived state (`olist_ml.records`): they carry the same as-known
  fingerprint of what their problem reads (`Problem.reads`) and are marked revised, never deleted.
- Whole tables (ABTs) use the fingerprint of ALL the data (`data_fingerprint`): targets look into
  the future, so any change is a change. An ABT also depends on the feature store's build log (which
  dt_refs exist, from which data). The daily run rebuilds an ABT only when it retrains.

Fingerprints are order-independent sums of the engine's row hashes: cheap (one scan per table), exact
for any change of any value, and stable for the same engine version (an upgrade may change them once:
everything is then recomputed, never silently kept).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .warehouse import table_exists

LINEAGE_TABLE = "olist_ml_lineage"


def _hex(parts: Iterable) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]


def config_fingerprint(**parts) -> str:
    """Fingerprint of the settings/code that shape a table (any JSON-able values)."""
    return _hex([json.dumps(parts, sort_keys=True, default=str)])


def code_fingerprint(*paths: Path) -> str:
    """Fingerprint of source files (a folder: every .py/.sql file in it, recursively)."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files += sorted(x for x in p.rglob("*") if x.suffix in (".py", ".sql")) if p.is_dir() else [p]
    return _hex(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files)


def _stg_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_name LIKE "
            "'stg\\_%' "
            "ESCAPE '\\' ORDER BY 1"
        ).fetchall()
    ]


def data_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """Fingerprint of every stg table's full content (names, columns, every value)."""
    parts = []
    for t in _stg_tables(con):
        n, s = con.execute(f"SELECT count(*), CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) FROM {t} t").fetchall()[0]
        cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
        parts.append(f"{t}|{','.join(cols)}|{n}|{s}")
    return _hex(parts)


# How each stg row becomes known (the point-in-time contract, DESIGN.md principle 2). A dt_ref-partitioned
# output (feature store, scores, segment assignments) reads some stg tables (`reads`); its fingerprint at
# dt_ref sums the row hashes of exactly the facts of those tables known strictly before dt_ref 00:00:
# - an order from its purchase, re-hashed at its approval, carrier hand-over and delivery (each known from
#   when it happened; before that the column counts as NULL); its customer's attributes with it. Its
#   `order_status` is never part of it: a snapshot taken at extraction, which no feature reads;
# - an order item and a payment with their order's purchase (the item with its product's and, when read,
#   its seller's attributes);
# - a review from its ANSWER only (its score and comment exist from then; an unanswered review is never
#   known: every feature reads reviews by `review_answer_timestamp`);
# - a closed deal from its won date, a lead from its first contact;
# - a reference table whose rows are only read through those facts (customers, products, sellers) counts
#   through them, not as a whole: a daily extract that adds the customers of its new orders leaves every
#   earlier dt_ref current. Tables without a time of their own (geolocation, the category translation)
#   count as a whole: any change to them changes every dt_ref that reads them.
_ORDER_TIMES = (
    "order_purchase_timestamp",
    "order_approved_at",
    "order_delivered_carrier_date",
    "order_delivered_customer_date",
)
_DATED = {"stg_closed_deals": "won_date", "stg_marketing_qualified_leads": "first_contact_date"}
# reference table -> (the fact table that reads it, its join column)
_REFERENCES = {
    "stg_customers": ("stg_orders", "customer_id"),
    "stg_products": ("stg_order_items", "product_id"),
    "stg_sellers": ("stg_order_items", "seller_id"),
}
_FACTS = ("stg_orders", "stg_order_items", "stg_order_payments", "stg_order_reviews", *_DATED)


def static_tables(present: Iterable[str], reads: Iterable[str] | None = None) -> list[str]:
    """The stg tables of `present` (and of `reads`, None = all) that count as a whole."""
    scope = _scope(present, reads)
    return sorted(t for t in scope if t not in _FACTS and not _through(t, scope))


def _scope(present: Iterable[str], reads: Iterable[str] | None) -> set[str]:
    present = set(present)
    return present if reads is None else present & set(reads)


def _through(table: str, scope: set[str]) -> bool:
    ref = _REFERENCES.get(table)
    return ref is not None and ref[0] in scope and (ref[0] != "stg_order_items" or "stg_orders" in scope)


def _dn(col: str) -> str:
    """Day number of the first dt_ref at which a timestamp is known (ts < dt_ref 00:00)."""
    return f"(DAYNUM({col}) + 1)"


def asof_facts_sql(columns: dict[str, list[str]], engine: str, reads: Iterable[str] | None = None) -> str:
    """The as-known rule above, once for every engine: a query of (k, d) rows, d the sum of the signed
    row-hash deltas that become known on day number k (a row seen in several versions contributes
    h(v_i) - h(v_(i-1)) on each version's day). `columns`: {present stg table: its columns}; `reads`: the
    stg tables the output reads (None: all). Rendered through the portable macros (`features.render`)."""
    from .features.render import expand_macros

    scope = _scope(columns, reads)

    def cols(table: str, alias: str) -> list[str]:
        return [f"{alias}.{c}" for c in columns[table]]

    def joined(fact: str, alias: str) -> tuple[list[str], str]:
        """(extra hashed columns, joins) of the reference tables read through `fact`."""
        extra, joins = [], ""
        for ref, (via, key) in _REFERENCES.items():
            if via == fact and ref in scope and _through(ref, scope):
                a = ref[4:7]
                extra += cols(ref, a)
                joins += f" LEFT JOIN {ref} {a} ON {a}.{key} = {alias}.{key}"
        return extra, joins

    parts = []
    if "stg_orders" in scope:
        k = "CASE t.i " + " ".join(f"WHEN {i} THEN {_dn('o.' + c)}" for i, c in enumerate(_ORDER_TIMES)) + " END"
        known = [f"CASE WHEN {_dn('o.' + c)} <= {k} THEN o.{c} END" for c in _ORDER_TIMES[1:]]
        extra, joins = joined("stg_orders", "o")
        fields = ["o.order_id", "o.customer_id", "o.order_purchase_timestamp", "o.order_estimated_delivery_date"]
        parts.append(
            f"SELECT {k} AS k, ROW_HASH({', '.join(fields + known + extra)}) AS h, concat('o', o.order_id) AS rk "
            f"FROM stg_orders o{joins} CROSS JOIN (VALUES (0), (1), (2), (3)) AS t(i)"
        )
        for fact in ("stg_order_items", "stg_order_payments"):
            if fact in scope:
                extra, joins = joined(fact, "x")
                parts.append(
                    f"SELECT {_dn('o.order_purchase_timestamp')} AS k, ROW_HASH({', '.join(cols(fact, 'x') + extra)}) "
                    f"AS h, CAST(NULL AS STRING) AS rk FROM {fact} x JOIN stg_orders o ON o.order_id = x.order_id"
                    f"{joins}"
                )
    if "stg_order_reviews" in scope:
        parts.append(
            f"SELECT {_dn('r.review_answer_timestamp')} AS k, ROW_HASH({', '.join(cols('stg_order_reviews', 'r'))}) "
            "AS h, CAST(NULL AS STRING) AS rk FROM stg_order_reviews r"
        )
    for t, col in _DATED.items():
        if t in scope:
            parts.append(
                f"SELECT {_dn('x.' + col)} AS k, ROW_HASH({', '.join(cols(t, 'x'))}) AS h, "
                f"CAST(NULL AS STRING) AS rk FROM {t} x"
            )
    if not parts:
        return "SELECT CAST(NULL AS INTEGER) AS k, CAST(NULL AS DECIMAL(38, 0)) AS d FROM (SELECT 1 AS x) z WHERE 1 = 0"
    union = "\nUNION ALL\n".join(parts)
    sql = f"""
        WITH v AS ({union}),
        deltas AS (
            SELECT k, h - coalesce(lag(h) OVER (PARTITION BY rk ORDER BY k), 0) AS d FROM v WHERE rk IS NOT NULL
            UNION ALL
            SELECT k, h AS d FROM v WHERE rk IS NULL
        )
        SELECT k, CAST(sum(d) AS STRING) AS d FROM deltas WHERE k IS NOT NULL GROUP BY k
    """
    return expand_macros(sql, engine)


def cumulate(rows: Iterable[tuple[int, str]], dates: Iterable[dt.date], static: str) -> dict[dt.date, str]:
    """{dt_ref: fingerprint} from the (k, d) rows of `asof_facts_sql` (exact integer sums)."""
    import bisect

    pairs = sorted((int(k), int(d)) for k, d in rows if k is not None)
    ks, cum, total = [], [], 0
    for k, d in pairs:
        total += d
        ks.append(k)
        cum.append(total)
    out = {}
    for d in dates:
        i = bisect.bisect_right(ks, (d - dt.date(1970, 1, 1)).days) - 1
        out[d] = _hex([static, cum[i] if i >= 0 else 0])
    return out


def _as_dates(dates: Iterable) -> list[dt.date]:
    return sorted(
        {
            d if isinstance(d, dt.date) and not isinstance(d, dt.datetime) else dt.date.fromisoformat(str(d)[:10])
            for d in dates
        }
    )


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    return {t: [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()] for t in _stg_tables(con)}


def _static_fingerprint(con: duckdb.DuckDBPyConnection, tables: list[str]) -> str:
    parts = []
    for t in tables:
        s = con.execute(f"SELECT CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) FROM {t} t").fetchall()[0][0]
        parts.append(f"{t}|{s}")
    return _hex(parts)


_CACHE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("olist_ml_asof_cache", default=None)


@contextlib.contextmanager
def stg_unchanged():
    """A block in which the stg tables do not change (a pipeline run after its ingest): the as-known facts
    of each scope are computed once and every `asof_fingerprints` call in the block reuses them."""
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def asof_fingerprints(
    con: duckdb.DuckDBPyConnection, dates: Iterable[dt.date], reads: Iterable[str] | None = None
) -> dict[dt.date, str]:
    """{dt_ref: fingerprint of the facts of `reads` (None: every stg table) as known strictly before
    dt_ref 00:00} (the rule above `asof_facts_sql`)."""
    dates = _as_dates(dates)
    if not dates:
        return {}
    cache = _CACHE.get()
    key = (con.execute("PRAGMA database_list").fetchall()[0][2], None if reads is None else tuple(sorted(reads)))
    if cache is not None and key in cache:
        rows, static = cache[key]
    else:
        columns = _columns(con)
        static = _static_fingerprint(con, static_tables(columns, reads))
        rows = con.execute(asof_facts_sql(columns, "duckdb", reads)).fetchall()
        if cache is not None:
            cache[key] = (rows, static)
    return cumulate(rows, dates, static)


# ---- the lineage table ----------------------------------------------------------------------
def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {LINEAGE_TABLE} (table_name VARCHAR NOT NULL, part DATE, "
        "data_fp VARCHAR NOT NULL, config_fp VARCHAR NOT NULL, built_at TIMESTAMP)"
    )


def record(
    con: duckdb.DuckDBPyConnection, table: str, data_fp: str, config_fp: str, part: dt.date | None = None
) -> None:
    """Remember what `table` (or its `part` = dt_ref partition) was computed from. Call it inside the
    transaction that writes the table, so the record and the rows change together."""
    ensure_table(con)
    if part is None:
        con.execute(f"DELETE FROM {LINEAGE_TABLE} WHERE table_name = ?", [table])
    else:
        con.execute(f"DELETE FROM {LINEAGE_TABLE} WHERE table_name = ? AND part = ?", [table, part])
    con.execute(f"INSERT INTO {LINEAGE_TABLE} VALUES (?, ?, ?, ?, now())", [table, part, data_fp, config_fp])


def recorded(con: duckdb.DuckDBPyConnection, table: str) -> dict[dt.date | None, tuple[str, str]]:
    """{part (None for a whole table): (data_fp, config_fp)} as recorded for `table`."""
    if not table_exists(con, LINEAGE_TABLE):
        return {}
    return {
        r[0]: (r[1], r[2])
        for r in con.execute(
            f"SELECT part, data_fp, config_fp FROM {LINEAGE_TABLE} WHERE table_name = ?", [table]
        ).fetchall()
    }


def forget(con: duckdb.DuckDBPyConnection, table: str, parts: Iterable[dt.date] | None = None) -> None:
    if not table_exists(con, LINEAGE_TABLE):
        return
    if parts is None:
        con.execute(f"DELETE FROM {LINEAGE_TABLE} WHERE table_name = ?", [table])
    else:
        con.execute(
            f"DELETE FROM {LINEAGE_TABLE} WHERE table_name = ? AND part IN (SELECT unnest(?::DATE[]))",
            [table, sorted(parts)],
        )


@dataclass(frozen=True)
class Staleness:
    """Which recorded parts of a table no longer match their inputs, and why."""

    table: str
    stale: tuple[dt.date | None, ...]
    reason: str  # "" when current

    @property
    def current(self) -> bool:
        return not self.stale

    def line(self) -> str:
        what = "whole table" if self.stale == (None,) else f"{len(self.stale)} dt_ref(s)"
        return f"{self.table}: {what} stale ({self.reason})" if self.stale else f"{self.table}: current"


def why(old: tuple[str, str] | None, data_fp: str, config_fp: str) -> str:
    if old is None:
        return "no lineage recorded"
    if old[0] != data_fp and old[1] != config_fp:
        return "data and settings/code changed"
    if old[0] != data_fp:
        return "data changed"
    if old[1] != config_fp:
        return "settings/code changed"
    return ""


def stale_parts(
    con: duckdb.DuckDBPyConnection,
    table: str,
    parts: Iterable[dt.date],
    config_fp: str,
    asof: dict[dt.date, str] | None = None,
) -> Staleness:
    """The dt_ref partitions of `table` whose recorded lineage differs from the data as known at
    each dt_ref (`asof_fingerprints`) or from `config_fp`."""
    parts = sorted(set(parts))
    rec = recorded(con, table)
    asof = asof if asof is not None else asof_fingerprints(con, parts)
    stale, reasons = [], []
    for p in parts:
        r = why(rec.get(p), asof[p], config_fp)
        if r:
            stale.append(p)
            reasons.append(r)
    reason = max(set(reasons), key=reasons.count) if reasons else ""
    return Staleness(table, tuple(stale), reason)


def whole_table_staleness(con: duckdb.DuckDBPyConnection, table: str, data_fp: str, config_fp: str) -> Staleness:
    r = why(recorded(con, table).get(None), data_fp, config_fp)
    return Staleness(table, (None,) if r else (), r)


# ---- problems: ABTs and scores ----------------------------------------------------------------
def problem_config_fp(problem, settings) -> str:
    """What shapes a problem's ABT and scores besides the data: its typed settings that shape them
    (`Problem.settings_record` of the `inputs` and `abt` fields: feature windows, horizon, eligibility,
    cadence...; not the training protocol) and the code of `olist_ml.problems` (its SQL included) and
    of the feature store's retrieval."""
    from .config import ABT, INPUTS

    here = Path(__file__).parent
    return config_fingerprint(
        problem=problem.name,
        settings=problem.settings_record(settings, shapes=(INPUTS, ABT)),
        code=code_fingerprint(here / "problems", here / "geo.py", here / "features" / "retrieval.py"),
    )


def _build_log_digest(con: duckdb.DuckDBPyConnection) -> str:
    if not table_exists(con, "fs_build_log"):
        return "none"
    cols = {r[0] for r in con.execute("DESCRIBE fs_build_log").fetchall()}
    fp = "data_fp, config_fp" if "data_fp" in cols else "NULL, NULL"
    n, s = con.execute(
        f"SELECT count(*), CAST(coalesce(sum(hash(table_name, dt_ref, {fp})), 0) AS VARCHAR) FROM fs_build_log"
    ).fetchall()[0]
    return f"{n}|{s}"


def abt_inputs_fp(con: duckdb.DuckDBPyConnection) -> str:
    """An ABT's data inputs: every stg table and the feature store's build log (which dt_refs exist,
    from which data and SQL)."""
    return _hex([data_fingerprint(con), _build_log_digest(con)])


@dataclass(frozen=True)
class AbtRefresh:
    table: str
    rows: int | None  # rows written, None when it was current and kept
    reason: str  # why it was (re)built; "" when kept

    @property
    def rebuilt(self) -> bool:
        return self.rows is not None


def refresh_abt(con: duckdb.DuckDBPyConnection, problem, settings, *, force: bool = False) -> AbtRefresh:
    """Build `problem`'s ABT unless it exists and its lineage matches the current data, feature
    store and settings/code; record the lineage of what was built."""
    data_fp, cfg = abt_inputs_fp(con), problem_config_fp(problem, settings)
    st = whole_table_staleness(con, problem.abt_table, data_fp, cfg)
    if st.current and not force and table_exists(con, problem.abt_table):
        return AbtRefresh(problem.abt_table, None, "")
    rows = problem.build_abt(con, settings)
    record(con, problem.abt_table, data_fp, cfg)
    reason = "forced" if force else ("not built yet" if st.reason == "no lineage recorded" else st.reason)
    return AbtRefresh(problem.abt_table, int(rows), reason)
