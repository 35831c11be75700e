"""Long-running cases (积案) in the console: the supervisors' list, and closing a case by the resident's signed
commitment (息诉罢访) — the file uploaded with the form, stored outside any transaction, then the move in one write
transaction. Setting the 包案领导 is an ordinary case action (bot/console/actions.py)."""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web

from bot.console import actions, keys, roles
from bot.console.auth import audit, refused, see_other, session_of
from bot.console.cases import case_for_action, render_case
from bot.console.pages import render
from bot.remote import client_address
from bot.services import case_files, inbox, lifecycle, longrun, operators, privacy


async def list_page(request: web.Request) -> web.Response:
    app = request.app
    operator = session_of(request).operator
    if operator.role not in roles.SEE_LONG_RUNNING:
        return await refused(request, "long_running")
    settings = app[keys.SETTINGS]
    async with app[keys.STORE].read() as tx:
        found = await longrun.listing(tx, app[keys.CLOCK].now(), settings)
    if not roles.sees_phone(operator):  # what was typed about the case, as on the case page
        found = [_without_phones(r, app[keys.TEXTS]("privacy.phone_hidden")) for r in found]
    context = {
        "rows": found,
        "days": settings.fieldwork.long_running_days,
        "reopens": settings.fieldwork.long_running_reopens,
    }
    return render(request, "longrun.html", context)


def _without_phones(row: longrun.LongRunning, mark: str) -> longrun.LongRunning:
    latest = row.latest and dataclasses.replace(row.latest, note=privacy.hide_phones(row.latest.note, mark=mark))
    return dataclasses.replace(row, place=privacy.hide_phones(row.place, mark=mark), latest=latest)


def _save(upload: web.FileField, settings) -> case_files.Saved:
    return case_files.save_bytes(upload.file.read(), upload.content_type or "", upload.filename or "", settings)


async def commit_close(request: web.Request) -> web.Response:
    """POST /console/cases/{number}/commit_close (multipart: file, note)."""
    app = request.app
    texts, settings, clock = app[keys.TEXTS], app[keys.SETTINGS], app[keys.CLOCK]
    number = request.match_info["number"]
    found = await case_for_action(request, number, "commit_close")
    if isinstance(found, web.Response):
        return found
    operator = session_of(request).operator
    form = await request.post()
    upload, note = form.get("file"), str(form.get("note") or "").strip() or None
    if not isinstance(upload, web.FileField):
        await audit(request, "commit_close", outcome="failed", target=number, detail="no file")
        return await render_case(request, found, error=texts("longrun.commitment_required"), status=400)
    try:
        saved = await asyncio.to_thread(_save, upload, settings)
    except case_files.FileRefused as exc:
        message = texts(f"case_file.{exc.key}", **exc.values)
        await audit(request, "commit_close", outcome="failed", target=number, detail=message)
        return await render_case(request, found, error=message, status=400)
    try:
        async with app[keys.STORE].write() as tx:
            await longrun.commit_close(
                tx, number, saved, by=operator.name, clock=clock, settings=settings, texts=texts, note=note
            )
            await operators.audit(
                tx,
                now=clock.now(),
                operator=operator.name,
                action="commit_close",
                target=number,
                detail=f"file={saved.filename} sha256={saved.sha256[:12]}",
                ip=client_address(request),
            )
    except (*actions.REFUSALS, lifecycle.MoveRefused) as exc:
        await audit(request, "commit_close", outcome="failed", target=number, detail=str(exc))
        async with app[keys.STORE].read() as tx:
            fresh = await inbox.case_file(tx, number)
        return await render_case(request, fresh or found, error=str(exc), status=409)
    return see_other(str(app.router["case"].url_for(number=number).with_query(done="commit_close")))
