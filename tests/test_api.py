"""The JSON API at /api/v1 for other city platforms: token authentication, the console's role boundaries,
validation that answers 400 (never 500), case actions that move the case and are audited, keyset paging, and
the `frontdoor api-token` command."""

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.app import STORE
from bot.cli import main
from bot.services import api_tokens
from bot.services.open311 import service_code
from storage.models import ApiToken, AuditEntry
from tests.api_client import Platform, add_token, many, revoke_token
from tests.test_console import grid_tree, put_in_grid
from tests.test_lifecycle import case_of, do, filed, pushed_after_delivery

UNIT = "云城街道办事处"
OTHER_UNIT = "生态环境局"
PHONE = "13812345678"  # what tests.test_lifecycle.filed gives as the resident's phone


async def audit_rows(h) -> list[AuditEntry]:
    async with h.db.read() as s:
        return list(await s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def token_row(h, name: str) -> ApiToken:
    async with h.db.read() as s:
        return await s.scalar(select(ApiToken).where(ApiToken.name == name))


async def assigned(h, openid: str, unit: str, **kw) -> str:
    number = await filed(h, openid)
    await do(h, "accept", number)
    await do(h, "assign", number, unit=unit, **kw)
    return number


# ---- authentication --------------------------------------------------------------------------------------------


async def test_every_endpoint_refuses_a_missing_unknown_or_revoked_token(harness):
    h = harness
    number = await filed(h)
    token = await add_token(h, "市民热线平台", "dispatcher")
    revoked = await add_token(h, "旧平台", "admin")
    await revoke_token(h, "旧平台")
    calls = [("GET", "/cases"), ("GET", f"/cases/{number}"), ("POST", f"/cases/{number}/actions/accept")]
    calls += [("GET", "/categories"), ("GET", "/no-such-endpoint")]
    presented = {
        "none": {},
        "other scheme": {"Authorization": f"Basic {token}"},
        "empty bearer": {"Authorization": "Bearer "},
        "unknown": {"Authorization": "Bearer " + "x" * 43},
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "query parameter": {},  # api_key= is Open311's, not this API's
    }
    for method, path in calls:
        for why, headers in presented.items():
            params = {"api_key": token} if why == "query parameter" else {}
            async with h.http.request(method, h.url + "/api/v1" + path, headers=headers, params=params) as resp:
                body = await resp.json()
                assert resp.status == 401, (method, path, why)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer"), why
                assert body["error"]["code"] == "unauthorized"
                assert "令牌" in body["error"]["message"]
                assert resp.headers["Cache-Control"] == "no-store"
    # …and nothing happened: the case is still waiting, and the live token works.
    assert (await case_of(h, number)).status == "pending"
    status, body, _ = await Platform(h, token).get(f"/cases/{number}")
    assert status == 200 and body["case"]["number"] == number
    status, _, headers = await Platform(h, token).get("/cases", headers={"Authorization": f"bearer {token}"})
    assert status == 200  # the scheme is case-insensitive (RFC 7235)


async def test_a_revoked_token_stops_working_at_once(harness):
    h = harness
    token = await add_token(h, "对接平台", "viewer")
    api = Platform(h, token)
    assert (await api.get("/cases"))[0] == 200
    await revoke_token(h, "对接平台")
    status, body, headers = await api.get("/cases")
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert body == {"error": {"code": "unauthorized", "message": "接口令牌无效或已被吊销。"}}


async def test_last_use_is_recorded_at_most_once_a_minute(harness):
    h = harness
    token = await add_token(h, "对接平台", "viewer")
    assert (await token_row(h, "对接平台")).last_used_at is None
    api = Platform(h, token)
    first = h.clock.now()
    await api.get("/categories")
    assert (await token_row(h, "对接平台")).last_used_at == first
    h.clock.advance(seconds=59)
    await api.get("/categories")
    assert (await token_row(h, "对接平台")).last_used_at == first
    h.clock.advance(seconds=1)
    await api.get("/categories")
    assert (await token_row(h, "对接平台")).last_used_at == first + timedelta(minutes=1)


async def test_two_uses_in_the_same_minute_record_one_even_from_two_instances(harness):
    h = harness
    await add_token(h, "对接平台", "viewer")
    row = await token_row(h, "对接平台")
    every = timedelta(minutes=1)
    async with h.app[STORE].write() as tx:
        assert await api_tokens.touch(tx, row.id, now=h.clock.now(), every=every) is True
        # another instance that read the row before this write still finds nothing to do
        assert await api_tokens.touch(tx, row.id, now=h.clock.now() + timedelta(seconds=30), every=every) is False
        assert await api_tokens.touch(tx, row.id, now=h.clock.now() + every, every=every) is True


async def test_the_stored_row_holds_only_the_tokens_hash(harness):
    h = harness
    token = await add_token(h, "对接平台", "viewer")
    row = await token_row(h, "对接平台")
    assert row.token_hash == api_tokens.token_hash(token) and token not in (row.token_hash, row.name)
    assert len(token) >= 43  # secrets.token_urlsafe(32)


# ---- roles -----------------------------------------------------------------------------------------------------


async def test_a_unit_token_sees_and_acts_on_its_units_cases_only(harness):
    h = harness
    token = await add_token(h, "街道平台", "unit", unit=UNIT)
    mine = await assigned(h, "o_mine", UNIT)
    theirs = await assigned(h, "o_theirs", OTHER_UNIT)
    co_handled = await assigned(h, "o_co", OTHER_UNIT, co_units=[UNIT])
    api = Platform(h, token)
    status, body, _ = await api.get("/cases", view="all")
    listed = [c["number"] for c in body["cases"]]
    assert status == 200 and sorted(listed) == sorted([mine, co_handled]) and theirs not in api.raw
    status, body, _ = await api.get("/cases", view="all", q=theirs)  # not even by its number
    assert body["cases"] == []
    # Another unit's case is as absent as one that does not exist: the same 404, word for word but the number.
    status, hidden, _ = await api.get(f"/cases/{theirs}")
    _, absent, _ = await api.get("/cases/XF19990101-0001")
    assert status == 404 and hidden["error"]["code"] == absent["error"]["code"] == "not_found"
    assert hidden["error"]["message"].replace(theirs, "N") == absent["error"]["message"].replace("XF19990101-0001", "N")
    status, body = await api.act(theirs, "start")
    assert status == 404 and (await case_of(h, theirs)).status == "assigned"
    status, body, _ = await api.get(f"/cases/{mine}")
    assert status == 200 and body["case"]["contact_phone"] == PHONE  # a unit handler may call the resident
    status, body = await api.act(mine, "start")
    assert status == 200 and body["case"]["status"] == "in_progress"
    status, body = await api.act(mine, "accept")  # a dispatcher's move
    assert status == 403 and body["error"]["code"] == "forbidden"
    refused = [(a.operator, a.action, a.target) for a in await audit_rows(h) if a.outcome == "refused"]
    assert refused == [
        ("api:街道平台", "view_case", theirs),
        ("api:街道平台", "view_case", theirs),
        ("api:街道平台", "accept", mine),
    ]


async def test_a_viewer_token_reads_with_phones_masked_and_cannot_act(harness):
    h = harness
    viewer = Platform(h, await add_token(h, "观察平台", "viewer"))
    dispatcher = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    number = await filed(h)
    status, body, _ = await viewer.get(f"/cases/{number}")
    assert status == 200 and body["case"]["contact_phone"] == "138****5678" and PHONE not in viewer.raw
    status, body = await viewer.act(number, "accept")
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert (await case_of(h, number)).status == "pending"
    status, body, _ = await dispatcher.get(f"/cases/{number}")
    assert body["case"]["contact_phone"] == PHONE
    assert [(a.operator, a.action, a.outcome) for a in await audit_rows(h)] == [("api:观察平台", "accept", "refused")]


async def test_a_viewer_does_not_get_phone_numbers_written_into_the_text_either(harness):
    h = harness
    [number] = await many(h, 1, description="楼道堵塞，请回电 139 8765 4321 或 0851-84123456", phone="13987654321")
    viewer = Platform(h, await add_token(h, "观察平台", "viewer"))
    admin = Platform(h, await add_token(h, "管理平台", "admin"))
    _, body, _ = await viewer.get(f"/cases/{number}")
    assert body["case"]["description"] == "楼道堵塞，请回电 （电话已隐去） 或 （电话已隐去）"
    assert "4321" not in body["case"]["description"] and "84123456" not in viewer.raw
    _, body, _ = await admin.get(f"/cases/{number}")
    assert "139 8765 4321" in body["case"]["description"] and body["case"]["contact_phone"] == "13987654321"


async def test_a_grid_worker_token_has_no_cases(harness):
    h = harness
    api = Platform(h, await add_token(h, "网格平台", "gridworker"))
    number = await filed(h)
    for status, body, _ in (await api.get("/cases"), await api.get(f"/cases/{number}")):
        assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await api.act(number, "note", note="看看")
    assert status == 403
    assert (await api.get("/categories"))[0] == 200
    assert [e.action for e in (await case_of(h, number)).events] == ["submitted"]


# ---- actions ---------------------------------------------------------------------------------------------------


async def test_actions_through_the_api_move_the_case_tell_the_resident_and_are_audited(harness):
    h = harness
    openid = "o_api_loop"
    number = await filed(h, openid)
    dispatcher = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    unit = Platform(h, await add_token(h, "街道平台", "unit", unit=UNIT))
    status, body = await dispatcher.act(number, "accept")
    assert status == 200 and body["case"]["status"] == "accepted"
    assert body["case"]["deadlines"]["due_at"] == body["case"]["deadlines"]["handle_due_at"] is not None
    status, body = await dispatcher.act(number, "assign", unit=UNIT, co_units="白云区公安分局、 ")
    case = body["case"]
    assert status == 200 and (case["status"], case["lead_unit"], case["co_units"]) == (
        "assigned",
        UNIT,
        ["白云区公安分局"],
    )
    assert (await unit.act(number, "start"))[0] == 200
    status, body = await unit.act(number, "reply", text="已约谈物业，停车费调整为每月100元。")
    assert status == 200 and body["case"]["reply_text"] == "已约谈物业，停车费调整为每月100元。"
    assert [(e["action"], e["actor"]) for e in body["case"]["ledger"][-4:]] == [
        ("accepted", "api:受理平台"),
        ("assigned", "api:受理平台"),
        ("started", "api:街道平台"),
        ("replied", "api:街道平台"),
    ]
    stored = await case_of(h, number)
    assert (stored.status, stored.lead_unit, stored.co_units) == ("replied", UNIT, ["白云区公安分局"])
    assert any("停车费调整为每月100元" in (text or "") for text in await pushed_after_delivery(h, openid))
    done = [(a.operator, a.action, a.target, a.outcome, a.detail) for a in await audit_rows(h)]
    assert done == [
        ("api:受理平台", "accept", number, "ok", None),
        ("api:受理平台", "assign", number, "ok", f"unit={UNIT}; co_units=白云区公安分局、"),
        ("api:街道平台", "start", number, "ok", None),
        ("api:街道平台", "reply", number, "ok", "text=已约谈物业，停车费调整为每月100元。"),
    ]


async def test_the_case_file_has_the_facts_the_ledger_summons_related_and_deadlines(harness):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    number = await assigned(h, "o_file", UNIT)
    assert (await api.act(number, "summon", units="派出所、城管", urgency="红", reason="需要联合执法"))[0] == 200
    other = await filed(h, "o_other")
    assert (await api.act(other, "merge", into=number.lower()))[0] == 200
    status, body, headers = await api.get(f"/cases/{number}")
    case = body["case"]
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert "云城街道某某小区" in api.raw  # UTF-8 as it is, not \\u escapes
    assert (case["number"], case["category"]) == (number, "物业与停车")
    assert case["service_code"] == service_code("物业与停车")
    assert case["place"] == "云城街道某某小区3栋" and case["description"].startswith("物业把停车费")
    assert "openid" not in case and "o_file" not in api.raw
    assert [(s["unit"], s["urgency"], s["status"]) for s in case["summons"]] == [
        ("派出所", "红", "waiting"),
        ("城管", "红", "waiting"),
    ]
    assert case["related"] == [other]
    assert [e["action"] for e in case["ledger"]] == ["submitted", "accepted", "assigned", "summoned", "merged_in"]
    deadlines = case["deadlines"]
    assert deadlines["state"] == "ok" and deadlines["handle_due_at"].endswith("+08:00")
    assert case["created_at"] == "2026-11-25T10:00:00+08:00"  # the office's time, with its offset


@pytest.mark.parametrize(
    ("action", "body", "status", "code", "message"),
    [
        ("refuse", {}, 400, "invalid_field", "请填写理由"),
        ("refuse", {"reason": "   "}, 400, "invalid_field", "请填写理由"),
        ("merge", {}, 400, "invalid_field", "请填写并入案件编号"),
        ("note", {}, 400, "invalid_field", "请填写内部备注"),
        ("summon", {"units": "派出所"}, 400, "invalid_field", "请填写紧急程度"),
        ("note", {"notes": "拼错了"}, 400, "invalid_field", "不认识字段“notes”"),
        ("extend", {"reason": "勘查", "days": 10}, 400, "invalid_field", "须为字符串"),
        ("note", {"note": ["一", "二"]}, 400, "invalid_field", "须为字符串"),
        ("close", {}, 409, "refused", "待受理"),
        ("summon", {"units": "派出所", "urgency": "红"}, 409, "refused", "不能吹哨召集"),
        ("merge", {"into": "XF19990101-0001"}, 409, "refused", "XF19990101-0001"),
        ("fly", {}, 404, "not_found", "没有“fly”这个办理操作"),
    ],
)
async def test_an_action_the_body_or_the_rules_do_not_allow_says_why_and_changes_nothing(
    harness, action, body, status, code, message
):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    number = await filed(h)
    got, answer = await api.act(number, action, **body)
    assert (got, answer["error"]["code"]) == (status, code) and message in answer["error"]["message"]
    case = await case_of(h, number)
    assert case.status == "pending" and [e.action for e in case.events] == ["submitted"]
    failed = [(a.action, a.outcome) for a in await audit_rows(h)]
    assert failed == ([] if status == 404 else [(action, "failed")])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "JSON 对象"),
        (b"[1, 2]", "JSON 对象"),
        (b'"reason"', "JSON 对象"),
        (b"\xff\xfe", "JSON 对象"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_400(harness, raw, message):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    number = await filed(h)
    status, body = await api.post(f"/cases/{number}/actions/refuse", raw=raw)
    assert status == 400 and body["error"]["code"] == "invalid_body" and message in body["error"]["message"]
    assert (await case_of(h, number)).status == "pending"


async def test_the_days_of_an_extension_are_checked_and_a_good_one_is_taken(harness):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    number = await filed(h)
    await do(h, "accept", number)
    for days in ("99", "0", "十", "-1"):
        status, body = await api.act(number, "extend", reason="需要现场勘查", days=days)
        assert status == 400 and "1 到 30" in body["error"]["message"], days
    status, body = await api.act(number, "extend", reason="需要现场勘查", days="10")
    assert status == 200 and body["case"]["deadlines"]["extended_at"] is not None
    status, body = await api.act(number, "extend", reason="再延一次", days="5")
    assert status == 409 and body["error"]["code"] == "refused"


async def test_unknown_paths_and_methods_answer_json(harness):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    number = await filed(h)
    status, body, _ = await api.get("/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, headers = await api.get(f"/cases/{number}/actions/accept")
    assert status == 405 and body["error"]["code"] == "method_not_allowed" and "POST" in headers["Allow"]
    status, body, _ = await api.get("/cases/XF19990101-0001")
    assert status == 404 and "XF19990101-0001" in body["error"]["message"]


# ---- the inbox -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"view": "nonsense"}, "view"),
        ({"category": "不存在的类别"}, "不存在的类别"),
        ({"deadline": "soon"}, "deadline"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "５"}, "limit"),  # a full-width digit
        ({"after": "garbage"}, "after"),
        ({"after": "2026-11-25T02:00:00_x"}, "after"),
        ({"after": "2026-11-25T02:00:00_5"}, "after"),  # no time zone: not one of ours
        ({"q": "长" * 81}, "q"),
        ({"unit": "长" * 81}, "unit"),
        ({"repeat": "maybe"}, "repeat"),
        ({"grid": "云城社区"}, "grid"),  # a code, not a name
        ({"grid": "G" * 33}, "grid"),
        ({"grid": "NOSUCH"}, "NOSUCH"),
    ],
)
async def test_a_bad_inbox_parameter_is_a_400_naming_it(harness, params, named):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    status, body, _ = await api.get("/cases", **params)
    assert status == 400 and body["error"]["code"] == "invalid_parameter" and named in body["error"]["message"]


