"""走访: a grid worker records a visit done — which case(s) or which grid → where (words or a WeChat location)
→ who was met → what was agreed → photos (sent at any step) → resolved? → summary → 提交 (visits.record)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.context import Ctx
from bot.dialogs.engine import Dialog, Step
from bot.dialogs.fields import Answer, Invalid, PlaceField, clean_text, words
from bot.services import areas, gridworkers, visits
from bot.services.drafts import Draft
from bot.wechat.inbound import Inbound


@dataclass(frozen=True)
class TargetField:
    """Case numbers (one or several), a grid or community by name, or 我的网格 / 默认 for the worker's own."""

    async def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        text = words(msg)
        if not text:
            raise Invalid(ctx.texts("visit.dialog.target_invalid"))
        if numbers := visits.numbers_in(text):
            try:
                found = await visits.cases_for(ctx.tx, numbers)
            except visits.VisitError as exc:
                raise Invalid(exc.text(ctx.texts)) from None
            return Answer({"numbers": [c.number for c in found], "grid_id": None, "label": "、".join(numbers)})
        worker = await gridworkers.by_openid(ctx.tx, ctx.openid)
        tree = await areas.all_areas(ctx.tx)
        by_id = {a.id: a for a in tree}
        own = [i for i in (worker.area_ids if worker else ()) if i in by_id]
        if text in (*ctx.texts.words("words.my_grid"), *ctx.texts.words("words.default")):
            if not own:
                raise Invalid(ctx.texts("visit.dialog.no_grid"))
            return Answer({"numbers": [], "grid_id": own[0], "label": by_id[own[0]].path})
        found = areas.matching(tree, text, levels=("grid", "community"))
        if own:  # a name that repeats across communities: the one they look after
            found = [a for a in found if areas.covers(tree, own, a.id)] or found
        if len(found) != 1:
            raise Invalid(ctx.texts("visit.dialog.target_invalid"))
        return Answer({"numbers": [], "grid_id": found[0].id, "label": found[0].path})

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def display(self, ctx: Ctx, value: Any) -> str:
        value = value or {}
        key = "visit.dialog.target_cases" if value.get("numbers") else "visit.dialog.target_grid"
        return ctx.texts(key, label=value.get("label", ""))


@dataclass(frozen=True)
class WordsField:
    """A few words that must be given (who was met, what was agreed)."""

    invalid: str
    min_chars: int = 2
    max_chars: int = visits.MAX_TEXT

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        text = clean_text(msg.text or "") if msg.kind in ("text", "voice") else ""
        if len(text) < self.min_chars or text in ctx.texts.words("words.skip"):
            raise Invalid(ctx.texts(self.invalid))
        return Answer(text[: self.max_chars])

    def display(self, ctx: Ctx, value: Any) -> str:
        return str(value or "")


@dataclass(frozen=True)
class PhotosField:
    """Photos of the visit: any number up to the limit, sent at this step or any other; 完成 ends the step."""

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {"max": ctx.settings.complaint.max_photos}

    @staticmethod
    def empty() -> dict[str, Any]:
        return {"photos": []}

    def add_photo(self, ctx: Ctx, value: dict, media_id: str) -> tuple[dict, str]:
        limit = ctx.settings.complaint.max_photos
        photos = list((value or {}).get("photos") or [])
        if len(photos) >= limit:
            return {"photos": photos}, ctx.texts("visit.dialog.photo_limit", max=limit)
        photos.append(media_id)
        return {"photos": photos}, ctx.texts("visit.dialog.photo_received", count=len(photos))

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        value = {**self.empty(), **(current or {})}
        if msg.kind == "image" and msg.media_id:
            value, ack = self.add_photo(ctx, value, msg.media_id)
            return Answer(value, done=False, ack=ack + ctx.texts("visit.dialog.photo_more"))
        if words(msg) in (*ctx.texts.words("words.visit_done"), *ctx.texts.words("words.skip")):
            return Answer(value)
        raise Invalid(ctx.texts("visit.dialog.photos_invalid"))

    def display(self, ctx: Ctx, value: Any) -> str:
        count = len((value or {}).get("photos") or [])
        return ctx.texts("visit.dialog.photos_count", count=count) if count else ctx.texts("dialog.skipped")


