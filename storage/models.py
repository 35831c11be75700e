"""The schema. Alembic migrations in storage/migrations are generated from and checked against these."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Resident(Base):
    """A WeChat follower, known by openid. The customer-service window is tracked from their inbound traffic."""

    __tablename__ = "residents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The customer-service window (bot/notify.py picks the channel from these): a message opens a long window,
    # a follow / menu click / QR scan a short one; each counts the customer-service messages sent since.
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cs_sent_since_message: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cs_sent_since_event: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The grid they joined (by its poster's QR code, or 我的网格), and how a named poll calls them.
    # (A plain column, no foreign key: SQLite adds it without rebuilding the table.)
    grid_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # Polls put to them while their customer-service window was closed, not yet mentioned to them
    # (denormalised from poll_recipients so the hot path reads it with the row it writes anyway).
    polls_waiting: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A bound grid worker's account: the router hands their messages to bot/handlers/gridworker.py first.
    is_gridworker: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Subscription(Base):
    """A resident's answer to a 订阅通知 template (WeChat's subscribe_msg_popup_event / _change_event): a notice
    outside the customer-service window may go as that template while it is accepted. For a one-off template
    (一次性订阅) `grants` counts the notices its acceptances still allow; a long-term one ignores it."""

    __tablename__ = "subscriptions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    template_id: Mapped[str] = mapped_column(String(128))
    # accept · reject
    status: Mapped[str] = mapped_column(String(16))
    grants: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("openid", "template_id", name="uq_subscriptions_openid_template"),)


class InboundMessage(Base):
    """One processed WeChat delivery. The unique dedupe key makes a retry find the first answer. A message's
    words (text) and media stay as the conversation staff read on the case page (bot/services/conversation.py):
    events are purged after webhook.dedupe_retention_hours, messages after webhook.conversation_retention_days."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    msg_type: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # "replied": reply holds the passive answer; "deferred": answered `success`, reply went to the outbox.
    status: Mapped[str] = mapped_column(String(16))
    reply: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # What the resident said: the text, a voice's recognition, a link, a place; and the media id of a photo,
    # voice or video.
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    media_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


class DialogState(Base):
    """A resident's open dialog, written after every step so a restart resumes exactly there."""

    __tablename__ = "dialog_states"
    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    dialog: Mapped[str] = mapped_column(String(40))
    step: Mapped[int] = mapped_column(Integer)
    # "step": answering steps[step]; "confirm": at the summary; "resume": idle draft, offered to continue.
    mode: Mapped[str] = mapped_column(String(16))
    editing: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict] = mapped_column(JSON)
    failed_tries: Mapped[int] = mapped_column(Integer, default=0)
    needs_human: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaseCounter(Base):
    """Per-day sequence for readable case numbers; incremented atomically."""

    __tablename__ = "case_counters"
    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


# Predicates of partial indexes: pending outbox rows; cases whose clock is running (bot/services/deadlines.py).
_PENDING = text("status = 'pending'")
_RUNNING = text("status IN ('accepted', 'assigned', 'in_progress', 'pending', 'reopened')")


