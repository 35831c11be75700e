"""Open311 GeoReport v2 (read) at /open311/v2: the categories as services, the cases as service requests with
GeoReport's fields and filters, GeoReport-shaped errors, the API's token rules — and never a phone number or an
openid in an answer."""

import hashlib
from datetime import timedelta

import pytest

from bot.app import STORE
from bot.services.cases import add_ledger
from bot.services.open311 import service_code
from tests.api_client import Platform, add_token, many, revoke_token
from tests.test_complaint_dialog import STORY
from tests.test_lifecycle import do, filed

UNIT = "云城街道办事处"
OTHER_UNIT = "生态环境局"


def georeport(h, token: str | None) -> Platform:
    return Platform(h, token, prefix="/open311/v2")


async def dispatcher(h) -> Platform:
    return georeport(h, await add_token(h, "市级平台", "dispatcher"))


def ids(body) -> list[str]:
    return [r["service_request_id"] for r in body]


# ---- services ---------------------------------------------------------------------------------------------------


async def test_each_category_is_a_service_with_a_stable_ascii_code(harness):
    h = harness
    api = await dispatcher(h)
    status, body, _ = await api.get("/services.json")
    assert status == 200 and [s["service_name"] for s in body] == list(h.settings.complaint.categories)
    codes = [s["service_code"] for s in body]
    assert len(set(codes)) == len(codes) and all(c.isascii() and c.isalnum() for c in codes)
    # The code is the category name's: "c" + the first 8 hex digits of its sha256, whatever the order.
    assert codes[0] == "c" + hashlib.sha256("物业与停车".encode()).hexdigest()[:8] == service_code("物业与停车")
    land = next(s for s in body if s["service_name"] == "土地与征收")
    assert land == {
        "service_code": service_code("土地与征收"),
        "service_name": "土地与征收",
        "description": "土地与征收方面的诉求，由自然资源局承办。",
        "metadata": False,
        "type": "realtime",
        "keywords": "土地,征收",
        "group": "难事",
    }


async def test_only_json_is_offered(harness):
    h = harness
    api = await dispatcher(h)
    number = await filed(h)
    for path in ("/services.xml", "/requests.xml", f"/requests/{number}.xml"):
        status, body, _ = await api.get(path)
        assert status == 400 and body == [{"code": 400, "description": body[0]["description"]}]
        assert "XML" in body[0]["description"] and "JSON" in body[0]["description"]
    status, body, _ = await api.get("/services.csv")
    assert status == 400 and "csv" in body[0]["description"]


# ---- requests ---------------------------------------------------------------------------------------------------


async def test_a_case_is_a_service_request_with_georeport_fields(harness):
    h = harness
    api = await dispatcher(h)
    r = h.resident("o_geo")
    await r.say("投诉")
    await r.say("1")
    await r.location(26.647, 106.6302, "贵阳市白云区云城街道")
    await r.say(STORY)
    await r.say("13812345678")
    number = (await r.say("提交")).split("案件编号：")[1].split("。")[0]
    status, body, _ = await api.get(f"/requests/{number}.json")
    assert status == 200 and len(body) == 1
    pending = body[0]
    assert pending == {
        "service_request_id": number,
        "status": "open",
        "status_notes": None,
        "service_name": "物业与停车",
        "service_code": service_code("物业与停车"),
        "description": STORY,
        "agency_responsible": None,
        "requested_datetime": "2026-11-25T10:00:00+08:00",
        "updated_datetime": "2026-11-25T10:00:00+08:00",
        "expected_datetime": pending["expected_datetime"],
        "address": "贵阳市白云区云城街道",
        "lat": 26.647,
        "long": 106.6302,
    }
    assert pending["expected_datetime"].startswith("2026-12-") and pending["expected_datetime"].endswith("+08:00")
    assert "13812345678" not in api.raw and "o_geo" not in api.raw and "media_url" not in pending

    h.clock.advance(hours=1)
    await do(h, "accept", number)
    await do(h, "assign", number, unit=UNIT)
    await do(h, "start", number)
    _, [handling], _ = await api.get(f"/requests/{number}.json")
    assert handling["agency_responsible"] == UNIT and handling["status"] == "open"
    assert handling["updated_datetime"] == "2026-11-25T11:00:00+08:00"
    assert handling["expected_datetime"] > pending["expected_datetime"]  # the handling clock now
    await do(h, "reply", number, text="已约谈物业，停车费调整为每月100元。")
    _, [replied], _ = await api.get(f"/requests/{number}.json")
    assert (replied["status"], replied["status_notes"]) == ("open", "已约谈物业，停车费调整为每月100元。")
    assert replied["expected_datetime"] is None  # no clock runs while the resident has the answer
    await do(h, "close", number)
    _, [closed], _ = await api.get(f"/requests/{number}.json")
    assert (closed["status"], closed["status_notes"]) == ("closed", "已约谈物业，停车费调整为每月100元。")
    await do(h, "reopen", number, reason="群众反映停车费仍未调整")
    _, [reopened], _ = await api.get(f"/requests/{number}.json")
    assert (reopened["status"], reopened["status_notes"]) == ("open", "群众反映停车费仍未调整")


