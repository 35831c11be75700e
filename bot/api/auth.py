"""The token every API request carries, and the shape of every answer that is not a success.

`Authorization: Bearer <token>` (RFC 6750); Open311 also takes `?api_key=<token>`, which GeoReport clients
send. A missing, unknown or revoked token is a 401 with `WWW-Authenticate: Bearer`. The token's last use is
recorded at most once a minute. A token acts as an operator of its role and unit (bot/console/roles.py): the
views check it before reading or changing anything, and audit each change and refusal as "api:<name>".

Errors are JSON in both dialects: `{"error": {"code", "message"}}` under /api/v1, GeoReport's
`[{"code": <status>, "description"}]` under /open311/v2. Nothing a client sends turns into a 500.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import partial

from aiohttp import web

from bot.api import keys
from bot.api.checks import usable
from bot.remote import client_address
from bot.services import api_tokens, operators
from bot.services.api_tokens import ApiToken
from bot.services.operators import Operator

log = logging.getLogger(__name__)

# A token's last_used_at moves on at most this often (a write per request would be waste).
TOUCH_EVERY = timedelta(minutes=1)
_dumps = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# What aiohttp's own refusals (no such route, wrong method, body too large …) are called here.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An answer other than success: the HTTP status, a stable machine-readable code, a message for people."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def reply(data, *, status: int = 200) -> web.Response:
    """JSON in UTF-8, Chinese as it is (not \\u escapes)."""
    return web.json_response(data, status=status, dumps=_dumps)


def error_reply(app: web.Application, error: ApiError) -> web.Response:
    if app[keys.DIALECT] == "open311":
        body = [{"code": error.status, "description": error.message}]
    else:
        body = {"error": {"code": error.code, "message": error.message}}
    response = reply(body, status=error.status)
    response.headers.update(error.headers)
    return response


def fail(request: web.Request, status: int, code: str, key: str, /, **values) -> ApiError:
    """An ApiError whose message is the text `api.<key>`."""
    return ApiError(status, code, request.app[keys.TEXTS](f"api.{key}", **values))


@web.middleware
async def errors(request: web.Request, handler):
    """Every answer is JSON, whatever went wrong; every answer is kept out of caches."""
    app, texts = request.app, request.app[keys.TEXTS]
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_reply(app, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        key = f"api.http.{code}"
        message = texts(key) if texts.has(key) else exc.reason
        response = error_reply(app, ApiError(exc.status, code, message, headers=_allow(exc)))
    except Exception:
        log.exception("API request %s %s failed", request.method, request.path)
        response = error_reply(app, ApiError(500, "internal", texts("api.http.internal")))
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _allow(exc: web.HTTPException) -> dict[str, str]:
    return {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}


def presented_token(request: web.Request) -> str | None:
    """The token of the Authorization header (Bearer), or Open311's api_key parameter; None if neither."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        return (value.strip() or None) if scheme.lower() == "bearer" else None
    if request.app[keys.DIALECT] == "open311":
        return request.query.get("api_key") or None
    return None


@web.middleware
async def guard(request: web.Request, handler):
    """No request passes without a live token; the token is on the request for the view (`token_of`)."""
    app = request.app
    given = presented_token(request)
    found = None
    if given and usable(given):
        async with app[keys.STORE].read() as tx:
            found = await api_tokens.authenticate(tx, given)
    if found is None:
        challenge = 'Bearer realm="frontdoor"' + (', error="invalid_token"' if given else "")
        error = fail(request, 401, "unauthorized", "unauthorized" if given else "no_token")
        error.headers["WWW-Authenticate"] = challenge
        raise error
    now = app[keys.CLOCK].now()
    if found.last_used_at is None or now - found.last_used_at >= TOUCH_EVERY:
        async with app[keys.STORE].write() as tx:
            await api_tokens.touch(tx, found.id, now=now, every=TOUCH_EVERY)
    request[keys.TOKEN] = found
    if not all(usable(v) for v in (request.path, *request.query.values(), *request.match_info.values())):
        raise fail(request, 400, "invalid_parameter", "not_text")
    return await handler(request)


def token_of(request: web.Request) -> ApiToken:
    return request[keys.TOKEN]


def operator_of(request: web.Request) -> Operator:
    """The token as the console's roles and the case actions know a member of staff."""
    token = token_of(request)
    return Operator(token.id, token.actor, token.role, token.unit)


async def audit(request: web.Request, action: str, *, outcome: str = "ok", target=None, detail=None) -> None:
    """One line of the audit log in its own transaction (refusals; a change is audited in its own)."""
    app = request.app
    async with app[keys.STORE].write() as tx:
        await operators.audit(
            tx,
            now=app[keys.CLOCK].now(),
            operator=token_of(request).actor,
            action=action,
            outcome=outcome,
            target=target,
            detail=detail,
            ip=client_address(request),
        )