async def test_input_the_databases_cannot_take_is_a_400_not_a_500(harness):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    number = await filed(h)
    for params in (
        {"q": "停车\x00"},
        {"unit": "\x00"},
        {"after": "2026-11-25T02:00:00+00:00_99999999999"},  # beyond a PostgreSQL integer
        {"after": "0001-01-01T00:00:00+14:00_1"},  # the calendar's edge
    ):
        status, body, _ = await api.get("/cases", view="all", **params)
        assert status == 400 and body["error"]["code"] == "invalid_parameter", params
    status, body, _ = await api.get("/cases/XF%00")
    assert status in (400, 404) and "error" in body
    for raw in (b'{"note": "\\ud800"}', b'{"note": "a\\u0000b"}', b"[" * 100_000):
        status, body = await api.post(f"/cases/{number}/actions/note", raw=raw)
        assert status == 400 and body["error"]["code"] in ("invalid_field", "invalid_body"), raw[:20]
    assert [e.action for e in (await case_of(h, number)).events] == ["submitted"]


async def test_the_inbox_pages_by_keyset_without_repeats_or_gaps(harness):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    numbers = await many(h, 23)

    async def every_page(**params) -> tuple[list[str], int]:
        seen, pages, after = [], 0, None
        while True:
            status, body, _ = await api.get("/cases", limit="10", **params, **({"after": after} if after else {}))
            assert status == 200 and len(body["cases"]) <= 10
            seen += [c["number"] for c in body["cases"]]
            pages += 1
            if body["next"] is None:
                return seen, pages
            after = body["next"]

    seen, pages = await every_page()
    assert seen == numbers and pages == 3  # by deadline: filed first, due first
    seen, pages = await every_page(view="all")
    assert seen == numbers[::-1] and pages == 3  # newest first
    # A case arriving while a client pages does not shift what it has not read yet.
    _, first, _ = await api.get("/cases", view="all", limit="10")
    await many(h, 1)
    _, second, _ = await api.get("/cases", view="all", limit="10", after=first["next"])
    assert [c["number"] for c in second["cases"]] == numbers[::-1][10:20]
    _, body, _ = await api.get("/cases", limit="200")
    assert len(body["cases"]) == 24 and body["next"] is None