async def test_closed_means_closed_refused_merged_or_withdrawn_and_internal_notes_stay_inside(harness):
    h = harness
    api = await dispatcher(h)
    refused, merged, kept, noted = [await filed(h, f"o_{i}") for i in range(4)]
    await do(h, "refuse", refused, reason="属于诉讼程序处理的事项")
    await do(h, "merge", merged, into=kept)
    async with h.app[STORE].write() as tx:
        case_id = await tx.val("SELECT id FROM cases WHERE number = :n", n=noted)
        await add_ledger(tx, case_id, h.clock.now(), "张科员", "noted", note="内部：当事人情绪激动")
    _, body, _ = await api.get("/requests.json")
    found = {r["service_request_id"]: r for r in body}
    assert (found[refused]["status"], found[refused]["status_notes"]) == ("closed", "属于诉讼程序处理的事项")
    assert (found[merged]["status"], found[merged]["status_notes"]) == ("closed", kept)
    assert (found[kept]["status"], found[noted]["status"]) == ("open", "open")
    assert found[noted]["status_notes"] is None and "当事人情绪激动" not in api.raw
    _, body, _ = await api.get("/requests.json", status="closed")
    assert sorted(ids(body)) == sorted([refused, merged])
    _, body, _ = await api.get("/requests.json", status="open")
    assert sorted(ids(body)) == sorted([kept, noted])


async def test_phone_numbers_in_what_was_written_are_hidden(harness):
    h = harness
    api = await dispatcher(h)
    written = "楼道堵塞，请回电 +86 139-8765-4321 或 0851 84123456，案件XF20261125-0001"
    [number] = await many(h, 1, description=written, phone="13987654321")
    await do(h, "refuse", number, reason="请拨打 13987654321 联系社区")
    _, [found], _ = await api.get(f"/requests/{number}.json")
    assert found["description"] == "楼道堵塞，请回电 （电话已隐去） 或 （电话已隐去），案件XF20261125-0001"
    assert found["status_notes"] == "请拨打 （电话已隐去） 联系社区"
    assert not any(digits in api.raw for digits in ("4321", "84123456", "13987654321"))


async def test_requests_filter_by_id_service_dates_and_status_newest_first(harness):
    h = harness
    api = await dispatcher(h)
    old = await many(h, 1, category="邻里纠纷")  # filed 100 days before the others
    h.clock.advance(days=100)
    noise = await many(h, 2, category="环境与噪音", minutes=60)
    parking = await many(h, 2, category="物业与停车", minutes=60)
    newest_first = (noise + parking)[::-1]
    _, body, _ = await api.get("/requests.json")
    assert ids(body) == newest_first  # the last 90 days by default
    _, body, _ = await api.get("/requests.json", service_code=service_code("环境与噪音"))
    assert ids(body) == noise[::-1]
    # Times with their offset, or local times of the office.
    _, body, _ = await api.get("/requests.json", start_date="2027-03-05T11:00:00+08:00", end_date="2027-03-05T13:00:00")
    assert ids(body) == [parking[0], noise[1]]
    _, body, _ = await api.get("/requests.json", start_date="2027-03-05T03:00:00Z")
    assert ids(body) == [parking[1], parking[0], noise[1]]
    _, body, _ = await api.get("/requests.json", end_date="2026-12-01")
    assert ids(body) == old
    # service_request_id overrides every other filter (GeoReport); unknown numbers are just not there.
    _, body, _ = await api.get(
        "/requests.json", service_request_id=f"{old[0]}, {parking[1].lower()},XF19990101-0001", status="open"
    )
    assert ids(body) == [parking[1], old[0]]
    await do(h, "refuse", noise[0], reason="重复")
    _, body, _ = await api.get("/requests.json", status="closed")
    assert ids(body) == [noise[0]]
    _, body, _ = await api.get("/requests.json", status="open,closed")
    assert ids(body) == newest_first


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-13-01"}, "end_date"),
        ({"start_date": "2026-11-20", "end_date": "2026-11-10"}, "start_date"),
        ({"start_date": "2026-01-01", "end_date": "2026-11-10"}, "90"),
        ({"status": "pending"}, "status"),
        ({"service_code": "c00000000"}, "c00000000"),
        ({"service_request_id": "X" * 33}, "service_request_id"),
        ({"start_date": "0001-01-01T00:00:00+14:00"}, "start_date"),  # the calendar's edges
        ({"end_date": "9999-12-31T23:59:59"}, "end_date"),
        ({"service_request_id": "XF\x00"}, "字符"),
    ],
)
async def test_a_bad_filter_is_a_georeport_400(harness, params, named):
    h = harness
    api = await dispatcher(h)
    status, body, _ = await api.get("/requests.json", **params)
    assert status == 400 and len(body) == 1 and body[0]["code"] == 400 and named in body[0]["description"]


