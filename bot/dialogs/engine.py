"""One engine runs every dialog. A dialog is data (steps with a prompt, a field and a label); the engine asks,
validates, saves state after every step, offers the universal commands and ends with an editable summary.

Universal commands at every step: 取消 (cancel), 返回 (previous step), 帮助 (help), 人工 (ask for a person; the
draft is kept and flagged). At the summary: 提交, 修改 N. A draft idle too long is offered back: 1 continue,
2 start over. Commands may be typed or spoken (a voice message's recognised text), with punctuation.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from bot import metrics
from bot.context import Ctx
from bot.dialogs.fields import Field, Invalid, as_number, is_number, words
from bot.services import drafts
from bot.services.drafts import Draft
from bot.wechat.inbound import Inbound

# Where a draft remembers which steps were answered before they were asked.
PREFILLED = "_prefilled"
# A story told before its question must be at least this long to be taken as one (not a stray word).
EARLY_STORY_CHARS = 10


@dataclass(frozen=True)
class Step:
    key: str
    prompt: str  # text keys
    label: str
    field: Field


@dataclass(frozen=True)
class Dialog:
    name: str
    title: str  # text key
    intro: str | None
    steps: tuple[Step, ...]
    # Receives the finished draft (answers, and whether a person was asked for); returns what to tell the
    # resident. May raise Invalid.
    submit: Callable[[Ctx, Draft], Awaitable[str]]
    # Photos sent at any other step are kept with this step's value (its field must have add_photo).
    attachments_step: str | None = None
    # The free-text step (its field must have add_more): a story told early (with the start command, or
    # instead of the first answer) is kept for it, and more told after it is added to it.
    story_step: str | None = None
    # Other steps an unsolicited message can answer at the start, by message kind (a location → the place).
    seeds: tuple[tuple[str, str], ...] = ()
    # Words of the dialog's own at the summary (besides 提交 and 修改): returns the reply, or None when the
    # word is not one of them. It may end the dialog (drafts.discard).
    at_summary: Callable[[Ctx, Draft, str], Awaitable[str | None]] | None = None
    # False: submit right after the last answer, without a summary (a rating needs no confirmation).
    confirm: bool = True
    # What 取消 answers (the complaint's own invites them to file again).
    cancelled: str = "dialog.cancelled"

    def step_index(self, key: str) -> int:
        return next(i for i, s in enumerate(self.steps) if s.key == key)


class Engine:
    def __init__(self, dialogs: list[Dialog]):
        self.dialogs = {d.name: d for d in dialogs}

    async def start(self, ctx: Ctx, name: str, seed: Inbound | None = None, initial: dict | None = None) -> str:
        """Start a dialog — or, if a draft with answers is waiting, offer it back rather than throw it away.
        `seed`: what the resident sent to start it ("投诉 物业乱收费", a photo, a location), kept as an answer."""
        state = await drafts.get(ctx.tx, ctx.openid)
        if state is not None and state.data and state.dialog in self.dialogs:
            reply = self._offer_resume(ctx, state)
        else:
            dialog = self.dialogs[name]
            if state is not None:  # an empty draft, or one of a dialog removed by an upgrade
                _ended(state.dialog, "replaced")
            _started(name)
            needs_human = state is not None and state.needs_human  # a person was asked for: keep that
            state = drafts.begin(ctx.openid, name, ctx.clock.now())
            state.needs_human = needs_human
            state.data = dict(initial or {})
            parts = [ctx.texts(dialog.intro)] if dialog.intro else []
            if seed is not None and (kept := self._seed(ctx, dialog, state, seed)):
                parts.append(kept)
            state.step = self._next_step(dialog, state, 0)
            reply = "\n\n".join([*parts, self._prompt(ctx, dialog, state)])
        await drafts.save(ctx.tx, state)
        return reply

    def _seed(self, ctx: Ctx, dialog: Dialog, state: Draft, msg: Inbound) -> str | None:
        if msg.kind == "image":
            return self._attach_elsewhere(ctx, dialog, state, msg, ack_only=True)
        for kind, key in dialog.seeds:
            if msg.kind == kind:
                step = dialog.steps[dialog.step_index(key)]
                try:
                    state.data = {**state.data, key: step.field.parse(ctx, msg, None).value}
                except Invalid:
                    return None
                state.data = {**state.data, PREFILLED: [*state.data.get(PREFILLED, []), key]}
                return ctx.texts("dialog.noted")
        return self._keep_story(ctx, dialog, state, msg, min_chars=0)

    def _keep_story(
        self, ctx: Ctx, dialog: Dialog, state: Draft, msg: Inbound, *, min_chars: int = EARLY_STORY_CHARS
    ) -> str | None:
        """A story told before its question: keep it for the story step, which is then skipped."""
        key = dialog.story_step
        if key is None or (state.data.get(key) or {}).get("text"):
            return None
        field = dialog.steps[dialog.step_index(key)].field
        value = field.add_more(ctx, state.data.get(key) or field.empty(), msg)
        if value is None or len(value["text"]) < min_chars:
            return None
        state.data = {**state.data, key: value, PREFILLED: [*state.data.get(PREFILLED, []), key]}
        return ctx.texts("dialog.noted")

    async def handle(self, ctx: Ctx, state: Draft, msg: Inbound) -> str:
        """Answer one message within the resident's draft, and save the draft (or its removal)."""
        dialog = self.dialogs.get(state.dialog)
        if dialog is None:  # a dialog removed by an upgrade: drop its draft rather than trap the resident
            await drafts.discard(ctx.tx, state)
            _ended(state.dialog, "removed")
            return ctx.texts("dialog.cancelled")
        reply = await self._dispatch(ctx, dialog, state, msg)
        if not state.discarded:
            state.updated_at = ctx.clock.now()
            await drafts.save(ctx.tx, state)
        return reply

    def reminder(self, ctx: Ctx, state: Draft) -> str:
        """Where the resident is, for when they asked something else in the middle of a dialog."""
        dialog = self.dialogs.get(state.dialog)
        if dialog is None:
            return ""
        if state.mode == "resume":
            return self._resume_offer_text(ctx, dialog, state)
        return ctx.texts("dialog.reminder", dialog=ctx.texts(dialog.title), current=self._current(ctx, dialog, state))

    async def _dispatch(self, ctx: Ctx, dialog: Dialog, state: Draft, msg: Inbound) -> str:
        word = words(msg)
        if word in ctx.texts.words("words.cancel"):
            await drafts.discard(ctx.tx, state)
            _ended(dialog.name, "cancelled")
            return ctx.texts(dialog.cancelled)
        if word in ctx.texts.words("words.human"):
            state.needs_human = True
            human = ctx.texts("dialog.human", hotline=ctx.settings.complaint.hotline)
            return "\n\n".join([human, self._current(ctx, dialog, state)])
        if self._is_idle(ctx, state) or state.mode == "resume":
            # A photo that arrives now is kept all the same; words wait for the resident's choice.
            kept = self._attach_elsewhere(ctx, dialog, state, msg, ack_only=True, anywhere=True)
            if self._is_idle(ctx, state):
                reply = self._offer_resume(ctx, state)
            else:
                reply = (
                    await self._resume(ctx, dialog, state, word)
                    if not kept
                    else self._resume_offer_text(ctx, dialog, state)
                )
            return "\n\n".join([kept, reply]) if kept else reply
        if word in ctx.texts.words("words.help"):
            return ctx.texts("dialog.help_step", prompt=self._current(ctx, dialog, state))
        if word in ctx.texts.words("words.back"):
            return self._back(ctx, dialog, state)
        if word in ctx.texts.words("words.complaint"):  # starting again mid-dialog: say where they are
            return self.reminder(ctx, state)
        if attached := self._attach_elsewhere(ctx, dialog, state, msg):
            return attached
        if state.mode == "confirm":
            return await self._confirm(ctx, dialog, state, word, msg)
        return await self._answer(ctx, dialog, state, msg)

    def _is_idle(self, ctx: Ctx, state: Draft) -> bool:
        """Idle long enough to ask before carrying on — unless nothing has been answered yet."""
        timeout = timedelta(minutes=ctx.settings.dialog.idle_timeout_minutes)
        return state.mode != "resume" and bool(state.data) and ctx.clock.now() - state.updated_at > timeout

    async def _answer(self, ctx: Ctx, dialog: Dialog, state: Draft, msg: Inbound) -> str:
        step = dialog.steps[state.step]
        try:
            answer = await _parse(step.field, ctx, msg, state.data.get(step.key), state.data)
        except Invalid as exc:
            if kept := self._keep_story(ctx, dialog, state, msg) or self._more_story(ctx, dialog, state, msg):
                return "\n\n".join([kept, self._prompt(ctx, dialog, state)])
            return self._invalid(ctx, dialog, state, str(exc))
        state.data = {**state.data, step.key: answer.value}
        state.failed_tries = 0
        if not answer.done:
            return answer.ack or self._prompt(ctx, dialog, state)
        if state.editing:
            state.editing = False
            state.mode = "confirm"
            return self._summary(ctx, dialog, state)
        state.step = self._next_step(dialog, state, state.step + 1)
        if state.step >= len(dialog.steps):
            state.mode, state.step = "confirm", len(dialog.steps) - 1
            return self._summary(ctx, dialog, state) if dialog.confirm else await self._submit(ctx, dialog, state)
        return self._prompt(ctx, dialog, state)

    @staticmethod
    def _next_step(dialog: Dialog, state: Draft, index: int) -> int:
        """Steps answered before they were asked (a story told with 投诉) are not asked again."""
        prefilled = state.data.get(PREFILLED, [])
        while index < len(dialog.steps) and dialog.steps[index].key in prefilled:
            index += 1
        return index

    def _more_story(self, ctx: Ctx, dialog: Dialog, state: Draft, msg: Inbound) -> str | None:
        """More of the story after its step (a second voice clip where the phone number was asked)."""
        key = dialog.story_step
        if key is None or not (state.data.get(key) or {}).get("text"):
            return None
        if state.mode == "step" and dialog.steps[state.step].key == key:
            return None
        value = dialog.steps[dialog.step_index(key)].field.add_more(ctx, state.data[key], msg)
        if value is None:
            return None
        state.data = {**state.data, key: value}
        return ctx.texts("complaint.story_added")

    def _attach_elsewhere(
        self, ctx: Ctx, dialog: Dialog, state: Draft, msg: Inbound, *, ack_only: bool = False, anywhere: bool = False
    ) -> str | None:
        """A photo sent at another step (or at the summary, or while the draft is offered back) still belongs
        to the complaint."""
        key = dialog.attachments_step
        if msg.kind != "image" or not msg.media_id or key is None:
            return None
        if state.mode == "step" and dialog.steps[state.step].key == key and not anywhere:
            return None  # the attachments step itself takes photos as part of its answer
        field = next(s.field for s in dialog.steps if s.key == key)
        value, ack = field.add_photo(ctx, state.data.get(key) or field.empty(), msg.media_id)
        state.data = {**state.data, key: value}
        return ack if ack_only else "\n\n".join([ack, self._current(ctx, dialog, state)])

    def _invalid(self, ctx: Ctx, dialog: Dialog, state: Draft, error: str) -> str:
        state.failed_tries += 1
        reply = ctx.texts("dialog.invalid_again", error=error, prompt=self._prompt(ctx, dialog, state))
        if state.failed_tries >= ctx.settings.dialog.max_failed_tries:
            reply += "\n\n" + ctx.texts("dialog.human_hint")
        return reply

    def _back(self, ctx: Ctx, dialog: Dialog, state: Draft) -> str:
        state.failed_tries = 0
        if state.mode == "confirm":
            state.mode = "step"
            state.step = len(dialog.steps) - 1
        elif state.editing:
            state.editing = False
            state.mode = "confirm"
            return self._summary(ctx, dialog, state)
        elif state.step == 0:
            return "\n\n".join([ctx.texts("dialog.at_first_step"), self._prompt(ctx, dialog, state)])
        else:
            state.step -= 1
        return "\n\n".join([ctx.texts("dialog.back"), self._prompt(ctx, dialog, state)])

    async def _confirm(self, ctx: Ctx, dialog: Dialog, state: Draft, word: str, msg: Inbound) -> str:
        if word in ctx.texts.words("words.submit"):
            return await self._submit(ctx, dialog, state)
        if dialog.at_summary is not None and (reply := await dialog.at_summary(ctx, state, word)) is not None:
            if state.discarded:  # the dialog's own ending (the complaint's 补充 to an earlier case)
                _ended(dialog.name, "completed")
            return reply
        index = _edit_index(word, ctx.texts.words("words.edit"), [ctx.texts(s.label) for s in dialog.steps])
        if index is not None and 1 <= index <= len(dialog.steps):
            state.mode, state.step, state.editing = "step", index - 1, True
            step = dialog.steps[state.step]
            edit = ctx.texts("dialog.edit_prompt", index=index, label=ctx.texts(step.label))
            return "\n\n".join([edit, self._prompt(ctx, dialog, state)])
        if kept := self._more_story(ctx, dialog, state, msg):
            return "\n\n".join([kept, self._summary(ctx, dialog, state)])
        state.failed_tries += 1
        reply = ctx.texts("dialog.confirm_invalid", count=len(dialog.steps))
        if state.failed_tries >= ctx.settings.dialog.max_failed_tries:
            reply += "\n\n" + ctx.texts("dialog.human_hint")
        return reply

    async def _submit(self, ctx: Ctx, dialog: Dialog, state: Draft) -> str:
        try:
            reply = await dialog.submit(ctx, state)
        except Invalid as exc:
            return "\n\n".join([str(exc), self._summary(ctx, dialog, state)])
        await drafts.discard(ctx.tx, state)
        _ended(dialog.name, "completed")
        return reply

    async def _resume(self, ctx: Ctx, dialog: Dialog, state: Draft, word: str) -> str:
        if word in ctx.texts.words("words.continue"):
            if state.step >= len(dialog.steps):
                state.mode, state.step = "confirm", len(dialog.steps) - 1
            else:
                state.mode = "step"
            return self._current(ctx, dialog, state)
        if word in ctx.texts.words("words.restart"):
            needs_human = state.needs_human
            state.restart(ctx.clock.now())
            _ended(dialog.name, "restarted")
            _started(dialog.name)
            state.needs_human = needs_human
            return "\n\n".join([ctx.texts("dialog.restarted"), self._prompt(ctx, dialog, state)])
        if word in ctx.texts.words("words.help"):
            return self._resume_offer_text(ctx, dialog, state)
        return ctx.texts("dialog.resume_invalid")

    def _offer_resume(self, ctx: Ctx, state: Draft) -> str:
        dialog = self.dialogs[state.dialog]
        if state.mode == "confirm":
            state.step = len(dialog.steps)  # remembered as "at the summary" while offering
        state.mode = "resume"  # `editing` stays: continuing an edit returns to the summary
        return self._resume_offer_text(ctx, dialog, state)

    def _resume_offer_text(self, ctx: Ctx, dialog: Dialog, state: Draft) -> str:
        done = min(state.step, len(dialog.steps)) if not state.editing else len(dialog.steps)
        return ctx.texts("dialog.resume_offer", dialog=ctx.texts(dialog.title), done=done, total=len(dialog.steps))

    def _current(self, ctx: Ctx, dialog: Dialog, state: Draft) -> str:
        """What the resident is being asked right now: a step's question, or the summary."""
        if state.mode == "resume":
            return self._resume_offer_text(ctx, dialog, state)
        return self._summary(ctx, dialog, state) if state.mode == "confirm" else self._prompt(ctx, dialog, state)

    def _prompt(self, ctx: Ctx, dialog: Dialog, state: Draft) -> str:
        step = dialog.steps[state.step]
        if getattr(step.field, "uses_answers", False):
            return ctx.texts(step.prompt, **step.field.prompt_values(ctx, answers=state.data))
        return ctx.texts(step.prompt, **step.field.prompt_values(ctx))

    def _summary(self, ctx: Ctx, dialog: Dialog, state: Draft) -> str:
        lines = [ctx.texts("dialog.confirm_head")]
        for i, step in enumerate(dialog.steps, 1):
            value = step.field.display(ctx, state.data.get(step.key))
            lines.append(ctx.texts("dialog.confirm_item", index=i, label=ctx.texts(step.label), value=value))
        lines.append(ctx.texts("dialog.confirm_tail"))
        return "\n".join(lines)


