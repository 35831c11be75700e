"""Detaching a person from their WeChat account: the unfollow event and `frontdoor residents forget OPENID`.

WeChat asks an account to delete a user's information when they unfollow; a complaint office must keep its case
records (信访工作条例: registration, handling and the ledger are the record). So the person is detached, not the
record deleted — table by table (README: "Personal data and unfollowing"):

- residents: the row goes (grid, name a named poll asked for, service window, counters). A later follow is a
  new resident.
- dialog_states (drafts, a phone number perhaps), subscriptions (订阅通知): deleted.
- outbox: every row to them goes — pending ones are cancelled (a row a worker is sending this very moment may
  still arrive), sent ones were only the delivery log (what staff replied is on the case).
- inbound_messages (the chat transcript): deleted. Only a message of the last RETRY_GRACE stays, stripped to its
  dedupe key (MsgId) under a stand-in, so that WeChat retrying it is still recognised; it is purged with events.
- poll_recipients: rows of polls they voted in stay under a stand-in (the turnout still matches the tally), the
  others go. poll_ballots: their ballots stay as anonymous votes — no openid, no name; the key, a one-way hash
  of poll and openid, stays, so the tally does not change and following again gives no second vote.
- grid_workers: a worker's WeChat binding is undone; the worker, their areas and their polls stay.
- cases: stay with everything on them (description, place, photos and their downloads, the contact name/phone
  the resident gave, replies, the ledger, visits, mediation, files staff wrote); only cases.openid becomes NULL,
  and each case gets a ledger entry `detached` (解除微信关联: who, why) that names no account. A detached case
  pushes to nobody (every notice path skips a case without openid) and the console shows it as any other.

A stand-in is `~` and the row's id: never an openid WeChat issues (letters, digits, - and _), and not the same
for two rows of one person. The outbox refuses to queue anything to one. Nothing here logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.services import cases, polls
from bot.services.residents import DETACHED_PREFIX
from bot.texts import Texts
from storage.fast import Tx

REASONS = ("unfollow", "request")
# WeChat retries an unanswered message three times within about 15 seconds: a message this recent keeps its
# bare dedupe row.
RETRY_GRACE = timedelta(minutes=5)
# The ledger action of a detached case (texts: [ledger] detached).
LEDGER_ACTION = "detached"

_STAND_IN = f"'{DETACHED_PREFIX}' || CAST(id AS TEXT)"
# A message's dedupe key is its MsgId ("m:…"); an event's names its sender, so it cannot stay.
_STRIP = f"""
UPDATE inbound_messages SET openid = {_STAND_IN}, msg_type = 'forgotten', status = 'deferred', reply = NULL,
    text = NULL, media_id = NULL
