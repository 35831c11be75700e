"""Rendering a console page: the template with what every page needs (the operator, the CSRF token, URLs)."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from bot.console import keys


def render(request: web.Request, template: str, context: dict, *, status: int = 200) -> web.Response:
    """Also from middleware (the guard's refusals), where aiohttp_jinja2's context processors have not run."""
    session = request.get(keys.SESSION)
    app = request.app
    common = {
        "request": request,
        "operator": session.operator if session else None,
        "csrf": session.csrf_token if session else "",
        "url": lambda name, **parts: str(app.router[name].url_for(**{k: str(v) for k, v in parts.items()})),
        "static": lambda path: str(app.router["static"].url_for(filename=path)),
    }
    return aiohttp_jinja2.render_template(template, request, {**common, **context}, status=status)
