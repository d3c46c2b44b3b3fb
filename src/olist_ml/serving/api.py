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
import os
import sys

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..config import Settings
from .guards import BodyLimitMiddleware, StrictJSONRoute, parse_limit, strict_json_loads, token_check, validation_body
from .routes import actions_routes, churn_routes, delay_routes, ops_routes
from .schemas import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    MAX_BATCH_ENV,
    MAX_BODY_ENV,
    TOKEN_ENV,
    ErrorOut,
    ValidationErrorOut,
    batch_models,
)
from .state import CHURN, DELAY, ServingState

__all__ = [
    "MAX_BATCH_ENV",
    "MAX_BODY_ENV",
    "TOKEN_ENV",
    "create_app",
    "error_responses",
    "exposure_warning",
    "is_loopback",
    "serve",
    "strict_json_loads",
    "validation_body",
]


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
    max_body_bytes = parse_limit(max_body_bytes, MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES, "--max-body-bytes")
    max_batch = parse_limit(max_batch, MAX_BATCH_ENV, DEFAULT_MAX_BATCH, "--max-batch")
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
    auth = [Depends(token_check(token))] if token else []
    errors = error_responses(bool(token))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content=validation_body(list(exc.errors()), max_batch))

    ops_routes(app, state, auth, max_body_bytes, max_batch, errors)
    churn_routes(app, state, auth, BatchChurnIn, errors)
    delay_routes(app, state, auth, BatchDelayIn, errors)
    actions_routes(app, state, auth, errors)
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
