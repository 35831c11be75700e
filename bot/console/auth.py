"""Signing in and out, and the guard every console request passes.

A session is a random token in an HttpOnly, SameSite=Lax cookie (Secure over HTTPS; settings [console]
secure_cookies), looked up by its sha256 (bot/services/operators.py). Every request that changes something
(POST) carries the session's CSRF token in its form (field `csrf`) or in the X-CSRF-Token header; the sign-in
form, which has no session yet, uses a double-submit cookie instead. Failed sign-ins are counted per account
and lock it for a while; every sign-in, sign-out and refusal is in the audit log.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

from aiohttp import web

from bot.console import keys, roles
from bot.console.pages import render
from bot.console.security import CSRF_FIELD, CSRF_HEADER, is_https, tokens_match
from bot.remote import client_address
from bot.services import operators

COOKIE = "fd_session"
LOGIN_CSRF_COOKIE = "fd_login_csrf"
# Pages anyone may load: the sign-in page and the static files it needs.
PUBLIC = frozenset({"login", "login_submit", "static"})
# Routes whose form carries a document (bot/console/files.py; 息诉罢访's commit_close): a larger body allowed,
# up to fieldwork.max_file_bytes and this much for the other fields and the multipart framing.
UPLOADS = frozenset({"case_file_upload", "commit_close"})
UPLOAD_SLACK = 256 * 1024
# A session's expiry moves on with use, but at most once per this long (a write per request would be waste).
TOUCH_EVERY = timedelta(minutes=5)


def client_ip(request: web.Request) -> str | None:
    return client_address(request)


def session_of(request: web.Request) -> operators.Session:
    return request[keys.SESSION]


async def audit(request: web.Request, action: str, *, outcome: str = "ok", target=None, detail=None, who=None):
    app = request.app
    session = request.get(keys.SESSION)
    name = who or (session.operator.name if session else "-")
    async with app[keys.STORE].write() as tx:
        await operators.audit(
            tx,
            now=app[keys.CLOCK].now(),
            operator=name,
            action=action,
            outcome=outcome,
            target=target,
            detail=detail,
            ip=client_ip(request),
        )


def _secure(request: web.Request) -> bool:
    mode = request.app[keys.SETTINGS].console.secure_cookies
    return mode == "always" or (mode == "auto" and is_https(request))


def _cookie_path(request: web.Request) -> str:
    return str(request.app.router["inbox"].url_for().parent)


def see_other(location: str) -> web.Response:
    """After a form: the browser GETs `location` (POST, redirect, GET — a reload never resubmits)."""
    return web.Response(status=303, headers={"Location": location})


def message_page(request: web.Request, text: str, status: int) -> web.Response:
    return render(request, "message.html", {"message": text}, status=status)


async def refused(request: web.Request, action: str, target: str | None = None) -> web.Response:
    """The page that says no (403), with the refusal on the audit log."""
    await audit(request, action, outcome="refused", target=target)
    return message_page(request, request.app[keys.TEXTS]("console.forbidden"), 403)


def not_found(request: web.Request) -> web.Response:
    return message_page(request, request.app[keys.TEXTS]("console.not_found"), 404)


@web.middleware
async def guard(request: web.Request, handler):
    """Finds the request's session; sends strangers to the sign-in page; checks the CSRF token of every POST."""
    app = request.app
    route = request.match_info.route
    name = route.name if route is not None else None
    texts = app[keys.TEXTS]
    if name in PUBLIC:
        return await handler(request)
    token = request.cookies.get(COOKIE)
    session = None
    if token:
        now = app[keys.CLOCK].now()
        async with app[keys.STORE].read() as tx:
            session = await operators.session(tx, token, now=now)
        if session is not None and now - session.last_seen_at >= TOUCH_EVERY:
            lifetime = timedelta(hours=app[keys.SETTINGS].console.session_hours)
            async with app[keys.STORE].write() as tx:
                await operators.touch_session(tx, session.id, now=now, lifetime=lifetime)
    if session is None:
        if request.method in ("GET", "HEAD"):
            login = app.router["login"].url_for().with_query(next=request.path_qs)
            raise web.HTTPFound(login)
        return message_page(request, texts("console.login.expired"), 401)
    if name in UPLOADS and request.method == "POST":
        # A document's form may be larger than aiohttp's 1 MiB default: this route's own limit (a file over
        # fieldwork.max_file_bytes is refused by its handler with the reason; far over, here).
        request = request.clone(client_max_size=app[keys.SETTINGS].fieldwork.max_file_bytes + UPLOAD_SLACK)
    request[keys.SESSION] = session
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            if name not in UPLOADS:
                raise
            max_mb = round(app[keys.SETTINGS].fieldwork.max_file_bytes / 1024 / 1024, 1)
            await audit(request, name or "post", outcome="failed", target=request.path, detail="too large")
            return message_page(request, texts("case_file.too_large", max_mb=max_mb), 413)
        given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        if not tokens_match(session.csrf_token, given if isinstance(given, str) else None):
            await audit(request, "csrf_refused", outcome="refused", target=request.path)
            return message_page(request, texts("console.csrf_refused"), 403)
    return await handler(request)


