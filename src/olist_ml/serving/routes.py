"""The route groups of the API: ops, churn, delay, action lists (`create_app` wires them).

(No `from __future__ import annotations`: FastAPI reads the endpoint annotations as objects.)
"""

import contextlib
import math
from datetime import UTC, datetime
from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ..errors import OlistMLError
from .guards import check_overrides, naive_utc, own_feature
from .schemas import (
    MAX_EXPLAIN,
    AtRiskOrder,
    AtRiskOrders,
    AtRiskSeller,
    AtRiskSellers,
    BatchChurnOut,
    BatchDelayOut,
    ChurnScore,
    DelayScore,
    ErrorOut,
    OrderIn,
)
from .state import CHURN, DELAY, ServingState, positive_scores


def _problem_slot(state: ServingState, name: str):
    slot = state.slots.get(name)
    if slot is None:
        raise HTTPException(404, f"problem {name} is not served by this process")
    if not slot.ready:
        raise HTTPException(503, f"{name} champion not loaded: {slot.error or 'loading'}")
    return slot


def _snapshot(state: ServingState):
    snap = state.features
    if not snap.ready:
        raise HTTPException(503, f"feature store not loaded: {snap.error or 'loading'}")
    return snap


def _finite(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise HTTPException(500, "the model returned a non-finite score")
    return x


# the order's own features: NULL only when the request left out what they are computed from


def _delay_frame(state: ServingState, orders: list[OrderIn], strict: bool, batch: bool = False):
    slot = _problem_slot(state, DELAY)
    snap = _snapshot(state)
    if snap.delay is None:
        raise HTTPException(503, f"order features not loaded: {snap.error or 'loading'}")
    check_overrides(orders, slot, batch)
    names = list(slot.champion.feature_names)
    from ..problems.order_delay import REQUEST_COLUMNS

    ids = [o.order_id for o in orders if o.order_id]
    if len(set(ids)) < len(ids):
        dup = next(x for i, x in enumerate(ids) if x in ids[:i])
        raise HTTPException(422, f"invalid request: order_id {dup} appears twice")
    now = datetime.now(UTC).replace(tzinfo=None)
    raw = [{k: naive_utc(v) for k, v in o.model_dump(exclude_none=True).items()} for o in orders]
    req = pd.DataFrame([{k: v for k, v in r.items() if k in REQUEST_COLUMNS} for r in raw])
    req["order_purchase_timestamp"] = [r.get("order_purchase_timestamp", now) for r in raw]
    # the rows' keys are the server's own (the client's order_id only comes back in the response):
    # no client id can collide with them, and order_id is no feature
    req["order_id"] = [f"row-{i}" for i in range(len(orders))]
    try:
        frame = snap.delay.frame(req)
    except OlistMLError as e:
        raise HTTPException(422, str(e)) from e
    check_points = [pd.Timestamp(x).date() for x in frame["dt_ref"]]
    in_flight = [
        bool(pd.Timestamp(p) < pd.Timestamp(c)) for p, c in zip(frame["purchase_ts"], frame["dt_ref"], strict=False)
    ]
    past = [f and pd.notna(d) and d < 0 for f, d in zip(in_flight, frame["days_left"], strict=False)]
    known = [o.seller_id in snap.frame.index for o in orders] if snap.frame is not None else [False] * len(orders)
    # a field named like a champion feature (not a raw attribute) overrides the computed value
    overrides = {k for r in raw for k in r if k not in REQUEST_COLUMNS and k in names}
    for k in overrides:
        given = [r.get(k) for r in raw]
        col = frame[k].astype(object) if k in frame.columns else pd.Series([None] * len(frame), dtype=object)
        frame[k] = [g if g is not None else c for g, c in zip(given, col, strict=False)]
    for c in names:
        if c not in frame.columns:
            frame[c] = np.nan  # left for the model's imputer
    df = frame[names].copy()
    for c in names:
        if df[c].dtype == object and slot.feature_kinds.get(c) != "category":
            with contextlib.suppress(TypeError, ValueError):
                df[c] = pd.to_numeric(df[c])
    imputed = [[c for c in names if pd.isna(df.at[i, c])] for i in range(len(df))]
    if strict:
        for o, miss in zip(orders, imputed, strict=False):
            own = [c for c in miss if own_feature(c)]
            if own:
                raise HTTPException(
                    422,
                    f"the {DELAY} champion (version {slot.version}) needs order fields missing from the request"
                    f"{' for order ' + o.order_id if o.order_id else ''}: " + ", ".join(own),
                )
    return slot, snap, df, known, imputed, (check_points, in_flight, past)


def _explained(ex, i: int, k: int) -> dict:
    """The Explained fields of row i of an `Explanation` (none when k is 0)."""
    if not k or ex is None:
        return {}
    return {"reasons": ex.reasons(i, k), "margin": float(ex.margin[i]), "base": float(ex.base)}


def _score_orders(
    state: ServingState, orders: list[OrderIn], strict: bool = False, batch: bool = False, explain: int = 0
) -> list[DelayScore]:
    slot, snap, df, known, imputed, (check_points, in_flight, past) = _delay_frame(state, orders, strict, batch)
    try:
        scores = np.asarray(positive_scores(slot.champion, df), dtype=float)
    except Exception as e:  # noqa: BLE001 - any model failure is the client's 422
        raise HTTPException(
            422, f"the {DELAY} champion could not score these orders: {type(e).__name__}: {e}".splitlines()[0]
        ) from e
    scores = np.where(past, 1.0, scores)  # not delivered by its promised day: late, whatever a model says
    ex = None
    if explain:
        from ..ml.explain import explain as explain_rows

        try:
            ex = explain_rows(slot.champion, df)
        except Exception as e:  # noqa: BLE001 - a model without reasons: the client asked for them
            raise HTTPException(
                422, f"the {DELAY} champion cannot explain these orders: {type(e).__name__}: {e}".splitlines()[0]
            ) from e
    info = slot.info()
    names = [c for c in slot.champion.feature_names if c in df.columns]
    state.log_served(
        DELAY,
        slot,
        snap.dt_ref if getattr(snap, "delay", None) is None else snap.delay.scoring_date,
        [{"order_id": o.order_id} for o in orders],
        lambda: df[names].to_dict("records"),
        [float(s) for s in scores],
        "/batch/delay" if batch else "/orders/delay",
    )
    return [
        DelayScore(
            order_id=o.order_id,
            seller_id=o.seller_id,
            score=_finite(s),
            check_point=c,
            in_flight=f,
            past_promise=bool(pp),
            seller_known=k,
            imputed=m,
            model_name=info["model_name"],
            model_version=str(slot.version),
            dt_ref=snap.dt_ref,
            **_explained(ex, i, explain),
        )
        for i, (o, s, c, f, pp, k, m) in enumerate(
            zip(orders, scores, check_points, in_flight, past, known, imputed, strict=False)
        )
    ]


def ops_routes(
    app: FastAPI, state: ServingState, auth: list, max_body_bytes: int, max_batch: int, errors: dict
) -> None:
    """/health (open), /ready (503 with the reasons), /models."""

    @app.get("/health", tags=["ops"])
    async def health() -> dict:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["ops"],
        dependencies=auth,
        responses={
            **{k: v for k, v in errors.items() if k != 503},
            200: {"description": "ready"},
            503: {"description": "not ready: `reasons` says why"},
        },
    )
    async def ready():
        ok, reasons = state.readiness()
        body = {
            "ready": ok,
            "reasons": reasons,
            "models": {n: s.info() for n, s in state.slots.items()},
            "dt_ref": state.features.dt_ref,
        }
        return JSONResponse(status_code=200 if ok else 503, content=jsonable_encoder(body))

    @app.get("/models", tags=["ops"], dependencies=auth, responses=errors)
    async def models() -> dict:
        snap = state.features
        return {
            "models": {n: s.info() for n, s in state.slots.items()},
            "features": {
                "dt_ref": snap.dt_ref,
                "n_sellers": 0 if snap.frame is None else len(snap.frame),
                "error": state.features_fault or snap.error,
            },
            "poll_seconds": state.poll_seconds,
            "limits": {"max_body_bytes": max_body_bytes, "max_batch": max_batch},
        }


