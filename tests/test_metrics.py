"""GET /metrics tells Prometheus what the bot is doing, to the addresses allowed to ask; logs are JSON lines that
carry the request id and no resident's personal data.

Counters belong to the process and several apps run in this one, so every counter check is a difference:
the value after minus the value before."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import uuid

import aiohttp
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot import app as app_module
from bot import logs
from bot.config import ConfigError, LoggingSettings, load_settings
from bot.metrics import watch_scheduler
from bot.wechat.simulator import Resident
from tests.conftest import start_harness
from tests.test_complaint_dialog import file_complaint
from tests.test_intake import slow_down

PHONE = "13812345678"

# An id frontdoor makes itself: random per process, then counted.
MADE_ID = re.compile(r"[0-9a-f]{12}-[0-9a-f]+")


async def scrape(h) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by name and labels."""
    async with h.http.get(h.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        body = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_complaint_shows_in_the_metrics(harness):
    before = await scrape(harness)
    r = harness.resident("o_metrics")
    done = await file_complaint(r, phone=PHONE)
    assert "案件编号" in done
    after = await scrape(harness)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # 投诉, category, place, story, phone, 提交: six text messages, each answered within the webhook.
    assert delta("frontdoor_inbound_messages_total", type="text") == 6
    assert delta("frontdoor_webhook_duration_seconds_count") == 6
    assert delta("frontdoor_webhook_duration_seconds_bucket", le="5.0") == 6
    assert delta("frontdoor_webhook_duration_seconds_sum") > 0
    assert delta("frontdoor_dialogs_started_total", dialog="complaint") == 1
    assert delta("frontdoor_dialogs_completed_total", dialog="complaint") == 1
    assert delta("frontdoor_dialogs_abandoned_total", dialog="complaint", reason="cancelled") == 0
    # Read from the database: the cluster's figures, not deltas.
    assert value(after, "frontdoor_metrics_database_up") == 1
    assert value(after, "frontdoor_cases", status="pending") == 1
    assert value(after, "frontdoor_cases", status="closed") == 0  # every status is reported, zero or not
    assert value(after, "frontdoor_outbox_pending") >= 0
    assert value(after, "frontdoor_outbox_oldest_pending_age_seconds") >= 0


async def test_events_and_cancelled_dialogs_are_counted(harness):
    h = harness
    before = await scrape(h)
    r = h.resident("o_metrics_events")
    await r.event("subscribe")
    await r.say("投诉")
    await r.say("取消")
    after = await scrape(h)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("frontdoor_inbound_messages_total", type="event:subscribe") == 1
    assert delta("frontdoor_dialogs_started_total", dialog="complaint") == 1
    assert delta("frontdoor_dialogs_abandoned_total", dialog="complaint", reason="cancelled") == 1
    assert delta("frontdoor_dialogs_completed_total", dialog="complaint") == 0


async def test_a_reply_budget_overrun_counts_a_fallback_and_fills_the_outbox(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_WEBHOOK_REPLY_BUDGET_SECONDS="0.2") as h:
        before = await scrape(h)
        slow_down(h, 0.5)
        assert await h.resident("o_metrics_slow").say("帮助") is None  # `success`: the answer comes later
        await h.app[app_module.INTAKE].drain()  # the slow answer is written (to the outbox)
        after = await scrape(h)
        assert value(after, "frontdoor_reply_deferred_total") - value(before, "frontdoor_reply_deferred_total") == 1
        assert value(after, "frontdoor_outbox_pending") == 1
        clock.advance(seconds=30)
        assert value(await scrape(h), "frontdoor_outbox_oldest_pending_age_seconds") >= 30
        sent = value(after, "frontdoor_deliveries_total", channel="customer-service", errcode="0")
        tokens = value(after, "frontdoor_access_token_refreshes_total", outcome="ok")
        assert await h.deliver_outbox() == 1
        final = await scrape(h)
        assert value(final, "frontdoor_deliveries_total", channel="customer-service", errcode="0") - sent == 1
        assert value(final, "frontdoor_access_token_refreshes_total", outcome="ok") - tokens == 1  # the first send
        assert value(final, "frontdoor_outbox_pending") == 0


async def test_scheduler_jobs_report_how_late_they_started():
    scheduler = AsyncIOScheduler()
    watch_scheduler(scheduler)
    job = f"tick-{uuid.uuid4().hex[:8]}"
    ran = asyncio.Event()
    scheduler.add_job(ran.set, "interval", seconds=0.05, id=job)
    scheduler.start()
    try:
        await asyncio.wait_for(ran.wait(), 5)
    finally:
        scheduler.shutdown(wait=False)
    assert REGISTRY.get_sample_value("frontdoor_scheduler_lag_seconds_count", {"job": job}) >= 1
    assert REGISTRY.get_sample_value("frontdoor_scheduler_lag_seconds_sum", {"job": job}) >= 0


async def test_metrics_refuse_addresses_outside_allow_from(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_METRICS_ALLOW_FROM="10.0.0.0/8, 192.168.0.0/16") as h:
        async with h.http.get(h.url + "/metrics") as resp:
            assert resp.status == 403
            assert "frontdoor_cases" not in await resp.text()


async def test_metrics_can_be_turned_off(db_url, clock):
    async with start_harness(db_url, clock, FRONTDOOR_METRICS_ENABLED="false") as h:
        async with h.http.get(h.url + "/metrics") as resp:
            assert resp.status == 404


async def test_json_logs_carry_the_request_id_and_no_personal_data(harness):
    h = harness
    buffer = io.StringIO()
    touched = [logging.getLogger(name) for name in ("", *logs.OURS, *logs.QUIET)]
    levels = [logger.level for logger in touched]
    # At debug: the request lines, and every other line of ours, are checked too.
    handler = logs.configure(LoggingSettings(format="json", level="debug"), stream=buffer, force=True)
    request_id = uuid.uuid4().hex
    openid = "o_private_resident_7"
    try:
        async with aiohttp.ClientSession(headers={"X-Request-Id": request_id}) as http:
            r = Resident(h.wechat, http, h.webhook, openid, h.fake_url)
            assert "案件编号" in await file_complaint(r, phone=PHONE)
            async with http.get(h.url + "/healthz") as resp:
                assert resp.headers["X-Request-Id"] == request_id
        async with h.http.get(h.url + "/healthz") as resp:
            made = resp.headers["X-Request-Id"]  # none sent: one is made
        async with h.http.get(h.url + "/healthz") as resp:
            assert resp.headers["X-Request-Id"] != made and MADE_ID.fullmatch(made)
        await h.deliver_outbox()
    finally:
        logging.getLogger().removeHandler(handler)
        for logger, level in zip(touched, levels, strict=True):
            logger.setLevel(level)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]  # every line is JSON
    requests = [line for line in lines if line["logger"] == "bot.observability"]
    assert sum(line["message"] == "POST /wechat 200" for line in requests) == 6
    assert {line["request_id"] for line in requests} == {request_id}
    # The message's own work runs in a task the request started: it carries the request's id as well.
    handled = [line for line in lines if line["logger"] == "bot.intake"]
    assert handled and {line["request_id"] for line in handled} == {request_id}
    assert all({"time", "level", "logger", "message", "request_id"} <= line.keys() for line in lines)
    text = buffer.getvalue()
    assert openid not in text and PHONE not in text


