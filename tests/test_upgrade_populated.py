"""Upgrading a database that holds data keeps it. An empty database is migrated to an old revision, filled with
plain SQL the way the code of that revision wrote its rows (residents, cases with their ledger, a half-finished
complaint, notices waiting in the outbox), upgraded, and then served: the residents still see their cases, the
half-finished complaint is offered back and can be submitted, the waiting notice is delivered once, staff find
the old cases through the API (its text search included) — on SQLite and on PostgreSQL."""

import asyncio
from datetime import timedelta
from types import SimpleNamespace

import pytest
from alembic.script import ScriptDirectory

from bot.app import STORE
from bot.clock import FakeClock
from storage import migrate
from storage.fast import js, open_store, unjs
from tests.api_client import Platform, add_token
from tests.conftest import pg_database, start_harness
from tests.test_lifecycle import do, pushed_after_delivery

NOW = FakeClock().now()  # 2026-11-25 02:00 UTC, 10:00 in the office's time zone
PARKING = "小区地下车库停车费从每月120元涨到160元，物业没有公示"
NOISE = "每天夜里十一点以后工地还在施工，噪音很大"


def revisions() -> list[str]:
    """Every revision shipped, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """A new database with no tables at all (PostgreSQL: dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/old.db"
        return
    with pg_database("frontdoor_upgrade") as url:
        yield url


async def upgrade(url: str, revision: str) -> None:
    await asyncio.to_thread(migrate.upgrade, url, revision)


async def sql(url: str, statements: list[tuple[str, dict]]) -> None:
    """Plain SQL in one transaction, on the driver: nothing of today's models is used to write old rows."""
    store = open_store(url, pool_size=1)
    try:
        async with store.write() as tx:
            for statement, params in statements:
                await tx.run(statement, **{k: tx.ts(v) if hasattr(v, "tzinfo") else v for k, v in params.items()})
    finally:
        await store.close()


async def rows(url: str, query: str) -> list[dict]:
    store = open_store(url, pool_size=1)
    try:
        async with store.read() as tx:
            return [dict(r) for r in await tx.all(query)]
    finally:
        await store.close()


CASE_0001 = """
INSERT INTO cases (number, openid, category, place_label, latitude, longitude, description, photo_media_ids,
    voice_media_ids, video_media_ids, links, contact_phone, status, created_at, updated_at, accept_due_at)
VALUES (:number, :openid, :category, :place, :lat, :lng, :description, :photos, :voices, '[]', '[]', :phone,
    'pending', :at, :at, :due)"""
EVENT = """
INSERT INTO case_events (case_id, at, actor, action, from_status, to_status, note)
VALUES ((SELECT id FROM cases WHERE number = :number), :at, :actor, :action, :from_status, :to_status, :note)"""
OUTBOX_0001 = """
INSERT INTO outbox (openid, kind, payload, status, attempts, next_attempt_at, created_at, sent_at)
VALUES (:openid, 'text', :payload, :status, :attempts, :at, :at, :sent_at)"""


def event(number: str, at, action: str, *, actor="resident", to_status=None, note=None) -> tuple[str, dict]:
    params = {"number": number, "at": at, "actor": actor, "action": action, "from_status": None}
    return EVENT, {**params, "to_status": to_status, "note": note}


def at_0001() -> list[tuple[str, dict]]:
    """What the foundation's code had written after a week: two residents with cases, one of them half-way
    through a complaint (and asked for a person on the way), a resident who unfollowed, notices sent and waiting."""
    filed_18 = NOW - timedelta(days=7, hours=1)  # 2026-11-18 09:00 local
    filed_25 = NOW - timedelta(hours=1, minutes=30)  # 2026-11-25 08:30 local
    resident = "INSERT INTO residents (openid, subscribed, created_at, last_message_at) VALUES (:o, :s, :c, :m)"
    draft = {"category": "邻里纠纷", "place": {"label": "云城街道和平里2栋1单元", "lat": None, "lng": None}}
    return [
        (resident, {"o": "o_old_wang", "s": True, "c": filed_18, "m": NOW - timedelta(hours=1)}),
        (resident, {"o": "o_old_li", "s": True, "c": NOW - timedelta(days=3), "m": NOW - timedelta(hours=2)}),
        (resident, {"o": "o_old_gone", "s": False, "c": NOW - timedelta(days=6), "m": NOW - timedelta(days=6)}),
        ("INSERT INTO case_counters (day, last) VALUES ('20261118', 1), ('20261125', 1)", {}),
        (
            CASE_0001,
            {
                "number": "XF20261118-0001",
                "openid": "o_old_wang",
                "category": "物业与停车",
                "place": "云城街道幸福里小区3栋",
                "lat": None,
                "lng": None,
                "description": PARKING,
                "photos": js(["media_old_1"]),
                "voices": js([]),
                "phone": "13812345678",
                "at": filed_18,
                "due": filed_18 + timedelta(days=15),
            },
        ),
        event("XF20261118-0001", filed_18, "submitted", to_status="pending"),
        event("XF20261118-0001", filed_18 + timedelta(minutes=5), "photo_added"),
        (
            CASE_0001,
            {
                "number": "XF20261125-0001",
                "openid": "o_old_wang",
                "category": "环境与噪音",
                "place": "云城街道幸福里小区门口",
                "lat": 26.647,
                "lng": 106.6302,
                "description": NOISE,
                "photos": js([]),
                "voices": js(["media_voice_1"]),
                "phone": None,
                "at": filed_25,
                "due": filed_25 + timedelta(days=15),
            },
        ),
        event("XF20261125-0001", filed_25, "submitted", to_status="pending"),
        (
            "INSERT INTO dialog_states (openid, dialog, step, mode, editing, data, failed_tries, needs_human, "
            "started_at, updated_at) VALUES ('o_old_li', 'complaint', 2, 'step', :no, :data, 0, :yes, :started, :at)",
            {
                "no": False,
                "yes": True,
                "data": js(draft),
                "started": NOW - timedelta(hours=2, minutes=10),
                "at": NOW - timedelta(hours=2),
            },
        ),
        (
            OUTBOX_0001,
            {
                "openid": "o_old_wang",
                "payload": js({"content": "您的投诉已提交，案件编号：XF20261125-0001。"}),
                "status": "sent",
                "attempts": 1,
                "at": filed_25,
                "sent_at": filed_25,
            },
        ),
        (
            OUTBOX_0001,
            {
                "openid": "o_old_wang",
                "payload": js({"content": "案件 XF20261118-0001 的照片已收到，工作人员会一并查看。"}),
                "status": "pending",
                "attempts": 0,
                "at": NOW - timedelta(minutes=1),
                "sent_at": None,
            },
        ),
    ]


FINGERPRINT = {
    "residents": "SELECT openid, subscribed, created_at, last_message_at FROM residents ORDER BY openid",
    "cases": "SELECT id, number, openid, category, place_label, latitude, longitude, description, photo_media_ids, "
    "voice_media_ids, contact_phone, status, created_at, accept_due_at FROM cases ORDER BY id",
    "ledger": "SELECT case_id, at, actor, action, to_status FROM case_events ORDER BY id",
    "drafts": "SELECT openid, dialog, step, mode, data, needs_human, updated_at FROM dialog_states",
    "outbox": "SELECT openid, kind, payload, status, attempts, sent_at FROM outbox ORDER BY id",
    "counters": "SELECT day, last FROM case_counters ORDER BY day",
}


async def fingerprint(url: str) -> dict[str, list[dict]]:
    """The populated rows as stored (JSON decoded, booleans as bool; times to the microsecond): what must not
    change on the way up."""
    found = {}
    for name, query in FINGERPRINT.items():
        got = await rows(url, query)
        for row in got:
            for key in ("photo_media_ids", "voice_media_ids", "data", "payload"):
                if key in row:
                    row[key] = unjs(row[key])
            for key in ("subscribed", "needs_human"):
                if key in row:
                    row[key] = bool(row[key])
        found[name] = got
    return found


async def test_a_database_filled_at_the_first_revision_is_upgraded_step_by_step_and_served(empty_url):
    steps = revisions()
    assert steps[0] == "0001" and set(steps[-1:]) == migrate.heads()
    await upgrade(empty_url, "0001")
    await sql(empty_url, at_0001())
    before = await fingerprint(empty_url)
    assert [len(before[t]) for t in ("residents", "cases", "ledger", "drafts", "outbox")] == [3, 2, 3, 1, 2]
    for revision in steps[1:]:
        await upgrade(empty_url, revision)
        assert await fingerprint(empty_url) == before, f"rows changed by migration {revision}"
    assert await asyncio.to_thread(migrate.pending, empty_url) == []

    clock = FakeClock()
    async with start_harness(empty_url, clock, fresh=False) as h:
        # The notice that was waiting goes out once (WeChat knows the resident wrote within 48 hours, as the
        # stored window says); the one already sent is not sent again.
        async with h.http.post(f"{h.fake_url}/inbound", json={"openid": "o_old_wang", "kind": "message"}):
            pass
        assert await h.deliver_outbox() == 1
        assert await h.pushed("o_old_wang") == ["案件 XF20261118-0001 的照片已收到，工作人员会一并查看。"]

        wang = h.resident("o_old_wang")
        mine = await wang.say("我的案件")
        assert "最近 2 件" in mine
        assert "XF20261118-0001｜物业与停车｜待受理｜11-18" in mine
        assert "XF20261125-0001｜环境与噪音｜待受理｜11-25" in mine
        detail = await wang.say("查询 XF20261118-0001")
        assert f"问题描述：{PARKING}" in detail and "地点：云城街道幸福里小区3栋" in detail
        assert "联系电话：13812345678" in detail and "提交时间：2026-11-18 09:00" in detail
        assert "2026-11-18 09:00 群众通过微信提交，待受理" in detail
        assert "2026-11-18 09:05 群众补充照片" in detail

        # Staff find the old cases, by their words too (SQLite's search index was built over the old rows).
        api = Platform(h, await add_token(h, "市民热线平台", "dispatcher"))
        status, body, _ = await api.get("/cases", view="all", q="停车费")
        assert status == 200 and [c["number"] for c in body["cases"]] == ["XF20261118-0001"]
        status, body, _ = await api.get("/cases/XF20261125-0001")
        case = body["case"]
        assert status == 200
        assert (case["place"], case["latitude"], case["longitude"]) == ("云城街道幸福里小区门口", 26.647, 106.6302)
        assert case["status"] == "pending" and case["co_units"] == [] and case["tier"] is None
        # The columns added since hold sane values: the acceptance clock still runs, not flagged late.
        assert case["deadlines"]["state"] == "ok"
        assert case["deadlines"]["due_at"] == case["deadlines"]["accept_due_at"] is not None

        # The half-finished complaint is offered back, and picks up at the question it had reached.
        li = h.resident("o_old_li")
        assert "已填写 2/4 项" in await li.say("投诉")
        assert "第 3 步" in await li.say("1")
        assert "第 4 步" in await li.say("楼上邻居每天半夜拖动家具，沟通多次没有改善")
        summary = await li.say("跳过")
        assert "1. 问题类别：邻里纠纷" in summary and "2. 地点：云城街道和平里2栋1单元" in summary
        done = await li.say("提交")
        # The day's counter went on from the old cases: no number is handed out twice.
        assert "案件编号：XF20261125-0002" in done
        async with h.app[STORE].read() as tx:
            actions = [
                r["action"]
                for r in await tx.all(
                    "SELECT e.action FROM case_events e JOIN cases c ON c.id = e.case_id "
                    "WHERE c.number = 'XF20261125-0002' ORDER BY e.id"
                )
            ]
        assert actions == ["submitted", "human_requested"]  # the 人工 asked for before the upgrade is kept


CASE_0018 = """
INSERT INTO cases (number, openid, category, place_label, description, photo_media_ids, voice_media_ids,
    video_media_ids, links, contact_phone, status, created_at, updated_at, accept_due_at, lead_unit, co_units,
    accepted_at, handle_due_at, assigned_at, reply_text, closed_at, deadline_state, rating, rated_at, tier, grid_id)
VALUES (:number, :openid, :category, :place, :description, '[]', '[]', '[]', '[]', :phone, :status, :at, :at,
    :accept_due, :unit, :co_units, :accepted, :handle_due, :assigned, :reply, :closed, :state, :rating, :rated,
    :tier, (SELECT id FROM areas WHERE code = :grid))"""


def at_0018() -> list[tuple[str, dict]]:
    """A grid with a resident in it; one case of theirs being handled by a unit with a co-handling unit, one
    closed and rated: the cases migration 0019 adds columns to."""
    day = timedelta(days=1)
    filed, closed = NOW - 20 * day, NOW - 2 * day
    area = (
        "INSERT INTO areas (parent_id, level, name, code, created_at) "
        "VALUES ((SELECT id FROM areas WHERE code = :parent), :level, :name, :code, :at)"
    )
    base = {"openid": "o_grid_zhang", "phone": "13900001111", "tier": "民事", "grid": "YC01", "rated": None}
    assigned = {
        **base,
        "number": "XF20261105-0003",
        "category": "土地与征收",
        "place": "云城社区第一网格东侧空地",
        "description": "村集体土地被占用堆放建筑垃圾，长期没人清理",
        "status": "assigned",
        "at": filed,
        "accept_due": filed + 15 * day,
        "unit": "云城街道办事处",
        "co_units": js(["城管局"]),
        "accepted": filed + day,
        "handle_due": filed + 61 * day,
        "assigned": filed + day,
        "reply": None,
        "closed": None,
        "state": "warning",
        "rating": None,
    }
    rated = {
        **assigned,
        "number": "XF20261106-0001",
        "category": "物业与停车",
        "place": "云城社区第一网格5栋",
        "description": "单元门禁坏了一个月，物业一直不修",
        "status": "closed",
        "co_units": js([]),
        "reply": "物业已于11月20日更换门禁主板。",
        "closed": closed,
        "state": "ok",
        "rating": 3,
        "rated": closed + day,
    }
    return [
        (area, {"parent": None, "level": "district", "name": "云岩区", "code": "YY", "at": filed}),
        (area, {"parent": "YY", "level": "street", "name": "中华路街道", "code": "ZH", "at": filed}),
        (area, {"parent": "ZH", "level": "community", "name": "云城社区", "code": "YC", "at": filed}),
        (area, {"parent": "YC", "level": "grid", "name": "第一网格", "code": "YC01", "at": filed}),
        (
            "INSERT INTO residents (openid, subscribed, created_at, last_message_at, grid_id) "
            "VALUES ('o_grid_zhang', :yes, :at, :at, (SELECT id FROM areas WHERE code = 'YC01'))",
            {"yes": True, "at": filed},
        ),
        ("INSERT INTO case_counters (day, last) VALUES ('20261105', 3), ('20261106', 1)", {}),
        (CASE_0018, assigned),
        (
            "INSERT INTO case_co_units (case_id, unit) SELECT id, '城管局' FROM cases WHERE number = 'XF20261105-0003'",
            {},
        ),
        event("XF20261105-0003", filed, "submitted", to_status="pending"),
        event("XF20261105-0003", filed + day, "accepted", actor="张科员", to_status="accepted"),
        event(
            "XF20261105-0003",
            filed + day,
            "assigned",
            actor="张科员",
            to_status="assigned",
            note="云城街道办事处；协办：城管局",
        ),
        (CASE_0018, rated),
        event("XF20261106-0001", filed, "submitted", to_status="pending"),
        event("XF20261106-0001", closed, "closed", actor="张科员", to_status="closed"),
        event("XF20261106-0001", closed + day, "rated", note="不满意"),
    ]


async def test_cases_filled_just_before_the_last_migration_keep_their_handling_and_can_move_on(empty_url):
    before_head = revisions()[-2]
    await upgrade(empty_url, before_head)
    await sql(empty_url, at_0018())
    await upgrade(empty_url, "heads")
    kept = await rows(
        empty_url,
        "SELECT number, status, lead_unit, tier, (SELECT code FROM areas WHERE id = grid_id) AS grid, deadline_state, "
        "rating, reply_text, reopen_count, leader, commitment_at, close_reason FROM cases ORDER BY id",
    )
    assert kept == [
        {
            "number": "XF20261105-0003",
            "status": "assigned",
            "lead_unit": "云城街道办事处",
            "tier": "民事",
            "grid": "YC01",
            "deadline_state": "warning",
            "rating": None,
            "reply_text": None,
            "reopen_count": 0,
            "leader": None,
            "commitment_at": None,
            "close_reason": None,
        },
        {
            "number": "XF20261106-0001",
            "status": "closed",
            "lead_unit": "云城街道办事处",
            "tier": "民事",
            "grid": "YC01",
            "deadline_state": "ok",
            "rating": 3,
            "reply_text": "物业已于11月20日更换门禁主板。",
            "reopen_count": 0,
            "leader": None,
            "commitment_at": None,
            "close_reason": None,
        },
    ]

    async with start_harness(empty_url, FakeClock(), fresh=False) as h:
        zhang = h.resident("o_grid_zhang")
        mine = await zhang.say("我的案件")
        assert "XF20261105-0003｜土地与征收｜已交办" in mine and "XF20261106-0001｜物业与停车｜已办结" in mine

        api = Platform(h, await add_token(h, "市民热线平台", "dispatcher"))
        case = (await api.get("/cases/XF20261105-0003"))[1]["case"]
        assert (case["lead_unit"], case["co_units"], case["tier"]) == ("云城街道办事处", ["城管局"], "民事")
        assert case["deadlines"]["state"] == "warning" and [e["action"] for e in case["ledger"]] == [
            "submitted",
            "accepted",
            "assigned",
        ]
        # A unit's inbox still holds the case it co-handles (case_co_units came through).
        unit = Platform(h, await add_token(h, "城管局平台", "unit", unit="城管局"))
        status, body, _ = await unit.get("/cases", view="all")
        assert status == 200 and [c["number"] for c in body["cases"]] == ["XF20261105-0003"]
        assert body["cases"][0]["grid"] == "YC01"

        # The closed, badly rated case is sent back: the new reopen counter starts from the old zero.
        await do(h, "reopen", "XF20261106-0001", reason="群众不满意，门禁仍时好时坏")
        assert (await rows(empty_url, "SELECT reopen_count FROM cases WHERE number = 'XF20261106-0001'")) == [
            {"reopen_count": 1}
        ]
        assert any("XF20261106-0001" in text for text in await pushed_after_delivery(h, "o_grid_zhang"))
        assert "状态：发回重办" in await zhang.say("查询 XF20261106-0001")

        # The text search still sees old cases and new ones (0019 added columns in place: SQLite's search
        # triggers on cases survive).
        filed = [
            await zhang.say(t)
            for t in ("投诉", "5", "云城社区第一网格8栋", "8栋楼顶的水箱漏水已经三天了", "跳过", "提交")
        ]
        assert "案件编号：XF20261125-0001" in filed[-1]
        for words, number in (("建筑垃圾", "XF20261105-0003"), ("水箱漏水", "XF20261125-0001")):
            status, body, _ = await api.get("/cases", view="all", q=words)
            assert [c["number"] for c in body["cases"]] == [number], words


POLL_0019 = """
INSERT INTO polls (question, options, max_choices, anonymous, live_results, allow_change, notify_voters, audience,
    grid_ids, creator_name, created_via, status, created_at, closes_at)
VALUES (:q, '["接受", "不接受"]', 1, :anonymous, false, true, false, '[]', '[]', '网格员', 'console', 'open',
    :at, :at)"""
BALLOT_0019 = """
INSERT INTO poll_ballots (poll_id, voter_key, openid, source, choices, voter_name, created_at, updated_at)
VALUES ((SELECT id FROM polls WHERE question = :q), :key, :openid, 'wechat', '[1]', :name, :at, :at)"""


async def test_named_ballots_are_rekeyed_so_their_voters_are_still_recognised(empty_url):
    """0020: a named poll's ballot was keyed `o:<openid>`; it is now keyed as the vote looks it up (a hash of poll
    and openid, as anonymous ballots always were), so after the upgrade the voter is still the same voter — and
    one detached later cannot vote twice. Downgrading rebuilds the old key from the openid the ballot holds."""
    from bot.services import polls

    await upgrade(empty_url, "0019")
    anonymous_key = "h:" + "a" * 64
    await sql(
        empty_url,
        [
            (POLL_0019, {"q": "停车费实名征集", "anonymous": False, "at": NOW}),
            (POLL_0019, {"q": "充电桩匿名征集", "anonymous": True, "at": NOW}),
            (BALLOT_0019, {"q": "停车费实名征集", "key": "o:o_named", "openid": "o_named", "name": "张三", "at": NOW}),
            (BALLOT_0019, {"q": "充电桩匿名征集", "key": anonymous_key, "openid": None, "name": None, "at": NOW}),
        ],
    )
    await upgrade(empty_url, "head")
    found = await rows(
        empty_url,
        "SELECT p.id, p.anonymous, b.voter_key, b.openid, b.voter_name FROM poll_ballots b "
        "JOIN polls p ON p.id = b.poll_id ORDER BY p.id",
    )
    named, anonymous = found
    poll = SimpleNamespace(id=named["id"], anonymous=False)
    assert named["voter_key"] == polls._voter_key(poll, "o_named")
    assert (named["openid"], named["voter_name"]) == ("o_named", "张三")
    assert anonymous["voter_key"] == anonymous_key
    await asyncio.to_thread(migrate.downgrade, empty_url, "0019")
    keys = [r["voter_key"] for r in await rows(empty_url, "SELECT voter_key FROM poll_ballots ORDER BY poll_id")]
    assert keys == ["o:o_named", anonymous_key]
