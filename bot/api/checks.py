"""What input the databases can take: checked at the edge, so a strange value is a 400 and never a 500."""

from __future__ import annotations

from datetime import datetime

# Times outside these years are nobody's case (and near the ends of the calendar, arithmetic overflows).
YEARS = (1970, 9000)
# Row ids are PostgreSQL integers.
MAX_ID = 2**31 - 1


def usable(text: str) -> bool:
    """Text the databases can store and compare: no NUL character (PostgreSQL refuses it), no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def sane(moment: datetime) -> bool:
    return YEARS[0] <= moment.year <= YEARS[1]


def row_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= MAX_ID
