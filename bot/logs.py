"""Log format and the request id every record of a request carries (set by bot/observability.py's middleware).

No personal data in a log line, at any level: never an openid (a message is named by a hash of its dedupe key,
bot/intake.py `_ref`), never what a resident typed (a phone number, a story).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from bot.config import LoggingSettings

# Tasks started while handling a request (intake runs each message in its own task) copy the context, and so
# the id, when they are created.
REQUEST_ID: ContextVar[str | None] = ContextVar("frontdoor_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_ref)s: %(message)s"
# The record attributes a JSON line carries, besides its time (ISO 8601, UTC), any `extra=` fields the call
# passed, and exc_info when there is a traceback.
JSON_FIELDS = ("levelname", "name", "message", "request_id")
QUIET = ("apscheduler", "alembic", "aiohttp.access")
# `debug` is for our own modules: libraries' debug lines (aiosqlite's quote the statements' parameters) would
# break the no-personal-data rule and drown ours.
OURS = ("bot", "storage")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def scrub_exception(text: str) -> str:
    """A traceback without PostgreSQL's DETAIL lines: they quote the failing row or key ("Failing row contains
    (…)", "Key (openid)=(…) already exists"), which can be an openid, a phone number or a resident's words."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("DETAIL:"))


class _TextFormatter(logging.Formatter):
    def formatException(self, ei) -> str:
        return scrub_exception(super().formatException(ei))

    def formatMessage(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.request_ref = f" [{rid}]" if rid else ""
        return super().formatMessage(record)


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        class _JsonFormatter(JsonFormatter):
            def formatException(self, ei) -> str:
                return scrub_exception(super().formatException(ei))

        return _JsonFormatter(
            JSON_FIELDS,
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            json_ensure_ascii=False,
        )
    return _TextFormatter(TEXT_FORMAT)


def configure(settings: LoggingSettings, stream=None, *, force: bool = False) -> logging.Handler | None:
    """Route every log record to one handler on `stream` (stderr) in the configured format. Called again (the
    command's own settings after main()'s defaults) it replaces the handler it installed before. Like
    logging.basicConfig it leaves alone logging that someone else set up (a program embedding us, pytest)
    unless `force`."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "frontdoor", False)]
    if len(ours) < len(root.handlers) and not force:
        return None
    for old in ours:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.frontdoor = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(settings.format))
    root.addHandler(handler)
    level = logging.getLevelName(settings.level.upper())
    root.setLevel(max(level, logging.INFO))
    for name in OURS:
        logging.getLogger(name).setLevel(level)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