async def test_an_unknown_request_is_a_georeport_404(harness):
    h = harness
    api = await dispatcher(h)
    status, body, _ = await api.get("/requests/XF19990101-0001.json")
    assert status == 404 and body == [{"code": 404, "description": "没有找到诉求 XF19990101-0001。"}]
    status, body, _ = await api.get("/no-such-thing.json")
    assert status == 404 and body[0]["code"] == 404
    async with h.http.post(api.base + "/requests.json", headers=api._headers()) as resp:
        assert resp.status == 405 and (await resp.json())[0]["code"] == 405  # no filing through Open311


# ---- tokens -----------------------------------------------------------------------------------------------------


async def test_the_token_goes_in_the_header_or_as_api_key_and_a_bad_one_is_a_401(harness):
    h = harness
    token = await add_token(h, "市级平台", "viewer")
    number = await filed(h)
    anonymous = georeport(h, None)
    for path in ("/services.json", "/requests.json", f"/requests/{number}.json"):
        status, body, headers = await anonymous.get(path)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert body[0]["code"] == 401 and "令牌" in body[0]["description"]
        assert (await anonymous.get(path, api_key="not-a-token"))[0] == 401
        assert (await anonymous.get(path, api_key=token))[0] == 200
        assert (await georeport(h, token).get(path))[0] == 200
    await revoke_token(h, "市级平台")
    assert (await anonymous.get("/requests.json", api_key=token))[0] == 401


async def test_a_unit_token_sees_its_units_requests_and_a_grid_worker_none(harness):
    h = harness
    unit = georeport(h, await add_token(h, "街道平台", "unit", unit=UNIT))
    grid = georeport(h, await add_token(h, "网格平台", "gridworker"))
    mine, theirs, co = await filed(h, "o_1"), await filed(h, "o_2"), await filed(h, "o_3")
    for number, lead, co_units in ((mine, UNIT, []), (theirs, OTHER_UNIT, []), (co, OTHER_UNIT, [UNIT])):
        await do(h, "accept", number)
        await do(h, "assign", number, unit=lead, co_units=co_units)
    _, body, _ = await unit.get("/requests.json")
    assert sorted(ids(body)) == sorted([mine, co]) and theirs not in unit.raw
    _, body, _ = await unit.get("/requests.json", service_request_id=f"{mine},{theirs}")
    assert ids(body) == [mine]
    status, hidden, _ = await unit.get(f"/requests/{theirs}.json")
    assert status == 404 and hidden[0]["description"] == f"没有找到诉求 {theirs}。"
    for path in ("/requests.json", f"/requests/{mine}.json"):
        status, body, _ = await grid.get(path)
        assert status == 403 and body[0]["code"] == 403
    assert (await grid.get("/services.json"))[0] == 200


async def test_the_default_window_is_90_days_and_reaches_back_from_an_end_date(harness):
    h = harness
    api = await dispatcher(h)
    first = await many(h, 1)
    h.clock.advance(days=91)
    _, body, _ = await api.get("/requests.json")
    assert body == []
    _, body, _ = await api.get("/requests.json", end_date=(h.clock.now() - timedelta(days=80)).isoformat())
    assert ids(body) == first
