"""The geography tree: 区 (district) → 街道 (street) → 社区 (community) → 网格 (grid).

Every node has a stable `code` (given, or made from its level and id: G12 for grid 12), which the CLI, a CSV
import and a grid poster's QR scene (`grid:<code>`) use. Names repeat across parents (every community has a
第一网格), so a node is named in full by its path: 云岩区/中华路街道/云城社区/第一网格.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from storage.fast import Conflict, Tx, unjs

LEVELS = ("district", "street", "community", "grid")
_CODE_PREFIX = {"district": "D", "street": "S", "community": "C", "grid": "G"}
CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")
NAME_CHARS = 80
# A path joins names with "/": a name holding one would make two paths read alike.
_PATH_SEPARATORS = re.compile(r"[/／>＞]")
# A parametric QR code's scene string is at most 64 characters: "grid:" + a code fits.
SCENE_PREFIX = "grid:"


class AreaError(Exception):
    """Why a change to the tree was refused: a text key under cli.grids / console.grids and its values."""

    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key, self.values = key, values


@dataclass(frozen=True)
class Area:
    id: int
    parent_id: int | None
    level: str
    name: str
    code: str
    # 云岩区/中华路街道/云城社区/第一网格
    path: str = ""


_COLUMNS = "id, parent_id, level, name, code"


def _area(row, path: str = "") -> Area:
    return Area(row["id"], row["parent_id"], row["level"], row["name"], row["code"], path or row["name"])


async def all_areas(tx: Tx) -> list[Area]:
    """The whole tree, each node with its path, parents before children, siblings by name."""
    rows = await tx.all(f"SELECT {_COLUMNS} FROM areas ORDER BY id")
    by_id = {r["id"]: r for r in rows}

    def path(row) -> str:
        names = []
        while row is not None:
            names.append(row["name"])
            row = by_id.get(row["parent_id"])
        return "/".join(reversed(names))

    found = [_area(r, path(r)) for r in rows]
    return sorted(found, key=lambda a: a.path)


async def _with_path(tx: Tx, row) -> Area:
    """The node with its path, read up through its parents (at most three: the tree has four levels) rather
    than the whole tree — a poster scan or a resident's grid needs one node, not thousands."""
    names, parent = [row["name"]], row["parent_id"]
    while parent is not None:
        up = await tx.one("SELECT name, parent_id FROM areas WHERE id = :id", id=parent)
        if up is None:
            break
        names.append(up["name"])
        parent = up["parent_id"]
    return _area(row, "/".join(reversed(names)))


async def get(tx: Tx, area_id: int) -> Area | None:
    row = await tx.one(f"SELECT {_COLUMNS} FROM areas WHERE id = :id", id=area_id)
    return None if row is None else await _with_path(tx, row)


async def by_code(tx: Tx, code: str) -> Area | None:
    row = await tx.one(f"SELECT {_COLUMNS} FROM areas WHERE code = :code", code=code)
    return None if row is None else await _with_path(tx, row)


async def find(tx: Tx, ref: str) -> Area | None:
    """An area by its code or its full path (区/街道/社区/网格); None when neither names one."""
    ref = ref.strip()
    if (found := await by_code(tx, ref)) is not None:
        return found
    wanted = "/".join(part.strip() for part in re.split(r"[/／>＞]", ref) if part.strip())
    return next((a for a in await all_areas(tx) if a.path == wanted), None)


