"""Live updates (server-sent events): what arrives through the webhook reaches the consoles of those allowed to
see it, without reloading."""

import asyncio
import json

from tests.console_client import Staff, add_operator
from tests.test_lifecycle import do, filed

UNIT = "云城街道办事处"


class Stream:
    """An open /console/live stream, read event by event."""

    def __init__(self, resp):
        self.resp = resp

    async def next(self, within: float = 5.0) -> tuple[str, dict] | None:
        """The next event (kind, data), or None if none came in time."""
        kind = None
        try:
            async with asyncio.timeout(within):
                while True:
                    raw = await self.resp.content.readline()
                    if not raw:
                        return None  # the server ended the stream
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: ") and kind:
                        return kind, json.loads(line[len("data: ") :])
        except TimeoutError:
            return None


async def open_stream(staff: Staff) -> Stream:
    resp = await staff.http.get(staff.base + "/live")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert (await resp.content.readline()).startswith(b": connected")
    await asyncio.sleep(1.2)  # the feed's first poll sets where it starts
    return Stream(resp)


async def test_a_complaint_filed_through_the_webhook_appears_live(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        await staff.login("张科员")
        stream = await open_stream(staff)
        number = await filed(h, "o_live")
        event = await stream.next()
        assert event is not None
        kind, data = event
        assert (kind, data["number"], data["category"]) == ("case", number, "物业与停车")
        assert number in data["text"] and data["status"] == "待受理"
        stream.resp.close()


async def test_a_unit_handler_hears_only_of_their_units_cases(harness):
    h = harness
    await add_operator(h, "街道小刘", "unit", unit=UNIT)
    mine = await filed(h, "o_live_mine")
    await do(h, "accept", mine)
    await do(h, "assign", mine, unit=UNIT)
    async with Staff(h) as staff:
        await staff.login("街道小刘")
        stream = await open_stream(staff)
        await filed(h, "o_live_new")  # a new, unassigned case: not theirs
        await h.resident("o_live_mine").say("物业今天又来收费了，请尽快处理")
        kind, data = await stream.next()
        assert (kind, data["number"]) == ("message", mine)
        assert await stream.next(within=2.5) is None  # and nothing about the other case
        stream.resp.close()


async def test_a_notice_wechat_would_not_take_is_announced(db_url, clock):
    from tests.conftest import start_harness

    # No template configured: outside the window a notice fails. The session outlives the two days that pass.
    async with start_harness(db_url, clock, FRONTDOOR_CONSOLE_SESSION_HOURS="100") as h:
        await add_operator(h, "张科员", "dispatcher")
        number = await filed(h, "o_live_fail")
        async with Staff(h) as staff:
            await staff.login("张科员")
            stream = await open_stream(staff)
            h.clock.advance(hours=49)  # the resident's window has closed
            await do(h, "accept", number)
            h.clock.advance(seconds=5)
            await h.deliver_outbox()
            event = await stream.next()
            while event is not None and event[0] != "failure":
                event = await stream.next()
            assert event is not None
            assert event[1]["number"] == number and "未能送达" in event[1]["text"]
            stream.resp.close()


async def test_the_stream_needs_a_session(harness):
    h = harness
    async with Staff(h) as staff:
        async with staff.http.get(staff.base + "/live", allow_redirects=False) as resp:
            assert resp.status == 302


async def test_signing_out_ends_the_stream_and_nothing_more_is_sent(harness):
    h = harness
    await add_operator(h, "张科员", "dispatcher")
    async with Staff(h) as staff:
        await staff.login("张科员")
        stream = await open_stream(staff)
        cookie = {c.key: c.value for c in staff.http.cookie_jar}["fd_session"]
        await staff.post("/logout")
        await filed(h, "o_after_logout")
        # The stream ends instead of carrying the new case: read to its end.
        async with asyncio.timeout(5):
            rest = await stream.resp.content.read()
        assert b"o_after_logout" not in rest and b"event: case" not in rest
        assert cookie  # (the session's cookie existed while the stream was open)


async def _copy_case(tx, number: str, new_number: str) -> None:
    """A second case like `number`, inserted in `tx` (its id is taken now, whenever `tx` commits)."""
    columns = [
        r["column_name"]
        for r in await tx.all(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'cases' "
            "AND table_schema = current_schema() AND column_name NOT IN ('id', 'number') ORDER BY ordinal_position"
        )
    ]
    listed = ", ".join(columns)
    await tx.run(
        f"INSERT INTO cases (number, {listed}) SELECT :new, {listed} FROM cases WHERE number = :n",
        new=new_number,
        n=number,
    )


async def test_a_case_committed_after_a_later_one_is_still_announced(pg_url, clock):
    """On PostgreSQL ids are taken at insert and become visible at commit: with several instances writing, case
    11 can be seen before case 10. The feed must not step over 10 for good."""
    from bot.app import STORE
    from tests.conftest import start_harness

    async with start_harness(pg_url, clock) as h:
        await add_operator(h, "张科员", "dispatcher")
        first = await filed(h, "o_live_gap")
        async with Staff(h) as staff:
            await staff.login("张科员")
            stream = await open_stream(staff)
            store = h.app[STORE]
            slow = store.write()
            tx = await slow.__aenter__()
            try:
                await _copy_case(tx, first, "SLOW-1")  # takes the lower id, commits last
                async with store.write() as quick:
                    await _copy_case(quick, first, "QUICK-2")
                kind, data = await stream.next()
                assert (kind, data["number"]) == ("case", "QUICK-2")
            finally:
                await slow.__aexit__(None, None, None)
            event = await stream.next()
            assert event is not None and (event[0], event[1]["number"]) == ("case", "SLOW-1")
            stream.resp.close()
