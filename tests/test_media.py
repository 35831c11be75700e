"""Photos, voice and video of a case are fetched from WeChat (which keeps them 3 days) into the file store, once."""

import asyncio
import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import app as app_module
from bot.cli import main
from bot.config import ConfigError, load_settings
from bot.media import MediaWorker
from bot.wechat.fake import VIDEO_DOWNLOAD
from storage.fast import open_store
from storage.models import Case, CaseMedia
from tests.conftest import start_harness

STORY = "晚上十二点以后工地还在施工，噪音很大"


@pytest.fixture
async def media_harness(db_url, clock, tmp_path):
    # No retries inside the API client: the worker's own backoff (on the injected clock) is what is tested.
    env = {"FRONTDOOR_MEDIA_STORE_DIR": str(tmp_path / "media"), "FRONTDOOR_WECHAT_API_MAX_RETRIES": "0"}
    async with start_harness(db_url, clock, **env) as h:
        yield h


async def file_complaint(r, *, photos=(), voices=(), videos=()) -> None:
    """A complaint with these photos, videos and voice messages (the last voice recognised as the story)."""
    await r.say("投诉")
    await r.say("5")
    await r.say("云城街道某某小区3栋")
    for media_id in photos:
        await r.photo(media_id)
    for media_id in videos:
        assert "已收到视频" in await r.video(media_id)
    for media_id in voices[:-1]:
        await r.voice(media_id, None)
    if voices:
        await r.voice(voices[-1], STORY)
    else:
        await r.say(STORY)
    await r.say("跳过")
    assert "案件编号" in await r.say("提交")


async def media_rows(h) -> dict[str, CaseMedia]:
    async with h.db.read() as s:
        return {m.media_id: m for m in await s.scalars(select(CaseMedia).order_by(CaseMedia.id))}


async def tick(h) -> int:
    return await h.app[app_module.MEDIA].tick()


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def store_dir(h) -> Path:
    return Path(h.settings.media.store_dir).resolve()


def fetches(h) -> int:
    return h.fake.calls["media/get"]


def link_downloads(h) -> int:
    return h.fake.calls[VIDEO_DOWNLOAD]


async def only_case(h) -> Case:
    async with h.db.read() as s:
        return (await s.scalars(select(Case))).one()


