"""One table's load on DuckDB (docs/ingest.md, step 3): raw VARCHAR records -> typed values -> the
value rules and duplicate keys (quarantine, with physical line numbers) -> `stg_<table>` in file
order."""

from __future__ import annotations

import contextlib
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ..errors import InputError
from ..schema import Column, SourceTable
from .report import MAX_RAW, QUARANTINE_TABLE, TableReport
from .rules import DATE_ANCHOR, LOCAL_TZ, ZONE_RE, Rules, value_rules, window_from_quartiles
from .text import first_line, lit, q


def tz_support(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        con.execute(f"SELECT TIMESTAMPTZ '2017-01-01 00:00:00+00' AT TIME ZONE {lit(LOCAL_TZ)}").fetchall()
        return True
    except duckdb.Error:
        return False


def _read_csv_sql(path: Path, header: list[str], rejects: str) -> str:
    cols = ", ".join(f"{lit(h)}: 'VARCHAR'" for h in header)
    return (
        f"read_csv({lit(str(path))}, header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
        f"strict_mode=true, columns={{{cols}}}, store_rejects=true, "
        f"rejects_table={lit(rejects + '_err')}, rejects_scan={lit(rejects + '_scan')}, "
        f"compression={lit('gzip' if path.name.endswith('.gz') else 'none')})"
    )


@dataclass
class _Load:
    """One table's load: its inputs and the names of its temp tables."""

    spec: SourceTable
    path: Path
    header: list[str]
    shown: str
    rep: TableReport

    def __post_init__(self) -> None:
        k = self.spec.key
        self.raw, self.typed, self.bad, self.rej, self.lines = (
            f"raw_{k}",
            f"typed_{k}",
            f"bad_{k}",
            f"rej_{k}",
            f"lines_{k}",
        )


def load_table(
    con: duckdb.DuckDBPyConnection,
    spec: SourceTable,
    path: Path,
    header: list[str],
    shown: str,
    rep: TableReport,
    rules: Rules,
) -> None:
    """Read, type and check one file, write its clean rows to stg_<table> and the rest to the quarantine."""
    t = _Load(spec, path, header, shown, rep)
    _read_raw(con, t)
    _type_rows(con, t, rules)
    if spec.key == DATE_ANCHOR[0]:
        rules.window = _date_window(con, t.typed, DATE_ANCHOR[1])
    _find_bad_values(con, t, rules)
    _find_duplicates(con, t)
    rejects = _rejects(con, t)
    n_bad = con.execute(f"SELECT count(DISTINCT _rec) FROM {t.bad}").fetchall()[0][0]
    if n_bad:
        _fill_lines(con, t, rejects)
    rep.quarantined = n_bad + len(rejects)
    if rejects:
        con.executemany(
            f"INSERT INTO {t.bad} VALUES (NULL, ?, ?, ?, ?, NULL)",
            [(line, col, reason, value) for line, _span, col, reason, value in rejects],
        )
        rep.warnings.append(
            f"{shown}: {len(rejects)} malformed CSV record(s) quarantined (first at line {rejects[0][0]})"
        )
    _write_stg(con, t)
    _require_rows(con, t)
    _write_quarantine(con, t, n_bad)
    _note_offsets(con, t, rules)
    for name in (t.raw, t.typed, t.bad, t.lines):
        con.execute(f"DROP TABLE IF EXISTS {name}")


def _read_raw(con: duckdb.DuckDBPyConnection, t: _Load) -> None:
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {t.raw} AS SELECT * FROM {_read_csv_sql(t.path, t.header, t.rej)}")
    except duckdb.Error as e:
        msg = first_line(e)
        if "gzip" in msg.lower() or "GZIP" in str(e):
            raise InputError(f"{t.shown}: truncated or corrupt gzip file ({msg})") from None
        raise InputError(f"{t.shown}: cannot read as CSV ({msg})") from None


def _type_rows(con: duckdb.DuckDBPyConnection, t: _Load, rules: Rules) -> None:
    """Typed view of every record, keeping the raw text of cast columns.

    TIMESTAMP/DATE values that carry a zone (`+03:00`, `Z`, `UTC`, ...) are converted to LOCAL_TZ
    local time (`_tz_<column>` marks them); the plain cast would silently drop the offset.
    """
    sel = ["rowid AS _rec"]
    for c in t.spec.columns:
        src = q(c.source)
        if c.type == "VARCHAR":
            sel.append(f"{src} AS {q(c.name)}")
            continue
        sel.append(f"{src} AS {q('_raw_' + c.name)}")
        if c.type in ("TIMESTAMP", "DATE"):
            tz = q("_tz_" + c.name)
            conv = (
                (
                    f"CAST(TRY_CAST(regexp_replace(trim({src}), '\\s+([+-][0-9])', '\\1') AS TIMESTAMPTZ) "
                    f"AT TIME ZONE {lit(LOCAL_TZ)} AS {c.type})"
                )
                if rules.tz_ok
                else f"NULL::{c.type}"
            )
            sel.append(f"coalesce(regexp_matches({src}, {lit(ZONE_RE)}), false) AS {tz}")
            sel.append(f"CASE WHEN {tz} THEN {conv} ELSE TRY_CAST({src} AS {c.type}) END AS {q(c.name)}")
        else:
            sel.append(f"TRY_CAST({src} AS {c.type}) AS {q(c.name)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {t.typed} AS SELECT {', '.join(sel)} FROM {t.raw}")


def _date_window(con: duckdb.DuckDBPyConnection, typed: str, col: str) -> tuple[str, str] | None:
    """Plausible dates: [Q1 - max(2 y, 2 IQR), Q3 + max(5 y, 2 IQR)] of the anchor column (see module doc)."""
    c = q(col)
    row = con.execute(
        f"SELECT quantile_disc({c}, 0.25), quantile_disc({c}, 0.75) FROM {typed} WHERE isfinite({c})"
    ).fetchall()
    return window_from_quartiles(row[0][0], row[0][1]) if row and row[0][0] is not None else None


def _value_checks(c: Column, rules: Rules) -> list[tuple[str, str]]:
    """(condition, reason) pairs for one column, in the order the reason is chosen (DuckDB SQL)."""
    v = q(c.name)
    rawc = v if c.type == "VARCHAR" else q("_raw_" + c.name)
    cast_fail = f"{rawc} IS NOT NULL AND {v} IS NULL"
    out = []
    for r in value_rules(c, rules.window, rules.tz_ok):
        if r.kind == "missing":
            cond = f"{rawc} IS NULL"
        elif r.kind == "zone":
            cond = f"{cast_fail} AND {q('_tz_' + c.name)}"
        elif r.kind == "cast":
            cond = cast_fail
        elif r.kind == "nonfinite":
            cond = f"NOT isfinite({v})"
        elif r.kind == "min":
            cond = f"{v} < {r.bound!r}"
        elif r.kind == "max":
            cond = f"{v} > {r.bound!r}"
        else:
            lo, hi = r.bound
            cond = f"({v} < CAST({lit(lo)} AS DATE) OR {v} >= CAST({lit(hi)} AS DATE) + 1)"
        out.append((cond, lit(r.reason)))
    return out


def _find_bad_values(con: duckdb.DuckDBPyConnection, t: _Load, rules: Rules) -> None:
    """Quarantine: untypable values, NULLs in non-nullable columns, implausible values."""
    parts = []
    for c in t.spec.columns:
        checks = _value_checks(c, rules)
        if checks:
            rawc = q(c.name) if c.type == "VARCHAR" else q("_raw_" + c.name)
            reason = "CASE " + " ".join(f"WHEN {cond} THEN {why}" for cond, why in checks) + " END"
            where = " OR ".join(f"({cond})" for cond, _ in checks)
            parts.append(
                f"SELECT _rec, NULL::BIGINT AS line, {lit(c.name)} AS col, {reason} AS reason, "
                f"{rawc} AS raw_value, NULL::BIGINT AS ref_rec FROM {t.typed} WHERE {where}"
            )
    if not parts:
        parts.append(
            "SELECT NULL::BIGINT AS _rec, NULL::BIGINT AS line, NULL::VARCHAR AS col, NULL::VARCHAR AS reason, "
            "NULL::VARCHAR AS raw_value, NULL::BIGINT AS ref_rec WHERE false"
        )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {t.bad} AS {' UNION ALL '.join(parts)}")


def _find_duplicates(con: duckdb.DuckDBPyConnection, t: _Load) -> None:
    """Primary key duplicates among the rows that typed cleanly: keep the first, quarantine the rest
    (`ref_rec` = the first occurrence; its line goes into the reason once lines are known)."""
    key = t.spec.primary_key
    if not key:
        return
    pk = ", ".join(q(k) for k in key)
    names = ",".join(key)
    key_text = " || ',' || ".join(f"CAST({q(k)} AS VARCHAR)" for k in key)
    con.execute(
        f"""INSERT INTO {t.bad}
        SELECT _rec, NULL, {lit(names)}, {lit(f"duplicate primary key ({names})")}, {key_text}, first_rec
        FROM (SELECT _rec, {pk}, row_number() OVER (PARTITION BY {pk} ORDER BY _rec) AS rn,
                     min(_rec) OVER (PARTITION BY {pk}) AS first_rec
              FROM {t.typed} WHERE _rec NOT IN (SELECT _rec FROM {t.bad}))
        WHERE rn > 1"""
    )


def _write_stg(con: duckdb.DuckDBPyConnection, t: _Load) -> None:
    """The stg table: clean rows in file order."""
    spec = t.spec
    cols = [(c.name, c.type, c.nullable) for c in spec.columns]
    select = ", ".join(f"t.{q(n)}" for n, _, _ in cols)
    join = ""
    if spec.extra.get("translated"):
        cols.append(("product_category_name_english", "VARCHAR", True))
        select += ", tr.product_category_name_english"
        join = (
            "LEFT JOIN stg_product_category_name_translation tr ON tr.product_category_name = t.product_category_name"
        )
    ddl = ", ".join(f"{q(n)} {ty}{'' if nullable else ' NOT NULL'}" for n, ty, nullable in cols)
    con.execute(f"CREATE TABLE {spec.stg} ({ddl})")
    con.execute(
        f"INSERT INTO {spec.stg} SELECT {select} FROM {t.typed} t {join} "
        f"WHERE t._rec NOT IN (SELECT _rec FROM {t.bad} WHERE _rec IS NOT NULL) ORDER BY t._rec"
    )
    t.rep.loaded = con.execute(f"SELECT count(*) FROM {spec.stg}").fetchall()[0][0]


def _first_bad(con: duckdb.DuckDBPyConnection, t: _Load, records_only: bool = False) -> tuple:
    where = "WHERE _rec IS NOT NULL" if records_only else ""
    return con.execute(f"SELECT line, col, reason FROM {t.bad} {where} ORDER BY line, col LIMIT 1").fetchall()[0]


def _require_rows(con: duckdb.DuckDBPyConnection, t: _Load) -> None:
    """A table every later step needs (`SourceTable.nonempty`) must keep at least one row."""
    rep = t.rep
    if rep.loaded:
        return
    if not t.spec.nonempty:
        if rep.quarantined == 0:
            rep.warnings.append(f"{t.shown}: header only, no data rows")
        return
    if rep.quarantined == 0:
        raise InputError(f"{t.shown}: no data rows (header only); {t.spec.stg} must not be empty (warehouse unchanged)")
    line, col, reason = _first_bad(con, t)
    raise InputError(
        f"{t.shown}: all {rep.quarantined} row(s) quarantined (first: line {line}, column {col}: {reason}); "
        f"{t.spec.stg} must not be empty (warehouse unchanged)"
    )


def _write_quarantine(con: duckdb.DuckDBPyConnection, t: _Load, n_bad: int) -> None:
    con.execute(
        f"INSERT INTO {QUARANTINE_TABLE} SELECT {lit(t.rep.file)}, line, col, reason, left(raw_value, {MAX_RAW}) "
        f"FROM {t.bad} ORDER BY line, col"
    )
    if n_bad:
        line, col, reason = _first_bad(con, t, records_only=True)
        t.rep.warnings.append(f"{t.shown}: {n_bad} row(s) quarantined (first: line {line}, column {col}: {reason})")


def _note_offsets(con: duckdb.DuckDBPyConnection, t: _Load, rules: Rules) -> None:
    """Say how many zoned timestamps were converted: the conversion is never silent."""
    cols = [c.name for c in t.spec.columns if c.type in ("TIMESTAMP", "DATE")]
    if not cols or not rules.tz_ok:
        return
    counts = con.execute(
        "SELECT " + ", ".join(f"count_if({q('_tz_' + c)} AND {q(c)} IS NOT NULL)" for c in cols) + f" FROM {t.typed}"
    ).fetchall()[0]
    hit = [(c, n) for c, n in zip(cols, counts, strict=False) if n]
    if hit:
        t.rep.warnings.append(
            f"{t.shown}: {sum(n for _, n in hit)} timestamp(s) with a UTC offset converted to {LOCAL_TZ} local time "
            f"({', '.join(f'{c}: {n}' for c, n in hit)})"
        )


def _rejects(con: duckdb.DuckDBPyConnection, t: _Load) -> list[tuple]:
    """Malformed records DuckDB's reader rejected: (physical line, lines spanned, column, reason, raw record).

    DuckDB's own `line` counts records, not the newlines inside quoted values, so the physical
    line comes from the record's byte position in the (decompressed) file.
    """
    try:
        rows = con.execute(
            f"SELECT line, line_byte_position, csv_line, column_name, error_type, error_message FROM {t.rej}_err "
            "ORDER BY line, column_idx"
        ).fetchall()
    except duckdb.CatalogException:
        return []
    finally:
        for suffix in ("_err", "_scan"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {t.rej}{suffix}")
    first: dict[int, tuple] = {}
    for rec, pos, csv_line, col, etype, emsg in rows:  # a record with several errors: quarantined once
        first.setdefault(rec, (int(pos), csv_line, col, etype, emsg))
    if not first:
        return []
    at = _lines_at(t.path, [v[0] for v in first.values()], t.shown)
    out = []
    for pos, csv_line, col, etype, emsg in first.values():
        text = (csv_line or "").strip("\r\n")
        out.append(
            (
                at[pos],
                text.count("\n") + 1,
                col or "",
                f"malformed CSV record: {etype}: {first_line(emsg)}",
                text[:MAX_RAW],
            )
        )
    return sorted(out)


def _lines_at(path: Path, positions: list[int], shown: str) -> dict[int, int]:
    """Physical line (1-based) of each byte position: newlines in the bytes before it, plus one.

    DuckDB's line_byte_position points at the record's first byte, or at the '\\n' of a '\\r\\n'
    before it; either way the bytes up to that position hold exactly the record's preceding newlines.
    """
    want = sorted(set(positions))
    out: dict[int, int] = {}
    i, off, nl = 0, 0, 0
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
            while i < len(want):
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                end = off + len(chunk)
                while i < len(want) and want[i] <= end:
                    out[want[i]] = nl + chunk[: want[i] - off].count(b"\n") + 1
                    i += 1
                nl += chunk.count(b"\n")
                off = end
    except (OSError, EOFError, zlib.error) as e:  # DuckDB does not check the gzip CRC; gzip.open does
        what = "truncated or corrupt gzip file" if path.name.endswith(".gz") else "cannot read the file"
        raise InputError(f"{shown}: {what} ({first_line(e)})") from None
    for p in want[i:]:
        out[p] = nl + 1
    return out


def _fill_lines(con: duckdb.DuckDBPyConnection, t: _Load, rejects: list[tuple]) -> None:
    """Physical line numbers for the quarantined records, and for the first occurrence a duplicate refers to.

    A record's line is 2 + its index + the newlines inside quoted values of the records before it,
    shifted by the lines of the malformed records before it (which are not in the raw table).
    """
    nl = " + ".join(f"coalesce(length({q(h)}) - length(replace({q(h)}, chr(10), '')), 0)" for h in t.header)
    thr, shift = [], 0
    for line, span, *_ in rejects:
        thr.append((line - shift, shift + span))
        shift += span
    shift_sql = "0"
    if thr:
        values = ", ".join(f"({a}, {b})" for a, b in thr)
        shift_sql = f"coalesce((SELECT max(s) FROM (VALUES {values}) v(t, s) WHERE v.t <= base), 0)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {t.lines} AS
            SELECT _rec, base + {shift_sql} AS line FROM (
              SELECT rowid AS _rec,
                     2 + rowid + coalesce(sum({nl}) OVER (
                       ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS base
              FROM {t.raw})
            WHERE _rec IN (SELECT _rec FROM {t.bad} UNION ALL SELECT ref_rec FROM {t.bad} WHERE ref_rec IS NOT NULL)"""
    )
    con.execute(f"UPDATE {t.bad} SET line = m.line FROM {t.lines} m WHERE {t.bad}._rec = m._rec")
    con.execute(
        f"UPDATE {t.bad} SET reason = reason || ' first seen at line ' || m.line FROM {t.lines} m "
        f"WHERE {t.bad}.ref_rec = m._rec"
    )
