"""Canned replies (常用答复): admins manage them here; on a case page they pre-fill the reply form, with the
placeholders filled in for that case (bot/services/canned.py)."""

from __future__ import annotations

from aiohttp import web

from bot.api.checks import row_id
from bot.console import keys, roles
from bot.console.auth import audit, not_found, refused, see_other, session_of
from bot.console.pages import render
from bot.services import canned


def _may_manage(request: web.Request) -> bool:
    return session_of(request).operator.role in roles.MANAGE_CANNED


async def page(request: web.Request, *, error: str | None = None, form: dict | None = None, status=200):
    if not _may_manage(request):
        return await refused(request, "canned")
    async with request.app[keys.STORE].read() as tx:
        found = await canned.listing(tx)
    editing = None
    if row_id(request.query.get("edit", "")):
        editing = next((c for c in found if c.id == int(request.query["edit"])), None)
    context = {
        "replies": found,
        "editing": editing,
        "error": error,
        "form": form or {},
        "placeholders": canned.PLACEHOLDERS,
        "done": request.query.get("done"),
    }
    return render(request, "canned.html", context, status=status)


async def list_page(request: web.Request) -> web.Response:
    return await page(request)


async def save(request: web.Request) -> web.Response:
    if not _may_manage(request):
        return await refused(request, "canned_save")
    app = request.app
    texts = app[keys.TEXTS]
    form = await request.post()
    raw_id = str(form.get("id", "")).strip()
    fields = {"title": str(form.get("title", "")), "body": str(form.get("body", ""))}
    try:
        async with app[keys.STORE].write() as tx:
            saved = await canned.save(
                tx,
                canned_id=int(raw_id) if row_id(raw_id) else None,
                title=fields["title"],
                body=fields["body"],
                by=session_of(request).operator.name,
                now=app[keys.CLOCK].now(),
            )
    except canned.CannedError as exc:
        message = texts(f"console.canned.{exc.key}", **exc.values)
        await audit(request, "canned_save", outcome="failed", detail=message)
        return await page(request, error=message, form={**fields, "id": raw_id}, status=400)
    await audit(request, "canned_save", target=str(saved), detail=fields["title"].strip())
    return see_other(str(app.router["canned"].url_for().with_query(done="saved")))


async def delete(request: web.Request) -> web.Response:
    if not _may_manage(request):
        return await refused(request, "canned_delete")
    canned_id = request.match_info["id"]
    if not row_id(canned_id):
        return not_found(request)
    async with request.app[keys.STORE].write() as tx:
        gone = await canned.delete(tx, int(canned_id))
    await audit(request, "canned_delete", target=canned_id, outcome="ok" if gone else "failed")
    return see_other(str(request.app.router["canned"].url_for().with_query(done="deleted")))