Explain = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_EXPLAIN,
        description="reasons per score: the k largest contributions to the model's margin (0: the score only)",
    ),
]


def _churn_explained(state: ServingState, snap, seller_id: str, k: int) -> dict:
    if not k:
        return {}
    ex = snap.churn_explanation
    if ex is None:
        raise HTTPException(503, f"churn reasons not available: {snap.explain_error or 'not computed yet'}")
    return _explained(ex, snap.churn_rows[seller_id], k)


def _log_churn(state: ServingState, slot, snap, sellers: list[str], scores: list, endpoint: str) -> None:
    """The served log of churn answers: the champion's features of each seller from the snapshot (read on
    the log's writer thread, off the request's path)."""
    names = list(slot.champion.feature_names) if slot.champion is not None else []
    frame = snap.churn_frame

    def features() -> list[dict]:
        cols = [c for c in names if c in frame.columns]
        return [frame.loc[s, cols].to_dict() for s in sellers]

    state.log_served(
        CHURN,
        slot,
        snap.dt_ref,
        [{"seller_id": s} for s in sellers],
        features if frame is not None else None,
        scores,
        endpoint,
    )


def churn_routes(app: FastAPI, state: ServingState, auth: list, BatchChurnIn, errors: dict) -> None:
    """GET /sellers/{seller_id}/churn and POST /batch/churn: the feature snapshot's scores."""

    @app.get(
        "/sellers/{seller_id}/churn",
        tags=["churn"],
        dependencies=auth,
        response_model=ChurnScore,
        responses={**errors, 404: {"model": ErrorOut, "description": "unknown seller"}},
    )
    async def seller_churn(
        seller_id: Annotated[str, Path(min_length=1, max_length=64)], explain: Explain = 0
    ) -> ChurnScore:
        slot = _problem_slot(state, CHURN)
        snap = _snapshot(state)
        if snap.churn_scores is None:
            raise HTTPException(503, f"churn scores not available: {snap.error or 'scoring'}")
        score = snap.churn_scores.get(seller_id)
        if score is None:
            raise HTTPException(404, f"unknown seller {seller_id}: no {CHURN} feature row at dt_ref {snap.dt_ref}")
        _log_churn(state, slot, snap, [seller_id], [score], "/sellers/{seller_id}/churn")
        return ChurnScore(
            seller_id=seller_id,
            score=_finite(score),
            model_name=slot.info()["model_name"],
            model_version=str(snap.churn_version),
            dt_ref=snap.dt_ref,
            **_churn_explained(state, snap, seller_id, explain),
        )

    @app.post("/batch/churn", tags=["churn"], dependencies=auth, response_model=BatchChurnOut, responses=errors)
    async def batch_churn(body: BatchChurnIn, explain: Explain = 0) -> BatchChurnOut:  # type: ignore[valid-type]
        slot = _problem_slot(state, CHURN)
        snap = _snapshot(state)
        if snap.churn_scores is None:
            raise HTTPException(503, f"churn scores not available: {snap.error or 'scoring'}")
        results, unknown = [], []
        name = slot.info()["model_name"]
        for sid in body.seller_ids:
            s = snap.churn_scores.get(sid)
            if s is None:
                unknown.append(sid)
            else:
                results.append(
                    ChurnScore(
                        seller_id=sid,
                        score=_finite(s),
                        model_name=name,
                        model_version=str(snap.churn_version),
                        dt_ref=snap.dt_ref,
                        **_churn_explained(state, snap, sid, explain),
                    )
                )
        _log_churn(state, slot, snap, [r.seller_id for r in results], [r.score for r in results], "/batch/churn")
        return BatchChurnOut(
            model_name=name, model_version=str(snap.churn_version), dt_ref=snap.dt_ref, results=results, unknown=unknown
        )


