"""The geography tree (区→街道→社区→网格) at /console/grids, and each grid's QR poster.

Admins change the tree (add, rename, remove, a CSV import); the other roles of roles.SEE_GRIDS read it. The
services refuse a change that would break something (removing a node still in use, a name taken under the same
parent); the page says why. A poster's QR code is a permanent parametric code of the account (scene
`grid:<code>`): a resident who scans it joins that grid.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import segno
from aiohttp import web
from markupsafe import Markup

from bot.api.checks import row_id, usable
from bot.console import keys, roles
from bot.console.auth import audit, message_page, not_found, refused, see_other, session_of
from bot.console.pages import render
from bot.services import areas
from bot.texts import Texts

DONE = frozenset({"added", "renamed", "removed", "imported"})
# The CSV import reads what a spreadsheet saves: UTF-8 (with or without BOM), else GB18030 (Excel in Chinese).
_ENCODINGS = ("utf-8-sig", "gb18030")


@dataclass(frozen=True)
class Row:
    area: areas.Area
    depth: int
    residents: int  # residents in the grids at or below this node
    children: int


def _sees(request: web.Request) -> bool:
    return session_of(request).operator.role in roles.SEE_GRIDS


def _manages(request: web.Request) -> bool:
    return session_of(request).operator.role in roles.MANAGE_GRIDS


def level_name(texts: Texts, level: str) -> str:
    key = f"console.grids.level_{level}"
    return texts(key) if texts.has(key) else level


def error_text(texts: Texts, exc: areas.AreaError) -> str:
    """The refusal in Chinese: level names translated, a CSV line's reason spelled out."""
    values = dict(exc.values)
    if exc.key == "bad_parent":
        values["level"] = level_name(texts, str(values.get("level", "")))
        parent = str(values.pop("parent_level", "-"))
        values["parent"] = texts("console.grids.none_above") if parent == "-" else level_name(texts, parent)
    if exc.key == "bad_level":
        values["level"] = str(values.get("level", ""))
    if exc.key == "csv_line":
        reason = f"console.grids.reason_{values.get('reason')}"
        values["reason"] = texts(reason) if texts.has(reason) else str(values.get("reason"))
    key = f"console.grids.{exc.key}"
    return texts(key, **values) if texts.has(key) else exc.key


def tree_rows(tree: list[areas.Area], per_grid: dict[int, int]) -> list[Row]:
    """Depth first, siblings by name, each node with the residents of the grids below it."""
    children: dict[int | None, list[areas.Area]] = {}
    for a in tree:
        children.setdefault(a.parent_id, []).append(a)
    for kin in children.values():
        kin.sort(key=lambda a: (a.name, a.id))
    known = {a.id for a in tree}
    rows: list[Row] = []

    def count(node: areas.Area) -> int:
        return per_grid.get(node.id, 0) + sum(count(c) for c in children.get(node.id, []))

    def walk(node: areas.Area, depth: int) -> None:
        rows.append(Row(node, depth, count(node), len(children.get(node.id, []))))
        for child in children.get(node.id, []):
            walk(child, depth + 1)

    # Roots: districts, and any node whose parent is gone (shown rather than lost).
    for root in sorted((a for a in tree if a.parent_id not in known), key=lambda a: (a.name, a.id)):
        walk(root, 0)
    return rows


async def _residents_per_grid(tx) -> dict[int, int]:
    found = await tx.all("SELECT grid_id, count(*) AS n FROM residents WHERE grid_id IS NOT NULL GROUP BY grid_id")
    return {r["grid_id"]: int(r["n"]) for r in found}


async def page(request: web.Request, *, error: str | None = None, form: dict | None = None, status: int = 200):
    if not _sees(request):
        return await refused(request, "grids")
    async with request.app[keys.STORE].read() as tx:
        tree = await areas.all_areas(tx)
        per_grid = await _residents_per_grid(tx)
    texts = request.app[keys.TEXTS]
    q = request.query
    done = q.get("done") if q.get("done") in DONE else None
    report = {k: int(q[k]) for k in ("created", "existing", "rows") if row_id(q.get(k, ""))}
    if done == "imported" and len(report) < 3:
        done = None  # a hand-made URL: no figures to report
    context = {
        "rows": tree_rows(tree, per_grid),
        "parents": [a for a in tree if a.level != "grid"],
        "levels": areas.LEVELS,
        "level_name": lambda level: level_name(texts, level),
        "manages": _manages(request),
        "done": texts(f"console.grids.done_{done}", **report) if done else None,
        "error": error,
        "form": form or {},
        "name_chars": areas.NAME_CHARS,
    }
    return render(request, "grids.html", context, status=status)


async def list_page(request: web.Request) -> web.Response:
    return await page(request)


def _redirect(request: web.Request, **query: str | int) -> web.Response:
    return see_other(str(request.app.router["grids"].url_for().with_query({k: str(v) for k, v in query.items()})))


async def add(request: web.Request) -> web.Response:
    if not _manages(request):
        return await refused(request, "grid_add")
    app = request.app
    texts = app[keys.TEXTS]
    form = await request.post()
    fields = {k: str(form.get(k, "")).strip() for k in ("level", "name", "parent", "code")}
    if not all(usable(v) for v in fields.values()):
        return await page(request, error=texts("console.grids.bad_input"), form=fields, status=400)
    try:
        async with app[keys.STORE].write() as tx:
            parent = await areas.get(tx, int(fields["parent"])) if row_id(fields["parent"]) else None
            if fields["parent"] and parent is None:
                raise areas.AreaError("parent_gone")
            made = await areas.add(
                tx,
                fields["level"],
                fields["name"],
                parent=parent,
                now=app[keys.CLOCK].now(),
                code=fields["code"] or None,
            )
    except areas.AreaError as exc:
        message = error_text(texts, exc)
        await audit(request, "grid_add", outcome="failed", detail=message)
        return await page(request, error=message, form=fields, status=400)
    await audit(request, "grid_add", target=made.code, detail=made.path)
    return _redirect(request, done="added")