class Case(Base):
    __tablename__ = "cases"
    # Repeat detection at intake looks up open cases of a category at one address or one spot on the map.
    __table_args__ = (
        Index("ix_cases_category_place", "category", "place_label"),
        Index("ix_cases_category_latitude", "category", "latitude"),
        # The console's inbox lists cases with a running clock by that clock's deadline (bot/services/inbox.py
        # uses the very same expression, so the planners of both databases take this index).
        Index(
            "ix_cases_due",
            text("(CASE WHEN status = 'pending' THEN accept_due_at ELSE handle_due_at END)"),
            "id",
            sqlite_where=_RUNNING,
            postgresql_where=_RUNNING,
        ),
        # … and a unit handler's inbox the same, for the cases their unit leads; newest first as well.
        Index(
            "ix_cases_unit_due",
            "lead_unit",
            text("(CASE WHEN status = 'pending' THEN accept_due_at ELSE handle_due_at END)"),
            "id",
            sqlite_where=_RUNNING,
            postgresql_where=_RUNNING,
        ),
        Index("ix_cases_unit_created", "lead_unit", "created_at", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    # The resident's WeChat account; NULL once they were detached from it (unfollowed, or asked: the case stays,
    # pushes to nobody, and its ledger says so — bot/services/forget.py).
    openid: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    category: Mapped[str] = mapped_column(String(40))
    place_label: Mapped[str] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    description: Mapped[str] = mapped_column(Text)
    photo_media_ids: Mapped[list] = mapped_column(JSON, default=list)
    voice_media_ids: Mapped[list] = mapped_column(JSON, default=list)
    video_media_ids: Mapped[list] = mapped_column(JSON, default=list)
    links: Mapped[list] = mapped_column(JSON, default=list)
    contact_phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accept_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The lifecycle (bot/services/lifecycle.py): who handles it, and when each step happened. The lead unit is
    # indexed with created_at (ix_cases_unit_created) and with the deadline (ix_cases_unit_due).
    lead_unit: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # 三事分解: 小事 / 民事 / 难事 (or the office's own names), from the category, changed by hand.
    tier: Mapped[str | None] = mapped_column(String(16), nullable=True)
    co_units: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    handle_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reply_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    merged_into: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The resident's rating after closing (1 满意, 2 基本满意, 3 不满意) and their comment.
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rating_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Deadlines (bot/services/deadlines.py): ok | due_soon | overdue for the clock now running; escalation
    # (提级督办) once overdue; the one extension of the handling time.
    deadline_state: Mapped[str] = mapped_column(String(16), default="ok", server_default="ok", index=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    extension_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The resident's grid when they filed it (areas.id; no foreign key, so SQLite adds the column in place and
    # keeps the search triggers of migration 0017): the inbox's grid filter and the dashboard's by-grid figures.
    grid_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    # Long-running cases (积案, bot/services/longrun.py): the responsible leader (包案领导), how often it was
    # reopened, and — closing by 息诉罢访 — when the resident's commitment to stop petitioning was recorded.
    leader: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    commitment_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # How it was closed, when not by an ordinary reply: 调解结案 (mediation) · 息诉罢访 (commitment).
    close_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)

    events: Mapped[list[CaseEvent]] = relationship(
        back_populates="case", order_by="CaseEvent.id", cascade="all, delete-orphan"
    )


class CaseCoUnit(Base):
    """A co-handling unit (协办单位) of a case — cases.co_units as rows, kept in step by the assign and return
    moves, so that one unit's cases are found through an index (the console's inbox, reports, the API)."""

    __tablename__ = "case_co_units"
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    unit: Mapped[str] = mapped_column(String(80), primary_key=True)

    __table_args__ = (Index("ix_case_co_units_unit", "unit", "case_id"),)


class CaseEvent(Base):
    """The ledger (台账): who did what to a case, when, and why."""

    __tablename__ = "case_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)

    case: Mapped[Case] = relationship(back_populates="events")


class OutboxMessage(Base):
    """A message to deliver to a resident, written in the transaction of the change it reports."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict] = mapped_column(JSON)
    # pending → sent | failed (gave up; last_error says why)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # Pending rows only (migration 0010 says why). The claim takes the first due rows by id, walked in this
        # index's order instead of sorting every due row …
        Index("ix_outbox_pending", "id", "next_attempt_at", sqlite_where=_PENDING, postgresql_where=_PENDING),
        # … and keeps one resident's messages in order by looking up their earlier pending rows.
        Index("ix_outbox_openid_pending", "openid", "id", sqlite_where=_PENDING, postgresql_where=_PENDING),
    )


class CaseMedia(Base):
    """A photo, voice or video attached to a case, downloaded from WeChat (media expires after 3 days) into the
    file store by bot/media.py. Written in the transaction that attaches the media id to the case."""

    __tablename__ = "case_media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    media_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))  # photo | voice | video
    # pending → stored | failed (gave up; last_error says why)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Where the file is, once stored.
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(128), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("case_id", "media_id", name="uq_case_media_case_id_media_id"),
        Index("ix_case_media_due", "status", "next_attempt_at"),
    )


class CalendarDay(Base):
    """The office's working-day calendar: a public holiday, or a weekend made a working day (调休).
    Days not listed follow the week (Monday–Friday work). Maintained with `frontdoor calendar import`."""

    __tablename__ = "calendar_days"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, the office's local date
    kind: Mapped[str] = mapped_column(String(8))  # holiday | workday


class DeadlineReminder(Base):
    """A durable reminder of a case's clock: fired once by whichever scheduler tick claims it first."""

    __tablename__ = "deadline_reminders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    clock: Mapped[str] = mapped_column(String(16))  # accept | handle
    kind: Mapped[str] = mapped_column(String(16))  # warning | overdue | escalation
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the deadline this reminder belongs to
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # case:clock:kind:due — one row per reminder, however often the clock is armed.
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    # pending → done | obsolete (its clock stopped or moved before it fired)
    status: Mapped[str] = mapped_column(String(16))
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_deadline_reminders_due", "status", "fire_at"),)


class WechatToken(Base):
    """The account's access token, shared by every instance: read from here, refreshed by whoever holds the
    lease (lease_until is taken with one conditional UPDATE), never fetched by every request."""

    __tablename__ = "wechat_tokens"
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Refreshed from this moment on (a margin before WeChat's expiry); still usable until expires_at.
    refresh_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Summons(Base):
    """Joint dispatch (街道吹哨、部门报到): a unit summoned to a case with an urgency grade (蓝/黄/红) must check in
    by due_at. The row is also the check-in clock's durable reminder: a scheduler tick claims it with a lease
    when due_at passes without a check-in, flags it late and escalates (提级督办) once (bot/services/dispatch.py)."""

    __tablename__ = "summons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    unit: Mapped[str] = mapped_column(String(80))
    urgency: Mapped[str] = mapped_column(String(4))  # 蓝 | 黄 | 红
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    summoned_by: Mapped[str] = mapped_column(String(64))
    summoned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # waiting → checked_in | retired (the case stopped being handled before the unit came)
    status: Mapped[str] = mapped_column(String(16))
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    checked_in_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Past due_at without a check-in, or checked in after it; escalated_at: when 提级督办 was ledgered (once).
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("case_id", "unit", name="uq_summons_case_id_unit"),
        Index("ix_summons_due", "status", "due_at"),
    )


class Operator(Base):
    """A member of staff who signs in to the console (bot/console/). The password is an argon2 hash; repeated
    failed sign-ins lock the account for a while (settings [console])."""

    __tablename__ = "operators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # admin · dispatcher · unit · supervisor · gridworker · viewer (bot/console/roles.py says what each may do)
    role: Mapped[str] = mapped_column(String(16))
    # A unit handler's unit (承办单位): they see and act on that unit's cases only.
    unit: Mapped[str | None] = mapped_column(String(80), nullable=True)
    password_hash: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OperatorSession(Base):
    """A signed-in browser. The cookie holds a random token; only its sha256 is stored, so a copy of the
    database signs nobody in. Each session has its own CSRF token for the console's forms."""

    __tablename__ = "operator_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditEntry(Base):
    """Every operator action in the console (sign-in, sign-out, each case action, refusals of access)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    operator: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # ok · refused · failed
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CannedReply(Base):
    """A reply staff use again and again, managed by admins; {案件编号} and the other placeholders of
    bot/services/canned.py are filled in for the case at hand."""

    __tablename__ = "canned_replies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(40), unique=True)
    body: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A token other city platforms call the JSON API (/api/v1) and Open311 (/open311/v2) with. It acts with
    its role and unit exactly as an operator in the console would; only its sha256 is stored, and a revoked
    token keeps its row (and its name, which the audit log knows it by)."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(48), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # One of bot.services.operators.ROLES; unit: the unit of a "unit" token (承办单位).
    role: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str | None] = mapped_column(String(80), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Moved on at most once a minute (bot/api/auth.py).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# ---- grids and opinion polls (意见征集) ------------------------------------------------------------------------


class Area(Base):
    """A node of the geography tree: 区 (district) → 街道 (street) → 社区 (community) → 网格 (grid). `code` is the
    stable key the CLI, the CSV import and a grid poster's QR scene use; names may repeat under other parents."""

    __tablename__ = "areas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True, nullable=True)
    # district · street · community · grid
    level: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(80))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("parent_id", "name", name="uq_areas_parent_name"),)


