"""The poll rules themselves, below the chat: one ballot per resident even from two instances at once,
audience limits, and the checks every poll must pass whoever creates it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.config import PollSettings
from bot.services import areas, polls
from storage.fast import open_store


async def _city(store, now):
    async with store.write() as tx:
        d = await areas.add(tx, "district", "云岩区", parent=None, now=now)
        s = await areas.add(tx, "street", "中华路街道", parent=d, now=now)
        c = await areas.add(tx, "community", "云城社区", parent=s, now=now)
        g1 = await areas.add(tx, "grid", "第一网格", parent=c, now=now)
        g2 = await areas.add(tx, "grid", "第二网格", parent=c, now=now)
    return c, g1, g2


def _spec(now, audience, **kw):
    return polls.Spec(
        question=kw.pop("question", "是否同意增设充电桩？"),
        options=kw.pop("options", ("同意", "不同意")),
        closes_at=now + timedelta(hours=kw.pop("hours", 24)),
        audience=tuple(audience),
        **kw,
    )


async def test_two_instances_voting_for_one_resident_store_one_ballot(store, db_url, clock):
    now = clock.now()
    _c, g1, _g2 = await _city(store, now)
    async with store.write() as tx:
        await areas.join(tx, "o_twice", g1, now)
        poll_id = await polls.create(
            tx,
            _spec(now, [g1.id]),
            creator_name="小王",
            worker_id=None,
            via="console",
            now=now,
            settings=PollSettings(),
        )
    other = open_store(db_url)  # a second instance: its own connections

    async def vote(s, choice):
        async with s.write() as tx:
            poll = await polls.get(tx, poll_id)
            return await polls.vote(tx, poll, "o_twice", [choice], now=now)

    try:
        results = await asyncio.gather(vote(store, 1), vote(other, 2), return_exceptions=True)
    finally:
        await other.close()
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.outcome for r in results) == ["changed", "recorded"]
    async with store.read() as tx:
        t = await polls.tally(tx, await polls.get(tx, poll_id))
        ballots = await tx.val("SELECT count(*) FROM poll_ballots WHERE poll_id = :p", p=poll_id)
    assert ballots == 1 and t.wechat_voters == 1 and sum(t.wechat) == 1


async def test_a_community_audience_covers_its_grids_and_no_one_else(store, clock):
    now = clock.now()
    community, g1, g2 = await _city(store, now)
    async with store.write() as tx:
        street = await areas.get(tx, community.parent_id)
        elsewhere = await areas.add(tx, "community", "白云社区", parent=street, now=now)
        outside = await areas.add(tx, "grid", "第一网格", parent=elsewhere, now=now)
    async with store.write() as tx:
        poll_id = await polls.create(
            tx,
            _spec(now, [community.id]),
            creator_name="小王",
            worker_id=None,
            via="console",
            now=now,
            settings=PollSettings(),
        )
        poll = await polls.get(tx, poll_id)
    assert poll.grid_ids == (g1.id, g2.id)
    async with store.write() as tx:
        await areas.join(tx, "o_in", g2, now)
        await areas.join(tx, "o_next_door", outside, now)
        assert (await polls.vote(tx, poll, "o_in", [1], now=now)).outcome == "recorded"
        with pytest.raises(polls.PollError) as refused:
            await polls.vote(tx, poll, "o_next_door", [1], now=now)
    assert refused.value.key == "not_eligible"
    with pytest.raises(polls.PollError):
        async with store.write() as tx:
            await polls.vote(tx, poll, "o_never_joined", [1], now=now)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"options": ("同意",)}, "option_count"),
        ({"options": tuple(f"选项{i}" for i in range(11))}, "option_count"),
        ({"options": ("同意", "同意")}, "option_repeat"),
        ({"options": ("同意", "这个选项写得实在是太长太长了超过了二十个字的限制")}, "option_long"),
        ({"max_choices": 3}, "max_choices"),
        ({"hours": 0.5}, "closing"),
        ({"hours": 24 * 31}, "closing"),
        ({"remind_before_minutes": 24 * 60}, "reminder"),
        ({"question": " "}, "question"),
    ],
)
def test_every_poll_rule(clock, change, key):
    now = clock.now()
    with pytest.raises(polls.PollError) as refused:
        polls.check(_spec(now, [1], **change), now=now, settings=PollSettings())
    assert refused.value.key == key


def test_choices_as_residents_type_them(clock):
    now = clock.now()
    single = polls.Poll(
        id=7,
        question="?",
        options=("接受", "不接受", "希望降低"),
        max_choices=1,
        anonymous=True,
        live_results=True,
        allow_change=True,
        notify_voters=False,
        audience=(),
        grid_ids=(),
        creator_worker_id=None,
        creator_name="",
        created_via="chat",
        status="open",
        created_at=now,
        closes_at=now,
        remind_before_minutes=None,
        closed_at=None,
        closed_by=None,
        audience_size=0,
        reached=0,
        waiting=0,
        distributed_at=None,
        case_number=None,
    )
    multi = polls.Poll(**{**single.__dict__, "max_choices": 2})
    assert polls.parse_choices(single, "2") == [2]
    assert polls.parse_choices(single, "第三个") == [3]
    assert polls.parse_choices(single, "选2") == [2]
    assert polls.parse_choices(single, "不接受") == [2]
    assert polls.parse_choices(multi, "3、1") == [1, 3]
    assert polls.parse_choices(multi, "13") == [1, 3]
    for text, key in (("好的", "not_choice"), ("4", "out_of_range"), ("1 2", "single"), ("2 2", "repeated")):
        with pytest.raises(polls.PollError) as refused:
            polls.parse_choices(single, text)
        assert refused.value.key == key
    assert polls.from_menu_id(polls.menu_id(7, 3)) == (7, 3)
    assert polls.from_menu_id("abc") is None and polls.from_menu_id("700") is None


async def test_a_made_up_code_never_collides_with_one_given_by_hand(store, clock):
    now = clock.now()
    community, _g1, _g2 = await _city(store, now)
    async with store.write() as tx:
        taken = await areas.add(tx, "grid", "第三网格", parent=community, now=now, code=f"G{community.id + 4}")
        made = await areas.add(tx, "grid", "第四网格", parent=community, now=now)
        with pytest.raises(areas.AreaError):
            await areas.add(tx, "grid", "第五/第六网格", parent=community, now=now)
    assert made.id == community.id + 4 and made.code == f"{taken.code}-2"
