"""The serving API: FastAPI app over the champions and the latest feature-store rows.

Endpoints (OpenAPI docs at /docs, schema at /openapi.json):

* ``GET /health``                       liveness, always open (no token).
* ``GET /ready``                        200 when every served champion is loaded and the feature
                                        store was read; 503 with the reasons otherwise.
* ``GET /sellers/{seller_id}/churn``    churn score of one seller at the latest dt_ref.
* ``POST /batch/churn``                 the same for a list of seller ids.
* ``POST /orders/delay``                delay score of one order, new or in flight (attributes in the body).
* ``POST /batch/delay``                 the same for a list of orders.
* ``GET /models``                       what is loaded (versions, run ids, dt_ref).
* ``GET /sellers/at-risk``              the churn action list (`olist-ml actions churn`), paged.
* ``GET /orders/at-risk``               the delay action list (`olist-ml actions delay`), paged.

Scores carry their reasons with ``?explain=k`` (the k largest contributions to the model's margin,
`olist_ml.ml.explain`; 0, the default, answers the score alone).

When the env var ``OLIST_ML_API_TOKEN`` is set (or `token=` is passed), every endpoint but
/health and the docs requires ``Authorization: Bearer <token>`` (401 otherwise), and the OpenAPI
schema declares the bearer scheme; without a token it declares none (requests are served).

Every failure is one JSON answer ``{"detail": "<one line>"}``: 401 (token), 404 (unknown seller),
413 (body over `max_body_bytes`, checked on Content-Length before anything is read and counted
while a chunked body streams), 422 (invalid request: non-finite numbers such as NaN/Infinity/1e999
anywhere in the body, more than `max_batch` items in a batch, a field of the wrong type, an
unknown field; the message and `errors` echo at most a short prefix of the input), 503 (not ready).
(`BodyLimitMiddleware` enforces the body limit without reading an oversize body.)

(No ``from __future__ import annotations`` here: the batch request models are built per app, with
that app's batch limit, and FastAPI must see the endpoint annotations as objects.)
"""

import contextlib
import ipaddress
import json
import math
import os
import reprlib
import secrets
import sys
from datetime import UTC, date, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from ..config import Settings
from ..errors import InputError, OlistMLError
from .state import CHURN, DELAY, ServingState, positive_scores

TOKEN_ENV = "OLIST_ML_API_TOKEN"
MAX_BODY_ENV = "OLIST_ML_API_MAX_BODY_BYTES"
MAX_BATCH_ENV = "OLIST_ML_API_MAX_BATCH"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024  # 10 MiB: a full batch of 10,000 orders is about 5 MB
DEFAULT_MAX_BATCH = 10_000
ECHO_CHARS = 100  # at most this much of a client's input comes back in an error
MAX_ERRORS = 10  # validation errors listed in a 422 body
MAX_CATEGORY_CHARS = 200  # a categorical override longer than this is not a category value


# ---------------------------------------------------------------------------------------
# request / response models
# ---------------------------------------------------------------------------------------
MAX_COUNT = 1_000_000  # items, products, sellers, payments, installments of one order: far above any real one
MAX_DAYS = 36_500


MAX_EXPLAIN = 1000  # ?explain=k: more than the model's features returns them all


class ErrorOut(BaseModel):
    """Every failure: one line."""

    detail: str


class ValidationItem(BaseModel):
    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorOut(BaseModel):
    """A 422: one line, and for a request the schema refuses, its first errors (each clipped)."""

    detail: str
    errors: list[ValidationItem] | None = None


class Reason(BaseModel):
    feature: str = Field(description="the model's input feature (a feature-store or ABT column)")
    value: float | str | None = Field(description="its value in the scored row (null: missing)")
    reference: float | str | None = Field(
        description="what it is compared with: the training mean on the model's scale (linear models), "
        "the training median or most common value (trees)"
    )
    contribution: float = Field(description="its contribution to the margin (positive: raises the score)")
    text: str = Field(description="a sentence: 'no sale for 38 days; sellers median 6 days'")


