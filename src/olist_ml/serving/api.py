"""The serving API: FastAPI app over the champions and the latest feature-store rows.

Endpoints (OpenAPI docs at /docs, schema at /openapi.json):

* ``GET /health``                       liveness, always open (no token).
* ``GET /ready``                        200 when every served champion is loaded and the feature
                                        store was read; 503 with the reasons otherwise.
* ``GET /sellers/{seller_id}/churn``    churn score of one seller at the latest dt_ref.
* ``POST /batch/churn``                 the same for a list of seller ids.
* ``POST /orders/delay``                delay score of one order (attributes in the body).
* ``POST /batch/delay``                 the same for a list of orders.
* ``GET /models``                       what is loaded (versions, run ids, dt_ref).

When the env var ``OLIST_ML_API_TOKEN`` is set (or `token=` is passed), every endpoint but
/health and the docs requires ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from datetime import date, datetime, timezone
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from ..config import Settings
from ..errors import OlistMLError
from .state import CHURN, DELAY, ServingState, positive_scores

MAX_BATCH = 10_000
TOKEN_ENV = "OLIST_ML_API_TOKEN"


# ---------------------------------------------------------------------------------------
# request / response models
# ---------------------------------------------------------------------------------------
class ChurnScore(BaseModel):
    seller_id: str
    score: float = Field(description="P(seller churns within the horizon)")
    model_name: str
    model_version: str
    dt_ref: date = Field(description="reference date of the features used")


class BatchChurnIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"seller_ids": ["3442f8959a84dea7ee197c632cb2df15"]}]})
    seller_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=MAX_BATCH)


class BatchChurnOut(BaseModel):
    model_name: str
    model_version: str
    dt_ref: date
    results: list[ChurnScore]
    unknown: list[str] = Field(description="seller ids not in the population at dt_ref")


class OrderIn(BaseModel):
    """Raw attributes of one new order, as known at approval (Olist column names; items summed).

    The server computes the order_delay ABT's whole feature row from them with the ABT's own SQL
    (`olist_ml.problems.order_delay.request_frame`): order features (freight_ratio,
    promised_days, shipping_limit_days, approval_hours, distance_km from the customer's and the
    seller's zip prefixes, same_state, purchase month/weekday), the delivery context of the days
    before the purchase date (route_*, cstate_*, market_*, seller_*_due/overdue_*,
    promise_slack_days) and the seller's feature-store row (`seller_` prefix). Locations absent
    from the request come from the warehouse (customer_id -> stg_customers, seller_id ->
    stg_sellers). order_purchase_timestamp defaults to now (UTC). A field named like an ABT
    feature (e.g. `distance_km`, `promised_days`, or an extra one such as `route_pct_late_90d`)
    overrides the computed value. Champion features that end up NULL are left to the model's
    imputer and listed in the response's `imputed`; `?strict=true` refuses (422) an order whose
    own attributes leave a champion feature NULL."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "o-1",
                    "seller_id": "3442f8959a84dea7ee197c632cb2df15",
                    "customer_state": "SP",
                    "customer_zip_code_prefix": "01310",
                    "order_purchase_timestamp": "2018-08-01T10:00:00",
                    "order_approved_at": "2018-08-01T10:20:00",
                    "order_estimated_delivery_date": "2018-08-15T00:00:00",
                    "shipping_limit_date": "2018-08-07T10:20:00",
                    "order_value": 58.9,
                    "freight_value": 13.29,
                    "n_items": 1,
                    "product_category": "health_beauty",
                    "payment_type": "credit_card",
                    "payment_installments": 1,
                }
            ]
        },
    )
    order_id: str | None = Field(None, max_length=64)
    seller_id: str = Field(min_length=1, max_length=64)
    customer_id: str | None = Field(None, max_length=64, description="known customer: location from stg_customers")
    customer_state: str | None = Field(None, min_length=2, max_length=2, description="two-letter UF")
    customer_zip_code_prefix: str | None = Field(None, min_length=1, max_length=8)
    seller_state: str | None = Field(None, min_length=2, max_length=2, description="default: stg_sellers")
    seller_zip_code_prefix: str | None = Field(None, min_length=1, max_length=8, description="default: stg_sellers")
    order_purchase_timestamp: datetime | None = Field(None, description="default: now (UTC)")
    order_approved_at: datetime | None = None
    order_estimated_delivery_date: datetime | None = None
    shipping_limit_date: datetime | None = None
    order_value: float | None = Field(None, ge=0, description="sum of item prices")
    freight_value: float | None = Field(None, ge=0)
    n_items: int | None = Field(None, ge=1)
    n_products: int | None = Field(None, ge=1)
    n_sellers: int | None = Field(None, ge=1)
    total_weight_g: float | None = Field(None, ge=0)
    max_item_weight_g: float | None = Field(None, ge=0)
    total_volume_cm3: float | None = Field(None, ge=0)
    product_category: str | None = Field(None, max_length=100, description="English category name")
    payment_type: str | None = Field(None, max_length=40)
    payment_installments: int | None = Field(None, ge=0)
    n_payments: int | None = Field(None, ge=1)
    promised_days: int | None = Field(None, ge=0, description="override (default: from the dates)")
    shipping_limit_days: int | None = Field(None, description="override")
    approval_hours: float | None = Field(None, ge=0, description="override")
    distance_km: float | None = Field(None, ge=0, description="override (default: from the zip prefixes)")


