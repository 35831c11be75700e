"""`frontdoor grids add|import|list|qrcode` and `frontdoor gridworker add|assign|invite|list`: the geography tree
(区 → 街道 → 社区 → 网格, bot/services/areas.py), the posters' QR codes, and the grid workers (网格员,
bot/services/gridworkers.py).

An area is named by its code (G12) or its full path (云岩区/中华路街道/云城社区/第一网格). `gridworker invite` prints
the one-time code alone on standard output, like `api-token add` (`CODE=$(frontdoor gridworker invite 王敏 --grid
G12)`), with the sentence for the operator on standard error; only its sha256 is stored. Openids are never
printed in full."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from bot.cases_cli import print_json, reading, write_once
from bot.clock import Clock
from bot.config import Settings
from bot.outbox_cli import mask
from bot.services import areas, gridworkers, operators
from bot.services.areas import Area, AreaError
from bot.services.gridworkers import WorkerError
from bot.texts import Texts
from storage.fast import Tx

LEVEL_WORDS = {"区": "district", "街道": "street", "社区": "community", "网格": "grid"}
# The areas a worker may look after: a grid, or a community and so every grid in it.
WORKER_LEVELS = ("grid", "community")


def _level(value: str) -> str:
    return LEVEL_WORDS.get(value.strip(), value.strip().lower())


def register(sub) -> None:
    """Add `frontdoor grids …` and `frontdoor gridworker …` to the command's subparsers."""
    grids = sub.add_parser("grids", help="the geography tree 区 → 街道 → 社区 → 网格, and the grids' QR codes")
    grids_sub = grids.add_subparsers(dest="action", required=True)
    add_ = grids_sub.add_parser("add", help="a new area under its parent")
    add_.add_argument(
        "level", type=_level, choices=areas.LEVELS, help="district|street|community|grid (区|街道|社区|网格)"
    )
    add_.add_argument("name")
    add_.add_argument("--parent", help="the parent area: its code or full path (every level but a district)")
    add_.add_argument("--code", help="a stable code (letters, digits, - and _); default: made from the level and id")
    imp = grids_sub.add_parser("import", help="CSV rows 区,街道,社区,网格[,网格编码]: all or nothing, reimport is safe")
    imp.add_argument("file")
    ls = grids_sub.add_parser("list", help="the tree, with codes and how many residents joined each area")
    ls.add_argument("--json", action="store_true")
    qr = grids_sub.add_parser("qrcode", help="a grid's permanent QR code for its poster: scanning it joins the grid")
    qr.add_argument("grid", help="the grid's code or full path")
    qr.add_argument("--out", help="the image file (default: qr-<code>.png, .jpg when WeChat answers a JPEG)")
    qr.add_argument("--api", help="API base URL (default: from settings; the fake of a running serve)")
    grids.set_defaults(func=cmd_grids)

    workers = sub.add_parser("gridworker", help="grid workers (网格员): their areas and their WeChat binding")
    workers_sub = workers.add_subparsers(dest="action", required=True)
    w_add = workers_sub.add_parser("add", help="a new grid worker and the areas they look after")
    w_add.add_argument("name")
    w_add.add_argument("--area", action="append", required=True, help="a grid or community (repeatable)")
    w_add.add_argument("--operator", help="their console account (frontdoor operator add … --role gridworker)")
    w_assign = workers_sub.add_parser("assign", help="one more area the worker looks after")
    w_assign.add_argument("name")
    w_assign.add_argument("--area", action="append", required=True, help="a grid or community (repeatable)")
    w_invite = workers_sub.add_parser("invite", help="a one-time code binding the worker's WeChat (绑定 <code>)")
    w_invite.add_argument("name", help="the worker (created when new)")
    w_invite.add_argument("--grid", required=True, help="the grid (or community) they look after")
    w_ls = workers_sub.add_parser("list", help="the workers, bound or not, and their areas (openids masked)")
    w_ls.add_argument("--json", action="store_true")
    workers.set_defaults(func=cmd_gridworker)


