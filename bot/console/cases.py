"""The inbox, the case page and its actions. Every action calls the same services as the CLI; the role and the
case's unit are checked on the server before anything is read or changed, and every action is audited."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

from aiohttp import web

from bot.api.checks import usable
from bot.console import actions, keys, roles
from bot.console.auth import audit, not_found, refused, see_other, session_of
from bot.console.pages import render
from bot.remote import client_address
from bot.services import (
    areas,
    canned,
    case_files,
    conversation,
    inbox,
    longrun,
    media,
    mediation,
    operators,
    polls,
    privacy,
    residents,
    visits,
)
from storage.fast import unjs


def _filters(request: web.Request, tree: list[areas.Area]) -> inbox.Filters:
    q = request.query
    view = q.get("view") or "todo"
    if view not in inbox.VIEWS and view not in inbox.STATUSES:
        view = "todo"
    return inbox.Filters(
        view=view,
        category=q.get("category") or None,
        unit=q.get("unit") or None,
        deadline=q.get("deadline") if q.get("deadline") in inbox.DEADLINE_STATES else None,
        q=_search_words(q.get("q") or ""),
        repeat=q.get("repeat") == "1",
        area=_area_id(tree, q.get("grid") or ""),
    )


def _area_id(tree: list[areas.Area], code: str) -> int | None:
    """The node `?grid=` names by its code; an unknown one filters nothing, as other unknown values do."""
    return next((a.id for a in tree if a.code == code), None) if code else None


def outline(tree: list[areas.Area]) -> list[tuple[areas.Area, int]]:
    """The tree depth first, siblings by name, each node with its depth. (Sorting the paths as text would put
    云城社区(北) between 云城社区 and its grids: "(" sorts before "/".)"""
    children: dict[int | None, list[areas.Area]] = {}
    for a in tree:
        children.setdefault(a.parent_id, []).append(a)
    known = {a.id for a in tree}
    found: list[tuple[areas.Area, int]] = []

    def walk(node: areas.Area, depth: int) -> None:
        found.append((node, depth))
        for child in sorted(children.get(node.id, []), key=lambda a: (a.name, a.id)):
            walk(child, depth + 1)

    for root in sorted((a for a in tree if a.parent_id not in known), key=lambda a: (a.name, a.id)):
        walk(root, 0)
    return found


def _search_words(text: str) -> str | None:
    """What to search for; text the databases cannot compare (a NUL, a lone surrogate) searches for nothing."""
    text = text.strip()[:80]
    return text if text and usable(text) else None


async def inbox_page(request: web.Request) -> web.Response:
    app = request.app
    operator = session_of(request).operator
    if not roles.sees_cases(operator):
        return await refused(request, "inbox")
    scope = operator.unit if operator.role == "unit" else None
    async with app[keys.STORE].read() as tx:
        tree = await areas.all_areas(tx)
        filters = _filters(request, tree)
        found = await inbox.page(
            tx,
            filters,
            unit_scope=scope,
            after=request.query.get("after", ""),
            limit=app[keys.SETTINGS].console.page_size,
            phone_mark=None if roles.sees_phone(operator) else app[keys.TEXTS]("privacy.phone_hidden"),
            tree=tree,
        )
    settings = app[keys.SETTINGS]
    units = sorted({unit for unit in settings.routing.table("units").values()})
    query = {k: v for k, v in request.query.items() if k != "after"}
    context = {
        "page": found,
        "filters": filters,
        "categories": settings.complaint.categories,
        "units": units,
        "statuses": inbox.STATUSES,
        # Indented with ideographic spaces: browsers collapse ASCII ones inside an <option>.
        "areas": [(area, "\u3000" * depth) for area, depth in outline(tree)],
        "query": query,
        "scoped": scope,
    }
    return render(request, "inbox.html", context)


async def visible_case(request: web.Request, number: str) -> inbox.CaseFile | web.Response:
    """The case if this operator may see it; else the page that says no (audited)."""
    app = request.app
    operator = session_of(request).operator
    async with app[keys.STORE].read() as tx:
        case = await inbox.case_file(tx, number)
    if case is None:
        return not_found(request)
    if not roles.sees_case(operator, case.lead_unit, case.co_units):
        return await refused(request, "view_case", number)
    return case


async def case_for_action(request: web.Request, number: str, action: str) -> inbox.CaseFile | web.Response:
    """The case if this operator may see it and take `action` on it; else the page that says no (audited)."""
    found = await visible_case(request, number)
    if isinstance(found, web.Response):
        return found
    if not roles.may(session_of(request).operator, action):
        return await refused(request, action, number)
    return found


async def case_page(request: web.Request) -> web.Response:
    found = await visible_case(request, request.match_info["number"])
    if isinstance(found, web.Response):
        return found
    done = request.query.get("done")
    chosen = request.query.get("canned", "")
    return await render_case(
        request,
        found,
        done=done if roles.may_name(done) else None,
        canned_id=int(chosen) if chosen.isdigit() else None,
    )


async def render_case(
    request: web.Request,
    case: inbox.CaseFile,
    *,
    done: str | None = None,
    error: str | None = None,
    status=200,
    canned_id: int | None = None,
) -> web.Response:
    app = request.app
    operator = session_of(request).operator
    settings, clock = app[keys.SETTINGS], app[keys.CLOCK]
    now = clock.now()
    async with app[keys.STORE].read() as tx:
        files = await media.for_case(tx, case.id)
        lines = await conversation.for_resident(tx, case.openid) if case.openid else []
        partial = await _others_hidden(tx, operator, case)
        replies = await canned.listing(tx) if roles.may(operator, "reply") else []
        window = await residents.window(tx, case.openid, now=now, push=settings.push) if case.openid else "unknown"
        linked_polls = await polls.for_case(tx, case.number)
        case_visits = await visits.for_case(tx, case.id)
        mediations = await mediation.for_case(tx, case.id)
        attached = await case_files.for_case(tx, case.id)
        long_running = await longrun.facts(tx, case.id, now, settings)
    if partial:
        # The resident also has cases this operator may not see: only the notices about this one are theirs.
        lines = [line for line in lines if line.who == "notice" and line.case_number == case.number]
    if not roles.sees_phone(operator):
        mark = app[keys.TEXTS]("privacy.phone_hidden")
        mediations = _mediations_without_phones(mediations, mark, case.contact_phone)
        case, lines = _without_phones(case, lines, mark)
    fallback = next(iter(settings.push.fallback), None)
    channel_ready = any(
        (c == "template" and settings.push.templates) or (c == "subscribe" and settings.push.subscribe_templates)
        for c in settings.push.fallback
    )
    context = {
        "case": case,
        "files": files,
        "conversation": lines,
        "conversation_partial": partial,
        "stored": {f.media_id for f in files if f.status == "stored"},
        "phone": case.contact_phone if roles.sees_phone(operator) else roles.mask_phone(case.contact_phone),
        "actions": [a for a in roles.CASE_ACTIONS if roles.may(operator, a)],
        "window": window,
        "fallback": fallback if channel_ready else None,
        "done": done,
        "error": error,
        "due_left": _time_left(case.due_at, now),
        "pools": settings.routing.table("pools"),
        "max_extension": settings.deadlines.extension_max_days,
        "canned": replies,
        "prefill": _prefill(replies, canned_id, case, settings.tz),
        "linked_polls": linked_polls,
        "case_visits": case_visits,
        "mediations": mediations,
        "mediation_open": next((m for m in mediations if m.status == "open"), None),
        "mediation_actions": [a for a in roles.MEDIATION_ACTIONS if roles.may(operator, a)],
        "attached": attached,
        "may_upload": roles.may(operator, "file_upload"),
        "longrun": long_running,
    }
    return render(request, "case.html", context, status=status)


def _mediations_without_phones(found: list, mark: str, known: str | None) -> list:
    """A mediation's mediators, sessions and terms as typed by staff, with phone numbers hidden."""

    def hide(text: str | None) -> str | None:
        return privacy.hide_phones(text, mark=mark, known=known)

    return [
        dataclasses.replace(
            m,
            mediators=[{**p, "name": hide(p.get("name")), "role": hide(p.get("role"))} for p in m.mediators],
            terms=hide(m.terms),
            sessions=[dataclasses.replace(s, outcome=hide(s.outcome)) for s in m.sessions],
        )
        for m in found
    ]


