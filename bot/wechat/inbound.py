"""The small typed message handlers receive. Only bot/wechat/ knows XML and wechatpy's classes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    label: str


@dataclass(frozen=True)
class SubscriptionChoice:
    """One template of a 订阅通知 event: what the resident chose (accept · reject), or for a delivery report
    (subscribe_msg_sent_event) WeChat's status of the message sent (success · failed:user block · …)."""

    template_id: str
    status: str
    # The popup's or the settings page's answer (popup · change), or a delivery report (sent).
    source: str


@dataclass(frozen=True)
class Inbound:
    openid: str
    # text · image · voice · video · shortvideo · location · link · event · other
    kind: str
    created: int
    msg_id: int | None = None
    # For events: subscribe · subscribe_scan · unsubscribe · scan · location · click · view · … (lower case)
    event: str | None = None
    event_key: str | None = None
    # Text, or a voice message's speech recognition.
    text: str | None = None
    media_id: str | None = None
    location: Location | None = None
    # A tapped msgmenu option (a poll's option): its id, as WeChat sends it back in <bizmsgmenuid>.
    menu_id: str | None = None
    # The 订阅通知 events (subscribe_msg_popup_event · _change_event · _sent_event): one entry per template.
    subscriptions: tuple[SubscriptionChoice, ...] = ()

    @property
    def dedupe_key(self) -> str:
        """WeChat retries carry the same MsgId; events have none, so FromUserName + CreateTime."""
        if self.kind != "event" and self.msg_id:
            return f"m:{self.msg_id}"
        return f"e:{self.openid}:{self.created}:{self.event or self.kind}:{self.event_key or ''}"

    @property
    def is_interaction(self) -> bool:
        """Whether WeChat opens a customer-service window for this (a message, or a click/follow/scan)."""
        if self.kind != "event":
            return True
        return self.event in ("subscribe", "subscribe_scan", "scan", "click")