async def test_the_inbox_filters_and_its_rows(harness):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    first, second = await filed(h, "o_f1"), await filed(h, "o_f2")
    await do(h, "accept", second)
    await do(h, "assign", second, unit=UNIT)
    _, body, _ = await api.get("/cases", view="pending")
    assert [c["number"] for c in body["cases"]] == [first]
    _, body, _ = await api.get("/cases", view="all", unit=UNIT)
    assert [c["number"] for c in body["cases"]] == [second]
    _, body, _ = await api.get("/cases", view="all", category="邻里纠纷")
    assert body["cases"] == []
    _, body, _ = await api.get("/cases", view="all", q=first)
    [row] = body["cases"]
    assert row["number"] == first and row["status"] == "pending" and row["category"] == "物业与停车"
    assert row["created_at"].endswith("+08:00") and row["due_at"].endswith("+08:00")
    assert row["deadline_state"] == "ok" and row["possible_repeat"] is False and "contact_phone" not in row


async def test_the_inbox_filters_by_grid_code_and_names_each_rows_grid(harness):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    unit_api = Platform(h, await add_token(h, "街道平台", "unit", unit=UNIT))
    tree = await grid_tree(h)
    one, two, other, none = await many(h, 4)
    for number, grid in ((one, "G1"), (two, "G2"), (other, "G3")):
        await put_in_grid(h, number, tree[grid])
    _, body, _ = await api.get("/cases", grid="G2")
    assert [(c["number"], c["grid"]) for c in body["cases"]] == [(two, "G2")]
    _, body, _ = await api.get("/cases", view="all", grid="C1")  # a community: its grids' cases
    assert [c["number"] for c in body["cases"]] == [two, one]
    _, body, _ = await api.get("/cases", view="all", grid="D1", limit="2")
    assert [c["number"] for c in body["cases"]] == [other, two] and body["next"]
    _, body, _ = await api.get("/cases", view="all", grid="D1", limit="2", after=body["next"])
    assert [c["number"] for c in body["cases"]] == [one] and body["next"] is None
    _, body, _ = await api.get("/cases", view="all")
    assert {c["number"]: c["grid"] for c in body["cases"]} == {one: "G1", two: "G2", other: "G3", none: None}
    await do(h, "accept", one)
    await do(h, "assign", one, unit=UNIT)
    _, body, _ = await unit_api.get("/cases", grid="C1")  # a unit's token: its own cases in the grids
    assert [c["number"] for c in body["cases"]] == [one]


