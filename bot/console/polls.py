"""Opinion polls (意见征集) in the console: the list, a new poll, a poll's results with its forms (close early,
a door-to-door vote, the case it is evidence for) and its CSV export.

Who sees and runs which poll is decided here, on the server, for every page and form (roles.py): the roles of
SEE_ALL_POLLS see every poll; a grid worker's console account (linked by gridworkers.by_operator) sees the
polls their worker created and those put to grids under the areas the worker looks after, and may put a poll
only to those areas. Staff always see the tally, also while residents may not (a poll without live results).
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from aiohttp import web

from bot.api.checks import row_id, sane, usable
from bot.console import keys, roles
from bot.console.auth import audit, not_found, refused, see_other, session_of
from bot.console.pages import render
from bot.console.reports import disposition, percent, safe
from bot.console.security import HEADERS
from bot.services import areas, gridworkers, polls, privacy
from bot.services.operators import Operator
from storage.fast import Tx

DONE = frozenset({"created", "closed", "door", "case"})
_MULTI = "multiple"
# The longest reminder a form may ask for, in hours (a poll runs polls.max_days at most anyway).
MAX_REMIND_HOURS = 24 * 366


class FormError(Exception):
    """A form the console could not read; the message says why, for the operator."""


@dataclass(frozen=True)
class Scope:
    """What one operator may do with polls: their grid worker (if their account is linked to one), the grids
    under that worker's areas, and the tree those were read from."""

    operator: Operator
    worker: gridworkers.Worker | None
    grids: frozenset[int]
    tree: list[areas.Area]

    def sees(self, poll: polls.Poll) -> bool:
        if self.operator.role in roles.SEE_ALL_POLLS:
            return True
        if self.operator.role not in roles.SEE_POLLS or self.worker is None:
            return False
        return poll.creator_worker_id == self.worker.id or bool(self.grids & set(poll.grid_ids))

    def runs(self, poll: polls.Poll) -> bool:
        """Close early, enter door-to-door votes, link a case."""
        if not self.sees(poll):
            return False
        mine = self.worker is not None and poll.creator_worker_id == self.worker.id
        return self.operator.role in roles.RUN_POLLS or mine

    @property
    def creates(self) -> bool:
        if self.operator.role not in roles.CREATE_POLLS:
            return False
        return self.operator.role != "gridworker" or self.worker is not None

    def may_target(self, area: areas.Area) -> bool:
        if area.level not in ("grid", "community"):
            return False
        if self.operator.role == "gridworker":
            return self.worker is not None and areas.covers(self.tree, list(self.worker.area_ids), area.id)
        return True

    @property
    def targets(self) -> list[areas.Area]:
        return [a for a in self.tree if self.may_target(a)]


async def _scope(tx: Tx, operator: Operator) -> Scope:
    tree = await areas.all_areas(tx)
    worker = await gridworkers.by_operator(tx, operator.name)
    if worker is not None and not worker.active:
        worker = None
    grids = frozenset(areas.grids_under(tree, list(worker.area_ids))) if worker else frozenset()
    return Scope(operator, worker, grids, tree)


def _operator(request: web.Request) -> Operator:
    return session_of(request).operator


async def _voted(tx: Tx, poll_ids: list[int]) -> dict[int, int]:
    """Residents who voted over WeChat, per poll (poll_recipients.voted_at: also for anonymous polls)."""
    if not poll_ids:
        return {}
    rows = await tx.all(
        "SELECT poll_id, count(*) AS n FROM poll_recipients WHERE voted_at IS NOT NULL "
        "AND poll_id >= :low AND poll_id <= :high GROUP BY poll_id",
        low=min(poll_ids),
        high=max(poll_ids),
    )
    return {r["poll_id"]: int(r["n"]) for r in rows}


# ---- the list ---------------------------------------------------------------------------------------------