async def _others_hidden(tx, operator, case: inbox.CaseFile) -> bool:
    """Whether the resident has other cases the operator may not see (their conversation covers them all)."""
    if not case.openid or operator.role != "unit":
        return False
    for other in await tx.all(
        "SELECT lead_unit, co_units FROM cases WHERE openid = :openid AND id <> :id", openid=case.openid, id=case.id
    ):
        if not roles.sees_case(operator, other["lead_unit"], unjs(other["co_units"]) or ()):
            return True
    return False


def _without_phones(case: inbox.CaseFile, lines: list, mark: str) -> tuple[inbox.CaseFile, list]:
    """What a resident or staff typed, with phone numbers hidden, for a role that may not see them."""

    def hide(text: str | None) -> str | None:
        return privacy.hide_phones(text, mark=mark, known=case.contact_phone)

    ledger = [dataclasses.replace(e, note=hide(e.note)) for e in case.ledger]
    case = dataclasses.replace(
        case,
        description=hide(case.description),
        place=hide(case.place),
        reply_text=hide(case.reply_text),
        rating_comment=hide(case.rating_comment),
        ledger=ledger,
    )
    return case, [dataclasses.replace(line, text=hide(line.text)) for line in lines]


def _prefill(replies: list, canned_id: int | None, case: inbox.CaseFile, tz) -> str:
    """The chosen canned reply, its placeholders filled in for this case ("" if none was chosen)."""
    chosen = next((c for c in replies if c.id == canned_id), None)
    if chosen is None:
        return ""
    return canned.fill(
        chosen.body,
        number=case.number,
        category=case.category,
        place=case.place,
        unit=case.lead_unit,
        received=case.created_at,
        tz=tz,
    )


