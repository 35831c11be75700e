"""Dialogs declared as data, run by one engine (engine.py)."""

from bot.dialogs.complaint import COMPLAINT
from bot.dialogs.engine import Engine

ENGINE = Engine([COMPLAINT])