class Explained(BaseModel):
    reasons: list[Reason] | None = Field(
        None, description="?explain=k: the k largest contributions to the margin (largest |contribution| first)"
    )
    margin: float | None = Field(
        None, description="?explain=k: the model's margin (log-odds; hazard GLM: -log expected events) = base + sum"
    )
    base: float | None = Field(None, description="?explain=k: the margin of the reference row")


class ChurnScore(Explained):
    seller_id: str
    score: float = Field(description="P(seller churns within the horizon)")
    model_name: str
    model_version: str
    dt_ref: date = Field(description="reference date of the features used")


class BatchChurnOut(BaseModel):
    model_name: str
    model_version: str
    dt_ref: date
    results: list[ChurnScore]
    unknown: list[str] = Field(description="seller ids not in the population at dt_ref")


class OrderIn(BaseModel):
    """Raw attributes of one order, new or in flight (Olist column names; items summed).

    The server scores the order at its scoring date D (the date `olist-ml predict delay` scores by
    default: the observed end of the served warehouse; the response's `check_point` says which row
    was scored). An order bought before D is IN FLIGHT: it is scored by its state at D -- approved
    (`order_approved_at`) and handed to a carrier (`order_delivered_carrier_date`) if those happened
    before D -- with days in flight, days since the hand-over, days left to its promise and the
    market as it stood at D. An order bought at or after D is NEW: it is scored at approval. An order
    in flight whose promise date has passed is late for certain: score 1.0, `past_promise` true.

    The server computes the order_delay ABT's whole feature row from the attributes with the ABT's
    own SQL (`olist_ml.problems.order_delay.request_frame`): order features (freight_ratio,
    promised_days, shipping_limit_days, approval_hours, distance_km from the customer's and the
    seller's zip prefixes, same_state, purchase month/weekday, business days and holidays to the
    promise), the delivery context of the days before the purchase date (route_*, cstate_*, market_*,
    seller_*_due/overdue_*, promise_slack_days) and the in-flight state and market at the check point
    (days_in_flight, handed_to_carrier, days_since_carrier, days_left, now_*). Locations absent from
    the request come from the warehouse (customer_id -> stg_customers, seller_id -> stg_sellers).
    order_purchase_timestamp defaults to now (UTC). A field named like an ABT feature (e.g.
    `distance_km`, `promised_days`, or an extra one such as `route_pct_late_90d`) overrides the
    computed value. Champion features that end up NULL are left to the model's imputer and listed in
    the response's `imputed`; `?strict=true` refuses (422) an order whose own attributes leave a
    champion feature NULL.

    Any other field must be a feature of the served champion and carry its declared type (a finite
    number for a numeric feature, a string for a categorical one): an unknown field or a wrong type
    is a 422 naming the field."""

    model_config = ConfigDict(
        extra="allow",
        allow_inf_nan=False,
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
    order_status: str | None = Field(None, max_length=20, description="default: approved")
    customer_state: str | None = Field(None, min_length=2, max_length=2, description="two-letter UF")
    customer_zip_code_prefix: str | None = Field(None, min_length=1, max_length=8)
    seller_state: str | None = Field(None, min_length=2, max_length=2, description="default: stg_sellers")
    seller_zip_code_prefix: str | None = Field(None, min_length=1, max_length=8, description="default: stg_sellers")
    order_purchase_timestamp: datetime | None = Field(None, description="default: now (UTC)")
    order_approved_at: datetime | None = None
    order_delivered_carrier_date: datetime | None = Field(
        None, description="when a carrier took the order (in flight: counts when before the scoring date)"
    )
    order_estimated_delivery_date: datetime = Field(
        description="the promised delivery date (required: without it the order's promise and days left, its "
        "strongest inputs, would be imputed and the score would be a population average)"
    )
    shipping_limit_date: datetime | None = None
    order_value: float | None = Field(None, ge=0, description="sum of item prices")
    freight_value: float | None = Field(None, ge=0)
    n_items: int | None = Field(None, ge=1, le=MAX_COUNT)
    n_products: int | None = Field(None, ge=1, le=MAX_COUNT)
    n_sellers: int | None = Field(None, ge=1, le=MAX_COUNT)
    total_weight_g: float | None = Field(None, ge=0)
    max_item_weight_g: float | None = Field(None, ge=0)
    total_volume_cm3: float | None = Field(None, ge=0)
    product_category: str | None = Field(None, max_length=100, description="English category name")
    payment_type: str | None = Field(None, max_length=40)
    payment_installments: int | None = Field(None, ge=0, le=MAX_COUNT)
    n_payments: int | None = Field(None, ge=1, le=MAX_COUNT)
    promised_days: int | None = Field(None, ge=0, le=MAX_DAYS, description="override (default: from the dates)")
    shipping_limit_days: int | None = Field(None, ge=-MAX_DAYS, le=MAX_DAYS, description="override")
    approval_hours: float | None = Field(None, ge=0, description="override")
    distance_km: float | None = Field(None, ge=0, description="override (default: from the zip prefixes)")


class DelayScore(Explained):
    order_id: str | None
    seller_id: str
    score: float = Field(description="P(order is delivered after its estimated date)")
    check_point: date = Field(
        description="the date of the scored row: the scoring date for an order in flight, "
        "the purchase date for a new order (its row at approval)"
    )
    in_flight: bool = Field(description="bought before the scoring date: scored by its state at that date")
    past_promise: bool = Field(False, description="in flight past its promised date: late for certain (score 1.0)")
    seller_known: bool = Field(description="False: the seller has no feature row at dt_ref")
    imputed: list[str] = Field(default_factory=list, description="champion features left NULL for the model to impute")
    model_name: str
    model_version: str
    dt_ref: date | None


class BatchDelayOut(BaseModel):
    model_name: str
    model_version: str
    dt_ref: date | None
    results: list[DelayScore]


class AtRiskSeller(BaseModel):
    rank: int
    seller_id: str
    p_churn: float
    expected_gmv: float = Field(description="GMV expected over the churn horizon if retained (BRL)")
    value_at_risk: float = Field(description="p_churn x expected_gmv (BRL)")
    segment: str | None = None
    reasons: list[str] = Field(default_factory=list, description="the score's top reasons, as sentences")


class AtRiskOrder(BaseModel):
    rank: int
    order_id: str
    seller_id: str | None = None
    p_late: float
    days_left: int | None = Field(None, description="days from the list's date to the promised date")
    carrier_status: str | None = None
    reasons: list[str] = Field(default_factory=list)


class _Page(BaseModel):
    dt_ref: date = Field(description="the date the list ranks (its scores' dt_ref)")
    model_version: str
    total: int = Field(description="rows in the whole list")
    page: int
    page_size: int


class AtRiskSellers(_Page):
    results: list[AtRiskSeller]


class AtRiskOrders(_Page):
    results: list[AtRiskOrder]


BATCH_FIELDS = ("seller_ids", "orders")


def batch_models(max_batch: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """(BatchChurnIn, BatchDelayIn) with this app's batch limit: pydantic stops at item max_batch + 1
    (nothing more is validated) and the limit shows in the OpenAPI schema (maxItems)."""
    limit = f"at most {max_batch} (server setting --max-batch / {MAX_BATCH_ENV})"

    class BatchChurnIn(BaseModel):
        model_config = ConfigDict(
            extra="forbid", json_schema_extra={"examples": [{"seller_ids": ["3442f8959a84dea7ee197c632cb2df15"]}]}
        )
        seller_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
            min_length=1, max_length=max_batch, description=f"seller ids, {limit}"
        )

    class BatchDelayIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        orders: list[OrderIn] = Field(min_length=1, max_length=max_batch, description=f"orders, {limit}")

    return BatchChurnIn, BatchDelayIn


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description=f"required when {TOKEN_ENV} is set on the server")