class DelayScore(BaseModel):
    order_id: str | None
    seller_id: str
    score: float = Field(description="P(order is delivered after its estimated date)")
    seller_known: bool = Field(description="False: the seller has no feature row at dt_ref (features left NULL)")
    imputed: list[str] = Field(default_factory=list, description="champion features left NULL for the model to impute")
    model_name: str
    model_version: str
    dt_ref: date | None


class BatchDelayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    orders: list[OrderIn] = Field(min_length=1, max_length=MAX_BATCH)


class BatchDelayOut(BaseModel):
    model_name: str
    model_version: str
    dt_ref: date | None
    results: list[DelayScore]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description=f"required when {TOKEN_ENV} is set on the server")


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
# (context features -- route_*, cstate_*, market_*, seller_* -- may be NULL in the ABT too)
CONTEXT_PREFIXES = ("route_", "cstate_", "market_", "seller_")
CONTEXT_FEATURES = ("promise_slack_days",)


def _naive_utc(v):
    """Datetimes as the warehouse stores them: naive UTC."""
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(timezone.utc).replace(tzinfo=None)
    return v


def _own_feature(name: str) -> bool:
    return not name.startswith(CONTEXT_PREFIXES) and name not in CONTEXT_FEATURES


def _delay_frame(state: ServingState, orders: list[OrderIn], strict: bool):
    slot = _problem_slot(state, DELAY)
    snap = _snapshot(state)
    if snap.delay is None:
        raise HTTPException(503, f"order features not loaded: {snap.error or 'loading'}")
    names = list(slot.champion.feature_names)
    from ..problems.order_delay import REQUEST_COLUMNS

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    raw = [{k: _naive_utc(v) for k, v in o.model_dump(exclude_none=True).items()} for o in orders]
    req = pd.DataFrame([{k: v for k, v in r.items() if k in REQUEST_COLUMNS} for r in raw])
    req["order_purchase_timestamp"] = [r.get("order_purchase_timestamp", now) for r in raw]
    req["order_id"] = [o.order_id or f"request-{i}" for i, o in enumerate(orders)]
    if req["order_id"].duplicated().any():
        raise HTTPException(422, f"order_id {req['order_id'][req['order_id'].duplicated()].iloc[0]} appears twice")
    try:
        frame = snap.delay.frame(req)
    except OlistMLError as e:
        raise HTTPException(422, str(e))
    known = [o.seller_id in snap.frame.index for o in orders] if snap.frame is not None else [False] * len(orders)
    # a field named like a feature (not a raw attribute) overrides the computed value
    overrides = {k for r in raw for k in r if k not in REQUEST_COLUMNS and (k in frame.columns or k in names)}
    for k in overrides:
        given = [r.get(k) for r in raw]
        col = frame[k].astype(object) if k in frame.columns else pd.Series([None] * len(frame), dtype=object)
        frame[k] = [g if g is not None else c for g, c in zip(given, col)]
    for c in names:
        if c not in frame.columns:
            frame[c] = np.nan  # left for the model's imputer
    df = frame[names].copy()
    for c in names:
        if df[c].dtype == object:
            with contextlib.suppress(TypeError, ValueError):
                df[c] = pd.to_numeric(df[c])
    imputed = [[c for c in names if pd.isna(df.at[i, c])] for i in range(len(df))]
    if strict:
        for o, miss in zip(orders, imputed):
            own = [c for c in miss if _own_feature(c)]
            if own:
                raise HTTPException(
                    422,
                    f"the {DELAY} champion (version {slot.version}) needs order fields missing from the request"
                    f"{' for order ' + o.order_id if o.order_id else ''}: " + ", ".join(own),
                )
    return slot, snap, df, known, imputed


def _score_orders(state: ServingState, orders: list[OrderIn], strict: bool = False) -> list[DelayScore]:
    slot, snap, df, known, imputed = _delay_frame(state, orders, strict)
    try:
        scores = positive_scores(slot.champion, df)
    except Exception as e:
        raise HTTPException(422, f"the {DELAY} champion could not score these orders: {type(e).__name__}: {e}".splitlines()[0])
    info = slot.info()
    return [
        DelayScore(
            order_id=o.order_id,
            seller_id=o.seller_id,
            score=_finite(s),
            seller_known=k,
            imputed=m,
            model_name=info["model_name"],
            model_version=str(slot.version),
            dt_ref=snap.dt_ref,
        )
        for o, s, k, m in zip(orders, scores, known, imputed)
    ]