async def list_page(request: web.Request) -> web.Response:
    operator = _operator(request)
    if operator.role not in roles.SEE_POLLS:
        return await refused(request, "polls")
    async with request.app[keys.STORE].read() as tx:
        scope = await _scope(tx, operator)
        if operator.role in roles.SEE_ALL_POLLS:
            found = await polls.listing(tx)
        else:  # their own and their grids', found before the newest 200 are taken
            worker_id = scope.worker.id if scope.worker else None
            found = await polls.listing(tx, worker_id=worker_id, grid_ids=sorted(scope.grids))
            found = [p for p in found if scope.sees(p)]
        voted = await _voted(tx, [p.id for p in found])
    context = {
        "polls": found,
        "voted": voted,
        "audience": lambda poll: polls.area_label(scope.tree, poll.audience),
        "creates": scope.creates,
        "unlinked": operator.role == "gridworker" and scope.worker is None,
    }
    return render(request, "polls.html", context)


# ---- a new poll -------------------------------------------------------------------------------------------


def _default_form(request: web.Request) -> dict:
    settings, clock = request.app[keys.SETTINGS], request.app[keys.CLOCK]
    closes = (clock.now() + timedelta(days=3)).astimezone(settings.tz).replace(minute=0, second=0, microsecond=0)
    return {
        "question": "",
        "options": "",
        "kind": "single",
        "max": "",
        "voters": "anonymous",
        "results": "live",
        "allow_change": "1",
        "notify_voters": "",
        "audience": [],
        "closes": closes.strftime("%Y-%m-%dT%H:%M"),
        "remind_hours": "",
    }


def _fields(form) -> dict:
    """What was typed and ticked, as text, to fill the form in again."""
    out = {k: str(form.get(k, "")) for k in _default_keys() if k != "audience"}
    out["audience"] = [str(v) for v in form.getall("audience", []) if isinstance(v, str)]
    return out


def _default_keys() -> tuple[str, ...]:
    return (
        "question",
        "options",
        "kind",
        "max",
        "voters",
        "results",
        "allow_change",
        "notify_voters",
        "audience",
        "closes",
        "remind_hours",
    )


