"""Opinion polls in the console: a grid worker puts one to their grids (and only theirs), staff read the results
(WeChat and door-to-door votes apart), export them, close a poll early, enter door-to-door votes and link the
case the poll is evidence for — each refused on the server to whoever may not."""

import csv
import io
import re
from datetime import UTC, datetime

from sqlalchemy import select

from bot.app import STORE
from bot.services import areas, gridworkers, polls
from storage.models import AuditEntry, OutboxMessage, Poll
from tests.console_client import Staff, add_operator
from tests.polls_setup import build_city, get_poll, make_poll
from tests.test_lifecycle import filed

QUESTION = "小区停车费定为每月160元，您是否接受？"


def new_poll_form(audience, **fields) -> list[tuple[str, str]]:
    base = {
        "question": QUESTION,
        "options": "接受\n不接受\n希望降低",
        "kind": "single",
        "max": "",
        "voters": "anonymous",
        "results": "live",
        "allow_change": "1",
        "closes": "2026-11-28T18:00",  # Asia/Shanghai; the clock stands at 2026-11-25 10:00 there
        "remind_hours": "",
    }
    base.update(fields)
    return [*base.items(), *(("audience", str(a.id)) for a in audience)]


async def post_pairs(staff: Staff, path: str, pairs: list[tuple[str, str]]) -> tuple[int, str]:
    """A form with repeated fields (checkboxes), which Staff.post's dict cannot carry."""
    async with staff.http.post(staff.base + path, data=[("csrf", staff.csrf), *pairs]) as resp:
        return resp.status, await resp.text()


async def worker_for(h, operator: str, name: str, *area_list: areas.Area) -> gridworkers.Worker:
    """A grid worker who looks after `area_list`, with a console account of role gridworker."""
    await add_operator(h, operator, "gridworker")
    async with h.app[STORE].write() as tx:
        worker = await gridworkers.ensure(tx, name, now=h.clock.now(), operator_name=operator)
        for area in area_list:
            await gridworkers.assign(tx, worker, area)
        return await gridworkers.by_name(tx, name)


async def residents_vote(h, poll_id: int, votes: dict[str, list[int]], grid: areas.Area, **kw) -> None:
    async with h.app[STORE].write() as tx:
        poll = await polls.get(tx, poll_id)
        for openid, choices in votes.items():
            await areas.join(tx, openid, grid, h.clock.now())
            await polls.vote(tx, poll, openid, choices, now=h.clock.now(), **kw)


def option_row(page: str, number: int) -> str:
    found = re.search(rf'<tr data-option="{number}">(.*?)</tr>', page, re.S)
    assert found, f"no row for option {number}"
    return found.group(1)


def counts(page: str, number: int) -> tuple[int, int, int, str]:
    row = option_row(page, number)
    cells = [re.search(rf'<td class="num {c}">([^<]*)</td>', row).group(1) for c in ("wechat", "door", "total")]
    share = re.search(r'<td class="num muted share">([^<]*)</td>', row).group(1)
    return int(cells[0]), int(cells[1]), int(cells[2]), share


def figure(page: str, name: str) -> int:
    return int(re.search(rf'id="n-{name}">(\d+)<', page).group(1))


async def audited(h, action: str) -> list[tuple[str, str, str | None]]:
    async with h.db.read() as s:
        rows = await s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
        return [(a.operator, a.outcome, a.target) for a in rows]


async def all_polls(h) -> list[Poll]:
    async with h.db.read() as s:
        return list(await s.scalars(select(Poll).order_by(Poll.id)))


async def test_a_grid_worker_puts_a_poll_to_their_grid_and_is_refused_another(harness):
    h = harness
    city = await build_city(h)
    worker = await worker_for(h, "网格员小王", "王网格员", city.grid1)
    async with Staff(h) as staff:
        status, page = await staff.login("网格员小王")
        assert status == 200 and "<h1>意见征集</h1>" in page  # where a grid worker lands: they have no cases
        status, page = await staff.get("/polls/new")
        assert status == 200 and city.grid1.path in page
        assert city.grid2.path not in page and city.other.path not in page  # only what they look after
        status, page = await post_pairs(staff, "/polls/new", new_poll_form([city.grid1], remind_hours="24"))
        assert status == 200 and "已发起" in page and QUESTION in page and "王网格员" in page
        [poll] = await all_polls(h)
        assert (poll.created_via, poll.creator_worker_id, poll.creator_name) == ("console", worker.id, "王网格员")
        assert poll.grid_ids == [city.grid1.id] and poll.options == ["接受", "不接受", "希望降低"]
        assert poll.closes_at == datetime(2026, 11, 28, 10, 0, tzinfo=UTC) and poll.remind_before_minutes == 24 * 60

        # Another community's grid, by a hand-made form: refused, nothing made, what was typed kept.
        await staff.get("/polls/new")
        status, page = await post_pairs(staff, "/polls/new", new_poll_form([city.other], question="别的网格的事"))
        assert status == 403 and f"{city.other.path} 不在其中" in page and "别的网格的事" in page
        status, page = await staff.get("/polls")
        assert status == 200 and QUESTION in page and "别的网格的事" not in page
    assert len(await all_polls(h)) == 1
    assert await audited(h, "poll_create") == [("网格员小王", "ok", str(poll.id)), ("网格员小王", "refused", None)]


