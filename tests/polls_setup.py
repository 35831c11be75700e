"""A small city for poll tests: one district, one street, two communities, three grids; a grid worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.app import POLLS, STORE
from bot.services import areas, gridworkers, polls


@dataclass
class City:
    district: areas.Area
    street: areas.Area
    yuncheng: areas.Area  # 云城社区
    grid1: areas.Area  # 云城社区/第一网格
    grid2: areas.Area  # 云城社区/第二网格
    other: areas.Area  # 白云社区/第一网格 (another community)


async def build_city(h) -> City:
    now = h.clock.now()
    async with h.app[STORE].write() as tx:
        d = await areas.add(tx, "district", "云岩区", parent=None, now=now)
        s = await areas.add(tx, "street", "中华路街道", parent=d, now=now)
        c1 = await areas.add(tx, "community", "云城社区", parent=s, now=now)
        c2 = await areas.add(tx, "community", "白云社区", parent=s, now=now)
        g1 = await areas.add(tx, "grid", "第一网格", parent=c1, now=now, code="YC01")
        g2 = await areas.add(tx, "grid", "第二网格", parent=c1, now=now, code="YC02")
        g3 = await areas.add(tx, "grid", "第一网格", parent=c2, now=now, code="BY01")
    return City(d, s, c1, g1, g2, g3)


async def invite(h, name: str, *area_list: areas.Area) -> str:
    async with h.app[STORE].write() as tx:
        worker = await gridworkers.ensure(tx, name, now=h.clock.now())
        for area in area_list:
            await gridworkers.assign(tx, worker, area)
            worker = await gridworkers.by_name(tx, name)
        return await gridworkers.invite(tx, worker, now=h.clock.now(), valid=timedelta(hours=72))


async def bound_worker(h, openid: str, name: str, *area_list: areas.Area):
    """A grid worker whose WeChat account is bound (as by 绑定 <code>): their Resident."""
    code = await invite(h, name, *area_list)
    worker = h.resident(openid)
    reply = await worker.say(f"绑定 {code}")
    assert "绑定成功" in reply, reply
    return worker


async def join(h, openid: str, grid: areas.Area, *, message: str = "你好") -> object:
    """A resident of `grid` who has just written (so their customer-service window is open)."""
    r = h.resident(openid)
    await r.scan(areas.scene_of(grid), following=False)
    await r.say(message)
    return r


async def make_poll(h, grid_ids, *, worker_id=None, hours=24, **options) -> int:
    spec = polls.Spec(
        question=options.pop("question", "小区停车费定为每月160元，您是否接受？"),
        options=tuple(options.pop("options", ("接受", "不接受", "希望降低"))),
        closes_at=h.clock.now() + timedelta(hours=hours),
        audience=tuple(grid_ids),
        **options,
    )
    async with h.app[STORE].write() as tx:
        return await polls.create(
            tx,
            spec,
            creator_name="网格员小王",
            worker_id=worker_id,
            via="console",
            now=h.clock.now(),
            settings=h.settings.polls,
        )


async def tick(h) -> int:
    """The scheduler's poll tick, then the outbox's (as the running server does every second or two): an
    answer never overtakes a poll message still waiting in the outbox."""
    done = await h.app[POLLS].tick()
    await h.deliver_outbox()
    return done


async def menus_to(h, openid: str) -> list[dict]:
    async with h.http.get(f"{h.fake_url}/sent", params={"touser": openid}) as resp:
        return [item["payload"]["msgmenu"] for item in await resp.json() if item["msgtype"] == "msgmenu"]


async def get_poll(h, poll_id: int) -> polls.Poll:
    async with h.app[STORE].read() as tx:
        return await polls.get(tx, poll_id)


async def tally(h, poll_id: int) -> polls.Tally:
    async with h.app[STORE].read() as tx:
        return await polls.tally(tx, await polls.get(tx, poll_id))