def _safe_next(request: web.Request, target: str | None, role: str) -> str:
    """Only a path inside the console: never another site (an open redirect) or a protocol-relative URL."""
    base = _cookie_path(request)
    if target and target.startswith(base) and not target.startswith("//") and "\\" not in target:
        return target
    return str(request.app.router[landing(role)].url_for())


def landing(role: str) -> str:
    """Where signing in leads: the inbox, or for a grid worker (who has no cases) the polls."""
    return "inbox" if role in roles.SEE_CASES else "polls"


async def login_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    login_csrf = secrets.token_urlsafe(24)
    context = {"error": error, "login_csrf": login_csrf, "next": request.query.get("next", "")}
    response = render(request, "login.html", context, status=status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        login_csrf,
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        path=_cookie_path(request),
        max_age=3600,
    )
    return response


async def login_form(request: web.Request) -> web.Response:
    return await login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    app = request.app
    texts, settings, clock = app[keys.TEXTS], app[keys.SETTINGS], app[keys.CLOCK]
    form = await request.post()
    if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), form.get(CSRF_FIELD)):
        await audit(request, "login", outcome="refused", detail="csrf", who=str(form.get("name", ""))[:64] or "-")
        return message_page(request, texts("console.csrf_refused"), 403)
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    now = clock.now()
    limits = {
        "now": now,
        "max_failures": settings.console.max_failed_logins,
        "lock_for": timedelta(minutes=settings.console.lockout_minutes),
    }
    async with app[keys.STORE].write() as tx:
        found = await operators.account(tx, name) if name else None
        # The attempt is counted before its password is checked, so guesses sent in parallel cannot outrun the
        # lockout: only max_failures of them are ever checked.
        locked_until = await operators.reserve_attempt(tx, found.operator.id, **limits) if found else None
    if locked_until is not None:
        await audit(request, "login", outcome="refused", detail="locked", who=name)
        until = locked_until.astimezone(settings.tz).strftime("%H:%M")
        return await login_page(request, error=texts("console.login.locked", until=until), status=403)
    usable = found is not None and found.active
    ok = await asyncio.to_thread(operators.verify_password, found.password_hash if usable else None, password)
    if not ok:
        if found is not None:
            async with app[keys.STORE].write() as tx:
                locked_until = await operators.sign_in_failed(tx, found.operator.id, **limits)
        await audit(request, "login", outcome="failed", detail="locked now" if locked_until else None, who=name or "-")
        if locked_until is not None:
            until = locked_until.astimezone(settings.tz).strftime("%H:%M")
            return await login_page(request, error=texts("console.login.locked", until=until), status=403)
        return await login_page(request, error=texts("console.login.wrong"), status=401)
    async with app[keys.STORE].write() as tx:
        await operators.signed_in(tx, found.operator.id)
        token, _csrf = await operators.open_session(
            tx, found.operator.id, now=now, lifetime=timedelta(hours=settings.console.session_hours)
        )
    await audit(request, "login", who=name)
    response = see_other(_safe_next(request, str(form.get("next", "")) or None, found.operator.role))
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Lax",
        secure=_secure(request),
        path=_cookie_path(request),
        max_age=settings.console.session_hours * 3600,
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path=_cookie_path(request))
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    token = request.cookies.get(COOKIE)
    if token:
        async with request.app[keys.STORE].write() as tx:
            await operators.close_session(tx, token)
    await audit(request, "logout")
    response = see_other(str(request.app.router["login"].url_for()))
    response.del_cookie(COOKIE, path=_cookie_path(request))
    return response
