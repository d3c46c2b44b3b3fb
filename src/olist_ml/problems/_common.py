"""Small helpers shared by the order-delay, activation and segments problems."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd

from ..warehouse import replace_table_atomically


def read_sql(name: str) -> str:
    """The text of `olist_ml/problems/sql/<name>` (`olist_ml.features.render.read_sql`)."""
    from ..features.render import read_sql as read

    return read(f"sql/{name.removesuffix('.sql')}", __package__)


def write_frame_atomically(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame) -> int:
    """Replace `table` with the rows of `df` in one transaction (readers see old or new, never half).

    A `dt_ref` column is stored as DATE."""
    view = f"_olist_{table}_frame"
    con.register(view, df)
    star = "* REPLACE (CAST(dt_ref AS DATE) AS dt_ref)" if "dt_ref" in df.columns else "*"
    try:
        return replace_table_atomically(con, table, f"SELECT {star} FROM {view}")
    finally:
        con.unregister(view)


def as_date(x) -> date | None:
    if x is None:
        return None
    return pd.Timestamp(x).date()


def seller_features_as_of(
    con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, key: str, ts_col: str, prefix: str = "seller_"
) -> pd.DataFrame:
    """Add to `frame` its seller's feature-store features of the latest dt_ref <= `ts_col`
    (`olist_ml.features.as_of`; a dt_ref is midnight and only holds facts strictly before it).

    Only (key, seller_id, ts) are handed to `as_of`, so its own columns cannot collide with
    the frame's. Feature columns get `prefix` (`n_orders_180d` -> `seller_n_orders_180d`);
    rows and order of `frame` are kept; a seller with no feature row yet gets NULLs.
    """
    from .. import features

    cols = [c for c in features.feature_columns(con)]
    probe = frame[[key, "seller_id", ts_col]].rename(columns={ts_col: "ts"})
    probe["ts"] = pd.to_datetime(probe["ts"])
    got = features.as_of(con, probe, ts_col="ts", seller_col="seller_id")
    keep = [c for c in cols if c in got.columns]
    got = got[[key] + keep].drop_duplicates(subset=[key])
    got = got.rename(columns={c: f"{prefix}{c}" for c in keep})
    clash = [c for c in got.columns if c != key and c in frame.columns]
    got = got.drop(columns=clash)
    out = frame.merge(got, on=key, how="left", validate="one_to_one")
    return out