class GridWorker(Base):
    """A 网格员. Bound to a WeChat account by a one-time invite code (绑定 <code>), after which the router treats
    that openid's messages as the worker's; may also have a console account (operator_name)."""

    __tablename__ = "grid_workers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    openid: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    operator_name: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class GridWorkerArea(Base):
    """An area a grid worker looks after: a grid, or a community (and so every grid in it)."""

    __tablename__ = "grid_worker_areas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("grid_workers.id"))
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)

    __table_args__ = (UniqueConstraint("worker_id", "area_id", name="uq_grid_worker_areas_worker_area"),)


class GridInvite(Base):
    """A one-time invite code binding a grid worker's WeChat account. Only the code's sha256 is stored."""

    __tablename__ = "grid_invites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("grid_workers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Poll(Base):
    """An opinion poll (意见征集) put to the residents of one or more grids (grid_ids: the audience's grids, fixed
    at creation). max_choices 1 is single choice. Closing, the reminder and distribution are poll_jobs rows."""

    __tablename__ = "polls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question: Mapped[str] = mapped_column(Text)
    options: Mapped[list] = mapped_column(JSON)
    max_choices: Mapped[int] = mapped_column(Integer, default=1)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=True)
    # True: residents may see the tally while it runs; False: only once closed.
    live_results: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_change: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_voters: Mapped[bool] = mapped_column(Boolean, default=False)
    # The areas chosen (ids, for display) and the grids they cover (ids, for eligibility).
    audience: Mapped[list] = mapped_column(JSON)
    grid_ids: Mapped[list] = mapped_column(JSON)
    creator_worker_id: Mapped[int | None] = mapped_column(ForeignKey("grid_workers.id"), index=True, nullable=True)
    creator_name: Mapped[str] = mapped_column(String(64))
    # chat · console
    created_via: Mapped[str] = mapped_column(String(8))
    # open · closed
    status: Mapped[str] = mapped_column(String(8), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    remind_before_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Distribution's figures: residents in the audience, sent the poll as a message, told on their next message.
    audience_size: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reached: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    waiting: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    distributed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The case this poll is evidence for (e.g. the parking-fee dispute).
    case_number: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)