def cmd_grids(args) -> int:
    from bot.cli import _database_ready, _settings, _texts

    settings = _settings(args)
    texts = _texts(settings)
    if not _database_ready(settings, texts):
        return 2
    if args.action == "add":
        return asyncio.run(add_area(settings, texts, args.level, args.name, parent=args.parent, code=args.code))
    if args.action == "import":
        try:
            text = _read_csv(Path(args.file))
        except (OSError, UnicodeDecodeError) as exc:
            error = getattr(exc, "strerror", None) or exc
            print(texts("cli.grids.unreadable", file=args.file, error=error), file=sys.stderr)
            return 1
        return asyncio.run(import_areas(settings, texts, text))
    if args.action == "qrcode":
        return asyncio.run(qrcode(settings, texts, args.grid, out=args.out, api_base=args.api))
    return asyncio.run(list_areas(settings, texts, as_json=args.json))


def cmd_gridworker(args) -> int:
    from bot.cli import _database_ready, _settings, _texts

    settings = _settings(args)
    texts = _texts(settings)
    if not _database_ready(settings, texts):
        return 2
    if args.action == "add":
        return asyncio.run(add_worker(settings, texts, args.name, args.area, operator=args.operator))
    if args.action == "assign":
        return asyncio.run(assign_worker(settings, texts, args.name, args.area))
    if args.action == "invite":
        return asyncio.run(invite_worker(settings, texts, args.name, args.grid))
    return asyncio.run(list_workers(settings, texts, as_json=args.json))