@dataclass(frozen=True)
class ResolvedField:
    """是 (every case of the visit settled there), 否, or the numbers of the cases that were."""

    uses_answers = True

    def prompt_values(self, ctx: Ctx, answers: dict | None = None) -> dict[str, Any]:
        numbers = ((answers or {}).get("target") or {}).get("numbers") or []
        key = "visit.dialog.resolved_cases" if numbers else "visit.dialog.resolved_grid"
        return {"cases": ctx.texts(key, numbers="、".join(numbers))}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any, answers: dict | None = None) -> Answer:
        text = words(msg)
        numbers = ((answers or {}).get("target") or {}).get("numbers") or []
        if text in ctx.texts.words("words.visit_yes"):
            return Answer({"all": True, "numbers": []})
        if text in ctx.texts.words("words.visit_no"):
            return Answer({"all": False, "numbers": []})
        named = visits.numbers_in(text)
        if named and all(n in numbers for n in named):
            return Answer({"all": False, "numbers": named})
        raise Invalid(ctx.texts("visit.dialog.resolved_invalid", numbers="、".join(numbers) or "-"))

    def display(self, ctx: Ctx, value: Any) -> str:
        value = value or {}
        if value.get("all"):
            return ctx.texts("visit.dialog.resolved_all")
        if value.get("numbers"):
            return ctx.texts("visit.dialog.resolved_some", numbers="、".join(value["numbers"]))
        return ctx.texts("visit.dialog.resolved_none")


async def submit(ctx: Ctx, draft: Draft) -> str:
    data = draft.data
    worker = await gridworkers.by_openid(ctx.tx, ctx.openid)
    if worker is None:
        raise Invalid(ctx.texts("visit.dialog.not_worker"))
    target, place, resolved = data["target"], data["place"], data.get("resolved") or {}
    label = place["label"] or ctx.texts(
        "complaint.place_location", label=ctx.texts("complaint.place_pinned"), lat=place["lat"], lng=place["lng"]
    )
    try:
        visit_id = await visits.record(
            ctx.tx,
            cases=target["numbers"],
            grid_id=target["grid_id"],
            place=visits.Place(label, place["lat"], place["lng"]),
            met=data["met"],
            agreed=data["agreed"],
            photos=(data.get("photos") or {}).get("photos") or [],
            resolved=True if resolved.get("all") else list(resolved.get("numbers") or []),
            team=[worker.name],
            by=worker.name,
            via="chat",
            now=ctx.clock.now(),
            texts=ctx.texts,
        )
    except visits.VisitError as exc:
        raise Invalid(exc.text(ctx.texts)) from None
    return ctx.texts("visit.dialog.recorded", id=visit_id, target=TargetField().display(ctx, target))


VISIT = Dialog(
    name="visit",
    title="visit.dialog.title",
    intro="visit.dialog.start",
    steps=(
        Step("target", "visit.dialog.target_prompt", "visit.dialog.target_label", TargetField()),
        Step("place", "visit.dialog.place_prompt", "visit.dialog.place_label", PlaceField()),
        Step("met", "visit.dialog.met_prompt", "visit.dialog.met_label", WordsField("visit.dialog.met_invalid")),
        Step(
            "agreed",
            "visit.dialog.agreed_prompt",
            "visit.dialog.agreed_label",
            WordsField("visit.dialog.agreed_invalid"),
        ),
        Step("photos", "visit.dialog.photos_prompt", "visit.dialog.photos_label", PhotosField()),
        Step("resolved", "visit.dialog.resolved_prompt", "visit.dialog.resolved_label", ResolvedField()),
    ),
    submit=submit,
    attachments_step="photos",
    cancelled="visit.dialog.cancelled",
)