async def test_the_categories_with_their_tier_and_lead_unit(harness):
    h = harness
    api = Platform(h, await add_token(h, "观察平台", "viewer"))
    status, body, _ = await api.get("/categories")
    assert status == 200
    assert [c["name"] for c in body["categories"]] == list(h.settings.complaint.categories)
    land = next(c for c in body["categories"] if c["name"] == "土地与征收")
    assert land == {
        "name": "土地与征收",
        "service_code": service_code("土地与征收"),
        "tier": "难事",
        "lead_unit": "自然资源局",
        "pool": "司法机构",
    }


# ---- the command ------------------------------------------------------------------------------------------------


async def test_the_cli_adds_lists_and_revokes_tokens(harness, monkeypatch, capsys):
    h = harness
    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", h.settings.database.url)
    run = lambda *argv: asyncio.to_thread(main, ["api-token", *argv])  # noqa: E731
    assert await run("add", "热线平台", "--role", "dispatcher") == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert len(out.splitlines()) == 1 and len(token) >= 43  # the token alone on standard output
    assert "热线平台" in err and "只显示这一次" in err and token not in err
    status, _, _ = await Platform(h, token).get("/cases")
    assert status == 200

    assert await run("add", "热线平台", "--role", "viewer") == 1
    assert "已存在" in capsys.readouterr().err
    assert await run("add", "街道平台", "--role", "unit") == 1
    assert "--unit" in capsys.readouterr().err
    assert await run("add", "全市平台", "--role", "viewer", "--unit", UNIT) == 1
    assert "--unit" in capsys.readouterr().err
    assert await run("add", "有 空格", "--role", "viewer") == 1
    assert "不可用" in capsys.readouterr().err
    assert await run("add", "街道平台", "--role", "unit", "--unit", UNIT) == 0
    capsys.readouterr()

    assert await run("list") == 0
    out = capsys.readouterr().out
    assert "热线平台" in out and "受理分流员" in out and "街道平台" in out and UNIT in out and token not in out
    assert await run("revoke", "热线平台") == 0
    assert "已吊销" in capsys.readouterr().out
    assert (await Platform(h, token).get("/cases"))[0] == 401
    assert await run("revoke", "热线平台") == 1
    assert "早已吊销" in capsys.readouterr().err
    assert await run("revoke", "没有这个") == 1
    assert "没有名为" in capsys.readouterr().err

    assert await run("list", "--json") == 0
    out = capsys.readouterr().out
    listed = {t["name"]: t for t in json.loads(out)}
    assert token not in out and "token_hash" not in out
    assert listed["热线平台"]["active"] is False and listed["热线平台"]["revoked_at"] is not None
    assert listed["热线平台"]["last_used_at"] is not None  # it called once
    street = listed["街道平台"]
    assert (street["role"], street["unit"], street["active"], street["last_used_at"]) == ("unit", UNIT, True, None)
    assert await run("list") == 0
    assert "已于" in capsys.readouterr().out  # revoked, and when


async def test_the_token_acts_under_its_own_name_on_the_ledger(harness):
    h = harness
    api = Platform(h, await add_token(h, "受理平台", "dispatcher"))
    number = await filed(h)
    await api.act(number, "note", note="已电话联系物业经理。")
    async with h.app[STORE].read() as tx:
        actor = await tx.val("SELECT actor FROM case_events WHERE action = 'noted'")
    assert actor == "api:受理平台"