async def add(tx: Tx, level: str, name: str, *, parent: Area | None, now: datetime, code: str | None = None) -> Area:
    """A new node under `parent` (a district has none; every other level sits under the level above it)."""
    name = " ".join(name.split())
    if level not in LEVELS:
        raise AreaError("bad_level", level=level)
    if not name or len(name) > NAME_CHARS or _PATH_SEPARATORS.search(name):
        raise AreaError("bad_name", max=NAME_CHARS)
    expected_parent = LEVELS[LEVELS.index(level) - 1] if level != "district" else None
    if (parent.level if parent else None) != expected_parent:
        raise AreaError("bad_parent", level=level, parent_level=expected_parent or "-")
    if code is not None and not CODE.fullmatch(code):
        raise AreaError("bad_code", code=code)
    exists = await tx.val(
        "SELECT id FROM areas WHERE name = :name AND " + ("parent_id = :parent" if parent else "parent_id IS NULL"),
        name=name,
        **({"parent": parent.id} if parent else {}),
    )
    if exists is not None:
        raise AreaError("exists", name=name)
    temporary = code or f"tmp-{secrets.token_hex(8)}"
    try:
        area_id = await tx.val(
            "INSERT INTO areas (parent_id, level, name, code, created_at) "
            "VALUES (:parent, :level, :name, :code, :now) RETURNING id",
            parent=parent.id if parent else None,
            level=level,
            name=name,
            code=temporary,
            now=tx.ts(now),
        )
    except Conflict:
        raise AreaError("code_taken", code=code or temporary) from None
    if code is None:
        code = base = f"{_CODE_PREFIX[level]}{area_id}"
        # A code someone gave by hand may already be "G12": the next free variant, never a violation (which
        # on PostgreSQL would abort the whole transaction, an import of a thousand rows with it).
        n = 1
        while await tx.val("SELECT 1 FROM areas WHERE code = :code", code=code) is not None:
            n += 1
            code = f"{base}-{n}"
        await tx.run("UPDATE areas SET code = :code WHERE id = :id", code=code, id=area_id)
    path = f"{parent.path}/{name}" if parent else name
    return Area(area_id, parent.id if parent else None, level, name, code, path)


async def rename(tx: Tx, area: Area, name: str) -> None:
    name = " ".join(name.split())
    if not name or len(name) > NAME_CHARS or _PATH_SEPARATORS.search(name):
        raise AreaError("bad_name", max=NAME_CHARS)
    # Checked here as in add(): a unique key does not hold among districts (their parent_id is NULL).
    sibling = await tx.val(
        "SELECT id FROM areas WHERE name = :name AND id <> :id AND "
        + ("parent_id = :parent" if area.parent_id is not None else "parent_id IS NULL"),
        name=name,
        id=area.id,
        **({"parent": area.parent_id} if area.parent_id is not None else {}),
    )
    if sibling is not None:
        raise AreaError("exists", name=name)
    try:
        await tx.run("UPDATE areas SET name = :name WHERE id = :id", name=name, id=area.id)
    except Conflict:
        raise AreaError("exists", name=name) from None


async def remove(tx: Tx, area: Area) -> None:
    """Only an empty leaf: no child, no resident, no case, no worker, no poll refers to it."""
    if await tx.val("SELECT count(*) FROM areas WHERE parent_id = :id", id=area.id):
        raise AreaError("has_children", name=area.name)
    residents = await tx.val("SELECT count(*) FROM residents WHERE grid_id = :id", id=area.id)
    workers = await tx.val("SELECT count(*) FROM grid_worker_areas WHERE area_id = :id", id=area.id)
    cases = await tx.val("SELECT count(*) FROM cases WHERE grid_id = :id", id=area.id)
    polls = [r["grid_ids"] for r in await tx.all("SELECT grid_ids FROM polls")]
    used = any(area.id in _ids(g) for g in polls)
    if residents or workers or cases or used:
        raise AreaError("in_use", name=area.name)
    await tx.run("DELETE FROM areas WHERE id = :id", id=area.id)


def _ids(value) -> list[int]:
    return [int(v) for v in unjs(value) or []]


def grids_under(tree: list[Area], roots: list[int]) -> list[int]:
    """The grids at or below these nodes, in id order."""
    children: dict[int | None, list[Area]] = {}
    for a in tree:
        children.setdefault(a.parent_id, []).append(a)
    by_id = {a.id: a for a in tree}
    found: set[int] = set()
    stack = [by_id[r] for r in roots if r in by_id]
    while stack:
        node = stack.pop()
        if node.level == "grid":
            found.add(node.id)
        stack.extend(children.get(node.id, []))
    return sorted(found)