async def _area_of(request: web.Request, tx) -> areas.Area | None:
    area_id = request.match_info["id"]
    return await areas.get(tx, int(area_id)) if row_id(area_id) else None


async def rename(request: web.Request) -> web.Response:
    if not _manages(request):
        return await refused(request, "grid_rename", request.match_info["id"])
    app = request.app
    texts = app[keys.TEXTS]
    name = str((await request.post()).get("name", "")).strip()
    if not usable(name):
        return await page(request, error=texts("console.grids.bad_input"), status=400)
    try:
        async with app[keys.STORE].write() as tx:
            area = await _area_of(request, tx)
            if area is None:
                return not_found(request)
            await areas.rename(tx, area, name)
    except areas.AreaError as exc:
        message = error_text(texts, exc)
        await audit(request, "grid_rename", outcome="failed", target=request.match_info["id"], detail=message)
        return await page(request, error=message, status=400)
    await audit(request, "grid_rename", target=area.code, detail=f"{area.path} → {' '.join(name.split())}")
    return _redirect(request, done="renamed")


async def remove(request: web.Request) -> web.Response:
    if not _manages(request):
        return await refused(request, "grid_remove", request.match_info["id"])
    app = request.app
    texts = app[keys.TEXTS]
    try:
        async with app[keys.STORE].write() as tx:
            area = await _area_of(request, tx)
            if area is None:
                return not_found(request)
            await areas.remove(tx, area)
    except areas.AreaError as exc:
        message = error_text(texts, exc)
        await audit(request, "grid_remove", outcome="failed", target=request.match_info["id"], detail=message)
        return await page(request, error=message, status=409)
    await audit(request, "grid_remove", target=area.code, detail=area.path)
    return _redirect(request, done="removed")


def _decode(data: bytes) -> str | None:
    for encoding in _ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text if usable(text) else None
    return None


async def import_csv(request: web.Request) -> web.Response:
    if not _manages(request):
        return await refused(request, "grid_import")
    app = request.app
    texts = app[keys.TEXTS]
    upload = (await request.post()).get("file")
    if not isinstance(upload, web.FileField):
        return await page(request, error=texts("console.grids.no_file"), status=400)
    text = _decode(upload.file.read())
    if text is None:
        await audit(request, "grid_import", outcome="failed", detail="encoding")
        return await page(request, error=texts("console.grids.bad_encoding"), status=400)
    try:
        async with app[keys.STORE].write() as tx:
            report = await areas.import_csv(tx, text, now=app[keys.CLOCK].now())
    except areas.AreaError as exc:
        message = error_text(texts, exc)
        await audit(request, "grid_import", outcome="failed", detail=message)
        return await page(request, error=message, status=400)
    detail = f"{upload.filename} rows={report.rows} created={report.created} existing={report.existing}"
    await audit(request, "grid_import", detail=detail)
    return _redirect(request, done="imported", created=report.created, existing=report.existing, rows=report.rows)


# ---- the QR poster ---------------------------------------------------------------------------------------


def qr_svg(url: str, title: str) -> Markup:
    """The QR code as inline SVG (sized by its viewBox, so the page's CSS sets how big it prints)."""
    out = io.BytesIO()
    segno.make(url, error="m").save(
        out,
        kind="svg",
        xmldecl=False,
        svgns=True,
        omitsize=True,
        light="#fff",
        svgclass="qr",
        lineclass=None,
        title=title,
    )
    # segno escapes the title; the rest is paths it drew.
    return Markup(out.getvalue().decode("utf-8"))


async def qr_poster(request: web.Request) -> web.Response:
    # The WeChat client lives on the parent application (bot/app.py), which imports the console: imported here.
    from bot.app import API
    from bot.wechat.api import WeChatAPIError

    code = request.match_info["code"]
    if not _sees(request):
        return await refused(request, "grid_qr", code)
    texts = request.app[keys.TEXTS]
    area = None
    if areas.CODE.fullmatch(code):
        async with request.app[keys.STORE].read() as tx:
            area = await areas.by_code(tx, code)
    if area is None or area.level != "grid":
        return not_found(request)
    api = request.config_dict.get(API)
    if api is None:
        return message_page(request, texts("console.grids.qr_failed", reason=texts("console.grids.qr_no_url")), 503)
    try:
        answer = await api.create_qrcode(areas.scene_of(area))
    except WeChatAPIError as exc:
        await audit(request, "grid_qr", outcome="failed", target=area.code, detail=str(exc))
        return message_page(request, texts("console.grids.qr_failed", reason=str(exc)), 502)
    url = str(answer.get("url") or "")
    if not url:
        await audit(request, "grid_qr", outcome="failed", target=area.code, detail="no url")
        return message_page(request, texts("console.grids.qr_failed", reason=texts("console.grids.qr_no_url")), 502)
    await audit(request, "grid_qr", target=area.code)
    heading = texts("console.grids.poster_heading", name=poster_name(texts, area))
    return render(
        request, "grid_qr.html", {"area": area, "heading": heading, "qr": qr_svg(url, heading), "qr_url": url}
    )


def poster_name(texts: Texts, area: areas.Area) -> str:
    """第一网格 as it is; 云城 as 云城网格 (the poster says which grid, once)."""
    suffix = texts("console.grids.grid_suffix")
    return area.name if area.name.endswith(suffix) else area.name + suffix