async def test_the_form_says_what_is_wrong_and_keeps_what_was_typed(harness):
    h = harness
    city = await build_city(h)
    await add_operator(h, "张科员", "dispatcher")
    await add_operator(h, "只读", "viewer")
    async with Staff(h) as staff:
        await staff.login("张科员")
        await staff.get("/polls/new")
        status, page = await post_pairs(staff, "/polls/new", new_poll_form([city.grid1], options="只有一个选项"))
        assert status == 400 and "选项须为 2 到 10 个，现在有 1 个。" in page
        assert QUESTION in page and "只有一个选项" in page  # refilled
        status, page = await post_pairs(staff, "/polls/new", new_poll_form([city.grid1], closes="2026-11-25T10:30"))
        assert status == 400 and "征集时长须在 1 小时到 30 天之间。" in page
        status, page = await post_pairs(staff, "/polls/new", new_poll_form([city.grid1], closes="后天"))
        assert status == 400 and "请填写有效的截止时间。" in page
        status, page = await post_pairs(staff, "/polls/new", new_poll_form([]))
        assert status == 400 and "请选择征集范围" in page
        status, page = await post_pairs(staff, "/polls/new", new_poll_form([city.grid1], kind="multiple", max="5"))
        assert status == 400 and "最多可选的项数须在 1 到 3 之间。" in page
        # A community stands for every grid in it.
        status, page = await post_pairs(staff, "/polls/new", new_poll_form([city.yuncheng], kind="multiple", max="2"))
        assert status == 200 and "已发起" in page
    [poll] = await all_polls(h)
    assert sorted(poll.grid_ids) == sorted([city.grid1.id, city.grid2.id]) and poll.max_choices == 2
    assert (poll.creator_worker_id, poll.creator_name) == (None, "张科员")
    async with Staff(h) as viewer:
        await viewer.login("只读")
        assert (await viewer.get("/polls/new"))[0] == 403
        await viewer.get("/polls")
        assert (await post_pairs(viewer, "/polls/new", new_poll_form([city.grid1])))[0] == 403
    assert len(await all_polls(h)) == 1


async def test_the_results_count_wechat_and_door_to_door_votes_apart(harness):
    h = harness
    city = await build_city(h)
    worker = await worker_for(h, "网格员小王", "王网格员", city.grid1)
    poll_id = await make_poll(h, [city.grid1.id], worker_id=worker.id, live_results=False)
    await residents_vote(h, poll_id, {"o_1": [1], "o_2": [1], "o_3": [2]}, city.grid1)
    async with Staff(h) as staff:
        await staff.login("网格员小王")
        await staff.get(f"/polls/{poll_id}")
        status, page = await staff.post(f"/polls/{poll_id}/door", {"household": "3栋501", "choice": "1"})
        assert status == 200 and "已记录入户收集的意见" in page
        await staff.post(f"/polls/{poll_id}/door", {"household": "3栋502", "choice": "3"})
        status, page = await staff.post(f"/polls/{poll_id}/door", {"household": "3栋503"})
        assert status == 400 and "请至少选择一个选项" in page and "3栋503" in page
        status, page = await staff.get(f"/polls/{poll_id}")
    assert status == 200
    # Staff see the tally although residents will only after closing.
    assert "本次征集结束后才向居民公布结果" in page
    assert [counts(page, n) for n in (1, 2, 3)] == [(2, 1, 3, "60%"), (1, 0, 1, "20%"), (0, 1, 1, "20%")]
    assert 'aria-label="接受：微信 2 票，入户 1 票，占 60%"' in page
    assert '<rect class="bar-wechat" width="66.67" height="10"/><rect class="bar-door" x="66.67" width="33.33"' in page
    assert (figure(page, "voted"), figure(page, "wechat"), figure(page, "door"), figure(page, "votes")) == (3, 3, 2, 5)
    # An anonymous poll lists no resident; the households a worker called on are listed all the same.
    assert "<td>3栋501</td><td>1. 接受</td><td>入户</td>" in page and "o_1" not in page
    async with h.app[STORE].read() as tx:
        t = await polls.tally(tx, await polls.get(tx, poll_id))
    assert (t.wechat, t.door) == ([2, 1, 0], [1, 0, 1])
    assert [(who, outcome) for who, outcome, _ in await audited(h, "poll_door_vote")] == [
        ("网格员小王", "ok"),
        ("网格员小王", "ok"),
        ("网格员小王", "failed"),
    ]


