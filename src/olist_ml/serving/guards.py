"""What every request passes before a model sees it: the bearer token, strict JSON (no NaN/Infinity), the
body limit, the clipped 422 body, typed feature overrides and the limits' parsing."""

import json
import math
import os
import reprlib
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import InputError
from .schemas import (
    BATCH_FIELDS,
    ECHO_CHARS,
    MAX_BATCH_ENV,
    MAX_BODY_ENV,
    MAX_CATEGORY_CHARS,
    MAX_ERRORS,
    TOKEN_ENV,
    OrderIn,
)
from .state import DELAY

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


CONTEXT_PREFIXES = ("route_", "cstate_", "market_", "seller_", "now_")
# NULL by the order's state, not by a missing field (not handed to a carrier yet, handed already)
CONTEXT_FEATURES = (
    "promise_slack_days",
    "days_since_carrier",
    "carrier_days_after_purchase",
    "days_past_shipping_limit",
)


def naive_utc(v):
    """Datetimes as the warehouse stores them: naive UTC."""
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(UTC).replace(tzinfo=None)
    return v


def own_feature(name: str) -> bool:
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


# ---------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------
def parse_limit(value: int | None, env: str, default: int, option: str) -> int:
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


def token_check(token: str | None):
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
