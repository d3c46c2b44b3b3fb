"""Reading the feature store: the joined feature frame, available dt_refs, as-of retrieval."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from ..errors import InputError, MissingStepError
from ..warehouse import table_exists
from .build import BUILD_LOG, resolve_tables
from .catalog import KEY_COLUMNS

SPINE = "fs_seller_sales"


def feature_frame_sql(tables: list[str] | None = None) -> str:
    """`SELECT dt_ref, seller_id, <every feature>` over the feature tables joined on (dt_ref, seller_id).

    The spine is fs_seller_sales (all tables share its rows); DuckDB SQL.
    """
    names = resolve_tables(tables)
    sel = ["s.dt_ref", "s.seller_id"]
    joins = []
    for i, t in enumerate(names):
        alias = "s" if t == SPINE else f"t{i}"
        sel.append(f"{alias}.* EXCLUDE (dt_ref, seller_id)")
        if alias != "s":
            joins.append(f"LEFT JOIN {t} {alias} ON {alias}.dt_ref = s.dt_ref AND {alias}.seller_id = s.seller_id")
    return "SELECT " + ", ".join(sel) + f" FROM {SPINE} s " + " ".join(joins)


def _require(con, tables: list[str]) -> None:
    missing = [t for t in tables if not table_exists(con, t)]
    if missing:
        raise MissingStepError(f"feature table {', '.join(missing)} not built: run `olist-ml features build` first")


def feature_columns(con: duckdb.DuckDBPyConnection, tables: list[str] | None = None) -> list[str]:
    """Feature names (without dt_ref/seller_id) of the built tables, in feature-frame order."""
    names = [t for t in resolve_tables(tables) if table_exists(con, t)]
    out: list[str] = []
    for t in names:
        out += [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall() if r[0] not in KEY_COLUMNS]
    return out


def available_dt_refs(con: duckdb.DuckDBPyConnection) -> list[dt.date]:
    """dt_refs built for the spine table (including dt_refs where no seller was active)."""
    if table_exists(con, BUILD_LOG):
        rows = con.execute(
            f"SELECT DISTINCT dt_ref FROM {BUILD_LOG} WHERE table_name = ? ORDER BY 1", [SPINE]
        ).fetchall()
        if rows:
            return [r[0] for r in rows]
    if not table_exists(con, SPINE):
        return []
    return [r[0] for r in con.execute(f"SELECT DISTINCT dt_ref FROM {SPINE} ORDER BY 1").fetchall()]


def as_of(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    ts_col: str = "ts",
    seller_col: str = "seller_id",
    tables: list[str] | None = None,
) -> pd.DataFrame:
    """Each row of `frame` joined to the features at the latest built dt_ref <= its `ts_col`.

    dt_ref is a midnight and its features only use facts before it, so a row at time ts only
    sees facts before ts. The row gets `feature_dt_ref`; features are NULL when the seller has
    no row at that dt_ref (not yet selling, or inactive longer than the longest window) or when
    no dt_ref <= ts was built. The frame's order and columns are kept.
    """
    names = resolve_tables(tables)
    _require(con, names if SPINE in names else [SPINE, *names])
    for c in (ts_col, seller_col):
        if c not in frame.columns:
            raise InputError(f"as_of: frame has no column {c!r} (columns: {', '.join(map(str, frame.columns))})")
    dts = available_dt_refs(con)
    f = frame.reset_index(drop=True).copy()
    f["__rid"] = range(len(f))
    con.register("__asof_frame", f)
    con.register("__asof_dates", pd.DataFrame({"dt_ref": pd.to_datetime(pd.Series(dts, dtype="object"))}))
    try:
        feats = feature_frame_sql(names)
        sql = f"""
        WITH d AS (SELECT CAST(dt_ref AS TIMESTAMP) AS dts FROM __asof_dates),
        k AS (
          SELECT f.__rid, f."{seller_col}" AS __sid, CAST(d.dts AS DATE) AS feature_dt_ref
          FROM __asof_frame f ASOF LEFT JOIN d ON CAST(f."{ts_col}" AS TIMESTAMP) >= d.dts
        )
        SELECT k.__rid, k.feature_dt_ref, ff.* EXCLUDE (dt_ref, seller_id)
        FROM k LEFT JOIN ({feats}) ff ON ff.dt_ref = k.feature_dt_ref AND ff.seller_id = k.__sid
        ORDER BY k.__rid
        """
        feat = con.execute(sql).df()
    finally:
        con.unregister("__asof_frame")
        con.unregister("__asof_dates")
    out = f.merge(feat, on="__rid", how="left", suffixes=("", "_feature")).sort_values("__rid")
    return out.drop(columns="__rid").reset_index(drop=True)