class _NonFinite(ValueError):
    def __init__(self, token: str, why: str):
        super().__init__(f"{token} {why} (a JSON body may carry finite numbers only; send null for a missing value)")
        self.token = token


def _refuse_constant(token: str):
    raise _NonFinite(token, "is not a finite number")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise _NonFinite(text[:40], "is out of range for a finite number")
    return x


def strict_json_loads(body: bytes | str) -> Any:
    """json.loads that refuses NaN, Infinity and out-of-range numbers (1e999), which Python's json
    accepts: they would reach the model (or a 422 that cannot be serialised). Every parse failure
    is a JSONDecodeError, which FastAPI answers with a 422."""
    try:
        return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError:
        raise
    except _NonFinite as e:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise json.JSONDecodeError(str(e), "", max(text.find(e.token), 0)) from None
    except (ValueError, RecursionError) as e:  # >4300-digit integer, bad UTF-8, too deeply nested
        if "integer string conversion" in str(e):
            msg = "an integer of more than 4300 digits"
        else:
            msg = (str(e).splitlines()[0][:200] if str(e) else "") or type(e).__name__
        raise json.JSONDecodeError(msg, "", 0) from None


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(
            413,
            f"request body over {limit} bytes (server setting --max-body-bytes / {MAX_BODY_ENV}): send smaller batches",
        )


