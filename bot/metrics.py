"""The Prometheus metrics of one process, declared in one place; /metrics (bot/observability.py) exposes them.

Counters and histograms count what this process did: Prometheus scrapes every instance and sums them. The
figures read from the database at scrape time (cases, outbox) are computed by bot/observability.py, not here.

Work done inside an inbound message's transaction is counted only once that transaction has committed
(`when_committed`): a message whose effects rolled back (a conflict redone, a handler that failed) must not
count a dialog as started or finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram, disable_created_metrics

# A `_created` timestamp beside every counter doubles the series and says nothing a restart's reset does not.
disable_created_metrics()

INBOUND = Counter(
    "frontdoor_inbound_messages",
    "Inbound messages taken in (stored once), by type: text, image, voice, … or event:<event>.",
    ["type"],
)
HANDLING_ERRORS = Counter(
    "frontdoor_inbound_errors", "Inbound messages whose handling failed (nothing stored; the resident is told)."
)
# WeChat gives up after 5 s; the reply budget (webhook.reply_budget_seconds) sits below it.
WEBHOOK_SECONDS = Histogram(
    "frontdoor_webhook_duration_seconds",
    "Time to answer POST on the webhook path, seconds.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0),
)
REPLY_DEFERRED = Counter(
    "frontdoor_reply_deferred",
    "Times the reply budget ran out: WeChat was answered `success` and the answer deferred to the outbox.",
)
DIALOGS_STARTED = Counter("frontdoor_dialogs_started", "Dialogs started, by dialog.", ["dialog"])
DIALOGS_COMPLETED = Counter("frontdoor_dialogs_completed", "Dialogs finished by the resident, by dialog.", ["dialog"])
DIALOGS_ABANDONED = Counter(
    "frontdoor_dialogs_abandoned",
    "Dialogs ended unfinished, by dialog and reason: cancelled, expired, restarted, replaced, unsubscribed, removed.",
    ["dialog", "reason"],
)
DELIVERIES = Counter(
    "frontdoor_deliveries",
    "Outbox sends to WeChat, by channel (customer-service, template, subscribe) and errcode (0: accepted).",
    ["channel", "errcode"],
)
TOKEN_REFRESHES = Counter("frontdoor_access_token_refreshes", "Access-token fetches from WeChat.", ["outcome"])
SCHEDULER_LAG = Histogram(
    "frontdoor_scheduler_lag_seconds",
    "How late a scheduler job started after it was due, seconds, by job id.",
    ["job"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SCHEDULER_SKIPPED = Counter(
    "frontdoor_scheduler_skipped",
    "Scheduler runs not started, by job id and reason (missed: too late; busy: the previous run still going).",
    ["job", "reason"],
)

_pending: ContextVar[list[Callable[[], None]] | None] = ContextVar("frontdoor_metrics_pending", default=None)


def when_committed(count: Callable[[], None]) -> None:
    """Count now — or, inside `counted_on_commit()`, once the transaction it belongs to has committed."""
    pending = _pending.get()
    if pending is None:
        count()
    else:
        pending.append(count)


@contextmanager
def counted_on_commit() -> Iterator[None]:
    """Around one transaction: what was counted inside counts if the block ends normally, not if it raises."""
    pending: list[Callable[[], None]] = []
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
    for count in pending:
        count()


def inbound_type(kind: str, event: str | None) -> str:
    return f"event:{event}" if kind == "event" and event else kind


def watch_scheduler(scheduler) -> None:
    """Observe an APScheduler 3 scheduler: how late each job starts, and the runs it skips."""
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED

    def listener(event) -> None:
        if event.code == EVENT_JOB_SUBMITTED:
            # Coalesced runs are submitted once: the lag is counted from the first of them.
            due = min(event.scheduled_run_times, default=None)
            if due is not None:
                SCHEDULER_LAG.labels(event.job_id).observe(max((datetime.now(UTC) - due).total_seconds(), 0.0))
        elif event.code == EVENT_JOB_MISSED:
            SCHEDULER_SKIPPED.labels(event.job_id, "missed").inc()
        else:
            SCHEDULER_SKIPPED.labels(event.job_id, "busy").inc()

    scheduler.add_listener(listener, EVENT_JOB_SUBMITTED | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