def _time_left(due: datetime | None, now: datetime) -> tuple[bool, timedelta] | None:
    """(overdue?, how long) of the running clock, or None."""
    if due is None:
        return None
    return (due < now, abs(due - now))


async def act(request: web.Request) -> web.Response:
    app = request.app
    texts = app[keys.TEXTS]
    action, number = request.match_info["action"], request.match_info["number"]
    if action not in roles.CASE_ACTIONS and action not in roles.MEDIATION_ACTIONS:
        return not_found(request)
    found = await visible_case(request, number)
    if isinstance(found, web.Response):
        return found
    operator = session_of(request).operator
    if not roles.may(operator, action):
        return await refused(request, action, number)
    form = await request.post()
    fields = {name: str(value).strip() for name, value in form.items() if name != "csrf"}
    try:
        async with app[keys.STORE].write() as tx:
            await actions.perform(
                tx, action, found, operator, fields, clock=app[keys.CLOCK], settings=app[keys.SETTINGS], texts=texts
            )
            await operators.audit(
                tx,
                now=app[keys.CLOCK].now(),
                operator=operator.name,
                action=action,
                target=number,
                detail=_detail(fields),
                ip=client_address(request),
            )
    except actions.REFUSALS as exc:
        await audit(request, action, outcome="failed", target=number, detail=str(exc))
        status = 400 if isinstance(exc, actions.FormError) else 409
        async with app[keys.STORE].read() as tx:
            fresh = await inbox.case_file(tx, number)
        return await render_case(request, fresh or found, error=str(exc), status=status)
    case_url = app.router["case"].url_for(number=number).with_query(done=action)
    return see_other(str(case_url))


def _detail(fields: dict[str, str]) -> str | None:
    """What the audit log keeps of a form: which fields were given, and the short ones in full."""
    kept = {k: (v if len(v) <= 80 else v[:79] + "…") for k, v in fields.items() if v}
    return "; ".join(f"{k}={v}" for k, v in kept.items()) or None


async def media_file(request: web.Request) -> web.StreamResponse:
    """A photo, voice or video of the case from the file store — only of a case the operator may see, and only
    a file that belongs to that case."""
    found = await visible_case(request, request.match_info["number"])
    if isinstance(found, web.Response):
        return found
    app = request.app
    media_id = request.match_info["media_id"]
    async with app[keys.STORE].read() as tx:
        files = await media.for_case(tx, found.id)
    chosen = next((f for f in files if f.media_id == media_id and f.status == "stored" and f.path), None)
    path = await asyncio.to_thread(inside_store, app[keys.SETTINGS].media.store_dir, chosen.path if chosen else None)
    if path is None:
        return not_found(request)
    ctype = (chosen.content_type or "").split(";")[0].strip().lower()
    headers = {"Cache-Control": "private, max-age=3600"}
    if ctype.startswith(("image/", "audio/", "video/")) and "svg" not in ctype:
        headers["Content-Type"] = ctype
    else:
        # Whatever else WeChat's hosts labelled it, it is not rendered on the console's origin.
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Disposition"] = "attachment"
    return web.FileResponse(path, headers=headers)


def inside_store(store_dir: str, stored: str | None) -> Path | None:
    """The file, if it exists inside the file store (a path in the database is not trusted blindly)."""
    if not stored:
        return None
    root, path = Path(store_dir).resolve(), Path(stored).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None