def covers(tree: list[Area], scope: list[int], area_id: int) -> bool:
    """Whether `area_id` is at or below one of the `scope` nodes."""
    by_id = {a.id: a for a in tree}
    node = by_id.get(area_id)
    while node is not None:
        if node.id in scope:
            return True
        node = by_id.get(node.parent_id)
    return False


def matching(tree: list[Area], words: str, *, levels: tuple[str, ...] = ("grid", "community")) -> list[Area]:
    """Nodes of these levels whose name or path contains what a resident typed ("云城社区", "云城 第一网格")."""
    parts = [p for p in re.split(r"[\s/／,，、]+", words.strip()) if p]
    if not parts:
        return []
    found = [a for a in tree if a.level in levels and all(p in a.path for p in parts)]
    exact = [a for a in found if a.name == words.strip() or a.path == words.strip()]
    return exact or found


# ---- the CSV import ------------------------------------------------------------------------------------------

_HEADER_WORDS = {"区", "区县", "街道", "乡镇", "社区", "村", "网格", "district", "street", "community", "grid"}


@dataclass(frozen=True)
class ImportReport:
    created: int
    existing: int
    rows: int


async def import_csv(tx: Tx, text: str, *, now: datetime) -> ImportReport:
    """Rows of 区,街道,社区,网格[,网格编码] (a header row is recognised and skipped); nodes that exist are
    reused, missing ones created. All or nothing: a bad row refuses the whole file (AreaError with its line)."""
    created = existing = rows = 0
    tree = await all_areas(tx)
    by_path = {a.path: a for a in tree}
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    for line, row in enumerate(reader, 1):
        # Spaces inside a name collapse as add() stores it, or the next row naming the same node would miss it.
        cells = [" ".join(c.split()) for c in row]
        if not any(cells):
            continue
        if line == 1 and any(c.lower() in _HEADER_WORDS or c in _HEADER_WORDS for c in cells):
            continue
        if len(cells) < 4 or not all(cells[:4]):
            raise AreaError("csv_row", line=line)
        code = cells[4] if len(cells) > 4 and cells[4] else None
        rows += 1
        parent: Area | None = None
        for level, name in zip(LEVELS, cells[:4], strict=True):
            path = f"{parent.path}/{name}" if parent else name
            node = by_path.get(path)
            if node is None:
                try:
                    node = await add(tx, level, name, parent=parent, now=now, code=code if level == "grid" else None)
                except AreaError as exc:
                    raise AreaError("csv_line", line=line, reason=exc.key) from None
                by_path[node.path] = node
                created += 1
            elif level == "grid":
                existing += 1
            parent = node
    return ImportReport(created=created, existing=existing, rows=rows)


# ---- residents' grids ----------------------------------------------------------------------------------------


async def join(tx: Tx, openid: str, grid: Area, now: datetime) -> bool:
    """The resident belongs to `grid` from now on; False when they already did."""
    current = await tx.val("SELECT grid_id FROM residents WHERE openid = :openid", openid=openid)
    if current == grid.id:
        return False
    await tx.run(
        "INSERT INTO residents (openid, subscribed, created_at, grid_id) VALUES (:openid, :yes, :now, :grid) "
        "ON CONFLICT (openid) DO UPDATE SET grid_id = excluded.grid_id",
        openid=openid,
        yes=True,
        now=tx.ts(now),
        grid=grid.id,
    )
    return True


async def grid_of(tx: Tx, openid: str) -> Area | None:
    grid_id = await tx.val("SELECT grid_id FROM residents WHERE openid = :openid", openid=openid)
    return None if grid_id is None else await get(tx, grid_id)


def scene_of(area: Area) -> str:
    return SCENE_PREFIX + area.code


def code_from_scene(scene: str | None) -> str | None:
    """The grid code a poster's QR scene carries ("grid:G12"), or None for any other scene."""
    if scene and scene.startswith(SCENE_PREFIX):
        return scene[len(SCENE_PREFIX) :] or None
    return None