def _closing(text: str, tz, texts) -> datetime:
    """A datetime-local value (2026-11-28T18:00) in the office's time zone."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FormError(texts("console.polls.bad_closes")) from None
    if not sane(moment):
        raise FormError(texts("console.polls.bad_closes"))
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _spec(fields: dict, tz, texts) -> polls.Spec:
    if not all(usable(v) for v in fields.values() if isinstance(v, str)):
        raise FormError(texts("console.polls.bad_input"))
    options = polls.clean_options(fields["options"].splitlines())
    if fields["kind"] == _MULTI:
        raw = fields["max"].strip()
        if not raw:
            max_choices = len(options)
        elif raw.isascii() and raw.isdigit() and len(raw) <= 3:
            max_choices = int(raw)
        else:
            raise FormError(texts("console.polls.bad_max"))
    else:
        max_choices = 1
    remind = None
    raw_remind = fields["remind_hours"].strip()
    if raw_remind:
        try:
            hours = float(raw_remind)
        except ValueError:
            raise FormError(texts("console.polls.bad_remind")) from None
        if not 0 < hours <= MAX_REMIND_HOURS:
            raise FormError(texts("console.polls.bad_remind"))
        remind = max(1, round(hours * 60))
    audience = tuple(dict.fromkeys(int(v) for v in fields["audience"] if row_id(v)))
    return polls.Spec(
        question=" ".join(fields["question"].split()),
        options=options,
        closes_at=_closing(fields["closes"], tz, texts),
        audience=audience,
        max_choices=max_choices,
        anonymous=fields["voters"] != "named",
        live_results=fields["results"] != "after",
        allow_change=bool(fields["allow_change"]),
        notify_voters=bool(fields["notify_voters"]),
        remind_before_minutes=remind,
    )


async def _new_page(request: web.Request, scope: Scope, fields: dict, *, error: str | None = None, status=200):
    settings = request.app[keys.SETTINGS]
    context = {
        "form": fields,
        "chosen": set(fields["audience"]),
        "targets": scope.targets,
        "level_name": lambda level: request.app[keys.TEXTS](f"console.grids.level_{level}"),
        "error": error,
        "tz": settings.server.timezone,
        "limits": {
            "min_options": polls.MIN_OPTIONS,
            "max_options": polls.MAX_OPTIONS,
            "option_chars": polls.OPTION_CHARS,
            "question_chars": polls.QUESTION_CHARS,
            "min_hours": settings.polls.min_hours,
            "max_days": settings.polls.max_days,
        },
    }
    return render(request, "poll_new.html", context, status=status)


async def new_page(request: web.Request) -> web.Response:
    async with request.app[keys.STORE].read() as tx:
        scope = await _scope(tx, _operator(request))
    if not scope.creates:
        return await refused(request, "poll_new")
    return await _new_page(request, scope, _default_form(request))


async def create(request: web.Request) -> web.Response:
    app = request.app
    texts, settings, clock = app[keys.TEXTS], app[keys.SETTINGS], app[keys.CLOCK]
    operator = _operator(request)
    fields = _fields(await request.post())
    async with app[keys.STORE].read() as tx:
        scope = await _scope(tx, operator)
    if not scope.creates:
        return await refused(request, "poll_create")
    try:
        spec = _spec(fields, settings.tz, texts)
    except FormError as exc:
        await audit(request, "poll_create", outcome="failed", detail=str(exc))
        return await _new_page(request, scope, fields, error=str(exc), status=400)
    by_id = {a.id: a for a in scope.tree}
    outside = [i for i in spec.audience if i not in by_id or not scope.may_target(by_id[i])]
    if outside:
        known = [by_id[i].path for i in outside if i in by_id]
        detail = "、".join(known) or ",".join(str(i) for i in outside)
        await audit(request, "poll_create", outcome="refused", detail=f"audience {detail}")
        message = texts("console.polls.out_of_scope", areas=detail)
        return await _new_page(request, scope, fields, error=message, status=403)
    worker = scope.worker
    try:
        async with app[keys.STORE].write() as tx:
            poll_id = await polls.create(
                tx,
                spec,
                creator_name=worker.name if worker else operator.name,
                worker_id=worker.id if worker else None,
                via="console",
                now=clock.now(),
                settings=settings.polls,
            )
    except polls.PollError as exc:
        message = exc.text(texts)
        await audit(request, "poll_create", outcome="failed", detail=message)
        return await _new_page(request, scope, fields, error=message, status=400)
    await audit(request, "poll_create", target=str(poll_id), detail=spec.question[:80])
    return see_other(str(app.router["poll"].url_for(id=str(poll_id)).with_query(done="created")))


# ---- one poll: its results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionBar:
    number: int
    label: str
    wechat: int
    door: int
    total: int
    share: str  # of every vote cast, as shown
    wechat_width: float  # 0–100: the longest bar of the chart is 100
    door_width: float


def option_bars(poll: polls.Poll, tally: polls.Tally) -> list[OptionBar]:
    totals = tally.total
    peak, whole = max(totals, default=0), sum(totals)
    bars = []
    for i, (label, wechat, door) in enumerate(zip(poll.options, tally.wechat, tally.door, strict=True), 1):
        scale = 100.0 / peak if peak else 0.0
        bars.append(
            OptionBar(
                i,
                label,
                wechat,
                door,
                wechat + door,
                percent(wechat + door, whole),
                round(wechat * scale, 2),
                round(door * scale, 2),
            )
        )
    return bars


def _shown(operator: Operator, texts, tally: polls.Tally) -> polls.Tally:
    """The tally as this operator may read it: the names voters and households gave hold no phone number for
    a role that may not see them (a resident answering "张三 138…" for their name)."""
    if roles.sees_phone(operator):
        return tally
    mark = texts("privacy.phone_hidden")
    named = [(privacy.hide_phones(name, mark=mark) or "", choices, source) for name, choices, source in tally.named]
    return replace(tally, named=named)


def _choice_labels(poll: polls.Poll, choices: list[int]) -> str:
    return "、".join(f"{c}. {poll.options[c - 1]}" for c in choices if 1 <= c <= len(poll.options))


async def _visible(request: web.Request, action: str) -> tuple[Scope, polls.Poll] | web.Response:
    """The poll of the URL and the operator's scope, if they may see it; else the page that says no."""
    raw = request.match_info["id"]
    operator = _operator(request)
    if operator.role not in roles.SEE_POLLS:
        return await refused(request, action, raw)
    if not row_id(raw):
        return not_found(request)
    async with request.app[keys.STORE].read() as tx:
        poll = await polls.get(tx, int(raw))
        scope = await _scope(tx, operator)
    if poll is None:
        return not_found(request)
    if not scope.sees(poll):
        return await refused(request, action, raw)
    return scope, poll


