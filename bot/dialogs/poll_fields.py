"""Fields of the poll dialogs: the question, its options, the settings in words, the audience, the closing time
and the reminder (发起投票), and a resident's grid (我的网格). Values are JSON; times are stored in UTC ISO."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.context import Ctx
from bot.dialogs.fields import Answer, Invalid, clean_text, is_number, words
from bot.services import areas, gridworkers
from bot.services.polls import MAX_OPTIONS, MIN_OPTIONS, OPTION_CHARS, QUESTION_CHARS, clean_options
from bot.wechat.inbound import Inbound


@dataclass(frozen=True)
class QuestionField:
    min_chars: int = 4

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {"max": QUESTION_CHARS}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        text = clean_text(msg.text or "") if msg.kind in ("text", "voice") else ""
        if len(text) < self.min_chars or len(text) > QUESTION_CHARS:
            raise Invalid(ctx.texts("poll.dialog.question_invalid", min=self.min_chars, max=QUESTION_CHARS))
        return Answer(text)

    def display(self, ctx: Ctx, value: Any) -> str:
        return str(value)


_OPTION_SPLIT = re.compile(r"\n|[/／|｜；;]")


@dataclass(frozen=True)
class OptionsField:
    """2–10 options in one message: one per line, or separated by / or ；. A single line with 、 or spaces is
    split there too ("同意、不同意、无所谓")."""

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {"min": MIN_OPTIONS, "max": MAX_OPTIONS, "chars": OPTION_CHARS}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        raw = (msg.text or "") if msg.kind in ("text", "voice") else ""
        parts = [p for p in _OPTION_SPLIT.split(raw) if p.strip()]
        if len(parts) == 1:
            parts = [p for p in re.split(r"[、，,\s]+", parts[0]) if p.strip()]
        options = clean_options(parts)
        if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
            raise Invalid(ctx.texts("poll.error.option_count", min=MIN_OPTIONS, max=MAX_OPTIONS, count=len(options)))
        if any(len(o) > OPTION_CHARS for o in options):
            raise Invalid(ctx.texts("poll.error.option_long", max=OPTION_CHARS))
        if len(set(options)) != len(options):
            raise Invalid(ctx.texts("poll.error.option_repeat"))
        return Answer(list(options))

    def display(self, ctx: Ctx, value: Any) -> str:
        return "  ".join(f"{i}. {o}" for i, o in enumerate(value or [], 1))


DEFAULT_SETTINGS = {"max_choices": 1, "anonymous": True, "live_results": True, "allow_change": True, "notify": False}
# What each setting's words ([words] in texts.toml, a city may add its own) set.
_SETTING_WORDS: tuple[tuple[str, str, Any], ...] = (
    ("words.poll_no_change", "allow_change", False),
    ("words.poll_may_change", "allow_change", True),
    ("words.poll_after_close", "live_results", False),
    ("words.poll_live", "live_results", True),
    ("words.poll_no_notify", "notify", False),
    ("words.poll_notify", "notify", True),
    ("words.poll_anonymous", "anonymous", True),
    ("words.poll_named", "anonymous", False),
    ("words.poll_single", "max_choices", 1),
)


def _setting_phrases(ctx: Ctx) -> list[tuple[str, str, Any]]:
    """Every phrase with what it sets, longest first, so 不可改票 is not read as 可改票."""
    phrases = [(w, key, value) for words_key, key, value in _SETTING_WORDS for w in ctx.texts.words(words_key)]
    return sorted(phrases, key=lambda p: len(p[0]), reverse=True)


_MULTIPLE = re.compile(r"多选(?:[，,\s]*最多)?\s*(\d{1,2})?\s*项?|最多选?\s*(\d{1,2})\s*项")


@dataclass(frozen=True)
class SettingsField:
    """How the poll runs, in words: 默认 (单选、匿名、随时公布、可改票、不通知结果), or any of 单选 / 多选3,
    匿名 / 实名, 随时公布 / 结束后公布, 可改票 / 不可改票, 通知结果 / 不通知结果."""

    uses_answers = True

    def prompt_values(self, ctx: Ctx, answers: dict | None = None) -> dict[str, Any]:
        return {}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any, answers: dict | None = None) -> Answer:
        text = unicodedata.normalize("NFKC", words(msg))
        count = len((answers or {}).get("options") or []) or MAX_OPTIONS
        if not text:
            raise Invalid(ctx.texts("poll.dialog.settings_invalid", rest=""))
        value = dict(DEFAULT_SETTINGS)
        if text in ctx.texts.words("words.default"):
            return Answer(value)
        rest = text
        if found := _MULTIPLE.search(rest):
            number = found.group(1) or found.group(2)
            value["max_choices"] = int(number) if number else count
            if not 2 <= value["max_choices"] <= count:
                raise Invalid(ctx.texts("poll.dialog.max_invalid", count=count))
            rest = rest[: found.start()] + " " + rest[found.end() :]
        for phrase, key, setting in _setting_phrases(ctx):
            if phrase in rest:
                value[key] = setting
                rest = rest.replace(phrase, " ")
        leftover = re.sub(r"[\s,，、。;；]+", "", rest)
        if leftover:
            raise Invalid(ctx.texts("poll.dialog.settings_invalid", rest=leftover))
        return Answer(value)

    def display(self, ctx: Ctx, value: Any) -> str:
        value = value or DEFAULT_SETTINGS
        parts = [
            ctx.texts("poll.kind_single")
            if value["max_choices"] == 1
            else ctx.texts("poll.kind_multiple", max=value["max_choices"]),
            ctx.texts("poll.anonymous" if value["anonymous"] else "poll.named"),
            ctx.texts("poll.dialog.live" if value["live_results"] else "poll.dialog.after_close"),
            ctx.texts("poll.dialog.may_change" if value["allow_change"] else "poll.dialog.no_change"),
            ctx.texts("poll.dialog.notify" if value["notify"] else "poll.dialog.no_notify"),
        ]
        return "、".join(parts)


@dataclass(frozen=True)
class AudienceField:
    """Which grids: 我的网格 (every area the worker looks after), or names of grids / communities within them."""

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    async def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        worker = await gridworkers.by_openid(ctx.tx, ctx.openid)
        text = words(msg)
        if worker is None or not worker.area_ids:
            raise Invalid(ctx.texts("poll.dialog.no_scope"))
        tree = await areas.all_areas(ctx.tx)
        by_id = {a.id: a for a in tree}
        scope = list(worker.area_ids)
        if not text:
            raise Invalid(ctx.texts("poll.dialog.audience_invalid", scope=_labels(by_id, scope)))
        if text in ctx.texts.words("words.my_grid") or text in ctx.texts.words("words.default"):
            chosen = scope
        else:
            chosen = []
            for part in [p for p in re.split(r"[\s,，、;；]+", text) if p]:
                found = [
                    a
                    for a in areas.matching(tree, part, levels=("grid", "community"))
                    if areas.covers(tree, scope, a.id)
                ]
                if len(found) != 1:
                    raise Invalid(ctx.texts("poll.dialog.audience_invalid", scope=_labels(by_id, scope)))
                chosen.append(found[0].id)
        return Answer({"ids": sorted(set(chosen)), "label": _labels(by_id, sorted(set(chosen)))})

    def display(self, ctx: Ctx, value: Any) -> str:
        return (value or {}).get("label", "")


def _labels(by_id: dict, ids: list[int]) -> str:
    return "、".join(by_id[i].path for i in ids if i in by_id)


_DURATION = re.compile(r"^(\d{1,3}(?:\.\d)?)\s*(分钟|小时|个小时|钟头|天|日|周|星期)(?:后|以后|之后)?$")
_UNIT_MINUTES = {"分钟": 1, "小时": 60, "个小时": 60, "钟头": 60, "天": 1440, "日": 1440, "周": 10080, "星期": 10080}
_CLOCK = r"(\d{1,2})(?:[:：点时](\d{1,2})?分?)?"
_RELATIVE_DAY = re.compile(rf"^(今天|今晚|明天|后天)(?:晚上|下午|上午|早上)?{_CLOCK}$")
_DATE = re.compile(rf"^(\d{{1,2}})[-/月](\d{{1,2}})日?\s*(?:晚上|下午|上午|早上)?{_CLOCK}$")


def parse_when(text: str, now: datetime, tz) -> datetime | None:
    """ "3小时", "2天", "半天", "今晚8点", "明天18:00", "12月3日18点", "12-03 18:00" → a moment (None: not a time)."""
    text = unicodedata.normalize("NFKC", text).replace(" ", "")
    text = text.removesuffix("截止").removesuffix("结束")
    if text == "半天":
        return now + timedelta(hours=12)
    if m := _DURATION.match(text):
        return now + timedelta(minutes=float(m.group(1)) * _UNIT_MINUTES[m.group(2)])
    local = now.astimezone(tz)
    afternoon = any(w in text for w in ("晚", "下午"))
    if m := _RELATIVE_DAY.match(text):
        days = {"今天": 0, "今晚": 0, "明天": 1, "后天": 2}[m.group(1)]
        return _at(local + timedelta(days=days), int(m.group(2)), int(m.group(3) or 0), afternoon)
    if m := _DATE.match(text):
        month, day = int(m.group(1)), int(m.group(2))
        try:
            moment = _at(local.replace(month=month, day=day), int(m.group(3)), int(m.group(4) or 0), afternoon)
        except ValueError:
            return None
        if moment is not None and moment < now:  # "1月5日" typed in December is next year's
            try:
                moment = moment.replace(year=moment.year + 1)
            except ValueError:  # 2月29日, and next year has none
                return None
        return moment
    return None


def _at(day: datetime, hour: int, minute: int, afternoon: bool) -> datetime | None:
    if afternoon and hour < 12:
        hour += 12
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)


@dataclass(frozen=True)
class ClosingField:
    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        p = ctx.settings.polls
        return {"min_hours": p.min_hours, "max_days": p.max_days}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        now, p = ctx.clock.now(), ctx.settings.polls
        moment = parse_when(words(msg), now, ctx.settings.tz)
        if moment is None:
            raise Invalid(ctx.texts("poll.dialog.closing_invalid"))
        if not timedelta(hours=p.min_hours) <= moment - now <= timedelta(days=p.max_days):
            raise Invalid(ctx.texts("poll.error.closing", min_hours=p.min_hours, max_days=p.max_days))
        return Answer(moment.isoformat())

    def display(self, ctx: Ctx, value: Any) -> str:
        return datetime.fromisoformat(value).astimezone(ctx.settings.tz).strftime("%m-%d %H:%M") if value else ""


_BEFORE = re.compile(r"^(?:提前|截止前|结束前)?(\d{1,3})\s*(分钟|小时|个小时|天)(?:前)?(?:提醒)?$")


@dataclass(frozen=True)
class ReminderField:
    """不提醒, or how long before closing to remind those who have not voted ("提前2小时")."""

    uses_answers = True

    def prompt_values(self, ctx: Ctx, answers: dict | None = None) -> dict[str, Any]:
        return {}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any, answers: dict | None = None) -> Answer:
        text = unicodedata.normalize("NFKC", words(msg)).replace(" ", "")
        if text in ctx.texts.words("words.no_reminder") or text in ctx.texts.words("words.skip"):
            return Answer(None)
        m = _BEFORE.match(text)
        if m is None and is_number(text):
            m = _BEFORE.match(text + "小时")
        if m is None:
            raise Invalid(ctx.texts("poll.dialog.reminder_invalid"))
        minutes = int(m.group(1)) * _UNIT_MINUTES[m.group(2)]
        closes = (answers or {}).get("closing")
        if closes and not 0 < minutes < (datetime.fromisoformat(closes) - ctx.clock.now()).total_seconds() / 60:
            raise Invalid(ctx.texts("poll.error.reminder"))
        return Answer(minutes)

    def display(self, ctx: Ctx, value: Any) -> str:
        if not value:
            return ctx.texts("poll.dialog.no_reminder")
        if value % 1440 == 0:
            return ctx.texts("poll.dialog.remind_days", days=value // 1440)
        if value % 60 == 0:
            return ctx.texts("poll.dialog.remind_hours", hours=value // 60)
        return ctx.texts("poll.dialog.remind_minutes", minutes=value)


@dataclass(frozen=True)
class GridField:
    """A resident's grid by name: one match is the answer; several (or a community's name) are listed and a
    number picks one — the step stays open until then."""

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    async def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        text = words(msg)
        candidates = (current or {}).get("candidates") or []
        if candidates and is_number(text) and 1 <= int(text) <= len(candidates):
            grid_id, path = candidates[int(text) - 1]
            return Answer({"id": grid_id, "path": path})
        if not text:
            raise Invalid(ctx.texts("grid.invalid"))
        tree = await areas.all_areas(ctx.tx)
        found = areas.matching(tree, text, levels=("grid", "community", "street"))
        grids = [a for a in tree if a.id in set(areas.grids_under(tree, [f.id for f in found]))]
        if len(grids) == 1:
            return Answer({"id": grids[0].id, "path": grids[0].path})
        if not grids:
            raise Invalid(ctx.texts("grid.not_found", text=text))
        listed = grids[:MAX_OPTIONS]
        value = {"candidates": [[g.id, g.path] for g in listed]}
        lines = "\n".join(f"{i}. {g.path}" for i, g in enumerate(listed, 1))
        more = ctx.texts("grid.more", count=len(grids)) if len(grids) > len(listed) else ""
        return Answer(value, done=False, ack=ctx.texts("grid.choose", choices=lines, more=more))

    def display(self, ctx: Ctx, value: Any) -> str:
        return (value or {}).get("path", "")


@dataclass(frozen=True)
class NameField:
    """A named poll's voter: a name or a house number, 2–40 characters."""

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        text = clean_text(msg.text or "") if msg.kind in ("text", "voice") else ""
        if not 2 <= len(text) <= 40:
            raise Invalid(ctx.texts("poll.name_invalid"))
        return Answer(text)

    def display(self, ctx: Ctx, value: Any) -> str:
        return str(value or "")
