"""A generated monthly ABT with a known signal and its Problem declaration (no feature store needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from olist_ml.ml.problem import Problem, SplitConfig
from olist_ml.warehouse import replace_table_atomically

N_ENT, MONTHS = 300, 14


def toy_abt(seed: int = 0, shuffle: bool = False) -> pd.DataFrame:
    """Monthly panel: `signal` and `segment` drive the target, `noise` does not; the last two
    months are unlabelled (scoring only)."""
    rng = np.random.default_rng(seed)
    dts = pd.date_range("2017-01-01", periods=MONTHS, freq="MS")
    rows = []
    seg_effect = {"a": -1.0, "b": 0.0, "c": 1.0}
    for i, dt in enumerate(dts):
        ent = rng.choice(N_ENT, size=N_ENT // 2, replace=False)
        signal = rng.normal(size=len(ent))
        seg = rng.choice(list(seg_effect), size=len(ent))
        logit = 2.0 * signal + np.array([seg_effect[s] for s in seg]) - 0.5
        y = (rng.random(len(ent)) < 1 / (1 + np.exp(-logit))).astype(int)
        df = pd.DataFrame(
            {
                "dt_ref": dt.date(),
                "entity_id": [f"e{e:04d}" for e in ent],
                "signal": signal,
                "noise": rng.normal(size=len(ent)),
                "segment": seg,
                "y": y.astype(float),
            }
        )
        df.loc[rng.random(len(df)) < 0.05, "signal"] = np.nan  # some missing values
        if i >= MONTHS - 2:
            df["y"] = np.nan
        rows.append(df)
    abt = pd.concat(rows, ignore_index=True)
    if shuffle:
        lab = abt["y"].notna()
        abt.loc[lab, "y"] = rng.permutation(abt.loc[lab, "y"].to_numpy())
    return abt


def _build(abt: pd.DataFrame):
    def build_abt(con, settings):
        con.register("_toy", abt)
        try:
            return replace_table_atomically(
                con,
                "abt_toy",
                "SELECT dt_ref::DATE AS dt_ref, entity_id, signal, noise, segment, y::INTEGER AS y FROM _toy",
            )
        finally:
            con.unregister("_toy")

    return build_abt


def _scoring_frame(con, settings, as_of):
    if as_of is None:
        as_of = con.execute("SELECT max(dt_ref) FROM abt_toy").fetchall()[0][0]
    return con.execute("SELECT * EXCLUDE (y) FROM abt_toy WHERE dt_ref = ?", [as_of]).df()


def toy_problem(abt: pd.DataFrame, **kw) -> Problem:
    return Problem(
        name="toy_problem",
        kind="binary",
        abt_table="abt_toy",
        key_columns=("dt_ref", "entity_id"),
        time_column="dt_ref",
        group_column="entity_id",
        target="y",
        build_abt=_build(abt),
        scoring_frame=_scoring_frame,
        split=SplitConfig(test_months=3, validation_months=2, cv_folds=2, purge_days=31),
        **kw,
    )
