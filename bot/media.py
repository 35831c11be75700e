"""Media download: photos, voice and video attached to a case are fetched from WeChat into the file store.

WeChat keeps a resident's media for 3 days. Services write a case_media row in the transaction that attaches
a media id to a case (bot/services/media.py); a scheduler tick fetches it, as bot/notify.py delivers the outbox:
claim due rows with a lease in a short write transaction (FOR UPDATE SKIP LOCKED on PostgreSQL, BEGIN
IMMEDIATE on SQLite), download outside any transaction, write the file atomically (a temporary file renamed
into place) under [media] store_dir, then record path, size, content type and sha256 in a write transaction
that only succeeds while our lease still stands. A crashed worker's rows are claimed again once its lease
runs out; a worker whose lease was taken over records nothing (the file it wrote has the same bytes).
A video comes through a temporary download link WeChat hands out for it (WeChatAPI.get_media follows it), and is
stored as video-<id>.mp4; a link that expired or was refused is retried like busy, and the next try is given a
fresh link.

Busy (-1), timeouts and other transient answers are retried with exponential backoff up to max_attempts.
Media WeChat no longer has (40007: expired or unknown) fails at once with that reason: no retry can bring it
back. Configuration errors (IP whitelist, secret) are retried without spending attempts, as in bot/notify.py:
the media's own expiry bounds them. Logs name rows by id, never by openid.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import os
import re
import tempfile
from datetime import timedelta
from pathlib import Path

from bot.clock import Clock
from bot.config import MediaSettings
from bot.notify import CONFIG_ERRCODES, CONFIG_MIN_DELAY_SECONDS, MAX_BACKOFF_SECONDS
from bot.services import media
from bot.services.media import Claimed
from bot.wechat.api import WeChatAPI, WeChatAPIError
from storage.fast import Store

log = logging.getLogger(__name__)

# WeChat no longer has this media (it expired after 3 days, or never existed): fail at once.
GONE_ERRCODES = frozenset({40007})
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "audio/amr": ".amr",
    "audio/speex": ".speex",
    "audio/mpeg": ".mp3",
    "video/mp4": ".mp4",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def extension(content_type: str, kind: str = "") -> str:
    ctype = content_type.split(";")[0].strip().lower()
    if kind == "video" and not ctype.startswith("video/"):
        return ".mp4"  # WeChat's videos are MP4, whatever label their download host gives them
    return _EXTENSIONS.get(ctype) or mimetypes.guess_extension(ctype) or ".bin"


def write_atomically(directory: Path, name: str, content: bytes) -> Path:
    """Write `content` to directory/name so that a reader sees the whole file or none: a temporary file in the
    same directory, flushed to disk, then renamed over the target."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class MediaWorker:
    def __init__(self, store: Store, api: WeChatAPI, clock: Clock, settings: MediaSettings, owner: str):
        self.store = store
        self.api = api
        self.clock = clock
        self.settings = settings
        self.owner = owner
        self.root = Path(settings.store_dir).resolve()

    async def tick(self) -> int:
        """Fetch what is due; the number of files stored."""
        async with self.store.read() as tx:
            if not await media.anything_due(tx, now=self.clock.now()):
                return 0  # a read: an idle tick must not take the write lock
        async with self.store.write() as tx:
            rows = await media.claim(
                tx,
                owner=self.owner,
                now=self.clock.now(),
                lease=timedelta(seconds=self.settings.lease_seconds),
                limit=self.settings.batch_size,
            )
        results = await asyncio.gather(*(self._fetch(row) for row in rows), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return sum(1 for r in results if r is True)

    async def _fetch(self, row: Claimed) -> bool:
        try:
            content, content_type = await self.api.get_media(row.media_id)
        except WeChatAPIError as exc:
            if exc.errcode in GONE_ERRCODES:
                log.warning("media %s (%s of case %s) is gone at WeChat: %s", row.id, row.kind, row.case_number, exc)
                await self._fail(row, f"WeChat no longer has this media (expired after 3 days or unknown): {exc}")
                return False
            if exc.errcode in CONFIG_ERRCODES:
                log.error("media %s: WeChat rejected the bot's configuration: %s", row.id, exc)
                await self._retry(row, str(exc), spend_attempt=False)
                return False
            await self._retry(row, str(exc))
            return False
        except Exception as exc:
            log.exception("media %s: unexpected error fetching", row.id)
            await self._retry(row, f"{type(exc).__name__}: {exc}")
            return False
        try:
            name = f"{row.kind}-{row.id}{extension(content_type, row.kind)}"
            directory = self.root / _UNSAFE.sub("_", row.case_number)
            path = await asyncio.to_thread(write_atomically, directory, name, content)
        except OSError as exc:
            log.exception("media %s: could not write the file", row.id)
            await self._retry(row, f"file store: {exc}")
            return False
        async with self.store.write() as tx:
            done = await media.stored(
                tx,
                row,
                owner=self.owner,
                now=self.clock.now(),
                path=str(path),
                size=len(content),
                content_type=content_type,
                sha256=hashlib.sha256(content).hexdigest(),
            )
        if not done:
            log.warning("media %s: lease lost to another worker; stored file not recorded", row.id)
        return done

    async def _retry(self, row: Claimed, error: str, *, spend_attempt: bool = True) -> None:
        now = self.clock.now()
        if not spend_attempt:
            # Like bot/notify.py: the wait grows with the row's age, from the minimum up to the hour's cap.
            age = (now - row.created_at).total_seconds()
            delay = min(max(CONFIG_MIN_DELAY_SECONDS, age), MAX_BACKOFF_SECONDS)
            attempts = row.attempts
        else:
            attempts = row.attempts + 1
            if attempts >= self.settings.max_attempts:
                log.warning("media %s: giving up after %d tries: %s", row.id, attempts, error)
                await self._fail(row, f"{error} (gave up after {attempts} tries)")
                return
            delay = min(self.settings.backoff_base_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        async with self.store.write() as tx:
            ok = await media.retry(
                tx, row, owner=self.owner, attempts=attempts, at=now + timedelta(seconds=delay), error=error
            )
        if not ok:
            log.warning("media %s: lease lost to another worker; retry not recorded", row.id)

    async def _fail(self, row: Claimed, error: str) -> None:
        async with self.store.write() as tx:
            ok = await media.failed(tx, row, owner=self.owner, error=error)
        if not ok:
            log.warning("media %s: lease lost to another worker; failure not recorded", row.id)
