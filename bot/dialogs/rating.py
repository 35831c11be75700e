"""The rating dialog (回访评价): after a case is closed, 1 满意 / 2 基本满意 / 3 不满意, then an optional comment."""

from __future__ import annotations

from bot.context import Ctx
from bot.dialogs.engine import Dialog, Step
from bot.dialogs.fields import ChoiceField, Invalid, TextField
from bot.services import cases, lifecycle
from bot.services.drafts import Draft

CASE = "case"  # the draft's note of which case is being rated
UNSATISFIED = 3  # the position of 不满意 in [words] ratings


async def submit(ctx: Ctx, draft: Draft) -> str:
    number = draft.data[CASE]
    choices = ctx.texts.words("words.ratings")
    score = choices.index(draft.data["score"]) + 1
    comment = draft.data.get("comment")
    if not await cases.rate(
        ctx.tx, number, ctx.openid, score=score, label=draft.data["score"], comment=comment, now=ctx.clock.now()
    ):
        raise Invalid(ctx.texts("rating.already", number=number))
    if score == UNSATISFIED and ctx.settings.lifecycle.reopen_when_unsatisfied:
        request = lifecycle.Request(
            action="reopen",
            number=number,
            by="resident",
            openid=ctx.openid,
            reason=ctx.texts("rating.reopen_reason", comment=comment or ""),
        )
        try:
            await lifecycle.move(ctx.tx, request, clock=ctx.clock, settings=ctx.settings, texts=ctx.texts)
        except lifecycle.MoveRefused:
            pass  # already reopened by staff: the rating stands all the same
        else:
            return ctx.texts("rating.thanks_reopened", number=number)
    return ctx.texts("rating.thanks", number=number)


RATING = Dialog(
    name="rating",
    title="rating.title",
    intro=None,
    steps=(
        Step(
            "score",
            "rating.score_prompt",
            "rating.score_label",
            ChoiceField("words.ratings", "rating.score_invalid", from_texts=True),
        ),
        Step("comment", "rating.comment_prompt", "rating.comment_label", TextField()),
    ),
    submit=submit,
    seeds=(("text", "score"), ("voice", "score")),
    confirm=False,
)