async def _poll_page(request: web.Request, scope: Scope, poll: polls.Poll, *, error=None, form=None, status=200):
    async with request.app[keys.STORE].read() as tx:
        poll = await polls.get(tx, poll.id) or poll  # as it is now (a form may just have changed it)
        tally = _shown(scope.operator, request.app[keys.TEXTS], await polls.tally(tx, poll))
        voted = (await _voted(tx, [poll.id])).get(poll.id, 0)
    done = request.query.get("done")
    context = {
        "poll": poll,
        "tally": tally,
        "bars": option_bars(poll, tally),
        "votes": sum(tally.total),
        "voted": voted,
        "audience": polls.area_label(scope.tree, poll.audience),
        "named": [(name, _choice_labels(poll, choices), source) for name, choices, source in tally.named],
        "runs": scope.runs(poll),
        "done": done if done in DONE else None,
        "error": error,
        "form": form or {},
    }
    return render(request, "poll.html", context, status=status)


async def poll_page(request: web.Request) -> web.Response:
    found = await _visible(request, "poll")
    if isinstance(found, web.Response):
        return found
    return await _poll_page(request, *found)


async def _runnable(request: web.Request, action: str) -> tuple[Scope, polls.Poll] | web.Response:
    found = await _visible(request, action)
    if isinstance(found, web.Response):
        return found
    scope, poll = found
    if not scope.runs(poll):
        return await refused(request, action, str(poll.id))
    return found


def _done(request: web.Request, poll: polls.Poll, what: str) -> web.Response:
    return see_other(str(request.app.router["poll"].url_for(id=str(poll.id)).with_query(done=what)))


async def close(request: web.Request) -> web.Response:
    found = await _runnable(request, "poll_close")
    if isinstance(found, web.Response):
        return found
    scope, poll = found
    app = request.app
    texts, clock = app[keys.TEXTS], app[keys.CLOCK]
    async with app[keys.STORE].write() as tx:
        closed = await polls.close(
            tx,
            poll,
            by=scope.operator.name,
            now=clock.now(),
            texts=texts,
            clock=clock,
            creator_openid=await polls.creator_openid(tx, poll),
        )
    if not closed:
        await audit(request, "poll_close", outcome="failed", target=str(poll.id), detail="already closed")
        return await _poll_page(request, scope, poll, error=texts("console.polls.already_closed"), status=409)
    await audit(request, "poll_close", target=str(poll.id))
    return _done(request, poll, "closed")


def _door_choices(poll: polls.Poll, values: list[str], texts) -> list[int]:
    numbers = sorted({int(v) for v in values if v.isascii() and v.isdigit() and len(v) <= 2})
    if not numbers or any(not 1 <= n <= len(poll.options) for n in numbers):
        raise FormError(texts("console.polls.no_choice"))
    if len(numbers) > poll.max_choices:
        error = polls.PollError("single" if poll.max_choices == 1 else "too_many", max=poll.max_choices)
        raise FormError(error.text(texts))
    return numbers


