"""Opinion polls (意见征集): created by a grid worker (chat or console), put to the residents of some grids,
voted on by message or by tapping an option, closed once at the deadline (or early), results sent.

- One ballot per voter per poll: the unique (poll_id, voter_key) of poll_ballots. A resident's key is a hash of
  poll and openid (an anonymous ballot cannot be traced back; poll_recipients.voted_at still says that they
  voted, for reminders and the turnout); a named poll's ballot holds the openid in a column of its own, and
  keeps its key when its voter is detached, so that following again does not give them a second vote. Votes a
  worker collected door to door are keyed by household and counted separately.
- Distribution, the reminder and closing are poll_jobs rows fired by PollWorker (claim with a lease, then a
  finish that only counts while the lease stands), so a restart before the deadline still closes the poll once.
- Distribution follows WeChat's rules: a resident whose customer-service window and quota allow gets the poll
  as a message with tappable options (msgmenu); the others are told "您有 N 个待参与的意见征集" on their next
  message (residents.polls_waiting).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.clock import Clock
from bot.config import PollSettings, PushSettings
from bot.services import outbox, residents
from bot.services.areas import Area, all_areas, grids_under
from bot.texts import Texts
from storage.fast import Tx, in_list, js, unjs

MIN_OPTIONS, MAX_OPTIONS = 2, 10
OPTION_CHARS = 20
QUESTION_CHARS = 200
HOUSEHOLD_CHARS = 80
# A msgmenu option's id: poll id × 100 + the option's number, so a tap names its poll exactly.
_MENU_BASE = 100


class PollError(Exception):
    """Why a poll or a vote was refused: a text key under [poll.error] and its values."""

    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key, self.values = key, values

    def text(self, texts: Texts) -> str:
        return texts(f"poll.error.{self.key}", **self.values)


@dataclass(frozen=True)
class Spec:
    """What a poll is, as its creator chose it."""

    question: str
    options: tuple[str, ...]
    closes_at: datetime
    audience: tuple[int, ...]  # area ids: grids, or communities (every grid in them)
    max_choices: int = 1
    anonymous: bool = True
    live_results: bool = True
    allow_change: bool = True
    notify_voters: bool = False
    remind_before_minutes: int | None = None


@dataclass(frozen=True)
class Poll:
    id: int
    question: str
    options: tuple[str, ...]
    max_choices: int
    anonymous: bool
    live_results: bool
    allow_change: bool
    notify_voters: bool
    audience: tuple[int, ...]
    grid_ids: tuple[int, ...]
    creator_worker_id: int | None
    creator_name: str
    created_via: str
    status: str
    created_at: datetime
    closes_at: datetime
    remind_before_minutes: int | None
    closed_at: datetime | None
    closed_by: str | None
    audience_size: int
    reached: int
    waiting: int
    distributed_at: datetime | None
    case_number: str | None

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    @property
    def multiple(self) -> bool:
        return self.max_choices > 1


@dataclass
class Tally:
    """Counts per option (index 0 is option 1): by residents over WeChat, and collected door to door."""

    wechat: list[int]
    door: list[int]
    wechat_voters: int = 0
    door_voters: int = 0
    named: list[tuple[str, list[int], str]] = field(default_factory=list)  # (name, choices, source)

    @property
    def total(self) -> list[int]:
        return [a + b for a, b in zip(self.wechat, self.door, strict=True)]

    @property
    def voters(self) -> int:
        return self.wechat_voters + self.door_voters


_COLUMNS = (
    "id, question, options, max_choices, anonymous, live_results, allow_change, notify_voters, audience, grid_ids, "
    "creator_worker_id, creator_name, created_via, status, created_at, closes_at, remind_before_minutes, "
    "closed_at, closed_by, audience_size, reached, waiting, distributed_at, case_number"
)


def _poll(tx: Tx, r) -> Poll:
    return Poll(
        id=r["id"],
        question=r["question"],
        options=tuple(unjs(r["options"])),
        max_choices=r["max_choices"],
        anonymous=bool(r["anonymous"]),
        live_results=bool(r["live_results"]),
        allow_change=bool(r["allow_change"]),
        notify_voters=bool(r["notify_voters"]),
        audience=tuple(unjs(r["audience"])),
        grid_ids=tuple(unjs(r["grid_ids"])),
        creator_worker_id=r["creator_worker_id"],
        creator_name=r["creator_name"],
        created_via=r["created_via"],
        status=r["status"],
        created_at=tx.dt(r["created_at"]),
        closes_at=tx.dt(r["closes_at"]),
        remind_before_minutes=r["remind_before_minutes"],
        closed_at=tx.dt(r["closed_at"]),
        closed_by=r["closed_by"],
        audience_size=r["audience_size"],
        reached=r["reached"],
        waiting=r["waiting"],
        distributed_at=tx.dt(r["distributed_at"]),
        case_number=r["case_number"],
    )


async def get(tx: Tx, poll_id: int) -> Poll | None:
    row = await tx.one(f"SELECT {_COLUMNS} FROM polls WHERE id = :id", id=poll_id)
    return None if row is None else _poll(tx, row)


async def listing(
    tx: Tx,
    *,
    worker_id: int | None = None,
    grid_ids: list[int] | None = None,
    status: str | None = None,
    limit: int = 200,
) -> list[Poll]:
    """Newest first. `worker_id` alone: that worker's own polls; with `grid_ids`: their own and those put to any
    of these grids (a worker's view); `grid_ids` alone: those put to any of these grids."""
    where, params = [], {}
    if worker_id is not None and grid_ids is None:
        where.append("creator_worker_id = :worker")
        params["worker"] = worker_id
    if status:
        where.append("status = :status")
        params["status"] = status
    sql = f"SELECT {_COLUMNS} FROM polls" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
    found = [_poll(tx, r) for r in await tx.all(sql, **params)]
    if grid_ids is not None:
        wanted = set(grid_ids)
        found = [
            p for p in found if wanted & set(p.grid_ids) or (worker_id is not None and p.creator_worker_id == worker_id)
        ]
    return found[:limit]


def clean_options(raw: list[str]) -> tuple[str, ...]:
    """Options as typed, trimmed, numbering the creator typed ("1. 同意", "A、同意") dropped."""
    out = []
    for option in raw:
        text = " ".join(unicodedata.normalize("NFKC", option).split())
        text = re.sub(r"^(?:[0-9]{1,2}|[A-Ja-j])\s*[.、:：)）]\s*", "", text).strip()
        if text:
            out.append(text)
    return tuple(out)


def check(spec: Spec, *, now: datetime, settings: PollSettings) -> None:
    """Every rule a poll must meet, whoever creates it (chat dialog, console form)."""
    if not spec.question.strip() or len(spec.question) > QUESTION_CHARS:
        raise PollError("question", max=QUESTION_CHARS)
    n = len(spec.options)
    if not MIN_OPTIONS <= n <= MAX_OPTIONS:
        raise PollError("option_count", min=MIN_OPTIONS, max=MAX_OPTIONS, count=n)
    if any(len(o) > OPTION_CHARS for o in spec.options):
        raise PollError("option_long", max=OPTION_CHARS)
    if len(set(spec.options)) != n:
        raise PollError("option_repeat")
    if not 1 <= spec.max_choices <= n:
        raise PollError("max_choices", count=n)
    span = spec.closes_at - now
    if span < timedelta(hours=settings.min_hours) or span > timedelta(days=settings.max_days):
        raise PollError("closing", min_hours=settings.min_hours, max_days=settings.max_days)
    if spec.remind_before_minutes is not None and not 0 < spec.remind_before_minutes < span.total_seconds() / 60:
        raise PollError("reminder")
    if not spec.audience:
        raise PollError("audience")


async def create(
    tx: Tx,
    spec: Spec,
    *,
    creator_name: str,
    worker_id: int | None,
    via: str,
    now: datetime,
    settings: PollSettings,
) -> int:
    """A new open poll, its distribution due at once, its reminder and its closing scheduled. Its id."""
    check(spec, now=now, settings=settings)
    tree = await all_areas(tx)
    known = {a.id for a in tree}
    if any(a not in known for a in spec.audience):
        raise PollError("audience")
    grid_ids = grids_under(tree, list(spec.audience))
    if not grid_ids:
        raise PollError("no_grids")
    poll_id = await tx.val(
        """INSERT INTO polls (question, options, max_choices, anonymous, live_results, allow_change, notify_voters,
            audience, grid_ids, creator_worker_id, creator_name, created_via, status, created_at, closes_at,
            remind_before_minutes, audience_size, reached, waiting)
        VALUES (:question, :options, :max_choices, :anonymous, :live, :change, :notify, :audience, :grids, :worker,
            :creator, :via, 'open', :now, :closes, :remind, 0, 0, 0) RETURNING id""",
        question=spec.question.strip(),
        options=js(list(spec.options)),
        max_choices=spec.max_choices,
        anonymous=spec.anonymous,
        live=spec.live_results,
        change=spec.allow_change,
        notify=spec.notify_voters,
        audience=js(list(spec.audience)),
        grids=js(grid_ids),
        worker=worker_id,
        creator=creator_name,
        via=via,
        now=tx.ts(now),
        closes=tx.ts(spec.closes_at),
        remind=spec.remind_before_minutes,
    )
    await _schedule(tx, poll_id, "distribute", now, now)
    await _schedule(tx, poll_id, "close", spec.closes_at, now)
    if spec.remind_before_minutes:
        await _schedule(tx, poll_id, "remind", spec.closes_at - timedelta(minutes=spec.remind_before_minutes), now)
    return poll_id


async def _schedule(tx: Tx, poll_id: int, kind: str, fire_at: datetime, now: datetime) -> None:
    await tx.run(
        "INSERT INTO poll_jobs (poll_id, kind, fire_at, dedupe_key, status, created_at) "
        "VALUES (:poll, :kind, :at, :key, 'pending', :now) ON CONFLICT (dedupe_key) DO NOTHING",
        poll=poll_id,
        kind=kind,
        at=tx.ts(fire_at),
        key=f"{poll_id}:{kind}",
        now=tx.ts(now),
    )


async def link_case(tx: Tx, poll: Poll, case_number: str | None) -> None:
    await tx.run("UPDATE polls SET case_number = :number WHERE id = :id", number=case_number, id=poll.id)


async def for_case(tx: Tx, case_number: str) -> list[Poll]:
    rows = await tx.all(f"SELECT {_COLUMNS} FROM polls WHERE case_number = :n ORDER BY id", n=case_number)
    return [_poll(tx, r) for r in rows]


# ---- voting --------------------------------------------------------------------------------------------------


def menu_id(poll_id: int, option: int) -> str:
    return str(poll_id * _MENU_BASE + option)


def from_menu_id(value: str | None) -> tuple[int, int] | None:
    """(poll id, option number) of a tapped msgmenu option, or None when the id is no poll's."""
    if not value or not value.isdigit():
        return None
    poll_id, option = divmod(int(value), _MENU_BASE)
    return (poll_id, option) if poll_id > 0 and 1 <= option <= MAX_OPTIONS else None


_SPOKEN = str.maketrans("一二两三四五六七八九", "1223456789")


def parse_choices(poll: Poll, text: str) -> list[int]:
    """Option numbers from a reply: "2", "第二个", "1 3", "1、3", "13" (when every option is one digit and
    several may be chosen), or an option's own words ("不合理"). PollError says what was wrong."""
    text = unicodedata.normalize("NFKC", text).strip().strip("。.！!")
    n = len(poll.options)
    if text in poll.options:
        return [poll.options.index(text) + 1]
    # "选2", "投第二个", "2号"
    core = re.sub(r"^(?:我)?(?:选|投|选择)?(?:第)?", "", text)
    core = re.sub(r"(?:个|项|号|票)$", "", core).translate(_SPOKEN)
    parts = [p for p in re.split(r"[\s,，、;；/和及]+", core) if p]
    if len(parts) == 1 and parts[0].isdigit() and len(parts[0]) > 1 and poll.multiple and n < 10:
        parts = list(parts[0])
    if not parts or not all(p.isdigit() for p in parts):
        raise PollError("not_choice", count=n)
    numbers = [int(p) for p in parts]
    if any(not 1 <= v <= n for v in numbers):
        raise PollError("out_of_range", count=n)
    if len(set(numbers)) != len(numbers):
        raise PollError("repeated")
    if len(numbers) > poll.max_choices:
        raise PollError("single" if poll.max_choices == 1 else "too_many", max=poll.max_choices)
    return sorted(numbers)


def _voter_key(poll: Poll, openid: str) -> str:
    """A WeChat voter's key, in named polls too: a one-way hash, so that the ballot of someone detached since
    (bot/services/forget.py) keeps it — and still stops them voting twice — without naming them."""
    return "h:" + hashlib.sha256(f"{poll.id}:{openid}".encode()).hexdigest()


async def eligible(tx: Tx, poll: Poll, openid: str) -> bool:
    grid_id = await tx.val("SELECT grid_id FROM residents WHERE openid = :openid", openid=openid)
    return grid_id is not None and grid_id in poll.grid_ids


@dataclass(frozen=True)
class Voted:
    # recorded (first ballot) · changed · unchanged
    outcome: str
    choices: list[int]


async def vote(
    tx: Tx, poll: Poll, openid: str, choices: list[int], *, now: datetime, name: str | None = None, add: bool = False
) -> Voted:
    """The resident's ballot. `add`: a tapped option of a multiple-choice poll joins the choices made so far.
    PollError: closed · not_eligible · no_change (voted already, changes not allowed) · needs_name (a named
    poll, and we do not know what to call them) · too_many."""
    if not poll.is_open or now >= poll.closes_at:
        raise PollError("closed")
    if not await eligible(tx, poll, openid):
        raise PollError("not_eligible")
    if not poll.anonymous:
        name = name or await tx.val("SELECT display_name FROM residents WHERE openid = :openid", openid=openid)
        if not name:
            raise PollError("needs_name")
    key = _voter_key(poll, openid)
    select = "SELECT id, choices FROM poll_ballots WHERE poll_id = :p AND voter_key = :k" + (
        "" if tx.is_sqlite else " FOR UPDATE"
    )
    current = await tx.one(select, p=poll.id, k=key)
    if current is None:
        # DO NOTHING rather than a caught violation: on PostgreSQL a violation would abort the whole
        # transaction, and with it the message's. Nothing inserted: another instance stored this resident's
        # ballot a moment ago, and this vote is judged against it.
        inserted = await tx.val(
            "INSERT INTO poll_ballots (poll_id, voter_key, openid, source, choices, voter_name, created_at, "
            "updated_at) VALUES (:p, :k, :openid, 'wechat', :choices, :name, :now, :now) "
            "ON CONFLICT (poll_id, voter_key) DO NOTHING RETURNING id",
            p=poll.id,
            k=key,
            openid=None if poll.anonymous else openid,
            choices=js(choices),
            name=None if poll.anonymous else name,
            now=tx.ts(now),
        )
        if inserted is not None:
            await _mark_voted(tx, poll, openid, now)
            return Voted("recorded", choices)
        current = await tx.one(select, p=poll.id, k=key)
    before = list(unjs(current["choices"]))
    wanted = sorted(set(before) | set(choices)) if add else choices
    if add and len(wanted) > poll.max_choices:
        raise PollError("too_many", max=poll.max_choices)
    if wanted == before:
        return Voted("unchanged", before)
    if not poll.allow_change and not (add and set(before) <= set(wanted)):
        raise PollError("no_change", choices="、".join(str(c) for c in before))
    await tx.run(
        "UPDATE poll_ballots SET choices = :choices, updated_at = :now WHERE id = :id",
        choices=js(wanted),
        now=tx.ts(now),
        id=current["id"],
    )
    return Voted("changed", wanted)


async def _mark_voted(tx: Tx, poll: Poll, openid: str, now: datetime) -> None:
    await _join_audience(tx, poll, openid, now)
    await tx.run(
        "UPDATE poll_recipients SET voted_at = :now WHERE poll_id = :p AND openid = :openid",
        now=tx.ts(now),
        p=poll.id,
        openid=openid,
    )


async def _join_audience(tx: Tx, poll: Poll, openid: str, now: datetime) -> None:
    """A resident of the poll's grids who comes to it by themselves (投票, a vote) before distribution reached
    them, or after joining the grid later: a recipient, and one more in the audience, so turnout stays a share."""
    added = await tx.val(
        "INSERT INTO poll_recipients (poll_id, openid, channel, created_at, told_at) "
        "VALUES (:p, :openid, 'self', :now, :now) ON CONFLICT (poll_id, openid) DO NOTHING RETURNING id",
        p=poll.id,
        openid=openid,
        now=tx.ts(now),
    )
    if added is not None:
        await tx.run("UPDATE polls SET audience_size = audience_size + 1 WHERE id = :id", id=poll.id)


async def ballot_of(tx: Tx, poll: Poll, openid: str) -> list[int] | None:
    row = await tx.val(
        "SELECT choices FROM poll_ballots WHERE poll_id = :p AND voter_key = :k", p=poll.id, k=_voter_key(poll, openid)
    )
    return None if row is None else list(unjs(row))


async def door_vote(tx: Tx, poll: Poll, household: str, choices: list[int], *, by: str, now: datetime) -> Voted:
    """A vote a grid worker collected at a door (门牌 or name): one per household, changeable until closing."""
    if not poll.is_open or now >= poll.closes_at:
        raise PollError("closed")
    n = len(poll.options)
    if not choices or len(set(choices)) != len(choices) or any(not 1 <= c <= n for c in choices):
        raise PollError("out_of_range", count=n)
    if len(choices) > poll.max_choices:
        raise PollError("single" if poll.max_choices == 1 else "too_many", max=poll.max_choices)
    choices = sorted(choices)
    household = " ".join(unicodedata.normalize("NFKC", household).split())
    if not household or len(household) > HOUSEHOLD_CHARS:
        raise PollError("household", max=HOUSEHOLD_CHARS)
    key = "d:" + household
    current = await tx.val("SELECT choices FROM poll_ballots WHERE poll_id = :p AND voter_key = :k", p=poll.id, k=key)
    if current is not None:
        await tx.run(
            "UPDATE poll_ballots SET choices = :c, entered_by = :by, updated_at = :now "
            "WHERE poll_id = :p AND voter_key = :k",
            c=js(choices),
            by=by,
            now=tx.ts(now),
            p=poll.id,
            k=key,
        )
        return Voted("unchanged" if list(unjs(current)) == choices else "changed", choices)
    # An upsert: the same household entered from two phones at once must not abort the transaction.
    await tx.run(
        "INSERT INTO poll_ballots (poll_id, voter_key, source, choices, voter_name, entered_by, created_at, "
        "updated_at) VALUES (:p, :k, 'door', :c, :name, :by, :now, :now) "
        "ON CONFLICT (poll_id, voter_key) DO UPDATE SET choices = excluded.choices, "
        "entered_by = excluded.entered_by, updated_at = excluded.updated_at",
        p=poll.id,
        k=key,
        c=js(choices),
        name=household,
        by=by,
        now=tx.ts(now),
    )
    return Voted("recorded", choices)


async def tally(tx: Tx, poll: Poll) -> Tally:
    result = Tally(wechat=[0] * len(poll.options), door=[0] * len(poll.options))
    rows = await tx.all(
        "SELECT source, choices, voter_name FROM poll_ballots WHERE poll_id = :p ORDER BY id", p=poll.id
    )
    for r in rows:
        choices = unjs(r["choices"])
        counts = result.door if r["source"] == "door" else result.wechat
        for c in choices:
            if 1 <= c <= len(counts):
                counts[c - 1] += 1
        if r["source"] == "door":
            result.door_voters += 1
        else:
            result.wechat_voters += 1
        if not poll.anonymous or r["source"] == "door":
            result.named.append((r["voter_name"] or "", list(choices), r["source"]))
    return result


def may_see_results(poll: Poll) -> bool:
    """What residents may see: the tally while it runs only when the poll says so."""
    return poll.live_results or not poll.is_open


# ---- what a resident is asked --------------------------------------------------------------------------------


async def open_for(tx: Tx, openid: str, *, now: datetime) -> list[Poll]:
    """Open polls of the resident's grid, oldest deadline first."""
    grid_id = await tx.val("SELECT grid_id FROM residents WHERE openid = :openid", openid=openid)
    if grid_id is None:
        return []
    rows = await tx.all(f"SELECT {_COLUMNS} FROM polls WHERE status = 'open' ORDER BY closes_at, id")
    return [p for p in (_poll(tx, r) for r in rows) if grid_id in p.grid_ids and now < p.closes_at]


async def offer(tx: Tx, poll: Poll, openid: str, now: datetime) -> None:
    """The poll is in front of the resident now: a bare number they send next answers it."""
    await _join_audience(tx, poll, openid, now)
    await tx.run(
        "UPDATE poll_recipients SET offered_at = :now, told_at = COALESCE(told_at, :now) "
        "WHERE poll_id = :p AND openid = :openid",
        now=tx.ts(now),
        p=poll.id,
        openid=openid,
    )


# A vote for a poll that closed this recently is told so, rather than not understood.
RECENTLY_CLOSED = timedelta(days=1)


async def last_offered(tx: Tx, openid: str, *, now: datetime) -> tuple[Poll, datetime] | None:
    """The poll last put in front of the resident (sent or shown) that is open or closed only recently, and
    when it was put to them."""
    row = await tx.one(
        "SELECT poll_id, offered_at FROM poll_recipients r JOIN polls p ON p.id = r.poll_id "
        "WHERE r.openid = :openid AND r.offered_at IS NOT NULL "
        "AND (p.status = 'open' OR p.closed_at > :recent) "
        "ORDER BY r.offered_at DESC, r.poll_id DESC LIMIT 1",
        openid=openid,
        recent=tx.ts(now - RECENTLY_CLOSED),
    )
    if row is None:
        return None
    poll = await get(tx, row["poll_id"])
    return (poll, tx.dt(row["offered_at"])) if poll else None


async def take_waiting(tx: Tx, openid: str, *, now: datetime) -> int:
    """How many open polls wait for this resident untold — and they are told now (so once, not every message)."""
    count = await tx.val(
        "SELECT count(*) FROM poll_recipients r JOIN polls p ON p.id = r.poll_id "
        "WHERE r.openid = :openid AND r.told_at IS NULL AND r.voted_at IS NULL AND p.status = 'open' "
        "AND p.closes_at > :now",
        openid=openid,
        now=tx.ts(now),
    )
    await tx.run(
        "UPDATE poll_recipients SET told_at = :now WHERE openid = :openid AND told_at IS NULL",
        openid=openid,
        now=tx.ts(now),
    )
    await tx.run("UPDATE residents SET polls_waiting = 0 WHERE openid = :openid", openid=openid)
    return int(count or 0)


def menu_payload(texts: Texts, poll: Poll, tz, *, reminder: bool = False) -> dict:
    """The poll as a customer-service message with tappable options (outbox kind "menu")."""
    kind = texts("poll.kind_single") if poll.max_choices == 1 else texts("poll.kind_multiple", max=poll.max_choices)
    head = texts(
        "poll.reminder_head" if reminder else "poll.message_head",
        id=poll.id,
        question=poll.question,
        creator=poll.creator_name,
        closes=poll.closes_at.astimezone(tz).strftime("%m-%d %H:%M"),
        kind=kind,
        anonymity=texts("poll.anonymous" if poll.anonymous else "poll.named"),
    )
    options = [[menu_id(poll.id, i), f"{i}. {o}"] for i, o in enumerate(poll.options, 1)]
    tail = texts("poll.message_tail_multiple" if poll.multiple else "poll.message_tail", id=poll.id)
    return {"head": head, "options": options, "tail": tail}


def results_text(texts: Texts, poll: Poll, t: Tally) -> str:
    total = t.total
    votes = sum(total) or 1
    lines = [texts("poll.results_head", id=poll.id, question=poll.question, state=texts(f"poll.state_{poll.status}"))]
    for i, (option, count) in enumerate(zip(poll.options, total, strict=True), 1):
        share = round(100 * count / votes)
        lines.append(
            texts("poll.results_item", number=i, option=option, count=count, share=share, bar="▇" * (share // 10))
        )
    lines.append(
        texts(
            "poll.results_turnout",
            wechat=t.wechat_voters,
            door=t.door_voters,
            audience=poll.audience_size,
            turnout=round(100 * t.wechat_voters / poll.audience_size) if poll.audience_size else 0,
        )
    )
    return "\n".join(lines)


# ---- closing -------------------------------------------------------------------------------------------------


async def close(
    tx: Tx, poll: Poll, *, by: str, now: datetime, texts: Texts, clock: Clock, creator_openid: str | None
) -> bool:
    """Close once (False when it already was): the results go to the creator and, if the poll says so, to
    every resident who voted."""
    if (
        await tx.run(
            "UPDATE polls SET status = 'closed', closed_at = :now, closed_by = :by WHERE id = :id AND status = 'open'",
            now=tx.ts(now),
            by=by,
            id=poll.id,
        )
        != 1
    ):
        return False
    await tx.run(
        "UPDATE poll_jobs SET status = 'obsolete' WHERE poll_id = :id AND status = 'pending' AND kind <> 'close'",
        id=poll.id,
    )
    closed = await get(tx, poll.id)
    assert closed is not None
    text = results_text(texts, closed, await tally(tx, closed))
    if creator_openid:
        await outbox.enqueue_text(tx, clock, creator_openid, texts("poll.closed_creator", results=text))
    if closed.notify_voters:
        voters = await tx.all(
            "SELECT openid FROM poll_recipients WHERE poll_id = :p AND voted_at IS NOT NULL ORDER BY id", p=poll.id
        )
        for v in voters:
            if v["openid"] != creator_openid:
                await outbox.enqueue_text(tx, clock, v["openid"], texts("poll.closed_voter", results=text))
    return True


async def creator_openid(tx: Tx, poll: Poll) -> str | None:
    if poll.creator_worker_id is None:
        return None
    return await tx.val("SELECT openid FROM grid_workers WHERE id = :id", id=poll.creator_worker_id)


# ---- distribution and reminders (run by bot/services/poll_jobs.py) -------------------------------------------


def _held_rows(tx: Tx) -> str:
    """PostgreSQL: the residents a chunk writes to are share-locked until it commits, so a resident being
    detached at that moment (bot/services/forget.py locks the row first) is either skipped — the chunk waits,
    then no longer finds the row — or detached after the chunk, with what it wrote. SQLite has one writer."""
    return "" if tx.is_sqlite else " FOR SHARE OF r"


async def distribute_some(
    tx: Tx, poll: Poll, *, after: int, now: datetime, texts: Texts, clock: Clock, push: PushSettings, tz, limit: int
) -> tuple[int, int]:
    """Put the poll to the next `limit` residents of its grids (by id, after `after`): a message while their
    window allows, else a note for their next message. How many were looked at (0: all were) and the last id.

    Paged by resident id, not by "has no recipient row yet": that anti-join grew with every chunk, and on
    PostgreSQL, without statistics for the recipients it was writing, cost a second a chunk at 10,000."""
    grid_list, grid_params = in_list(tx, list(poll.grid_ids), "g")
    rows = await tx.all(
        "SELECT r.id, r.openid, r.last_message_at, r.last_event_at, r.cs_sent_since_message, r.cs_sent_since_event "
        f"FROM residents r WHERE r.grid_id IN ({grid_list}) AND r.subscribed = :yes AND r.id > :after "
        f"ORDER BY r.id LIMIT :limit{_held_rows(tx)}",
        yes=True,
        after=after,
        limit=limit,
        **grid_params,
    )
    if not rows:
        return 0, after
    payload = menu_payload(texts, poll, tz)
    sent = waiting = added = 0
    for r in rows:
        state = residents.window_of_row(tx, r, now=now, push=push)
        channel = "message" if state == "open" else "waiting"
        # Someone who already voted or asked for it (投票) has a row: they need no message.
        inserted = await tx.val(
            "INSERT INTO poll_recipients (poll_id, openid, channel, created_at, told_at, offered_at) "
            "VALUES (:p, :openid, :channel, :now, :told, :told) ON CONFLICT (poll_id, openid) DO NOTHING RETURNING id",
            p=poll.id,
            openid=r["openid"],
            channel=channel,
            now=tx.ts(now),
            told=tx.ts(now) if channel == "message" else None,
        )
        if inserted is None:
            continue
        added += 1
        if channel == "message":
            await outbox.enqueue(tx, clock, r["openid"], "menu", payload)
            sent += 1
        else:
            await tx.run(
                "UPDATE residents SET polls_waiting = polls_waiting + 1 WHERE openid = :openid", openid=r["openid"]
            )
            waiting += 1
    await tx.run(
        "UPDATE polls SET audience_size = audience_size + :n, reached = reached + :sent, waiting = waiting + :waiting "
        "WHERE id = :id",
        n=added,
        sent=sent,
        waiting=waiting,
        id=poll.id,
    )
    return len(rows), rows[-1]["id"]


async def remind_some(
    tx: Tx, poll: Poll, *, after: int, now: datetime, texts: Texts, clock: Clock, push: PushSettings, tz, limit: int
) -> tuple[int, int]:
    """Remind the next `limit` recipients (by id, after `after`) who have not voted, while their window allows
    (the others were told on their next message already, or will be). How many were looked at, the last id."""
    rows = await tx.all(
        "SELECT x.id, x.openid, r.last_message_at, r.last_event_at, r.cs_sent_since_message, r.cs_sent_since_event "
        "FROM poll_recipients x JOIN residents r ON r.openid = x.openid "
        "WHERE x.poll_id = :p AND x.id > :after AND x.voted_at IS NULL AND x.reminded_at IS NULL "
        f"ORDER BY x.id LIMIT :limit{_held_rows(tx)}",
        p=poll.id,
        after=after,
        limit=limit,
    )
    payload = menu_payload(texts, poll, tz, reminder=True)
    for r in rows:
        state = residents.window_of_row(tx, r, now=now, push=push)
        if state == "open":
            await outbox.enqueue(tx, clock, r["openid"], "menu", payload)
            # The reminder puts this poll in front of them again: a bare number they send next answers it.
            await tx.run("UPDATE poll_recipients SET offered_at = :now WHERE id = :id", now=tx.ts(now), id=r["id"])
        await tx.run("UPDATE poll_recipients SET reminded_at = :now WHERE id = :id", now=tx.ts(now), id=r["id"])
    return len(rows), (rows[-1]["id"] if rows else after)


def area_label(tree: list[Area], ids: tuple[int, ...] | list[int]) -> str:
    by_id = {a.id: a for a in tree}
    return "、".join(by_id[i].path for i in ids if i in by_id)