WHERE openid = :openid AND received_at >= :since AND dedupe_key LIKE 'm:%'"""
# A ballot kept as an anonymous vote: no openid, no name. Its key (a one-way hash of poll and openid) stays, so
# the same person following again cannot vote a second time.
_ANONYMISE = "UPDATE poll_ballots SET openid = NULL, voter_name = NULL "


@dataclass
class Forgotten:
    """What was detached, counted (the CLI prints it). `known`: anything at all was held for the openid."""

    resident: bool = False
    cases: list[str] = field(default_factory=list)  # numbers of the cases detached
    drafts: int = 0
    pushes_cancelled: int = 0  # pending outbox rows
    outbox_removed: int = 0  # their delivered or failed notices
    subscriptions: int = 0
    ballots: int = 0  # kept as anonymous votes
    poll_recipients: int = 0  # removed or kept under a stand-in
    messages: int = 0  # inbound messages and events removed
    messages_stripped: int = 0  # recent ones kept as bare dedupe rows
    gridworkers: list[str] = field(default_factory=list)  # workers whose WeChat binding was undone

    @property
    def known(self) -> bool:
        return self.resident or any(
            (
                self.cases,
                self.drafts,
                self.pushes_cancelled,
                self.outbox_removed,
                self.subscriptions,
                self.ballots,
                self.poll_recipients,
                self.messages,
                self.messages_stripped,
                self.gridworkers,
            )
        )


async def forget_resident(
    tx: Tx, openid: str, now: datetime, *, reason: str, texts: Texts, by: str = "system"
) -> Forgotten:
    """Detach `openid` from everything held for it, in the caller's transaction (see the module's policy).
    `reason` unfollow · request (the person asked, `frontdoor residents forget`); `by` the ledger's actor.
    Running it again finds nothing: the answer is an empty Forgotten."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {REASONS}, got {reason!r}")
    done = Forgotten()
    # The resident's row first, locked (PostgreSQL): a poll chunk writing to them holds it shared until it commits,
    # so it either finishes first — and what it wrote is detached below — or waits and finds them gone.
    held = "" if tx.is_sqlite else " FOR UPDATE"
    done.resident = await tx.val(f"SELECT id FROM residents WHERE openid = :openid{held}", openid=openid) is not None
    await _polls(tx, openid, done)
    await _cases(tx, openid, now, done, note=texts(f"forget.note_{reason}"), by=by)
    done.drafts = await tx.run("DELETE FROM dialog_states WHERE openid = :openid", openid=openid)
    done.pushes_cancelled = await tx.run(
        "DELETE FROM outbox WHERE openid = :openid AND status = 'pending'", openid=openid
    )
    done.outbox_removed = await tx.run("DELETE FROM outbox WHERE openid = :openid", openid=openid)
    done.subscriptions = await tx.run("DELETE FROM subscriptions WHERE openid = :openid", openid=openid)
    for row in await tx.all(
        "UPDATE grid_workers SET openid = NULL WHERE openid = :openid RETURNING name", openid=openid
    ):
        done.gridworkers.append(row["name"])
    await _messages(tx, openid, now, done)
    await tx.run("DELETE FROM residents WHERE openid = :openid", openid=openid)
    return done


async def _polls(tx: Tx, openid: str, done: Forgotten) -> None:
    """Their ballots become anonymous votes the tally still counts; the turnout keeps its voters."""
    # Every ballot over WeChat made its voter a recipient of the poll (polls._join_audience): the polls to look in.
    for row in await tx.all("SELECT DISTINCT poll_id FROM poll_recipients WHERE openid = :openid", openid=openid):
        poll = await polls.get(tx, row["poll_id"])
        if poll is not None:
            done.ballots += await tx.run(
                _ANONYMISE + "WHERE poll_id = :p AND voter_key = :k AND source = 'wechat'",
                p=poll.id,
                k=polls._voter_key(poll, openid),  # the one place the key's form is defined
            )
    # Any ballot still naming them (none, unless a key's form changed).
    done.ballots += await tx.run(
        _ANONYMISE + "WHERE openid = :openid",
        openid=openid,
    )
    done.poll_recipients = await tx.run(
        f"UPDATE poll_recipients SET openid = {_STAND_IN} WHERE openid = :openid AND voted_at IS NOT NULL",
        openid=openid,
    )
    done.poll_recipients += await tx.run("DELETE FROM poll_recipients WHERE openid = :openid", openid=openid)


async def _cases(tx: Tx, openid: str, now: datetime, done: Forgotten, *, note: str, by: str) -> None:
    """The case records stay; their link to the WeChat account goes, and the ledger says so."""
    rows = await tx.all(
        "UPDATE cases SET openid = NULL, updated_at = :now WHERE openid = :openid RETURNING id, number",
        now=tx.ts(now),
        openid=openid,
    )
    for row in sorted(rows, key=lambda r: r["id"]):
        await cases.add_ledger(tx, row["id"], now, by, LEDGER_ACTION, note=note)
        done.cases.append(row["number"])


async def _messages(tx: Tx, openid: str, now: datetime, done: Forgotten) -> None:
    """The transcript goes; a message recent enough to be retried keeps its bare dedupe row under a stand-in."""
    since = tx.ts(now - RETRY_GRACE)
    done.messages_stripped = await tx.run(
        _STRIP,
        openid=openid,
        since=since,
    )
    done.messages = await tx.run("DELETE FROM inbound_messages WHERE openid = :openid", openid=openid)
