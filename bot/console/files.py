"""Files attached to a case by staff (bot/services/case_files.py): a signed mediation agreement, a 息诉罢访
commitment, other papers. Uploading is a case action (roles.FILE_ACTIONS) on a case the operator may see;
downloading needs only that the operator may see the case. Every upload, refused or not, is audited."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from bot.console import keys
from bot.console.auth import audit, not_found, see_other, session_of
from bot.console.cases import case_for_action, inside_store, render_case, visible_case
from bot.remote import client_address
from bot.services import case_files, operators
from bot.services.cases import add_ledger
from bot.texts import Texts

ACTION = "file_upload"


def refusal(texts: Texts, exc: case_files.FileRefused) -> str:
    return texts(f"case_file.{exc.key}", **exc.values)


async def upload(request: web.Request) -> web.Response:
    """POST /console/cases/{number}/files (multipart: kind, file): save the bytes outside any transaction, then
    record the row and its ledger entry in one write transaction."""
    app = request.app
    texts, settings, clock = app[keys.TEXTS], app[keys.SETTINGS], app[keys.CLOCK]
    number = request.match_info["number"]
    found = await case_for_action(request, number, ACTION)
    if isinstance(found, web.Response):
        return found
    operator = session_of(request).operator
    form = await request.post()
    kind, field = str(form.get("kind", "")), form.get("file")
    try:
        if kind not in case_files.KINDS:
            raise case_files.FileRefused("bad_kind")
        if not isinstance(field, web.FileField):
            raise case_files.FileRefused("empty")
        data = await asyncio.to_thread(field.file.read, settings.fieldwork.max_file_bytes + 1)
        saved = await asyncio.to_thread(
            case_files.save_bytes, data, field.content_type or "", field.filename or "", settings
        )
    except case_files.FileRefused as exc:
        message = refusal(texts, exc)
        await audit(request, ACTION, outcome="failed", target=number, detail=f"{kind}: {message}")
        return await render_case(request, found, error=message, status=400)
    now = clock.now()
    async with app[keys.STORE].write() as tx:
        file_id = await case_files.record(tx, found.id, kind, saved, by=operator.name, now=now)
        note = f"{texts(f'case_file.{kind}')}：{saved.filename}"
        await add_ledger(tx, found.id, now, operator.name, "case_file_added", note=note)
        await operators.audit(
            tx,
            now=now,
            operator=operator.name,
            action=ACTION,
            target=number,
            detail=f"id={file_id}; kind={kind}; {saved.filename}; {saved.size} B; sha256={saved.sha256[:12]}",
            ip=client_address(request),
        )
    return see_other(str(app.router["case"].url_for(number=number).with_query(done=ACTION)))


async def download(request: web.Request) -> web.StreamResponse:
    """GET /console/cases/{number}/files/{id}: a file of this case, to whoever may see the case, as an
    attachment with the type the row records (checked from the bytes when it was uploaded)."""
    app = request.app
    number = request.match_info["number"]
    found = await visible_case(request, number)
    if isinstance(found, web.Response):
        return found
    file_id = int(request.match_info["id"])
    async with app[keys.STORE].read() as tx:
        chosen = next((f for f in await case_files.for_case(tx, found.id) if f.id == file_id), None)
    path = await asyncio.to_thread(inside_store, app[keys.SETTINGS].media.store_dir, chosen.path if chosen else None)
    if chosen is None or path is None:
        return not_found(request)
    await audit(request, "file_download", target=number, detail=f"id={file_id}")
    headers = {
        "Content-Type": chosen.content_type,
        "Content-Disposition": _attachment(chosen.filename),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return web.FileResponse(path, headers=headers)


def _attachment(filename: str) -> str:
    """attachment; with an ASCII fallback name and the real (often Chinese) one in RFC 5987 form."""
    plain = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\;' else "_" for ch in filename)
    return f"attachment; filename=\"{plain or 'file'}\"; filename*=UTF-8''{quote(filename, safe='')}"
