"""Action lists: who to call first, which order to expedite (issue 21, item 4).

`olist-ml actions churn [--dt-ref D] [--top N] [--out FILE]` ranks the active sellers scored at D by the
**expected GMV at risk** = P(churn) x the GMV the seller is expected to bring over the churn horizon if
retained. That expectation is the seller's recent daily GMV carried over the horizon, from point-in-time
features of the feature store at D (facts before D only):

    expected_gmv = gmv_<W>d / min(W, days_since_first_sale) x churn.horizon_days

with W the longest feature window (180 days by default): the GMV of the last W days per day the seller
has been selling in them (a seller younger than W days is not diluted by days before its first sale),
times the horizon (45 days). Each row carries the seller's segment (`scores_seller_segments`, the
latest batch at or before D, when segments were scored) and why it is at risk: the three largest
contributions that RAISE its P(churn) (the scores' own top-3 are by |contribution|, both directions),
by the model version that scored it, as sentences.

`olist-ml actions delay [--dt-ref D] [--top N] [--out FILE]` ranks the orders open at D (the population
`olist-ml predict delay` scored at D) by P(late), with the days left to the promised date, the carrier
status at D (handed over on ..., or awaiting the carrier, past its shipping limit or not) and the reasons.

Both read the CURRENT scores at D: the rows of D whose `scored_at` is the latest at D (a score history
may hold several batches per date). Each writes `actions_<problem>` (the rows of D replaced, atomically)
and, with `--out`, a CSV or Parquet file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import InputError, MissingStepError
from ..warehouse import session, table_exists, transaction

CHURN = "seller_churn"
DELAY = "order_delay"
TABLES = {CHURN: "actions_seller_churn", DELAY: "actions_order_delay"}
ALIASES = {"churn": CHURN, CHURN: CHURN, "delay": DELAY, DELAY: DELAY, "order-delay": DELAY}


@dataclass
class ActionList:
    problem: str
    table: str
    dt_ref: date
    model_version: str
    rows: pd.DataFrame  # ranked, rank 1 first
    exported: Path | None = None


def problem_of(name: str) -> str:
    key = (name or "").strip().lower()
    if key not in ALIASES:
        from ..errors import UnknownNameError

        raise UnknownNameError(f"no action list for '{name}': choose churn (seller_churn) or delay (order_delay)")
    return ALIASES[key]


def current_scores(con, problem: str, dt_ref: date | None = None) -> tuple[date, pd.DataFrame]:
    """(D, the current scores at D): the rows of `scores_<problem>` at D (default: its latest date) whose
    scored_at is the latest at D."""
    table = f"scores_{problem}"
    alias = "churn" if problem == CHURN else "delay"
    if not table_exists(con, table):
        raise MissingStepError(f"warehouse has no table {table}: run `olist-ml predict {alias}` first")
    if dt_ref is None:
        dt_ref = con.execute(f"SELECT max(dt_ref) FROM {table}").fetchall()[0][0]
        if dt_ref is None:
            raise MissingStepError(f"{table} is empty: run `olist-ml predict {alias}` first")
    d = pd.Timestamp(dt_ref).date()
    df = con.execute(
        f"SELECT * FROM {table} WHERE dt_ref = ? AND scored_at = (SELECT max(scored_at) FROM {table} WHERE dt_ref = ?)",
        [d, d],
    ).df()
    if df.empty:
        have = [r[0] for r in con.execute(f"SELECT DISTINCT dt_ref FROM {table} ORDER BY 1 DESC LIMIT 3").fetchall()]
        raise MissingStepError(
            f"{table} has no scores at {d} (latest: {', '.join(map(str, have)) or 'none'}): "
            f"run `olist-ml predict {alias} --dt-ref {d}`"
        )
    return d, df


def _reason_texts(df: pd.DataFrame, up: dict | None = None, key: str = "") -> pd.DataFrame:
    """reason_1..3 as sentences: the three largest contributions that RAISE the score (why at risk), from the
    champion's explanation of the scored rows (`up`: key -> reasons); without it, the scores' own top-3 (by
    |contribution|). `reasons`: the JSON the list is built from."""
    out = pd.DataFrame(index=df.index)
    if up is not None:
        parsed = [up.get(k, []) for k in df[key]]
        out["reasons"] = [json.dumps(p, separators=(",", ":")) for p in parsed]
    else:
        parsed = [json.loads(x) if isinstance(x, str) else [] for x in df.get("reasons", pd.Series([None] * len(df)))]
        out["reasons"] = df["reasons"] if "reasons" in df.columns else None
    for i in range(3):
        out[f"reason_{i + 1}"] = [p[i]["text"] if len(p) > i else None for p in parsed]
    return out[["reason_1", "reason_2", "reason_3", "reasons"]]


def risk_reasons(con, settings: Settings, problem: str, d: date, version: str, k: int = 3) -> dict | None:
    """key -> the k largest contributions that raise the score, by the model version that scored the rows,
    on the population it scored at D (`Problem.scoring_frame`); None when that cannot be computed (a model
    without reasons, a version gone from the registry): the list then shows the scores' own reasons."""
    from ..ml import explain, registry
    from ..problems import get

    try:
        p = get(problem)
        champ = registry.load_version(settings, p.name, version)
        frame = p.scoring_frame(con, settings, d)
        ex = explain.explain(champ, frame)
    except Exception:  # noqa: BLE001 - the scores' own top-3 reasons are the fallback
        return None
    key = [c for c in p.key_columns if c != p.time_column][0]
    return {frame[key].iloc[i]: ex.reasons(i, k, direction="up") for i in range(len(frame))}