# ---------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------
def create_app(
    settings: Settings,
    *,
    poll_seconds: float = 5.0,
    token: str | None = None,
    problems: tuple[str, ...] = (CHURN, DELAY),
) -> FastAPI:
    """Build the app. `token=None` reads OLIST_ML_API_TOKEN; an empty token means no auth."""
    token = os.environ.get(TOKEN_ENV) if token is None else token
    token = token or None
    state = ServingState(settings, problems=tuple(problems), poll_seconds=poll_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        import anyio

        await anyio.to_thread.run_sync(state.start)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(state.stop)

    app = FastAPI(
        title="olist-ml serving",
        version="1",
        description="Champion scores for Olist sellers and orders. Models reload when the registry's "
        "`champion` alias moves; features are the feature store's latest dt_ref.",
        lifespan=lifespan,
    )
    app.state.serving = state

    async def require_token(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if token is None:
            return
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_token)]

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {e.get('msg')}")
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        return JSONResponse(status_code=422, content={"detail": "invalid request: " + "; ".join(parts) + more,
                                                      "errors": errors})

    @app.get("/health", tags=["ops"])
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], dependencies=auth)
    async def ready():
        ok, reasons = state.readiness()
        body = {
            "ready": ok,
            "reasons": reasons,
            "models": {n: s.info() for n, s in state.slots.items()},
            "dt_ref": state.features.dt_ref,
        }
        return JSONResponse(status_code=200 if ok else 503, content=jsonable_encoder(body))

    @app.get("/models", tags=["ops"], dependencies=auth)
    async def models() -> dict:
        snap = state.features
        return {
            "models": {n: s.info() for n, s in state.slots.items()},
            "features": {
                "dt_ref": snap.dt_ref,
                "n_sellers": 0 if snap.frame is None else len(snap.frame),
                "error": snap.error,
            },
            "poll_seconds": state.poll_seconds,
        }

    @app.get("/sellers/{seller_id}/churn", tags=["churn"], dependencies=auth, response_model=ChurnScore,
             responses={404: {"description": "unknown seller"}, 503: {"description": "not ready"}})
    async def seller_churn(seller_id: Annotated[str, Path(min_length=1, max_length=64)]) -> ChurnScore:
        slot = _problem_slot(state, CHURN)
        snap = _snapshot(state)
        if snap.churn_scores is None:
            raise HTTPException(503, f"churn scores not available: {snap.error or 'scoring'}")
        score = snap.churn_scores.get(seller_id)
        if score is None:
            raise HTTPException(404, f"unknown seller {seller_id}: no {CHURN} feature row at dt_ref {snap.dt_ref}")
        return ChurnScore(seller_id=seller_id, score=_finite(score), model_name=slot.info()["model_name"],
                          model_version=str(snap.churn_version), dt_ref=snap.dt_ref)

    @app.post("/batch/churn", tags=["churn"], dependencies=auth, response_model=BatchChurnOut)
    async def batch_churn(body: BatchChurnIn) -> BatchChurnOut:
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
                results.append(ChurnScore(seller_id=sid, score=_finite(s), model_name=name,
                                          model_version=str(snap.churn_version), dt_ref=snap.dt_ref))
        return BatchChurnOut(model_name=name, model_version=str(snap.churn_version), dt_ref=snap.dt_ref,
                             results=results, unknown=unknown)

    @app.post("/orders/delay", tags=["delay"], dependencies=auth, response_model=DelayScore)
    def order_delay(order: OrderIn, strict: bool = False) -> DelayScore:
        """`strict=true`: 422 when a champion feature is neither in the request nor derivable."""
        return _score_orders(state, [order], strict)[0]

    @app.post("/batch/delay", tags=["delay"], dependencies=auth, response_model=BatchDelayOut)
    def batch_delay(body: BatchDelayIn, strict: bool = False) -> BatchDelayOut:
        results = _score_orders(state, body.orders, strict)
        r0 = results[0]
        return BatchDelayOut(model_name=r0.model_name, model_version=r0.model_version, dt_ref=r0.dt_ref,
                             results=results)

    return app


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, poll_seconds: float = 5.0,
          problems: tuple[str, ...] = (CHURN, DELAY), log_level: str = "info") -> None:
    """Run the API under uvicorn (blocks until stopped)."""
    import uvicorn

    app = create_app(settings, poll_seconds=poll_seconds, problems=problems)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