class BodyLimitMiddleware:
    """413 for a request body over `limit` bytes, as one JSON answer: refused on its Content-Length
    before anything is read; a body without one (chunked) is counted while it streams and refused as
    soon as it passes the limit, so at most `limit` bytes are ever held. (Starlette's own limiter,
    FastAPI(max_body_size=...), answers a declared oversize body in plain text.)"""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            exc = BodyTooLarge(self.limit)
            return await JSONResponse({"detail": exc.detail}, status_code=413)(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)  # an HTTPException: the app's handlers answer it
            return message

        await self.app(scope, limited_receive, send)


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute whose JSON bodies are parsed by `strict_json_loads` (FastAPI's custom-route hook)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route_handler(request: Request):
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return route_handler


_echo = reprlib.Repr()  # bounded repr: a few items per level, two levels deep (keyword arguments need 3.12)
_echo.maxlevel, _echo.maxlist, _echo.maxtuple, _echo.maxdict, _echo.maxset = 2, 5, 5, 5, 5
_echo.maxstring, _echo.maxother, _echo.maxlong = ECHO_CHARS, ECHO_CHARS, 40


def clip(value: Any, limit: int = ECHO_CHARS) -> Any:
    """A JSON-safe echo of (part of) a client's input: finite numbers, booleans and null as they are;
    anything else as text of at most `limit` characters (a list shows its first items and its size)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < 10**15:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str):
        text = value
    else:
        text = _echo.repr(value)
        if isinstance(value, (list, tuple, dict)) and len(value) > 5:
            text += f" ({len(value)} items)"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def validation_body(errors: list[dict], max_batch: int) -> dict:
    """The 422 body of a RequestValidationError: a one-line `detail` and the first MAX_ERRORS errors,
    every part JSON-safe and clipped (never the whole input, never a non-finite number)."""
    out, parts = [], []
    for e in errors[:MAX_ERRORS]:
        loc = [x if isinstance(x, int) else clip(str(x)) for x in e.get("loc", ())]
        where = ".".join(str(x) for x in loc if x != "body") or "body"
        msg = str(e.get("msg", ""))[:300]
        if e.get("type") == "too_long" and len(loc) == 2 and loc[1] in BATCH_FIELDS:
            msg = f"at most {max_batch} items per batch (server setting --max-batch / {MAX_BATCH_ENV}): split the batch"
        elif e.get("type") == "json_invalid":
            err = (e.get("ctx") or {}).get("error")
            where, msg = "body", f"not valid JSON at character {loc[-1] if len(loc) > 1 else 0}: {clip(str(err), 300)}"
        ctx = {
            str(k): clip(v if isinstance(v, (int, float, bool, type(None))) else str(v))
            for k, v in (e.get("ctx") or {}).items()
        }
        item = {"type": str(e.get("type")), "loc": loc, "msg": msg, "input": clip(e.get("input"))}
        if ctx:
            item["ctx"] = ctx
        out.append(item)
        if len(parts) < 5:
            parts.append(f"{where}: {msg}")
    more = f" (+{len(errors) - len(parts)} more)" if len(errors) > len(parts) else ""
    return {"detail": "invalid request: " + "; ".join(parts) + more, "errors": out}


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
CONTEXT_PREFIXES = ("route_", "cstate_", "market_", "seller_", "now_")
# NULL by the order's state, not by a missing field (not handed to a carrier yet, handed already)
CONTEXT_FEATURES = (
    "promise_slack_days",
    "days_since_carrier",
    "carrier_days_after_purchase",
    "days_past_shipping_limit",
)


def _naive_utc(v):
    """Datetimes as the warehouse stores them: naive UTC."""
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(UTC).replace(tzinfo=None)
    return v


def _own_feature(name: str) -> bool:
    return not name.startswith(CONTEXT_PREFIXES) and name not in CONTEXT_FEATURES


def _is_finite_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer beyond float range
        return False


def _kind_of(v: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__
    )


def check_overrides(orders: list[OrderIn], slot, batch: bool) -> None:
    """Every field that is not an order attribute must be a feature of the served champion, with its
    declared type (the champion's FrameCaster: numeric -> finite number, categorical -> string);
    else a 422 naming the field. (The champion would coerce a wrong type to NaN and impute it.)"""
    names = set(slot.champion.feature_names)
    kinds = slot.feature_kinds
    for i, o in enumerate(orders):
        for k, v in (o.model_extra or {}).items():
            if v is None:
                continue  # null: not given, the computed value stays
            where = (f"orders.{i}." if batch else "") + clip(k)
            if k not in names:
                raise HTTPException(
                    422,
                    f"invalid request: {where}: unknown field: neither an order attribute nor "
                    f"a feature of the {DELAY} champion (version {slot.version}); "
                    "see OrderIn at /docs",
                )
            kind = kinds.get(k)
            if kind == "number" and not _is_finite_number(v):
                raise HTTPException(
                    422,
                    f"invalid request: {where}: the feature {clip(k)} is numeric: expected a "
                    f"finite number, got {_kind_of(v)} {json.dumps(clip(v, 40))}",
                )
            if kind == "category" and not (isinstance(v, str) and len(v) <= MAX_CATEGORY_CHARS):
                raise HTTPException(
                    422,
                    f"invalid request: {where}: the feature {clip(k)} is categorical: expected a "
                    f"string of at most {MAX_CATEGORY_CHARS} characters, got {_kind_of(v)} "
                    f"{json.dumps(clip(v, 40))}",
                )
            if kind is None and not (isinstance(v, str) or _is_finite_number(v)):
                raise HTTPException(
                    422,
                    f"invalid request: {where}: expected a finite number or a string, got "
                    f"{_kind_of(v)} {json.dumps(clip(v, 40))}",
                )


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
    raw = [{k: _naive_utc(v) for k, v in o.model_dump(exclude_none=True).items()} for o in orders]
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
            own = [c for c in miss if _own_feature(c)]
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


# ---------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------
def _limit(value: int | None, env: str, default: int, option: str) -> int:
    """A positive integer limit: the argument, else the env var, else the default."""
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise InputError(f"{env}={raw[:40]}: not an integer (or use {option})") from None
    if value < 1:
        raise InputError(f"{option} / {env} must be a positive integer, not {value}")
    return value


def _token_check(token: str | None):
    """The dependency every route but /health has: the bearer token when one is set."""

    async def require_token(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if token is None:
            return
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(
                401, "missing bearer token (Authorization: Bearer <token>)", headers={"WWW-Authenticate": "Bearer"}
            )
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    return require_token


def _ops_routes(
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


def _churn_routes(app: FastAPI, state: ServingState, auth: list, BatchChurnIn, errors: dict) -> None:
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


def _actions_routes(app: FastAPI, state: ServingState, auth: list, errors: dict) -> None:
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


def _delay_routes(app: FastAPI, state: ServingState, auth: list, BatchDelayIn, errors: dict) -> None:
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


def create_app(
    settings: Settings,
    *,
    poll_seconds: float = 5.0,
    token: str | None = None,
    problems: tuple[str, ...] = (CHURN, DELAY),
    max_body_bytes: int | None = None,
    max_batch: int | None = None,
) -> FastAPI:
    """Build the app. `token=None` reads OLIST_ML_API_TOKEN; an empty token means no auth.
    `max_body_bytes` / `max_batch` None read OLIST_ML_API_MAX_BODY_BYTES / OLIST_ML_API_MAX_BATCH
    (defaults 10 MiB and 10,000 items)."""
    token = os.environ.get(TOKEN_ENV) if token is None else token
    token = token or None
    max_body_bytes = _limit(max_body_bytes, MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES, "--max-body-bytes")
    max_batch = _limit(max_batch, MAX_BATCH_ENV, DEFAULT_MAX_BATCH, "--max-batch")
    BatchChurnIn, BatchDelayIn = batch_models(max_batch)
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
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    app.router.route_class = StrictJSONRoute  # routes below parse JSON bodies with strict_json_loads
    app.state.serving = state
    app.state.max_body_bytes = max_body_bytes
    app.state.max_batch = max_batch

    # the bearer scheme only when a token is set: then it is enforced and the schema declares it; without
    # one, requests are served and the schema declares no security (it would claim what is not checked)
    auth = [Depends(_token_check(token))] if token else []
    errors = error_responses(bool(token))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content=validation_body(list(exc.errors()), max_batch))

    _ops_routes(app, state, auth, max_body_bytes, max_batch, errors)
    _churn_routes(app, state, auth, BatchChurnIn, errors)
    _delay_routes(app, state, auth, BatchDelayIn, errors)
    _actions_routes(app, state, auth, errors)
    return app


def error_responses(with_token: bool) -> dict:
    """The failures every scoring route may answer, as the OpenAPI schema declares them: one JSON line
    (`ErrorOut`), a 422 with its clipped validation errors (`ValidationErrorOut`, not FastAPI's default
    array), 401 only when a token is set."""
    out: dict = {
        413: {"model": ErrorOut, "description": "request body over --max-body-bytes"},
        422: {"model": ValidationErrorOut, "description": "invalid request"},
        503: {"model": ErrorOut, "description": "not ready"},
    }
    if with_token:
        out[401] = {"model": ErrorOut, "description": "missing or invalid bearer token"}
    return out


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def exposure_warning(host: str, port: int, token: str | None) -> str | None:
    """The one-line warning for a bind beyond loopback without a token (None when there is no risk)."""
    if token or is_loopback(host):
        return None
    return (
        f"warning: serving on {host}:{port} without a token: anyone who can reach this machine on the network "
        f"can call the API; set {TOKEN_ENV}=<secret> (clients send 'Authorization: Bearer <secret>') "
        f"or bind --host 127.0.0.1"
    )


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    poll_seconds: float = 5.0,
    problems: tuple[str, ...] = (CHURN, DELAY),
    log_level: str = "info",
    max_body_bytes: int | None = None,
    max_batch: int | None = None,
) -> None:
    """Run the API under uvicorn (blocks until stopped)."""
    import uvicorn

    app = create_app(
        settings, poll_seconds=poll_seconds, problems=problems, max_body_bytes=max_body_bytes, max_batch=max_batch
    )
    warning = exposure_warning(host, port, os.environ.get(TOKEN_ENV))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