def expected_gmv_sql(settings: Settings) -> tuple[str, int, int]:
    """(SQL expression over fs_seller_sales, window W, horizon days) of the expected GMV if retained."""
    from ..features.catalog import F

    w = max(settings.feature_windows)
    h = int(settings.churn.horizon_days)
    gmv = F.gmv.at(w).column(settings)
    first = F.days_since_first_sale.column()
    expr = f"coalesce({gmv}, 0) / greatest(1, least({w}, {first})) * {h}"
    return expr, w, h


def churn_list(con, settings: Settings, dt_ref: date | None = None) -> ActionList:
    from ..features.catalog import F

    d, sc = current_scores(con, CHURN, dt_ref)
    expr, w, h = expected_gmv_sql(settings)
    gmv, last = F.gmv.at(w).column(settings), F.days_since_last_sale.column()
    feats = con.execute(
        f"SELECT seller_id, {expr} AS expected_gmv, {gmv} AS gmv_window, {last} AS days_since_last_sale "
        f"FROM fs_seller_sales WHERE dt_ref = ?",
        [d],
    ).df()
    df = sc[["seller_id", "score", "model_version", "scored_at"]].merge(feats, on="seller_id", how="left")
    df = df.rename(columns={"score": "p_churn", "gmv_window": f"gmv_{w}d"})
    df["expected_gmv"] = df["expected_gmv"].fillna(0.0)
    df["value_at_risk"] = df["p_churn"] * df["expected_gmv"]
    df["segment"] = _segments(con, d, df["seller_id"])
    up = risk_reasons(con, settings, CHURN, d, str(sc["model_version"].iloc[0]))
    df = pd.concat([df, _reason_texts(sc.reset_index(drop=True), up, "seller_id").set_index(df.index)], axis=1)
    df = df.sort_values(["value_at_risk", "p_churn", "seller_id"], ascending=[False, False, True])
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df.insert(0, "dt_ref", d)
    return ActionList(CHURN, TABLES[CHURN], d, str(df["model_version"].iloc[0]), df.reset_index(drop=True))


def _segments(con, d: date, sellers: pd.Series) -> list:
    t = "scores_seller_segments"
    if not table_exists(con, t):
        return [None] * len(sellers)
    cols = {r[0] for r in con.execute(f"SELECT * FROM {t} LIMIT 0").description}
    name = "segment_name" if "segment_name" in cols else "'segment ' || CAST(score AS VARCHAR)"
    seg = con.execute(
        f"WITH d AS (SELECT max(dt_ref) AS d FROM {t} WHERE dt_ref <= ?), "
        f"b AS (SELECT max(scored_at) AS s FROM {t} JOIN d ON {t}.dt_ref = d.d) "
        f"SELECT seller_id, {name} AS segment FROM {t} JOIN d ON {t}.dt_ref = d.d JOIN b ON {t}.scored_at = b.s",
        [d],
    ).df()
    m = dict(zip(seg["seller_id"], seg["segment"], strict=False))
    return [m.get(s) for s in sellers]


def delay_list(con, settings: Settings, dt_ref: date | None = None) -> ActionList:
    d, sc = current_scores(con, DELAY, dt_ref)
    con.register("_olist_action_orders", sc[["order_id"]])
    try:
        info = con.execute(
            """
            SELECT o.order_id, any_value(i.seller_id) AS seller_id,
                   CAST(o.order_estimated_delivery_date AS DATE) AS promised_date,
                   o.order_delivered_carrier_date AS carrier_at, max(i.shipping_limit_date) AS shipping_limit
            FROM _olist_action_orders a JOIN stg_orders o ON o.order_id = a.order_id
            LEFT JOIN stg_order_items i ON i.order_id = o.order_id
            GROUP BY o.order_id, o.order_estimated_delivery_date, o.order_delivered_carrier_date
            """
        ).df()
    finally:
        con.unregister("_olist_action_orders")
    df = sc[["order_id", "score", "model_version", "scored_at"]].merge(info, on="order_id", how="left")
    df = df.rename(columns={"score": "p_late"})
    day = pd.Timestamp(d)
    df["days_left"] = (pd.to_datetime(df["promised_date"]) - day).dt.days
    handed = pd.to_datetime(df["carrier_at"]) < day
    limit = pd.to_datetime(df["shipping_limit"])
    df["carrier_status"] = np.where(
        handed,
        "handed to carrier " + pd.to_datetime(df["carrier_at"]).dt.strftime("%Y-%m-%d").fillna(""),
        np.where(
            limit < day,
            "awaiting carrier, shipping limit passed " + limit.dt.strftime("%Y-%m-%d").fillna(""),
            "awaiting carrier, shipping limit " + limit.dt.strftime("%Y-%m-%d").fillna("unknown"),
        ),
    )
    up = risk_reasons(con, settings, DELAY, d, str(sc["model_version"].iloc[0]))
    df = pd.concat([df, _reason_texts(sc.reset_index(drop=True), up, "order_id").set_index(df.index)], axis=1)
    df = df.drop(columns=["carrier_at"]).sort_values(["p_late", "days_left", "order_id"], ascending=[False, True, True])
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df.insert(0, "dt_ref", d)
    return ActionList(DELAY, TABLES[DELAY], d, str(df["model_version"].iloc[0]), df.reset_index(drop=True))