def _read_csv(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Excel on a Chinese Windows saves CSV in the ANSI code page, not UTF-8.
        return raw.decode("gb18030")


def _level_name(texts: Texts, level: str) -> str:
    return texts(f"cli.grids.level_{level}") if texts.has(f"cli.grids.level_{level}") else level


def _area_refusal(texts: Texts, exc: AreaError) -> str:
    values = dict(exc.values)
    for name in ("level", "parent_level"):
        if name in values:
            values[name] = _level_name(texts, str(values[name]))
    key = exc.key
    if key == "bad_parent" and exc.values.get("level") == "district":
        key = "district_has_no_parent"
    if key == "csv_line":
        reason = f"cli.grids.reason.{values.get('reason')}"
        values["reason"] = texts(reason) if texts.has(reason) else texts("cli.grids.reason.other")
    return texts(f"cli.grids.{key}", **values)


async def _find(tx: Tx, ref: str) -> Area:
    found = await areas.find(tx, ref)
    if found is None:
        raise AreaError("not_found", ref=ref)
    return found


# ---- grids -----------------------------------------------------------------------------------------------------


async def add_area(settings: Settings, texts: Texts, level: str, name: str, *, parent: str | None, code: str | None):
    async def work(tx: Tx) -> Area:
        above = None
        if parent:
            above = await areas.find(tx, parent)
            if above is None:
                raise AreaError("parent_not_found", ref=parent)
        return await areas.add(tx, level, name, parent=above, now=Clock().now(), code=code)

    try:
        _code, added = await write_once(settings, work, ())
    except AreaError as exc:
        print(_area_refusal(texts, exc), file=sys.stderr)
        return 1
    print(texts("cli.grids.added", level=_level_name(texts, added.level), path=added.path, code=added.code))
    return 0


async def import_areas(settings: Settings, texts: Texts, text: str) -> int:
    try:
        _code, report = await write_once(settings, lambda tx: areas.import_csv(tx, text, now=Clock().now()), ())
    except AreaError as exc:
        # import_csv is all or nothing: the refusal rolled the whole file back.
        print(_area_refusal(texts, exc), file=sys.stderr)
        return 1
    print(texts("cli.grids.imported", rows=report.rows, created=report.created, existing=report.existing))
    return 0


def _tree_order(tree: list[Area]) -> list[tuple[int, Area]]:
    """(depth, area), each node followed by its subtree, siblings in the order they were added (a CSV's order):
    sorting paths as strings would put 云城社区(二) between 云城社区 and its grids."""
    children: dict[int | None, list[Area]] = {}
    for a in tree:
        children.setdefault(a.parent_id, []).append(a)
    ordered: list[tuple[int, Area]] = []

    def walk(parent_id: int | None, depth: int) -> None:
        for a in sorted(children.get(parent_id, []), key=lambda a: a.id):
            ordered.append((depth, a))
            walk(a.id, depth + 1)

    walk(None, 0)
    return ordered


async def list_areas(settings: Settings, texts: Texts, *, as_json: bool) -> int:
    async with reading(settings) as tx:
        tree = await areas.all_areas(tx)
        rows = await tx.all(
            "SELECT grid_id, count(*) AS n FROM residents WHERE grid_id IS NOT NULL AND subscribed = :yes "
            "GROUP BY grid_id",
            yes=True,
        )
    joined = {r["grid_id"]: r["n"] for r in rows}
    by_id = {a.id: a for a in tree}
    # An area's residents are those of the grids under it.
    residents = {a.id: sum(joined.get(g, 0) for g in areas.grids_under(tree, [a.id])) for a in tree}
    ordered = _tree_order(tree)
    if as_json:
        return print_json(
            [
                {
                    "code": a.code,
                    "level": a.level,
                    "name": a.name,
                    "path": a.path,
                    "parent": by_id[a.parent_id].code if a.parent_id in by_id else None,
                    "residents": residents[a.id],
                }
                for _depth, a in ordered
            ]
        )
    if not ordered:
        print(texts("cli.grids.none"))
    for depth, a in ordered:
        print(
            texts(
                "cli.grids.line",
                indent="  " * depth,
                name=a.name,
                code=a.code,
                level=_level_name(texts, a.level),
                residents=residents[a.id],
            )
        )
    return 0


def _image_file(code: str, content_type: str) -> Path:
    # WeChat's showqrcode answers a JPEG (the fake a PNG): the name must not lie to a poster printer's software.
    suffix = ".jpg" if content_type in ("image/jpeg", "image/jpg") else ".png"
    return Path(f"qr-{code}{suffix}")


async def qrcode(settings: Settings, texts: Texts, ref: str, *, out: str | None, api_base: str | None) -> int:
    import aiohttp

    from bot.app import api_base_url, qrcode_image_base
    from bot.wechat.api import WeChatAPI, WeChatAPIError

    async with reading(settings) as tx:
        grid = await areas.find(tx, ref)
    if grid is None:
        print(texts("cli.grids.not_found", ref=ref), file=sys.stderr)
        return 1
    if grid.level != "grid":
        print(texts("cli.grids.not_a_grid", path=grid.path, level=_level_name(texts, grid.level)), file=sys.stderr)
        return 1
    async with aiohttp.ClientSession() as http:
        api = WeChatAPI.from_settings(
            http,
            settings.wechat,
            Clock(),
            base_url=api_base or api_base_url(settings),
            qrcode_image_url=qrcode_image_base(settings, api_base),
        )
        try:
            # Permanent: a poster stays on the wall for years.
            made = await api.create_qrcode(areas.scene_of(grid))
            image, content_type = await api.qrcode_image(made["ticket"])
        except (WeChatAPIError, aiohttp.ClientError) as exc:
            print(texts("cli.grids.qrcode_failed", error=exc), file=sys.stderr)
            return 1
    path = Path(out) if out else _image_file(grid.code, content_type)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
    except OSError as exc:
        print(texts("cli.grids.unwritable", file=path, error=exc.strerror or exc), file=sys.stderr)
        return 1
    print(texts("cli.grids.qrcode_saved", path=grid.path, file=path.resolve()))
    print(texts("cli.grids.qrcode_url", url=made["url"]))
    return 0


# ---- grid workers ----------------------------------------------------------------------------------------------


async def _worker_area(tx: Tx, ref: str) -> Area:
    area = await _find(tx, ref)
    if area.level not in WORKER_LEVELS:
        raise AreaError("not_for_workers", path=area.path, level=area.level)
    return area


def _paths(tree: list[Area], ids) -> str:
    by_id = {a.id: a.path for a in tree}
    return "、".join(sorted(by_id[i] for i in ids if i in by_id))


async def _write(settings: Settings, texts: Texts, work):
    """(0, result) or (1, None) once the refusal has been printed."""
    try:
        return await write_once(settings, work, ())
    except AreaError as exc:
        print(_area_refusal(texts, exc), file=sys.stderr)
    except WorkerError as exc:
        print(texts(f"cli.gridworker.{exc.key}", **exc.values), file=sys.stderr)
    return 1, None


async def _check_operator(tx: Tx, operator: str, name: str) -> None:
    if await operators.account(tx, operator) is None:
        raise WorkerError("operator_not_found", operator=operator)
    other = await gridworkers.by_operator(tx, operator)
    if other is not None and other.name != name:
        raise WorkerError("operator_taken", operator=operator, name=other.name)


async def add_worker(settings: Settings, texts: Texts, name: str, refs: list[str], *, operator: str | None) -> int:
    async def work(tx: Tx) -> tuple[str, str]:
        wanted = [await _worker_area(tx, ref) for ref in refs]
        if await gridworkers.by_name(tx, " ".join(name.split())) is not None:
            raise WorkerError("exists", name=name)
        if operator:
            await _check_operator(tx, operator, name)
        worker = await gridworkers.ensure(tx, name, now=Clock().now(), operator_name=operator)
        for area in wanted:
            await gridworkers.assign(tx, worker, area)
        return worker.name, "、".join(sorted({a.path for a in wanted}))

    code, added = await _write(settings, texts, work)
    if code:
        return code
    print(texts("cli.gridworker.added", name=added[0], areas=added[1]))
    return 0


async def assign_worker(settings: Settings, texts: Texts, name: str, refs: list[str]) -> int:
    async def work(tx: Tx) -> str:
        worker = await gridworkers.by_name(tx, " ".join(name.split()))
        if worker is None:
            raise WorkerError("not_found", name=name)
        for ref in refs:
            await gridworkers.assign(tx, worker, await _worker_area(tx, ref))
        worker = await gridworkers.by_id(tx, worker.id)
        return _paths(await areas.all_areas(tx), worker.area_ids)  # type: ignore[union-attr]

    code, now_covers = await _write(settings, texts, work)
    if code:
        return code
    print(texts("cli.gridworker.assigned", name=" ".join(name.split()), areas=now_covers))
    return 0


async def invite_worker(settings: Settings, texts: Texts, name: str, ref: str) -> int:
    hours = settings.polls.invite_hours

    async def work(tx: Tx) -> str:
        area = await _worker_area(tx, ref)
        now = Clock().now()
        worker = await gridworkers.ensure(tx, name, now=now)
        await gridworkers.assign(tx, worker, area)
        return await gridworkers.invite(tx, worker, now=now, valid=timedelta(hours=hours))

    code, invite = await _write(settings, texts, work)
    if code:
        return code
    print(texts("cli.gridworker.invite_hint", code=invite, hours=hours), file=sys.stderr)
    print(invite, flush=True)
    return 0


async def list_workers(settings: Settings, texts: Texts, *, as_json: bool) -> int:
    async with reading(settings) as tx:
        found = await gridworkers.listing(tx)
        tree = await areas.all_areas(tx)
    by_id = {a.id: a.path for a in tree}
    rows = [
        {
            "name": w.name,
            "bound": w.openid is not None,
            # An openid identifies a person: its first characters tell two accounts apart, no more.
            "openid": mask(w.openid) if w.openid else None,
            "operator": w.operator_name,
            "active": w.active,
            "areas": sorted(by_id[i] for i in w.area_ids if i in by_id),
        }
        for w in found
    ]
    if as_json:
        return print_json(rows)
    if not rows:
        print(texts("cli.gridworker.none"))
    for row in rows:
        print(
            texts(
                "cli.gridworker.line",
                name=row["name"],
                bound=texts("cli.gridworker.bound", openid=row["openid"])
                if row["bound"]
                else texts("cli.gridworker.unbound"),
                areas="、".join(row["areas"]) or texts("cli.gridworker.no_areas"),
                operator=texts("cli.gridworker.operator_mark", operator=row["operator"]) if row["operator"] else "",
                inactive="" if row["active"] else texts("cli.gridworker.inactive"),
            )
        )
    return 0