Page = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page")]
PageSize = Annotated[int, Query(ge=1, le=1000, description="rows per page")]


def _page(state: ServingState, problem: str, page: int, page_size: int) -> tuple[pd.DataFrame, dict]:
    snap = _snapshot(state)
    df = (snap.actions or {}).get(problem)
    if df is None:
        alias = "churn" if problem == CHURN else "delay"
        raise HTTPException(404, f"no {problem} action list in the warehouse: run `olist-ml actions {alias}`")
    rows = df.iloc[(page - 1) * page_size : page * page_size]
    meta = {
        "dt_ref": pd.Timestamp(df["dt_ref"].iloc[0]).date(),
        "model_version": str(df["model_version"].iloc[0]),
        "total": int(len(df)),
        "page": page,
        "page_size": page_size,
    }
    return rows, meta


def _texts(r: dict) -> list[str]:
    return [r[k] for k in ("reason_1", "reason_2", "reason_3") if isinstance(r.get(k), str)]


def _none(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA else v


def actions_routes(app: FastAPI, state: ServingState, auth: list, errors: dict) -> None:
    """GET /sellers/at-risk and /orders/at-risk: the action lists as `olist-ml actions` wrote them."""
    missing = {404: {"model": ErrorOut, "description": "no action list yet (run `olist-ml actions ...`)"}}

    @app.get(
        "/sellers/at-risk",
        tags=["actions"],
        dependencies=auth,
        response_model=AtRiskSellers,
        responses={**errors, **missing},
    )
    async def sellers_at_risk(page: Page = 1, page_size: PageSize = 50) -> AtRiskSellers:
        """Active sellers ranked by expected GMV at risk = P(churn) x expected GMV over the horizon if retained."""
        rows, meta = _page(state, CHURN, page, page_size)
        results = [
            AtRiskSeller(
                rank=int(r["rank"]),
                seller_id=str(r["seller_id"]),
                p_churn=_finite(r["p_churn"]),
                expected_gmv=_finite(r["expected_gmv"]),
                value_at_risk=_finite(r["value_at_risk"]),
                segment=_none(r.get("segment")),
                reasons=_texts(r),
            )
            for r in rows.to_dict("records")
        ]
        return AtRiskSellers(**meta, results=results)

    @app.get(
        "/orders/at-risk",
        tags=["actions"],
        dependencies=auth,
        response_model=AtRiskOrders,
        responses={**errors, **missing},
    )
    async def orders_at_risk(page: Page = 1, page_size: PageSize = 50) -> AtRiskOrders:
        """Orders open at the list's date ranked by P(late), with days left and carrier status."""
        rows, meta = _page(state, DELAY, page, page_size)
        results = [
            AtRiskOrder(
                rank=int(r["rank"]),
                order_id=str(r["order_id"]),
                seller_id=_none(r.get("seller_id")),
                p_late=_finite(r["p_late"]),
                days_left=None if _none(r.get("days_left")) is None else int(r["days_left"]),
                carrier_status=_none(r.get("carrier_status")),
                reasons=_texts(r),
            )
            for r in rows.to_dict("records")
        ]
        return AtRiskOrders(**meta, results=results)


def delay_routes(app: FastAPI, state: ServingState, auth: list, BatchDelayIn, errors: dict) -> None:
    """POST /orders/delay and /batch/delay: new orders and orders in flight (`_score_orders`)."""

    @app.post("/orders/delay", tags=["delay"], dependencies=auth, response_model=DelayScore, responses=errors)
    def order_delay(order: OrderIn, strict: bool = False, explain: Explain = 0) -> DelayScore:
        """`strict=true`: 422 when a champion feature is neither in the request nor derivable."""
        return _score_orders(state, [order], strict, explain=explain)[0]

    @app.post("/batch/delay", tags=["delay"], dependencies=auth, response_model=BatchDelayOut, responses=errors)
    def batch_delay(body: BatchDelayIn, strict: bool = False, explain: Explain = 0) -> BatchDelayOut:  # type: ignore[valid-type]
        results = _score_orders(state, body.orders, strict, batch=True, explain=explain)
        r0 = results[0]
        return BatchDelayOut(
            model_name=r0.model_name, model_version=r0.model_version, dt_ref=r0.dt_ref, results=results
        )