async def test_a_named_poll_shows_who_chose_what_and_a_single_choice_door_vote_takes_one(harness):
    h = harness
    city = await build_city(h)
    await add_operator(h, "张科员", "dispatcher")
    poll_id = await make_poll(h, [city.grid1.id], anonymous=False)
    await residents_vote(h, poll_id, {"o_named": [2]}, city.grid1, name="3栋2单元501 张三")
    async with Staff(h) as staff:
        await staff.login("张科员")
        await staff.get(f"/polls/{poll_id}")
        status, page = await staff.post(f"/polls/{poll_id}/door", {"household": "4栋101", "choice": ["1", "2"]})
        assert status == 400 and "本次征集只能选一项" in page
        await staff.post(f"/polls/{poll_id}/door", {"household": "4栋101", "choice": "3"})
        status, page = await staff.get(f"/polls/{poll_id}")
    assert "<td>3栋2单元501 张三</td><td>2. 不接受</td><td>微信</td>" in page
    assert "<td>4栋101</td><td>3. 希望降低</td><td>入户</td>" in page


async def test_the_csv_export_has_the_counts_and_the_ballots_with_formulas_defused(harness):
    h = harness
    city = await build_city(h)
    await add_operator(h, "督办", "supervisor")
    await add_operator(h, "张科员", "dispatcher")
    poll_id = await make_poll(h, [city.grid1.id], options=("接受", "-降到100元", "@物业"))
    await residents_vote(h, poll_id, {"o_1": [1], "o_2": [2]}, city.grid1)
    async with h.app[STORE].write() as tx:
        poll = await polls.get(tx, poll_id)
        await polls.door_vote(tx, poll, '=HYPERLINK("http://x.example")', [2], by="张科员", now=h.clock.now())
    async with Staff(h) as staff:
        await staff.login("督办")
        async with staff.http.get(f"{staff.base}/polls/{poll_id}/export.csv") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
            assert f"poll-{poll_id}.csv" in resp.headers["Content-Disposition"]
            body = await resp.read()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["问题", QUESTION]
    assert rows[1] == ["选项", "微信投票", "入户收集", "合计", "占比"]
    assert rows[2] == ["1. 接受", "1", "0", "1", "33.3%"]
    assert rows[3] == ["2. -降到100元", "1", "1", "2", "66.7%"]  # the option's number comes first: no formula
    assert rows[4] == ["3. @物业", "0", "0", "0", "0%"]
    assert rows[5] == [] and rows[6] == ["姓名或门牌", "选择", "来源"]
    assert rows[7] == ['\'=HYPERLINK("http://x.example")', "2. -降到100元", "入户"]
    assert len(rows) == 8
    assert await audited(h, "poll_export") == [("督办", "ok", str(poll_id))]