async def test_a_complaints_photos_and_voice_are_stored_once_with_their_bytes(media_harness, capsys, monkeypatch):
    h = media_harness
    r = h.resident("o_media")
    await file_complaint(r, photos=["m_p1", "m_p2"], voices=["m_v1"])
    assert "已把这张照片补充到案件" in await r.photo("m_late")  # a photo just after submitting joins the case
    # Each file distinct, so a mix-up between rows would show.
    content = {
        "m_p1": (b"\xff\xd8\xff\xe0 first photo", "image/jpeg"),
        "m_p2": (b"\x89PNG second photo", "image/png"),
        "m_v1": (b"#!AMR\n the voice", "audio/amr"),
        "m_late": (b"\xff\xd8\xff\xe0 late photo", "image/jpeg"),
    }
    for media_id, (body, ctype) in content.items():
        h.fake.add_media(media_id, body, ctype)

    assert await tick(h) == 4
    rows = await media_rows(h)
    assert {m: (row.kind, row.status) for m, row in rows.items()} == {
        "m_p1": ("photo", "stored"),
        "m_p2": ("photo", "stored"),
        "m_v1": ("voice", "stored"),
        "m_late": ("photo", "stored"),
    }
    store = store_dir(h)
    async with h.db.read() as s:
        case = (await s.scalars(select(Case))).one()
    for media_id, (body, ctype) in content.items():
        row = rows[media_id]
        assert read(row.path) == body
        assert Path(row.path).parent == store / case.number
        assert (row.size, row.content_type, row.sha256) == (len(body), ctype, hashlib.sha256(body).hexdigest())
        assert row.case_id == case.id and row.fetched_at == h.clock.now() and row.attempts == 1
    assert sorted(os.listdir(store / case.number)) == sorted(Path(r.path).name for r in rows.values())  # no temps

    assert fetches(h) == 4
    assert await tick(h) == 0 and fetches(h) == 4  # stored files are never fetched again

    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", h.settings.database.url)
    assert await asyncio.to_thread(main, ["cases", "show", case.number, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(f["media_id"], f["status"], f["path"]) for f in shown["files"]] == [
        (m, "stored", rows[m].path) for m in ("m_p1", "m_p2", "m_v1", "m_late")
    ]
    assert shown["files"][2]["sha256"] == hashlib.sha256(content["m_v1"][0]).hexdigest()
    assert await asyncio.to_thread(main, ["cases", "show", case.number]) == 0
    text = capsys.readouterr().out
    assert "附件文件：" in text and rows["m_v1"].path in text and "语音  已保存" in text


async def test_expired_media_fails_with_the_reason_and_is_not_retried(media_harness, capsys, monkeypatch):
    h = media_harness
    await file_complaint(h.resident("o_late"), photos=["m_old"])
    h.clock.advance(days=3, minutes=1)  # WeChat keeps media 3 days
    assert await tick(h) == 0
    row = (await media_rows(h))["m_old"]
    assert row.status == "failed" and "40007" in row.last_error and "expired" in row.last_error
    assert row.path is None and row.attempts == 1
    h.clock.advance(days=1)
    assert await tick(h) == 0 and fetches(h) == 1  # no retry can bring it back

    monkeypatch.setenv("FRONTDOOR_DATABASE_URL", h.settings.database.url)
    async with h.db.read() as s:
        number = (await s.scalars(select(Case.number))).one()
    assert await asyncio.to_thread(main, ["cases", "show", number]) == 0
    assert "照片  下载失败：WeChat no longer has this media" in capsys.readouterr().out


async def test_busy_is_retried_with_backoff_on_the_clock_then_fetched(media_harness):
    h = media_harness
    await file_complaint(h.resident("o_busy"), photos=["m_busy"])
    h.fake.add_fault("media/get", errcode=-1, times=2)
    start = h.clock.now()
    base = h.settings.media.backoff_base_seconds

    assert await tick(h) == 0
    row = (await media_rows(h))["m_busy"]
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, start + timedelta(seconds=base))
    assert "-1" in row.last_error and row.lease_owner is None
    assert await tick(h) == 0 and fetches(h) == 1  # not before its time

    h.clock.advance(seconds=base)
    assert await tick(h) == 0 and fetches(h) == 2  # busy again: the wait doubles
    row = (await media_rows(h))["m_busy"]
    assert (row.attempts, row.next_attempt_at) == (2, h.clock.now() + timedelta(seconds=2 * base))
    h.clock.advance(seconds=2 * base - 1)
    assert await tick(h) == 0 and fetches(h) == 2

    h.clock.advance(seconds=1)
    assert await tick(h) == 1 and fetches(h) == 3
    row = (await media_rows(h))["m_busy"]
    assert (row.status, row.attempts, row.last_error) == ("stored", 3, None)
    assert read(row.path) == b"\xff\xd8\xff\xe0 fake jpeg"


async def test_gives_up_after_max_attempts(db_url, clock, tmp_path):
    env = {
        "FRONTDOOR_MEDIA_STORE_DIR": str(tmp_path / "media"),
        "FRONTDOOR_WECHAT_API_MAX_RETRIES": "0",
        "FRONTDOOR_MEDIA_MAX_ATTEMPTS": "2",
    }
    async with start_harness(db_url, clock, **env) as h:
        await file_complaint(h.resident("o_down"), photos=["m_down"])
        h.fake.add_fault("media/get", http_status=503, times=5)
        assert await tick(h) == 0
        h.clock.advance(hours=1)
        assert await tick(h) == 0
        row = (await media_rows(h))["m_down"]
        assert row.status == "failed" and "gave up after 2 tries" in row.last_error
        h.clock.advance(days=1)
        assert await tick(h) == 0 and fetches(h) == 2


async def test_two_workers_at_once_fetch_each_file_exactly_once(db_url, clock, tmp_path):
    env = {
        "FRONTDOOR_MEDIA_STORE_DIR": str(tmp_path / "media"),
        "FRONTDOOR_WECHAT_API_MAX_RETRIES": "0",
        "FRONTDOOR_MEDIA_BATCH_SIZE": "2",
    }
    async with start_harness(db_url, clock, **env) as h:
        await file_complaint(h.resident("o_many"), photos=["a1", "a2", "a3"], voices=["v1", "v2"])
        await file_complaint(h.resident("o_more"), photos=["b1", "b2"])
        # Slow downloads, so both workers have files in flight at the same time.
        h.fake.add_fault("media/get", delay_seconds=0.1, times=7)
        first = h.app[app_module.MEDIA]
        other_store = open_store(db_url)
        try:
            second = MediaWorker(other_store, h.app[app_module.API], clock, h.settings.media, owner="other")
            stored = 0
            for _ in range(10):
                got = await asyncio.gather(first.tick(), second.tick(), first.tick(), second.tick())
                stored += sum(got)
                if not any(got):
                    break
        finally:
            await other_store.close()
        rows = await media_rows(h)
        assert len(rows) == 7 and {row.status for row in rows.values()} == {"stored"}
        assert stored == 7 and fetches(h) == 7  # each file fetched exactly once
        assert all(row.attempts == 1 for row in rows.values())