class PollRecipient(Base):
    """A resident the poll was put to: as a message (channel 'message') or, outside the customer-service window,
    told on their next message ('waiting' until told_at). voted_at says they voted (not what: a ballot of an
    anonymous poll holds no openid)."""

    __tablename__ = "poll_recipients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"))
    openid: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    told_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the poll was last put in front of them (sent, or shown by 投票): a bare number answers the latest.
    offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    voted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (UniqueConstraint("poll_id", "openid", name="uq_poll_recipients_poll_openid"),)


class PollBallot(Base):
    """One ballot per voter per poll, enforced by the unique (poll_id, voter_key): voter_key is the openid's
    hash for a resident's ballot (the openid itself only in a named poll), `d:<household>` for a vote a grid
    worker collected door to door (source 'door', counted separately)."""

    __tablename__ = "poll_ballots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"))
    voter_key: Mapped[str] = mapped_column(String(96))
    openid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # wechat · door
    source: Mapped[str] = mapped_column(String(8))
    choices: Mapped[list] = mapped_column(JSON)
    # A named poll's voter (姓名/门牌), or the household a door-to-door vote came from.
    voter_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    entered_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("poll_id", "voter_key", name="uq_poll_ballots_poll_voter"),)


class PollJob(Base):
    """Durable work of a poll — distribute, remind, close — fired once by whichever scheduler tick claims it
    (lease, then a finish that only counts while the lease stands), so a restart neither loses nor doubles it."""

    __tablename__ = "poll_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    poll_id: Mapped[int] = mapped_column(ForeignKey("polls.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    fire_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    # pending → done | obsolete
    status: Mapped[str] = mapped_column(String(12))
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Distribution and reminders go in chunks: the last resident (recipient) id done, moved with each chunk.
    done_through: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (Index("ix_poll_jobs_due", "status", "fire_at"),)


# ---- field work: visits, mediation, long-running cases (issue 6) ------------------------------------------------


class Visit(Base):
    """A circuit visit or home visit (巡回接访、上门服务): planned (a date, a team such as the 6+N units, the cases
    to take along) and then done (where, who was met, what was agreed, photos), or cancelled."""

    __tablename__ = "visits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # planned · done · cancelled
    status: Mapped[str] = mapped_column(String(12), index=True)
    planned_for: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True, nullable=True)
    place_label: Mapped[str | None] = mapped_column(Text, nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The grid visited (areas.id), when the visit was to a grid rather than (only) to cases.
    grid_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    team: Mapped[list] = mapped_column(JSON, default=list)
    met: Mapped[str | None] = mapped_column(Text, nullable=True)
    agreed: Mapped[str | None] = mapped_column(Text, nullable=True)
    photo_media_ids: Mapped[list] = mapped_column(JSON, default=list)
    # Who recorded it (an operator's or a grid worker's name) and how: chat · console.
    recorded_by: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VisitCase(Base):
    """A case taken along on a visit; `resolved`: the dispute was settled on that visit (化解)."""

    __tablename__ = "visit_cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("visit_id", "case_id", name="uq_visit_cases_visit_case"),)


class Mediation(Base):
    """People's mediation (人民调解) as a case's handling route: the mediators, sessions, and the result —
    agreed (terms recorded, the signed agreement a case_files row), partial, or failed (back to ordinary handling)."""

    __tablename__ = "mediations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    # open · agreed · partial · failed
    status: Mapped[str] = mapped_column(String(12))
    # [{"name": …, "role": 人民调解员 / 村干部 / 居民代表 …}, …]
    mediators: Mapped[list] = mapped_column(JSON, default=list)
    terms: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MediationSession(Base):
    __tablename__ = "mediation_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mediation_id: Mapped[int] = mapped_column(ForeignKey("mediations.id"), index=True)
    held_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaseFile(Base):
    """A document attached to a case by staff: a signed mediation agreement (调解协议书), a commitment to stop
    petitioning (息诉罢访承诺书), or another paper. The file lives in the media store; this row says what it is."""

    __tablename__ = "case_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    # agreement · commitment · other
    kind: Mapped[str] = mapped_column(String(12))
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
