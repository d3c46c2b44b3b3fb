"""Predictions are records, not derived state (DESIGN.md principle 8).

`scores_<problem>` and `seller_segments` hold what the system told the business: an append-only
history, one batch per (scoring date, model version, data it was computed from). Nothing the data
or the settings do later deletes a batch:

* every batch carries `data_fp`, the fingerprint of the facts its problem reads as known strictly
  before its scoring date (`olist_ml.lineage.asof_fingerprints`, the same rule as the feature store);
* when those facts change later (history rewritten: other prices, another data set, a late
  correction), the batch is kept and marked `data_revised_at` (the first time the change was seen);
  `olist-ml summary` counts them;
* scoring the same (dt_ref, version) again from the same data replaces that batch (idempotent);
  from revised data it appends a new batch beside the revised one. The current scores of a dt_ref
  are its latest batch (`latest_batch_sql`);
* only `olist-ml scores delete` removes history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import pandas as pd

from .warehouse import table_exists, transaction

RECORD_COLUMNS = {"data_fp": "VARCHAR", "data_revised_at": "TIMESTAMP"}


def now_utc() -> dt.datetime:
    """Naive UTC to the second: the time columns of the records (`scored_at`, `data_revised_at`)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def ensure_columns(con: duckdb.DuckDBPyConnection, table: str, time_column: str = "dt_ref") -> None:
    """Add the record columns to a table written before they existed. Its old batches keep `data_fp` NULL:
    they were fingerprinted by an earlier rule, so they are never marked revised (their old lineage records
    are dropped). Call it inside the caller's transaction."""
    from . import lineage

    have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    missing = [c for c in RECORD_COLUMNS if c not in have]
    for c in missing:
        con.execute(f"ALTER TABLE {table} ADD COLUMN {c} {RECORD_COLUMNS[c]}")
    if "data_fp" in missing:
        lineage.forget(con, table)


def write_batch(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: pd.DataFrame,
    create_sql: str,
    *,
    dt_ref: dt.date,
    model_version: str | None,
    data_fp: str,
    time_column: str = "dt_ref",
    types: dict[str, str] | None = None,
) -> int:
    """Append one batch (replacing an earlier batch of the same dt_ref, version and data), in one
    transaction. `rows` holds the table's columns but the record columns; `create_sql` creates the table;
    a column of `rows` that an older table lacks is added with its type in `types` (default VARCHAR)."""
    out = rows.copy()
    out["data_fp"] = data_fp
    out["data_revised_at"] = pd.Series([pd.NaT] * len(out), dtype="datetime64[us]")
    with transaction(con):
        con.execute(create_sql)
        ensure_columns(con, table, time_column)
        have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
        for c in out.columns:
            if c not in have:  # a table from before an extra column existed
                con.execute(f"ALTER TABLE {table} ADD COLUMN {c} {(types or {}).get(c, 'VARCHAR')}")
        version = "model_version IS NULL" if model_version is None else "model_version = ?"
        con.execute(
            f"DELETE FROM {table} WHERE CAST({time_column} AS DATE) = ? AND {version} AND data_fp = ?",
            [dt_ref, *([] if model_version is None else [str(model_version)]), data_fp],
        )
        con.register("_olist_batch", out)
        cols = ", ".join(out.columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _olist_batch")
        con.unregister("_olist_batch")
    return len(out)


@dataclass(frozen=True)
class Revision:
    table: str
    dt_refs: tuple[dt.date, ...]  # newly marked revised

    def line(self) -> str:
        return (
            f"{self.table}: {len(self.dt_refs)} scored dt_ref(s) computed from data revised since "
            f"(kept, marked data_revised_at)"
            if self.dt_refs
            else ""
        )


def _batches(con, table: str, time_column: str) -> pd.DataFrame:
    return con.execute(
        f"SELECT CAST({time_column} AS DATE) AS dt_ref, data_fp, count(*) AS n, "
        f"bool_or(data_revised_at IS NOT NULL) AS revised FROM {table} GROUP BY ALL"
    ).df()


def mark_revised(
    con: duckdb.DuckDBPyConnection,
    table: str,
    reads: Iterable[str] | None,
    time_column: str = "dt_ref",
) -> Revision:
    """Mark the batches whose data as known before their dt_ref changed since they were written."""
    from . import lineage

    if not table_exists(con, table):
        return Revision(table, ())
    with transaction(con):
        ensure_columns(con, table, time_column)
    b = _batches(con, table, time_column)
    b = b[~b["revised"] & b["data_fp"].notna()]
    if b.empty:
        return Revision(table, ())
    days = [pd.Timestamp(d).date() for d in b["dt_ref"]]
    asof = lineage.asof_fingerprints(con, days, reads)
    changed = [(d, fp) for d, fp in zip(days, b["data_fp"], strict=True) if asof[d] != fp]
    if changed:
        with transaction(con):
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _olist_revised AS "
                "SELECT unnest(?::DATE[]) AS d, unnest(?::VARCHAR[]) AS fp",
                [[d for d, _ in changed], [fp for _, fp in changed]],
            )
            con.execute(
                f"UPDATE {table} SET data_revised_at = ? FROM _olist_revised r "
                f"WHERE {table}.data_revised_at IS NULL AND CAST({table}.{time_column} AS DATE) = r.d "
                f"AND {table}.data_fp = r.fp",
                [now_utc()],
            )
    return Revision(table, tuple(sorted({d for d, _ in changed})))


