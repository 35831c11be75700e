"""Residents' 订阅通知 subscriptions: which templates a resident accepted, so a notice outside the customer-service
window can go as one (bot/notify.py, channel "subscribe").

WeChat tells the account what a resident chose in the subscription popup (subscribe_msg_popup_event) or later in
their settings (subscribe_msg_change_event); a delivery report (subscribe_msg_sent_event) that says the resident
blocked the messages counts as a rejection. A long-term template (长期订阅) stays accepted until rejected; a
one-off one (一次性订阅, settings [push] subscribe_one_off) allows one notice per acceptance in the popup, counted
in `grants`. When WeChat itself refuses a send (43101) the record was wrong and becomes a rejection.

The outbox worker looks residents up through their outbox row, so no statement it runs carries an openid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from storage.fast import Tx

_UPSERT = """
INSERT INTO subscriptions (openid, template_id, status, grants, updated_at)
VALUES (:openid, :template_id, :status, :grants, :now)
ON CONFLICT (openid, template_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at,
    grants = CASE WHEN excluded.status = 'accept' THEN subscriptions.grants + excluded.grants ELSE 0 END"""
_OF_ROW = "(SELECT openid FROM outbox WHERE id = :row_id)"
_LOOKUP = f"SELECT status, grants FROM subscriptions WHERE openid = {_OF_ROW} AND template_id = :template_id"
_SPEND = f"""
UPDATE subscriptions SET grants = grants - 1
WHERE openid = {_OF_ROW} AND template_id = :template_id AND grants > 0"""
_REFUSED = f"""
UPDATE subscriptions SET status = 'reject', grants = 0, updated_at = :now
WHERE openid = {_OF_ROW} AND template_id = :template_id"""
# ErrorStatus of a delivery report when the resident turned the messages off.
_BLOCKED = "failed:user block"


@dataclass(frozen=True)
class Subscription:
    status: str  # accept · reject
    grants: int  # notices a one-off template still allows

    def allows(self, one_off: bool) -> bool:
        return self.status == "accept" and (not one_off or self.grants > 0)


async def record(
    tx: Tx, openid: str, choices: Iterable[tuple[str, str, str]], now: datetime, *, one_off: Iterable[str] = ()
) -> int:
    """What a 订阅通知 event says the resident chose: (template id, status, source) per template, source popup ·
    change · sent (a delivery report, status its ErrorStatus). How many templates it changed."""
    one_off = frozenset(one_off)
    changed = 0
    for template_id, said, source in choices:
        if source == "sent":
            if said != _BLOCKED:
                continue  # delivered, or WeChat's own failure: nothing the resident chose
            status = "reject"
        elif said in ("accept", "reject"):
            status = said
        else:
            continue  # WeChat has other strings (e.g. "ban"); nothing to grant on them
        grants = 1 if status == "accept" and source == "popup" and template_id in one_off else 0
        changed += await tx.run(
            _UPSERT, openid=openid, template_id=template_id, status=status, grants=grants, now=tx.ts(now)
        )
    return changed


async def forget(tx: Tx, openid: str) -> None:
    """The resident unfollowed: WeChat drops their subscriptions, and so do we."""
    await tx.run("DELETE FROM subscriptions WHERE openid = :openid", openid=openid)


# --- the outbox worker's side ----------------------------------------------------------------------------------


async def for_row(tx: Tx, row_id: int, template_id: str) -> Subscription | None:
    """The subscription of the outbox row's resident to this template, if they ever answered it."""
    row = await tx.one(_LOOKUP, row_id=row_id, template_id=template_id)
    return None if row is None else Subscription(row["status"], row["grants"])


async def spend(tx: Tx, row_id: int, template_id: str) -> None:
    """A one-off template carried the row's notice: one acceptance used up."""
    await tx.run(_SPEND, row_id=row_id, template_id=template_id)


async def refused(tx: Tx, row_id: int, template_id: str, now: datetime) -> None:
    """WeChat refused the template for the row's resident (43101): our record said otherwise, and was wrong."""
    await tx.run(_REFUSED, row_id=row_id, template_id=template_id, now=tx.ts(now))