def write_list(con, al: ActionList) -> None:
    """Replace the rows of al.dt_ref in `actions_<problem>` by al.rows, in one transaction."""
    rows = al.rows.copy()
    rows["created_at"] = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    con.register("_olist_actions", rows)
    try:
        with transaction(con):
            con.execute(f"CREATE TABLE IF NOT EXISTS {al.table} AS SELECT * FROM _olist_actions LIMIT 0")
            have = [r[0] for r in con.execute(f"SELECT * FROM {al.table} LIMIT 0").description]
            if have != list(rows.columns):  # an older layout: the table follows the current one
                con.execute(f"DROP TABLE {al.table}")
                con.execute(f"CREATE TABLE {al.table} AS SELECT * FROM _olist_actions LIMIT 0")
            con.execute(f"DELETE FROM {al.table} WHERE dt_ref = ?", [al.dt_ref])
            con.execute(f"INSERT INTO {al.table} SELECT * FROM _olist_actions")
    finally:
        con.unregister("_olist_actions")


def export(al: ActionList, out: Path) -> Path:
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(f"--out {out}: the action list is written as .csv or .parquet, not '{suffix or 'no suffix'}'")
    if out.parent and not out.parent.exists():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    tmp = out.with_name(out.name + ".tmp")
    if suffix == ".csv":
        al.rows.to_csv(tmp, index=False)
    else:
        al.rows.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


def build(problem: str, settings: Settings, dt_ref: date | None = None, out: Path | None = None) -> ActionList:
    """The action list of `problem` (churn / delay) at `dt_ref`, written to `actions_<problem>` (+ `out`)."""
    name = problem_of(problem)
    if out is not None and Path(out).suffix.lower() not in (".csv", ".parquet"):  # fails before any work
        raise InputError(f"--out {out}: the action list is written as .csv or .parquet")
    with session(settings) as con:
        al = churn_list(con, settings, dt_ref) if name == CHURN else delay_list(con, settings, dt_ref)
        write_list(con, al)
    if out is not None:
        al.exported = export(al, out)
    return al


def lines(al: ActionList, top: int) -> list[str]:
    """The first `top` rows as text lines (what `olist-ml actions` prints)."""
    rows = al.rows.head(top)
    out = []
    for r in rows.itertuples(index=False):
        d = r._asdict()
        why = "; ".join(x for x in (d.get("reason_1"), d.get("reason_2"), d.get("reason_3")) if x) or "-"
        if al.problem == CHURN:
            seg = f" [{d['segment']}]" if d.get("segment") else ""
            out.append(
                f"{d['rank']:>4}. seller {d['seller_id']}{seg}: at risk R$ {d['value_at_risk']:,.0f} = "
                f"P(churn) {d['p_churn']:.2f} x expected R$ {d['expected_gmv']:,.0f}; why: {why}"
            )
        else:
            n = None if pd.isna(d["days_left"]) else int(d["days_left"])
            left = "? days" if n is None else f"{n} day" if n == 1 else f"{n} days"
            out.append(
                f"{d['rank']:>4}. order {d['order_id']} (seller {d['seller_id']}): P(late) {d['p_late']:.2f}, "
                f"{left} left, {d['carrier_status']}; why: {why}"
            )
    return out


def read_latest(con, problem: str) -> pd.DataFrame | None:
    """The latest dt_ref's rows of `actions_<problem>` (None when there is no such table or row)."""
    t = TABLES.get(problem, f"actions_{problem}")
    if not table_exists(con, t):
        return None
    df = con.execute(f"SELECT * FROM {t} WHERE dt_ref = (SELECT max(dt_ref) FROM {t}) ORDER BY rank").df()
    return df if len(df) else None


# ---- is the list worth following? (benchmarks/bench_actions.py) --------------------------------------
def captured_share(lost: np.ndarray, order: np.ndarray, k: int) -> float:
    """Share of the total `lost` that the first k rows of `order` hold."""
    total = float(lost.sum())
    return float(lost[order[:k]].sum() / total) if total > 0 else float("nan")


def precision_at(y: np.ndarray, order: np.ndarray, k: int) -> float:
    k = min(k, len(order))
    return float(y[order[:k]].mean()) if k else float("nan")


def ranking(score: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Row order by descending score (NaN last), ties by `tiebreak` ascending (default: position)."""
    s = np.where(np.isfinite(score), score, -np.inf)
    tb = np.arange(len(s)) if tiebreak is None else tiebreak
    return np.lexsort((tb, -s))
