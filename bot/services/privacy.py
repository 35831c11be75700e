"""Personal data in free text: phone numbers a resident typed into a description or a message (or staff into a
reply) are hidden from those who may not see phone numbers — the console's viewers, API tokens of such roles,
and Open311, which is read by other platforms."""

from __future__ import annotations

import re

# Mainland mobile numbers (with or without +86, spaces or dashes) and landlines with their area code.
_PHONES = re.compile(
    r"(?<![\dA-Za-z])(?:(?:\+|00)?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}(?!\d)"
    r"|(?<![\dA-Za-z-])0\d{2,3}[-\s]?\d{7,8}(?!\d)"
)


def hide_phones(text: str | None, *, mark: str, known: str | None = None) -> str | None:
    """`text` with every phone number in it (and `known`, the case's contact phone, however written) replaced."""
    if not text:
        return text
    if known and known.strip():
        text = text.replace(known.strip(), mark)
    return _PHONES.sub(mark, text)