def status(
    con: duckdb.DuckDBPyConnection, table: str, reads: Iterable[str] | None, time_column: str = "dt_ref"
) -> dict:
    """{table, dt_refs, batches, rows, revised: dt_refs with a batch whose data was revised since (marked,
    or seen now: read-only, nothing is written), first, last} (`olist-ml summary`)."""
    from . import lineage

    have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    fp = "data_fp" if "data_fp" in have else "CAST(NULL AS VARCHAR)"
    marked = "data_revised_at IS NOT NULL" if "data_revised_at" in have else "FALSE"
    b = con.execute(
        f"SELECT CAST({time_column} AS DATE) AS d, model_version, {fp} AS data_fp, count(*) AS n, "
        f"bool_or({marked}) AS marked FROM {table} GROUP BY ALL"
    ).df()
    days = sorted({pd.Timestamp(d).date() for d in b["d"]})
    asof = lineage.asof_fingerprints(con, days, reads) if days else {}
    b["revised"] = [
        bool(m) or (f is not None and not pd.isna(f) and asof.get(pd.Timestamp(d).date()) != f)
        for d, f, m in zip(b["d"], b["data_fp"], b["marked"], strict=True)
    ]
    return {
        "table": table,
        "dt_refs": len(days),
        "batches": int(len(b)),
        "rows": int(b["n"].sum()) if len(b) else 0,
        "revised": int(b.loc[b["revised"], "d"].nunique()),
        "first": days[0] if days else None,
        "last": days[-1] if days else None,
    }


def latest_batch_sql(table: str, time_column: str = "dt_ref") -> str:
    """The current rows of every dt_ref: its latest batch (by `scored_at`)."""
    latest = f"max(scored_at) OVER (PARTITION BY CAST({time_column} AS DATE))"
    return f"SELECT * FROM {table} QUALIFY scored_at IS NOT DISTINCT FROM {latest}"


def delete(
    con: duckdb.DuckDBPyConnection,
    table: str,
    *,
    dt_ref: dt.date | None = None,
    before: dt.date | None = None,
    version: str | None = None,
    revised_only: bool = False,
    time_column: str = "dt_ref",
) -> int:
    """Remove history explicitly (`olist-ml scores delete`); returns the rows removed."""
    if not table_exists(con, table):
        return 0
    where, params = ["TRUE"], []
    if dt_ref is not None:
        where.append(f"CAST({time_column} AS DATE) = ?")
        params.append(dt_ref)
    if before is not None:
        where.append(f"CAST({time_column} AS DATE) < ?")
        params.append(before)
    if version is not None:
        where.append("model_version = ?")
        params.append(str(version))
    if revised_only:
        where.append("data_revised_at IS NOT NULL")
    with transaction(con):
        ensure_columns(con, table, time_column)
        n = con.execute(f"SELECT count(*) FROM {table} WHERE {' AND '.join(where)}", params).fetchall()[0][0]
        con.execute(f"DELETE FROM {table} WHERE {' AND '.join(where)}", params)
    return int(n)
