"""The complaint dialog (投诉): category → place → what happened → contact → summary → 提交."""

from __future__ import annotations

from bot.context import Ctx
from bot.dialogs.engine import Dialog, Step
from bot.dialogs.fields import ChoiceField, NarrativeField, PhoneField, PlaceField
from bot.services import cases
from bot.services.drafts import Draft


async def submit(ctx: Ctx, draft: Draft) -> str:
    data = draft.data
    place, story = data["place"], {**NarrativeField.empty(), **data["description"]}
    label = place["label"] or ctx.texts(
        "complaint.place_location", label=ctx.texts("complaint.place_pinned"), lat=place["lat"], lng=place["lng"]
    )
    settings = ctx.settings.complaint
    number = await cases.submit_complaint(
        ctx.tx,
        cases.NewComplaint(
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
        ),
        now=ctx.clock.now(),
        tz=ctx.settings.tz,
        prefix=settings.case_number_prefix,
        acceptance_days=settings.acceptance_days,
        asked_for_staff=draft.needs_human,
    )
    return ctx.texts("complaint.submitted", number=number, days=settings.acceptance_days)


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
)