# --- video: media/get answers a temporary download link, whose bytes are the video ---------------------------

MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00 the resident's video"


async def test_a_video_is_fetched_through_its_link_and_stored_once_as_mp4(media_harness):
    h = media_harness
    await file_complaint(h.resident("o_video"), photos=["m_photo"], videos=["m_vid"])
    h.fake.add_media("m_vid", MP4, "video/mp4")

    assert await tick(h) == 2
    row = (await media_rows(h))["m_vid"]
    case = await only_case(h)
    assert (row.kind, row.status, row.attempts) == ("video", "stored", 1)
    assert Path(row.path) == store_dir(h) / case.number / f"video-{row.id}.mp4"
    assert read(row.path) == MP4  # the video itself, not media/get's JSON
    assert (row.size, row.content_type, row.sha256) == (len(MP4), "video/mp4", hashlib.sha256(MP4).hexdigest())
    files = sorted(os.listdir(store_dir(h) / case.number))
    assert files == sorted([f"video-{row.id}.mp4", Path((await media_rows(h))["m_photo"].path).name])

    assert (fetches(h), link_downloads(h)) == (2, 1)
    assert await tick(h) == 0 and (fetches(h), link_downloads(h)) == (2, 1)  # never fetched again


@pytest.mark.parametrize(
    ("http_status", "reason"),
    [(503, "-1 HTTP 503 from the video link"), (404, "-3 unreadable answer from the video link")],
    ids=["5xx", "expired-link"],
)
async def test_a_failed_video_link_is_retried_with_a_fresh_link(media_harness, caplog, http_status, reason):
    h = media_harness
    caplog.set_level("DEBUG")
    await file_complaint(h.resident("o_flaky"), videos=["m_flaky"])
    h.fake.add_media("m_flaky", MP4, "video/mp4")
    h.fake.add_fault(VIDEO_DOWNLOAD, http_status=http_status)
    base = h.settings.media.backoff_base_seconds

    assert await tick(h) == 0
    row = (await media_rows(h))["m_flaky"]
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, h.clock.now() + timedelta(seconds=base))
    assert row.last_error.startswith(reason) and row.path is None
    assert "vkey" not in row.last_error  # the link's query may carry credentials
    assert (fetches(h), link_downloads(h)) == (1, 1)

    h.clock.advance(seconds=base)
    assert await tick(h) == 1
    row = (await media_rows(h))["m_flaky"]
    assert (row.status, row.attempts, row.last_error) == ("stored", 2, None)
    assert read(row.path) == MP4
    assert (fetches(h), link_downloads(h)) == (2, 2)  # media/get asked again: a fresh link
    assert not [r for r in caplog.records if r.name.startswith("bot") and "vkey" in r.getMessage()]


async def test_a_video_gone_at_wechat_fails_with_the_reason(media_harness):
    h = media_harness
    await file_complaint(h.resident("o_gone"), videos=["m_gone"])
    h.fake.add_media("m_gone", MP4, "video/mp4")
    h.fake.add_fault(VIDEO_DOWNLOAD, http_status=404)  # the first link is refused …
    assert await tick(h) == 0
    assert (await media_rows(h))["m_gone"].status == "pending"

    h.clock.advance(days=3)  # … and by the next try WeChat no longer has the video
    assert await tick(h) == 0
    row = (await media_rows(h))["m_gone"]
    assert row.status == "failed" and "40007" in row.last_error and "expired" in row.last_error
    assert row.path is None and row.attempts == 2
    h.clock.advance(days=1)
    assert await tick(h) == 0 and (fetches(h), link_downloads(h)) == (2, 1)  # no retry can bring it back
    assert not (store_dir(h) / (await only_case(h)).number).exists()


def test_media_settings_are_validated():
    def load(**env):
        return load_settings(path=os.devnull, env={f"FRONTDOOR_MEDIA_{k.upper()}": v for k, v in env.items()})

    assert load().media.store_dir == "data/media"
    with pytest.raises(ConfigError, match=r"media\.lease_seconds"):
        load(lease_seconds="10")
    with pytest.raises(ConfigError, match=r"media\.batch_size"):
        load(batch_size="0")
    with pytest.raises(ConfigError, match=r"media\.max_attempts"):
        load(max_attempts="0")
    with pytest.raises(ConfigError, match=r"media\.store_dir"):
        load(store_dir=" ")
