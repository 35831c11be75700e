"""Dialogs declared as data, run by one engine (engine.py)."""

from bot.dialogs.complaint import COMPLAINT
from bot.dialogs.engine import Engine
from bot.dialogs.rating import RATING

ENGINE = Engine([COMPLAINT, RATING])
