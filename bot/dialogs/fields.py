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


def is_number(word: str) -> bool:
    """ASCII digits only: "⓵".isdigit() is true, but int() refuses it."""
    return re.fullmatch(r"[0-9]{1,4}", word) is not None


_WECHAT_EMOJI = re.compile(r"\[[\u4e00-\u9fffA-Za-z]{1,8}\]|/:[^\s]{1,6}")


def clean_text(text: str) -> str:
    """Words only: WeChat's emoji codes ([微笑]) and emoji characters do not describe anything."""
    text = _WECHAT_EMOJI.sub("", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Sk", "Cs", "Co"))
    return " ".join(text.split())


def all_command_words(ctx: Ctx) -> set[str]:
    return {
        w
        for key in ("complaint", "my_cases", "query", "help", "human", "cancel", "back", "submit", "skip")
        for w in ctx.texts.words(f"words.{key}")
    }


class Field(Protocol):
    def prompt_values(self, ctx: Ctx) -> dict[str, Any]: ...

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer: ...

    def display(self, ctx: Ctx, value: Any) -> str: ...


CHOICE_WORDS_MAX = 8


@dataclass(frozen=True)
class ChoiceField:
    """A numbered list; the resident replies with the number, or words that name one option ("停车")."""

    # Where the options come from: a setting ("complaint.categories") or a [words] entry of the texts.
    choices_setting: str
    invalid: str
    from_texts: bool = False

    def choices(self, ctx: Ctx) -> tuple[str, ...]:
        if self.from_texts:
            return ctx.texts.words(self.choices_setting)
        section, key = self.choices_setting.split(".")
        return getattr(getattr(ctx.settings, section), key)

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {"choices": "\n".join(f"{i}. {c}" for i, c in enumerate(self.choices(ctx), 1))}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        choices = self.choices(ctx)
        text = as_number(words(msg))
        if is_number(text) and 1 <= int(text) <= len(choices):
            return Answer(choices[int(text) - 1])
        if text in choices:
            return Answer(text)
        # A short answer naming an option ("停车"); a long text is a story, not a choice.
        named = [c for c in choices if text and (text in c or all(p in text for p in re.split("[与和及、]", c)))]
        if len(named) == 1 and len(text) <= CHOICE_WORDS_MAX:
            return Answer(named[0])
        raise Invalid(ctx.texts(self.invalid, count=len(choices)))

    def display(self, ctx: Ctx, value: Any) -> str:
        return str(value)


_QUESTION = re.compile(r"[?？]$|什么|怎么|哪里|哪儿|为啥|是不是|吗$")


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
        if not (raw := words(msg)):
            raise Invalid(ctx.texts("complaint.place_invalid"))
        text = normalize(clean_text(msg.text or ""))  # emoji codes go before the brackets would be trimmed
        if raw in all_command_words(ctx) or _QUESTION.search(text):
            raise Invalid(ctx.texts("complaint.place_not_a_place"))
        if len(text) < self.min_chars:
            raise Invalid(ctx.texts("complaint.place_too_short"))
        return Answer({"label": text[: self.max_chars], "lat": None, "lng": None})

    def display(self, ctx: Ctx, value: Any) -> str:
        if value.get("lat") is None:
            return value["label"]
        label = value["label"] or ctx.texts("complaint.place_pinned")
        return ctx.texts("complaint.place_location", label=label, lat=value["lat"], lng=value["lng"])


@dataclass(frozen=True)
class NarrativeField:
    """What happened: text or recognised voice, with photos, videos and links before or alongside it."""

    min_chars: int = 5
    summary_chars: int = 80  # the summary echoes the start of a long story, not all of it

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {"max_photos": ctx.settings.complaint.max_photos}

    @staticmethod
    def empty() -> dict[str, Any]:
        return {"text": "", "photos": [], "voices": [], "videos": [], "links": []}

    def add_photo(self, ctx: Ctx, value: dict, media_id: str, *, elsewhere: bool = True) -> tuple[dict, str]:
        """Keep a photo; the acknowledgement asks for the story only when this is the step asking for it."""
        limit = ctx.settings.complaint.max_photos
        if len(value["photos"]) >= limit:
            return value, ctx.texts("complaint.photo_limit", max=limit)
        value = {**self.empty(), **value, "photos": [*value["photos"], media_id]}
        key = "complaint.photo_received_later" if elsewhere or value["text"] else "complaint.photo_received"
        return value, ctx.texts(key, count=len(value["photos"]))

    def add_more(self, ctx: Ctx, value: dict, msg: Inbound) -> dict | None:
        """More of the story after the step was answered (a second voice clip, a forgotten detail)."""
        # The resident's own words, full-width punctuation and all (words() would normalise them).
        text = clean_text(msg.text or "") if msg.kind in ("text", "voice") else ""
        compact = re.sub(r"[\s\-]", "", text)
        if len(text) < self.min_chars or re.search(r"\d{5,}", compact):
            return None  # too little to be more story, or a (mistyped) phone number
        combined = f"{value['text']}\n{text}" if value["text"] else text
        if len(combined) > ctx.settings.complaint.max_description_chars:
            return None
        voices = [*value["voices"], msg.media_id] if msg.kind == "voice" else value["voices"]
        return {**self.empty(), **value, "text": combined, "voices": voices}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        value = {**self.empty(), **(current or {})}
        if msg.kind == "image" and msg.media_id:
            value, ack = self.add_photo(ctx, value, msg.media_id, elsewhere=False)
            return Answer(value, done=False, ack=ack)
        if msg.kind in ("video", "shortvideo") and msg.media_id:
            value = {**value, "videos": [*value["videos"], msg.media_id]}
            return Answer(value, done=False, ack=ctx.texts("complaint.video_received", count=len(value["videos"])))
        if msg.kind == "link" and msg.text:
            value = {**value, "links": [*value["links"], msg.text]}
            return Answer(value, done=False, ack=ctx.texts("complaint.link_received"))
        if msg.kind == "voice" and not msg.text:
            value = {**value, "voices": [*value["voices"], msg.media_id]}  # kept for staff to listen to
            return Answer(value, done=False, ack=ctx.texts("complaint.voice_unrecognized"))
        if msg.kind not in ("text", "voice"):
            raise Invalid(ctx.texts("complaint.description_invalid"))
        text = clean_text(msg.text or "")
        if len(text) < self.min_chars:
            raise Invalid(ctx.texts("complaint.description_too_short"))
        limit = ctx.settings.complaint.max_description_chars
        if len(text) > limit:
            raise Invalid(ctx.texts("complaint.description_too_long", length=len(text), max=limit))
        # A new text replaces the old one (修改 3): the old one's recordings no longer back it.
        voices = [msg.media_id] if msg.kind == "voice" else []
        if not value["text"]:
            voices = [*value["voices"], *voices]
        return Answer({**value, "text": text, "voices": voices})

    def display(self, ctx: Ctx, value: Any) -> str:
        value = {**self.empty(), **value}
        text = value["text"]
        out = (
            text
            if len(text) <= self.summary_chars
            else ctx.texts("complaint.story_shortened", start=text[: self.summary_chars], length=len(text))
        )
        for key, text_key in (
            ("photos", "photos_summary"),
            ("videos", "videos_summary"),
            ("links", "links_summary"),
            ("voices", "voices_summary"),
        ):
            if value[key]:
                out += ctx.texts(f"complaint.{text_key}", count=len(value[key]))
        return out


@dataclass(frozen=True)
class TextField:
    """A few words, or a skip word for nothing (an optional comment)."""

    max_chars: int = 500

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        word = words(msg)
        if not word or word in ctx.texts.words("words.skip"):
            return Answer(None)
        return Answer(clean_text(msg.text or "")[: self.max_chars] or None)

    def display(self, ctx: Ctx, value: Any) -> str:
        return value or ctx.texts("dialog.skipped")


_CHINESE_DIGITS = str.maketrans("〇零一二两三四五六七八九幺", "0012234567891")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86|0086)?(1[3-9]\d{9})(?!\d)")
_LANDLINE = re.compile(r"(0\d{2,3})[\s\-－—)）]*([2-9]\d{6,7})(?!\d)(?:\s*(?:转|分机|ext\.?|-|—)\s*(\d{1,6}))?")


@dataclass(frozen=True)
class PhoneField:
    """A mainland mobile (11 digits) or a landline with area code (and extension), found wherever it is in
    the message ("我的电话是138…"), spoken digits included; a skip word leaves it empty."""

    def prompt_values(self, ctx: Ctx) -> dict[str, Any]:
        return {}

    def parse(self, ctx: Ctx, msg: Inbound, current: Any) -> Answer:
        text = words(msg)
        if text in ctx.texts.words("words.skip"):
            return Answer(None)
        digits = text.translate(_CHINESE_DIGITS)
        joined = re.sub(r"(?<=\d)[\s\-－—]+(?=\d)", "", digits)
        if mobile := _MOBILE.search(joined):
            return Answer(mobile.group(1))
        if landline := _LANDLINE.search(digits):
            area, number, extension = landline.groups()
            return Answer(f"{area}-{number}" + (f"转{extension}" if extension else ""))
        raise Invalid(ctx.texts("complaint.phone_invalid"))

    def display(self, ctx: Ctx, value: Any) -> str:
        return value or ctx.texts("dialog.skipped")
