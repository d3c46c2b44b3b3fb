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
from datetime import date, datetime
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
    """Attributes of one order, as known at approval (the names of the order_delay ABT columns).

    The seller's feature-store features (latest dt_ref, `seller_` prefix) are added by the server.
    Derived when absent: purchase_month / purchase_weekday (ISO, 1 = Monday) from
    order_purchase_timestamp, promised_days from it and order_estimated_delivery_date,
    freight_ratio, same_state. Any further feature of the champion can be passed as an extra
    field; one neither passed nor derivable is left NULL (the model imputes it) and listed in
    the response's `imputed`, or refused with 422 when `?strict=true`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "o-1",
                    "seller_id": "3442f8959a84dea7ee197c632cb2df15",
                    "customer_state": "SP",
                    "seller_state": "SP",
                    "order_purchase_timestamp": "2018-08-01T10:00:00",
                    "order_estimated_delivery_date": "2018-08-15T00:00:00",
                    "order_value": 58.9,
                    "freight_value": 13.29,
                    "n_items": 1,
                    "product_category": "health_beauty",
                    "payment_type": "credit_card",
                    "distance_km": 120.5,
                }
            ]
        },
    )
    order_id: str | None = Field(None, max_length=64)
    seller_id: str = Field(min_length=1, max_length=64)
    customer_state: str | None = Field(None, min_length=2, max_length=2, description="two-letter UF")
    seller_state: str | None = Field(None, min_length=2, max_length=2)
    order_purchase_timestamp: datetime | None = None
    order_estimated_delivery_date: datetime | None = None
    order_value: float | None = Field(None, ge=0, description="sum of item prices")
    freight_value: float | None = Field(None, ge=0)
    n_items: int | None = Field(None, ge=1)
    n_products: int | None = Field(None, ge=1)
    n_sellers: int | None = Field(None, ge=1)
    total_weight_g: float | None = Field(None, ge=0)
    max_item_weight_g: float | None = Field(None, ge=0)
    total_volume_cm3: float | None = Field(None, ge=0)
    product_category: str | None = Field(None, max_length=100)
    payment_type: str | None = Field(None, max_length=40)
    payment_installments: int | None = Field(None, ge=0)
    n_payments: int | None = Field(None, ge=1)
    promised_days: int | None = Field(None, ge=0)
    shipping_limit_days: int | None = None
    approval_hours: float | None = Field(None, ge=0)
    distance_km: float | None = Field(None, ge=0)


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


STORE_PREFIX = "seller_"


def _derived(req: dict) -> dict:
    """Order features the ABT SQL derives from raw attributes, derived the same way here."""
    out = {}
    ts, est = req.get("order_purchase_timestamp"), req.get("order_estimated_delivery_date")
    if isinstance(ts, datetime):
        out["purchase_month"] = ts.month
        out["purchase_weekday"] = ts.isoweekday()
        if isinstance(est, datetime):
            out["promised_days"] = (est.date() - ts.date()).days
    if req.get("order_value") and req.get("freight_value") is not None:
        out["freight_ratio"] = req["freight_value"] / req["order_value"]
    if req.get("customer_state") and req.get("seller_state"):
        out["same_state"] = int(req["customer_state"].upper() == req["seller_state"].upper())
    return out


def _store_column(name: str, store_cols) -> str | None:
    """The feature-store column behind a champion feature (`seller_n_orders_180d` -> `n_orders_180d`)."""
    if name.startswith(STORE_PREFIX) and name[len(STORE_PREFIX):] in store_cols:
        return name[len(STORE_PREFIX):]
    if name in store_cols and name != "seller_id":
        return name
    return None


def _delay_frame(state: ServingState, orders: list[OrderIn], strict: bool):
    slot = _problem_slot(state, DELAY)
    snap = _snapshot(state)
    names = list(slot.champion.feature_names)
    store = snap.frame
    from_store = {n: c for n in names if (c := _store_column(n, store.columns))}
    rows, known, imputed = [], [], []
    for o in orders:
        req = o.model_dump(exclude_none=True)
        row: dict[str, Any] = {}
        is_known = o.seller_id in store.index
        if is_known and from_store:
            feats = store.loc[o.seller_id, list(from_store.values())].to_numpy()
            row.update(dict(zip(from_store.keys(), feats)))
        row.update({k: v for k, v in _derived(req).items() if k not in req})
        row.update(req)  # request attributes win
        missing = [n for n in names if n not in row and n not in from_store]
        if missing and strict:
            raise HTTPException(
                422,
                f"the {DELAY} champion (version {slot.version}) needs order fields missing from the request"
                f"{' for order ' + o.order_id if o.order_id else ''}: " + ", ".join(missing),
            )
        rows.append(row)
        known.append(is_known)
        imputed.append(missing)
    df = pd.DataFrame(rows)
    for c in names:
        if c not in df.columns:
            df[c] = np.nan  # left for the model's imputer
    df = df[names]
    for c in names:
        if c in from_store:
            with contextlib.suppress(TypeError, ValueError):
                df[c] = df[c].astype(store[from_store[c]].dtype)
        elif df[c].dtype == object:
            with contextlib.suppress(TypeError, ValueError):
                df[c] = pd.to_numeric(df[c])
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