async def test_the_creator_closes_early_a_viewer_cannot_and_the_creator_hears_the_results(harness):
    h = harness
    city = await build_city(h)
    worker = await worker_for(h, "网格员小王", "王网格员", city.grid1)
    await worker_for(h, "网格员小李", "李网格员", city.other)
    await add_operator(h, "只读", "viewer")
    async with h.app[STORE].write() as tx:
        await tx.run("UPDATE grid_workers SET openid = 'o_worker_wang' WHERE id = :id", id=worker.id)
    mine = await make_poll(h, [city.grid1.id], worker_id=worker.id)
    theirs = await make_poll(h, [city.grid1.id], question="张科员发起的征集")  # put to 小王's grid by someone else
    await residents_vote(h, mine, {"o_1": [1]}, city.grid1)

    async with Staff(h) as viewer:
        await viewer.login("只读")
        status, page = await viewer.get(f"/polls/{mine}")
        assert status == 200 and 'data-option="1"' in page  # reads the results …
        assert f"/polls/{mine}/close" not in page and f"/polls/{mine}/door" not in page  # … with no forms
        assert (await viewer.post(f"/polls/{mine}/close"))[0] == 403
        assert (await viewer.post(f"/polls/{mine}/door", {"household": "1栋", "choice": "1"}))[0] == 403
    async with Staff(h) as other:
        await other.login("网格员小李")
        assert (await other.get(f"/polls/{mine}"))[0] == 403  # not their grid: not even by URL
        status, page = await other.get("/polls")
        assert status == 200 and f'data-poll="{mine}"' not in page and "还没有意见征集" in page
        assert (await other.post(f"/polls/{mine}/close"))[0] == 403
    assert (await get_poll(h, mine)).status == "open"

    async with Staff(h) as staff:
        await staff.login("网格员小王")
        status, page = await staff.get("/polls")
        assert f'data-poll="{mine}"' in page and f'data-poll="{theirs}"' in page  # their grid's polls too
        status, page = await staff.get(f"/polls/{theirs}")
        assert status == 200 and f"/polls/{theirs}/close" not in page  # seen, but not theirs to run
        assert (await staff.post(f"/polls/{theirs}/close"))[0] == 403
        await staff.get(f"/polls/{mine}")
        status, page = await staff.post(f"/polls/{mine}/close")
        assert status == 200 and "已提前结束" in page and "已结束" in page and f"/polls/{mine}/door" not in page
        status, page = await staff.post(f"/polls/{mine}/close")
        assert status == 409 and "这个意见征集已经结束了" in page
    closed = await get_poll(h, mine)
    assert (closed.status, closed.closed_by) == ("closed", "网格员小王") and closed.closed_at == h.clock.now()
    assert (await get_poll(h, theirs)).status == "open"
    async with h.db.read() as s:
        to_worker = select(OutboxMessage).where(OutboxMessage.openid == "o_worker_wang")
        told = [m.payload for m in await s.scalars(to_worker)]
    assert len(told) == 1 and "您发起的意见征集已结束" in str(told[0]) and "接受：1 票" in str(told[0])
    outcomes = [(who, outcome) for who, outcome, _ in await audited(h, "poll_close")]
    assert ("只读", "refused") in outcomes and ("网格员小李", "refused") in outcomes
    assert ("网格员小王", "ok") in outcomes and ("网格员小王", "failed") in outcomes


async def test_a_poll_is_linked_to_its_case_and_the_case_page_links_back(harness):
    h = harness
    city = await build_city(h)
    await add_operator(h, "张科员", "dispatcher")
    number = await filed(h, "o_parking")
    poll_id = await make_poll(h, [city.grid1.id])
    async with Staff(h) as staff:
        await staff.login("张科员")
        await staff.get(f"/polls/{poll_id}")
        status, page = await staff.post(f"/polls/{poll_id}/case", {"case_number": "XF20990101-9999"})
        assert status == 400 and "没有编号为 XF20990101-9999 的案件。" in page
        assert (await get_poll(h, poll_id)).case_number is None
        status, page = await staff.post(f"/polls/{poll_id}/case", {"case_number": number.lower()})
        assert status == 200 and "已更新关联案件" in page and f'href="/console/cases/{number}"' in page
        status, page = await staff.get(f"/cases/{number}")
        assert status == 200 and f'<a href="/console/polls/{poll_id}">{QUESTION}</a>' in page
        status, page = await staff.post(f"/polls/{poll_id}/case", {"case_number": ""})
        assert status == 200 and (await get_poll(h, poll_id)).case_number is None
    assert (await get_poll(h, poll_id)).case_number is None
    assert [(o, t) for _, o, t in await audited(h, "poll_link_case")] == [
        ("failed", str(poll_id)),
        ("ok", str(poll_id)),
        ("ok", str(poll_id)),
    ]


async def test_a_viewer_sees_no_phone_number_a_voter_gave_as_their_name(harness):
    h = harness
    city = await build_city(h)
    await add_operator(h, "只读", "viewer")
    await add_operator(h, "张科员", "dispatcher")
    poll_id = await make_poll(h, [city.grid1.id], anonymous=False)
    await residents_vote(h, poll_id, {"o_named": [2]}, city.grid1, name="张三 13812345678")
    async with h.app[STORE].write() as tx:
        poll = await polls.get(tx, poll_id)
        await polls.door_vote(tx, poll, "5栋102 李大爷 139-0000-1111", [1], by="张科员", now=h.clock.now())
    async with Staff(h) as viewer:
        await viewer.login("只读")
        status, page = await viewer.get(f"/polls/{poll_id}")
        assert status == 200 and "张三" in page and "李大爷" in page
        assert "13812345678" not in page and "139-0000-1111" not in page
        async with viewer.http.get(f"{viewer.base}/polls/{poll_id}/export.csv") as resp:
            body = (await resp.read()).decode("utf-8-sig")
        assert "张三" in body and "13812345678" not in body and "139-0000-1111" not in body
    async with Staff(h) as staff:  # a role that sees phone numbers sees them here too
        await staff.login("张科员")
        status, page = await staff.get(f"/polls/{poll_id}")
        assert "13812345678" in page
