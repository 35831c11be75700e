"""What the console's views find on their application."""

from aiohttp import web

from bot.clock import Clock
from bot.config import Settings
from bot.texts import Texts

SETTINGS = web.AppKey("console_settings", Settings)
STORE = web.AppKey("console_store", object)
TEXTS = web.AppKey("console_texts", Texts)
CLOCK = web.AppKey("console_clock", Clock)

# The request's session (bot.services.operators.Session) once auth.py has found it.
SESSION = web.RequestKey("console_session", object)