async def door_vote(request: web.Request) -> web.Response:
    found = await _runnable(request, "poll_door_vote")
    if isinstance(found, web.Response):
        return found
    scope, poll = found
    app = request.app
    texts = app[keys.TEXTS]
    form = await request.post()
    household = str(form.get("household", ""))
    choices_raw = [str(v) for v in form.getall("choice", []) if isinstance(v, str)]
    refill = {"household": household, "choice": choices_raw}
    try:
        if not usable(household):
            raise FormError(texts("console.polls.bad_input"))
        choices = _door_choices(poll, choices_raw, texts)
        async with app[keys.STORE].write() as tx:
            current = await polls.get(tx, poll.id)
            assert current is not None
            voted = await polls.door_vote(
                tx, current, household, choices, by=scope.operator.name, now=app[keys.CLOCK].now()
            )
    except FormError as exc:
        message = str(exc)
    except polls.PollError as exc:
        message = exc.text(texts)
    else:
        detail = f"{' '.join(household.split())}: {','.join(map(str, choices))} ({voted.outcome})"
        await audit(request, "poll_door_vote", target=str(poll.id), detail=detail)
        return _done(request, poll, "door")
    await audit(request, "poll_door_vote", outcome="failed", target=str(poll.id), detail=message)
    return await _poll_page(request, scope, poll, error=message, form=refill, status=400)


async def link_case(request: web.Request) -> web.Response:
    found = await _runnable(request, "poll_link_case")
    if isinstance(found, web.Response):
        return found
    scope, poll = found
    app = request.app
    texts = app[keys.TEXTS]
    number = str((await request.post()).get("case_number", "")).strip().upper()
    if number and (not usable(number) or len(number) > 32):
        return await _poll_page(
            request, scope, poll, error=texts("console.polls.no_case", number=number[:32]), status=400
        )
    async with app[keys.STORE].write() as tx:
        exists = not number or await tx.val("SELECT number FROM cases WHERE number = :n", n=number) is not None
        if exists:
            await polls.link_case(tx, poll, number or None)
    if not exists:
        await audit(request, "poll_link_case", outcome="failed", target=str(poll.id), detail=number)
        form = {"case_number": number}
        return await _poll_page(
            request, scope, poll, error=texts("console.polls.no_case", number=number), form=form, status=400
        )
    await audit(request, "poll_link_case", target=str(poll.id), detail=number or "-")
    return _done(request, poll, "case")


# ---- the CSV export ---------------------------------------------------------------------------------------


def export_rows(texts, poll: polls.Poll, tally: polls.Tally) -> list[list[str]]:
    """The option table, then every ballot that has a name: a named poll's voters, door-to-door households."""
    head = [texts(f"console.polls.csv_{k}") for k in ("option", "wechat", "door", "total", "share")]
    rows = [[texts("console.polls.csv_question"), poll.question], head]
    for bar in option_bars(poll, tally):
        rows.append([f"{bar.number}. {bar.label}", str(bar.wechat), str(bar.door), str(bar.total), f"{bar.share}%"])
    if tally.named:
        rows.append([])
        rows.append([texts(f"console.polls.csv_{k}") for k in ("voter", "choices", "source")])
        for name, choices, source in tally.named:
            rows.append([name, _choice_labels(poll, choices), texts(f"console.polls.source_{source}")])
    return [[safe(cell) for cell in row] for row in rows]


async def export_csv(request: web.Request) -> web.StreamResponse:
    found = await _visible(request, "poll_export")
    if isinstance(found, web.Response):
        return found
    scope, poll = found
    texts = request.app[keys.TEXTS]
    async with request.app[keys.STORE].read() as tx:
        tally = _shown(scope.operator, texts, await polls.tally(tx, poll))
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(export_rows(texts, poll, tally))
    await audit(request, "poll_export", target=str(poll.id), detail=f"ballots={tally.voters}")
    name = texts("console.polls.csv_file", id=poll.id)
    headers = {
        **HEADERS,
        "Cache-Control": "no-store",
        "Content-Disposition": disposition(f"{name}.csv", f"poll-{poll.id}.csv"),
        "Content-Type": "text/csv; charset=utf-8",
    }
    return web.Response(body=codecs.BOM_UTF8 + out.getvalue().encode("utf-8"), headers=headers)
