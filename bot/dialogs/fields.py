"""Field types a dialog step can ask for. Each turns one inbound message into a value or a specific complaint.

A field's value must be JSON (it is saved after every step). `parse` may return an unfinished Answer — e.g.
photos received while the text is still missing — which keeps the resident on the same step.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol

from bot.context import Ctx
from bot.wechat.inbound import Inbound


class Invalid(Exception):
    """The answer does not fit; the message says exactly why, in the resident's language."""


@dataclass
class Answer:
    value: Any
    done: bool = True
    # Said when the step is not done yet (e.g. "photo received, now describe it").
    ack: str | None = None


_EDGE_PUNCTUATION = "。.！!？?，,、；;：:～~…·\"'“”‘’()（）【】[] "
_SPOKEN_NUMBERS = {
    "一": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
    "十": "10",
}


def normalize(text: str | None) -> str:
    """What a phone keyboard or speech recognition sends varies: full-width characters to half-width, spaces
    collapsed, punctuation at the ends dropped ("取消。" is 取消) unless it is all there is ("?")."""
    text = " ".join(unicodedata.normalize("NFKC", text or "").split())
    return text.strip(_EDGE_PUNCTUATION) or text


def words(msg: Inbound) -> str:
    """The words of a text message or of a recognised voice message, normalised; "" for anything else."""
    if msg.kind in ("text", "voice") and msg.text:
        return normalize(msg.text)
    return ""


def as_number(word: str) -> str:
    """A spoken "三" or "第三" means 3."""
    word = word.removeprefix("第").removesuffix("个").removesuffix("项")
    return _SPOKEN_NUMBERS.get(word, word)


class Field(Protocol):
    def prompt_values(self, ctx: Ctx) -> dict[str, Any]: ...

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer: ...

    def display(self, ctx: Ctx, value: Any) -> str: ...


@dataclass(frozen=True)
class ChoiceField:
    """A numbered list; the resident replies with the number or the option's exact words."""

    choices_setting: str  # "complaint.categories": the list comes from configuration
    invalid: str

    def choices(self, ctx: Ctx) -> tuple[str, ...]:
        section, key = self.choices_setting.split(".")
        return getattr(getattr(ctx.settings, section), key)

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {"choices": "\n".join(f"{i}. {c}" for i, c in enumerate(self.choices(ctx), 1))}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        choices = self.choices(ctx)
        text = as_number(words(msg))
        if text.isdigit() and 1 <= int(text) <= len(choices):
            return Answer(choices[int(text) - 1])
        if text in choices:
            return Answer(text)
        raise Invalid(ctx.texts(self.invalid, count=len(choices)))

    def display(self, ctx: Ctx, value: Any) -> str:
        return str(value)


@dataclass(frozen=True)
class PlaceField:
    """A place in words, or a WeChat location message (coordinates and the label WeChat gives)."""

    min_chars: int = 2
    max_chars: int = 200

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        if msg.kind == "location" and msg.location is not None:
            loc = msg.location
            return Answer({"label": loc.label, "lat": loc.latitude, "lng": loc.longitude})
        if text := words(msg):
            if len(text) < self.min_chars:
                raise Invalid(ctx.texts("complaint.place_too_short"))
            return Answer({"label": text[: self.max_chars], "lat": None, "lng": None})
        raise Invalid(ctx.texts("complaint.place_invalid"))

    def display(self, ctx: Ctx, value: Any) -> str:
        if value.get("lat") is None:
            return value["label"]
        return ctx.texts("complaint.place_location", label=value["label"] or "", lat=value["lat"], lng=value["lng"])


@dataclass(frozen=True)
class NarrativeField:
    """What happened: text or a recognised voice message, with photos before or alongside it."""

    min_chars: int = 5

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {"max_photos": ctx.settings.complaint.max_photos}

    @staticmethod
    def empty() -> dict[str, Any]:
        return {"text": "", "photos": [], "voices": []}

    def add_photo(self, ctx: Ctx, value: dict, media_id: str, *, elsewhere: bool = True) -> tuple[dict, str]:
        """Keep a photo; the acknowledgement asks for the story only when this is the step asking for it."""
        limit = ctx.settings.complaint.max_photos
        if len(value["photos"]) >= limit:
            return value, ctx.texts("complaint.photo_limit", max=limit)
        value = {**value, "photos": [*value["photos"], media_id]}
        key = "complaint.photo_received_later" if elsewhere or value["text"] else "complaint.photo_received"
        return value, ctx.texts(key, count=len(value["photos"]))

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        value = current or self.empty()
        if msg.kind == "image" and msg.media_id:
            value, ack = self.add_photo(ctx, value, msg.media_id, elsewhere=False)
            return Answer(value, done=False, ack=ack)
        if msg.kind == "voice":
            if not msg.text:
                raise Invalid(ctx.texts("complaint.voice_unrecognized"))
            value = {**value, "voices": [*value["voices"], msg.media_id]}
        elif msg.kind != "text":
            raise Invalid(ctx.texts("complaint.description_invalid"))
        text = " ".join((msg.text or "").split())
        if len(text) < self.min_chars:
            raise Invalid(ctx.texts("complaint.description_too_short"))
        limit = ctx.settings.complaint.max_description_chars
        if len(text) > limit:
            raise Invalid(ctx.texts("complaint.description_too_long", length=len(text), max=limit))
        return Answer({**value, "text": text})

    def display(self, ctx: Ctx, value: Any) -> str:
        out = value["text"]
        if value["photos"]:
            out += ctx.texts("complaint.photos_summary", count=len(value["photos"]))
        if value["voices"]:
            out += ctx.texts("complaint.voice_summary")
        return out


_MOBILE = re.compile(r"1[3-9]\d{9}")
_LANDLINE = re.compile(r"0\d{2,3}-?[2-9]\d{6,7}")


@dataclass(frozen=True)
class PhoneField:
    """A mainland mobile (11 digits) or a landline with area code; 跳过 leaves it empty."""

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        text = words(msg)
        if text in ctx.texts.words("words.skip"):
            return Answer(None)
        number = re.sub(r"[\s()（）]", "", text).replace("—", "-")
        number = re.sub(r"^(\+?86-?)", "", number)
        if _MOBILE.fullmatch(number.replace("-", "")):
            return Answer(number.replace("-", ""))
        if _LANDLINE.fullmatch(number):
            return Answer(number)
        raise Invalid(ctx.texts("complaint.phone_invalid"))

    def display(self, ctx: Ctx, value: Any) -> str:
        return value or ctx.texts("dialog.skipped")