async def test_a_request_id_that_is_not_a_plain_token_is_replaced(harness):
    async with harness.http.get(harness.url + "/healthz", headers={"X-Request-Id": "x" * 200}) as resp:
        assert MADE_ID.fullmatch(resp.headers["X-Request-Id"])
    async with harness.http.get(harness.url + "/no-such-page", headers={"X-Request-Id": "edge-42"}) as resp:
        assert resp.status == 404 and resp.headers["X-Request-Id"] == "edge-42"  # error pages carry it too


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FRONTDOOR_METRICS_ALLOW_FROM": "10.0.0.0/8, everyone"}, "metrics.allow_from"),
        ({"FRONTDOOR_LOGGING_FORMAT": "xml"}, "logging.format"),
        ({"FRONTDOOR_LOGGING_LEVEL": "loud"}, "logging.level"),
    ],
)
def test_bad_metrics_and_logging_settings_name_the_setting(env, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(os.devnull, env=env)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_database_error_logged_with_its_traceback_does_not_quote_the_row(fmt):
    """PostgreSQL's errors carry a DETAIL line quoting the failing row: with a resident's openid or phone."""
    buffer = io.StringIO()
    logger = logging.getLogger("bot.test_scrub")
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.formatter(fmt))
    logger.addHandler(handler)
    try:
        raise ValueError(
            'null value in column "category" violates not-null constraint\n'
            f"DETAIL:  Failing row contains (7, o_private_resident_7, null, {PHONE})."
        )
    except ValueError:
        logger.exception("handling message failed")
    finally:
        logger.removeHandler(handler)
    text = buffer.getvalue()
    assert "violates not-null constraint" in text and "handling message failed" in text
    assert "o_private_resident_7" not in text and PHONE not in text
