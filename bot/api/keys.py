"""What the API's views find on their application and on the request."""

from aiohttp import web

from bot.clock import Clock
from bot.config import Settings
from bot.services.api_tokens import ApiToken
from bot.texts import Texts

SETTINGS = web.AppKey("api_settings", Settings)
STORE = web.AppKey("api_store", object)
TEXTS = web.AppKey("api_texts", Texts)
CLOCK = web.AppKey("api_clock", Clock)
# "v1" or "open311": how errors are shaped, and whether ?api_key= is accepted.
DIALECT = web.AppKey("api_dialect", str)

# The calling token (bot.services.api_tokens.ApiToken) once bot/api/auth.py has found it.
TOKEN = web.RequestKey("api_token", ApiToken)