def _started(dialog: str) -> None:
    metrics.when_committed(metrics.DIALOGS_STARTED.labels(dialog).inc)


def _ended(dialog: str, outcome: str) -> None:
    """Every way a dialog ends is counted here (expiry, by the housekeeping purge, and 取消关注 aside)."""
    if outcome == "completed":
        metrics.when_committed(metrics.DIALOGS_COMPLETED.labels(dialog).inc)
    else:
        metrics.when_committed(metrics.DIALOGS_ABANDONED.labels(dialog, outcome).inc)


async def _parse(field: Field, ctx: Ctx, msg: Inbound, current, answers: dict):
    """A field's answer. Fields with `uses_answers` also see the earlier answers (a poll's maximum choices
    depends on its options); a field may look things up (`parse` returns an awaitable)."""
    if getattr(field, "uses_answers", False):
        answer = field.parse(ctx, msg, current, answers=answers)
    else:
        answer = field.parse(ctx, msg, current)
    return await answer if inspect.isawaitable(answer) else answer


def _edit_index(word: str, edit_words: tuple[str, ...], labels: list[str]) -> int | None:
    """修改 2 → 2; also 修改第二项, 改2, 修改地点 (a label from the summary)."""
    prefix = next((w for w in sorted(edit_words, key=len, reverse=True) if word.startswith(w)), None)
    if prefix is None:
        return None
    rest = as_number(word[len(prefix) :].strip())
    if is_number(rest):
        return int(rest)
    named = [i for i, label in enumerate(labels, 1) if rest and (rest in label or label in rest)]
    return named[0] if len(named) == 1 else None
