"""The complaint dialog (投诉): category → place → what happened → contact → summary → 提交."""

from __future__ import annotations

from datetime import timedelta

from bot.context import Ctx
from bot.dialogs.engine import Dialog, Step
from bot.dialogs.fields import ChoiceField, Invalid, NarrativeField, PhoneField, PlaceField
from bot.services import cases, drafts, longrun, routing
from bot.services.drafts import Draft

# A complaint like one the resident filed this recently may be the same matter.
REPEAT_WINDOW = timedelta(days=30)
# Where the draft remembers that the resident was already asked about that case.
REPEAT_OFFERED = "_repeat_of"


def _new_complaint(ctx: Ctx, draft: Draft) -> cases.NewComplaint:
    data = draft.data
    place, story = data["place"], {**NarrativeField.empty(), **data["description"]}
    label = place["label"] or ctx.texts(
        "complaint.place_location", label=ctx.texts("complaint.place_pinned"), lat=place["lat"], lng=place["lng"]
    )
    return cases.NewComplaint(
        openid=ctx.openid,
        category=data["category"],
        place_label=label,
        latitude=place["lat"],
        longitude=place["lng"],
        description=story["text"],
        photo_media_ids=story["photos"],
        voice_media_ids=story["voices"],
        video_media_ids=story["videos"],
        links=story["links"],
        contact_phone=data.get("phone"),
    )


async def submit(ctx: Ctx, draft: Draft) -> str:
    now, settings = ctx.clock.now(), ctx.settings.complaint
    new = _new_complaint(ctx, draft)
    own = await cases.similar_own(ctx.tx, ctx.openid, new.category, now=now, within=REPEAT_WINDOW)
    if own is not None and draft.data.get(REPEAT_OFFERED) != own.number:
        # Asked once: 补充 adds this to that case, 提交 again files it as a new one.
        draft.data = {**draft.data, REPEAT_OFFERED: own.number}
        date = own.created_at.astimezone(ctx.settings.tz).strftime("%m月%d日")
        raise Invalid(ctx.texts("complaint.repeat_offer", date=date, number=own.number))
    related = await cases.similar_elsewhere(ctx.tx, new, now=now, within=REPEAT_WINDOW)
    number = await cases.submit_complaint(
        ctx.tx,
        new,
        now=now,
        tz=ctx.settings.tz,
        prefix=settings.case_number_prefix,
        acceptance_days=settings.acceptance_days,
        asked_for_staff=draft.needs_human,
        related=[own.number, *related] if own else related,
        tier=routing.tier_for(ctx.settings, new.category),
    )
    # After a 息诉罢访 commitment on the same matter: flagged for staff, filed all the same (a person decides).
    await longrun.flag_after_commitment(ctx.tx, new, number, now=now)
    day_unit = ctx.texts(f"day_unit.{ctx.settings.deadlines.day_kind}")  # 15 working days are not 15 days
    return ctx.texts("complaint.submitted", number=number, days=settings.acceptance_days, day_unit=day_unit)


async def at_summary(ctx: Ctx, draft: Draft, word: str) -> str | None:
    """补充, after being told of a similar case of theirs: add this report to it instead of filing anew."""
    number = draft.data.get(REPEAT_OFFERED)
    if number is None or word not in ctx.texts.words("words.add_to_case"):
        return None
    new = _new_complaint(ctx, draft)
    text = f"{new.place_label}：{new.description}" if new.description else new.place_label
    media_ids = {"photo": new.photo_media_ids, "voice": new.voice_media_ids, "video": new.video_media_ids}
    if not await cases.add_to_case(ctx.tx, number, ctx.openid, text=text, media_ids=media_ids, now=ctx.clock.now()):
        draft.data = {k: v for k, v in draft.data.items() if k != REPEAT_OFFERED}
        return ctx.texts("complaint.repeat_gone", number=number)
    await drafts.discard(ctx.tx, draft)
    return ctx.texts("complaint.added_to_case", number=number)


COMPLAINT = Dialog(
    name="complaint",
    title="complaint.title",
    intro="complaint.start",
    steps=(
        Step(
            "category",
            "complaint.category_prompt",
            "complaint.category_label",
            ChoiceField("complaint.categories", "complaint.category_invalid"),
        ),
        Step("place", "complaint.place_prompt", "complaint.place_label", PlaceField()),
        Step("description", "complaint.description_prompt", "complaint.description_label", NarrativeField()),
        Step("phone", "complaint.phone_prompt", "complaint.phone_label", PhoneField()),
    ),
    submit=submit,
    attachments_step="description",
    story_step="description",
    seeds=(("location", "place"),),
    at_summary=at_summary,
)
