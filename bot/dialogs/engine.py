"""One engine runs every dialog. A dialog is data (steps with a prompt, a field and a label); the engine asks,
validates, saves state after every step, offers the universal commands and ends with an editable summary.

Universal commands at every step: 取消 (cancel), 返回 (previous step), 帮助 (help), 人工 (ask for a person; the
draft is kept and flagged). At the summary: 提交, 修改 N. A draft idle too long is offered back: 1 continue,
2 start over. Commands may be typed or spoken (a voice message's recognised text), with punctuation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from bot.context import Ctx
from bot.dialogs.fields import Field, Invalid, as_number, words
from bot.services import drafts
from bot.services.drafts import Draft
from bot.wechat.inbound import Inbound


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


class Engine:
    def __init__(self, dialogs: list[Dialog]):
        self.dialogs = {d.name: d for d in dialogs}

    async def start(self, ctx: Ctx, name: str) -> str:
        """Start a dialog — or, if a draft with answers is waiting, offer it back rather than throw it away."""
        state = await drafts.get(ctx.tx, ctx.openid)
        if state is not None and state.data and state.dialog in self.dialogs:
            reply = self._offer_resume(ctx, state)
        else:
            dialog = self.dialogs[name]
            needs_human = state is not None and state.needs_human  # a person was asked for: keep that
            state = drafts.begin(ctx.openid, name, ctx.clock.now())
            state.needs_human = needs_human
            parts = [ctx.texts(dialog.intro)] if dialog.intro else []
            reply = "\n\n".join([*parts, self._prompt(ctx, dialog, state)])
        await drafts.save(ctx.tx, state)
        return reply

    async def handle(self, ctx: Ctx, state: Draft, msg: Inbound) -> str:
        """Answer one message within the resident's draft, and save the draft (or its removal)."""
        dialog = self.dialogs.get(state.dialog)
        if dialog is None:  # a dialog removed by an upgrade: drop its draft rather than trap the resident
            await drafts.discard(ctx.tx, state)
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
            return ctx.texts("dialog.cancelled")
        if word in ctx.texts.words("words.human"):
            state.needs_human = True
            return "\n\n".join([ctx.texts("dialog.human"), self._current(ctx, dialog, state)])
        if self._is_idle(ctx, state):
            return self._offer_resume(ctx, state)
        if state.mode == "resume":
            return await self._resume(ctx, dialog, state, word)
        if word in ctx.texts.words("words.help"):
            return ctx.texts("dialog.help_step", prompt=self._current(ctx, dialog, state))
        if word in ctx.texts.words("words.back"):
            return self._back(ctx, dialog, state)
        if attached := self._attach_elsewhere(ctx, dialog, state, msg):
            return attached
        if state.mode == "confirm":
            return await self._confirm(ctx, dialog, state, word)
        return self._answer(ctx, dialog, state, msg)

    def _is_idle(self, ctx: Ctx, state: Draft) -> bool:
        """Idle long enough to ask before carrying on — unless nothing has been answered yet."""
        timeout = timedelta(minutes=ctx.settings.dialog.idle_timeout_minutes)
        return state.mode != "resume" and bool(state.data) and ctx.clock.now() - state.updated_at > timeout

    def _answer(self, ctx: Ctx, dialog: Dialog, state: Draft, msg: Inbound) -> str:
        step = dialog.steps[state.step]
        try:
            answer = step.field.parse(ctx, msg, state.data.get(step.key))
        except Invalid as exc:
            return self._invalid(ctx, dialog, state, str(exc))
        state.data = {**state.data, step.key: answer.value}
        state.failed_tries = 0
        if not answer.done:
            return answer.ack or self._prompt(ctx, dialog, state)
        if state.editing or state.step + 1 >= len(dialog.steps):
            state.editing = False
            state.mode = "confirm"
            return self._summary(ctx, dialog, state)
        state.step += 1
        return self._prompt(ctx, dialog, state)

    def _attach_elsewhere(self, ctx: Ctx, dialog: Dialog, state: Draft, msg: Inbound) -> str | None:
        """A photo sent at another step (or at the summary) still belongs to the complaint."""
        key = dialog.attachments_step
        if msg.kind != "image" or not msg.media_id or key is None:
            return None
        if state.mode == "step" and dialog.steps[state.step].key == key:
            return None  # the attachments step itself takes photos as part of its answer
        field = next(s.field for s in dialog.steps if s.key == key)
        value, ack = field.add_photo(ctx, state.data.get(key) or field.empty(), msg.media_id)
        state.data = {**state.data, key: value}
        return "\n\n".join([ack, self._current(ctx, dialog, state)])

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

    async def _confirm(self, ctx: Ctx, dialog: Dialog, state: Draft, word: str) -> str:
        if word in ctx.texts.words("words.submit"):
            try:
                reply = await dialog.submit(ctx, state)
            except Invalid as exc:
                return "\n\n".join([str(exc), self._summary(ctx, dialog, state)])
            await drafts.discard(ctx.tx, state)
            return reply
        index = _edit_index(word, ctx.texts.words("words.edit"))
        if index is not None and 1 <= index <= len(dialog.steps):
            state.mode, state.step, state.editing = "step", index - 1, True
            step = dialog.steps[state.step]
            edit = ctx.texts("dialog.edit_prompt", index=index, label=ctx.texts(step.label))
            return "\n\n".join([edit, self._prompt(ctx, dialog, state)])
        return ctx.texts("dialog.confirm_invalid", count=len(dialog.steps))

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
        return ctx.texts(step.prompt, **step.field.prompt_values(ctx))

    def _summary(self, ctx: Ctx, dialog: Dialog, state: Draft) -> str:
        lines = [ctx.texts("dialog.confirm_head")]
        for i, step in enumerate(dialog.steps, 1):
            value = step.field.display(ctx, state.data.get(step.key))
            lines.append(ctx.texts("dialog.confirm_item", index=i, label=ctx.texts(step.label), value=value))
        lines.append(ctx.texts("dialog.confirm_tail"))
        return "\n".join(lines)


def _edit_index(word: str, edit_words: tuple[str, ...]) -> int | None:
    """修改 2 → 2 (also 修改第二项)."""
    prefix = next((w for w in edit_words if word.startswith(w)), None)
    if prefix is None:
        return None
    rest = as_number(word[len(prefix) :].strip())
    return int(rest) if rest.isdigit() else None
