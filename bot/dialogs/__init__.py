"""Dialogs declared as data, run by one engine (engine.py)."""

from bot.dialogs.complaint import COMPLAINT
from bot.dialogs.engine import Engine
from bot.dialogs.poll import MY_GRID, NEW_POLL, VOTE_NAME
from bot.dialogs.rating import RATING
from bot.dialogs.visit import VISIT

ENGINE = Engine([COMPLAINT, RATING, NEW_POLL, VOTE_NAME, MY_GRID, VISIT])
