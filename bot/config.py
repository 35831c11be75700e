"""Typed settings: defaults ← config.toml ← FRONTDOOR_<SECTION>_<KEY> environment variables.

Every setting is declared once below (section dataclass + field). A bad value stops start-up with a
ConfigError naming the setting, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "FRONTDOOR_"
DEFAULT_CONFIG_FILE = "config.toml"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    # Where the public reaches this server; only used in printed hints.
    public_url: str = ""
    timezone: str = "Asia/Shanghai"
    # Reverse proxies (CIDRs) whose X-Forwarded-For names the client, for audit entries and the /metrics
    # allow-list (bot/remote.py): the nginx in front, e.g. ["127.0.0.1/32", "::1/128"]. Empty: the TCP peer.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite+aiosqlite:///data/frontdoor.db"
    # Only for PostgreSQL; SQLite uses a small fixed pool (one writer at a time anyway).
    pool_size: int = 10
    sqlite_busy_timeout_ms: int = 5000


@dataclass(frozen=True)
class WechatSettings:
    token: str = "frontdoorDevToken"
    # 43 characters (base64 of 32 bytes without '='); empty = plain mode only.
    encoding_aes_key: str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    previous_encoding_aes_key: str = ""
    # safe: only encrypted messages are accepted (a plain request's signature does not cover its body, so
    # anyone holding one recent URL could forge it). compatible: both, while switching modes. plain: no AES.
    encryption_mode: str = "safe"
    app_id: str = "wxfrontdoordev00001"
    app_secret: str = "frontdoor-dev-secret"
    # Outbound API base; the built-in fake when fake_api is on.
    api_base_url: str = "https://api.weixin.qq.com"
    # Where a QR code's image is fetched by its ticket: another host than the API (the fake when fake_api is on).
    qrcode_image_url: str = "https://mp.weixin.qq.com/cgi-bin/showqrcode"
    # Serve the built-in fake WeChat API under /fake-wechat/ and talk to it instead of WeChat.
    fake_api: bool = True
    api_timeout_seconds: float = 5.0
    api_max_retries: int = 2


@dataclass(frozen=True)
class WebhookSettings:
    path: str = "/wechat"
    timestamp_window_seconds: int = 300
    reply_budget_seconds: float = 4.0
    max_body_bytes: int = 65536
    # Longest passive/customer-service text, in UTF-8 bytes; longer texts are split.
    max_text_bytes: int = 2000
    # How long answered messages are remembered for deduplication (WeChat retries within seconds).
    dedupe_retention_hours: int = 168
    # What residents wrote stays this long as the conversation staff read on the case page, then is purged.
    conversation_retention_days: int = 365


@dataclass(frozen=True)
class DialogSettings:
    idle_timeout_minutes: int = 30
    max_failed_tries: int = 3
    # Drafts untouched this long are deleted (they may hold a phone number nobody will submit).
    draft_retention_days: int = 30


@dataclass(frozen=True)
class ComplaintSettings:
    categories: tuple[str, ...] = ("物业与停车", "邻里纠纷", "土地与征收", "房屋损坏", "环境与噪音", "其他")
    case_number_prefix: str = "XF"
    acceptance_days: int = 15
    max_description_chars: int = 2000
    max_photos: int = 9
    # Told to residents who ask for a person outside a dialog (12345 is the citizens' service hotline).
    hotline: str = "12345"


@dataclass(frozen=True)
class LifecycleSettings:
    # 信访工作条例: an accepted matter is handled within 60 days.
    handling_days: int = 60
    # A unit may return a wrongly routed case (退回) this long after it was assigned.
    return_window_hours: int = 24
    # The office's policy: a resident's 不满意 sends the closed case back (发回重办).
    reopen_when_unsatisfied: bool = True


@dataclass(frozen=True)
class RoutingSettings:
    # 分流: "category=lead unit" — where a case of that category goes when routed by the rules.
    units: tuple[str, ...] = (
        "物业与停车=街道办事处",
        "邻里纠纷=社区居委会",
        "土地与征收=自然资源局",
        "房屋损坏=住房和城乡建设局",
        "环境与噪音=生态环境局",
        "其他=信访局",
    )
    # 三事分解: "category=tier" (小事 / 民事 / 难事) and "tier=the pool of handlers" it goes to.
    tiers: tuple[str, ...] = (
        "物业与停车=民事",
        "邻里纠纷=小事",
        "土地与征收=难事",
        "房屋损坏=民事",
        "环境与噪音=小事",
        "其他=民事",
    )
    pools: tuple[str, ...] = ("小事=法律明白人", "民事=法律顾问", "难事=司法机构")
    # 属地: "street/category=lead unit", "street/*=lead unit" for every other category of that street (街道/乡镇).
    # A case whose place names the street goes to that unit rather than to the one `units` gives its category.
    by_street: tuple[str, ...] = ()
    # 属地 by the resident's grid, tried before by_street: "code/category=lead unit" or "code/*=lead unit", the
    # code of a grid, or of a community, street or district for every grid under it (the most specific wins).
    by_grid: tuple[str, ...] = ()

    def table(self, name: str) -> dict[str, str]:
        return dict(item.split("=", 1) for item in getattr(self, name))


@dataclass(frozen=True)
class DeadlinesSettings:
    # natural: calendar days; working: days the calendar (frontdoor calendar import) says are working days.
    day_kind: str = "natural"
    # Warn when this share of a clock's time has passed (信访: e.g. 75%).
    warn_share: float = 0.75
    # Escalate (提级督办) this many days after a deadline passed (0 = together with the overdue flag).
    escalate_after_days: int = 3
    # One extension of the handling time, at most this many days (信访工作条例: 30).
    extension_max_days: int = 30
    tick_seconds: float = 30.0
    batch_size: int = 100
    lease_seconds: int = 60


URGENCIES = ("蓝", "黄", "红")


@dataclass(frozen=True)
class DispatchSettings:
    # 街道吹哨、部门报到: a summoned unit checks in within this many minutes (often 30) …
    checkin_minutes: int = 30
    # … or, for an urgency grade (蓝 / 黄 / 红), "grade=minutes", e.g. "红=15".
    urgency_minutes: tuple[str, ...] = ()

    def minutes_for(self, urgency: str) -> int:
        table = {k.strip(): int(v) for k, v in (entry.split("=", 1) for entry in self.urgency_minutes)}
        return table.get(urgency, self.checkin_minutes)


@dataclass(frozen=True)
class OutboxSettings:
    tick_seconds: float = 1.0
    batch_size: int = 50
    lease_seconds: int = 60
    max_attempts: int = 8
    backoff_base_seconds: float = 5.0


@dataclass(frozen=True)
class MediaSettings:
    # Photos, voice and video of a case, fetched from WeChat (which keeps them 3 days) by bot/media.py.
    store_dir: str = "data/media"
    tick_seconds: float = 5.0
    batch_size: int = 10
    # Retryable failures (busy, timeouts) before giving up; expired media (40007) fails at once.
    max_attempts: int = 10
    # Retry after 30 s, 60 s, 120 s … (capped at an hour).
    backoff_base_seconds: float = 30.0
    # A claim older than this is taken over (the downloader died); must exceed the slowest download.
    lease_seconds: int = 120


FALLBACK_CHANNELS = ("subscribe", "template")


@dataclass(frozen=True)
class PushSettings:
    # The customer-service window as the bot counts it from residents' inbound traffic (bot/notify.py): after a
    # message, window_quota messages within window_hours; after a follow, menu click or QR scan, event_window_quota
    # within event_window_seconds. WeChat has changed these numbers over the years: keep them in step with it.
    window_hours: int = 48
    window_quota: int = 5
    event_window_seconds: int = 60
    event_window_quota: int = 3
    # Outside the window a notice goes as a template message: "notice=template_id" entries, the notice kinds of
    # bot/texts.toml [notice] (accepted, refused, assigned, replied, closed, …); "*" for every other notice.
    templates: tuple[str, ...] = ()
    # How a notice fills the template: which template field gets the title, the case number, the status and the
    # notice's text ("" leaves that one out).
    template_title_field: str = "first"
    template_number_field: str = "keyword1"
    template_status_field: str = "keyword2"
    template_text_field: str = "remark"
    # The page a template message opens; {number} is the case number. "" = none.
    template_url: str = ""
    # Outside the window (or when WeChat answers 45015/45047) these channels are tried in this order:
    # "subscribe" (订阅通知, message/subscribe/bizsend: only to a resident who accepted the notice's subscription
    # template, as WeChat's subscribe_msg_* events tell) and "template" (模板消息, above).
    fallback: tuple[str, ...] = ("template",)
    # 订阅通知 templates: "notice=template_id" entries like `templates`, "*" for every other notice.
    subscribe_templates: tuple[str, ...] = ()
    # Template ids that are one-off (一次性订阅): each acceptance allows one notice. The others are long-term
    # (长期订阅, open to public-service accounts): accepted once, they carry every notice until the resident rejects.
    subscribe_one_off: tuple[str, ...] = ()
    # The fields a 订阅通知 template has for the case number, the status, the notice's text and the time ("" leaves
    # one out). WeChat limits each value by its field's type (the prefix): the text is shortened to fit.
    subscribe_number_field: str = "character_string1"
    subscribe_status_field: str = "phrase2"
    subscribe_text_field: str = "thing3"
    subscribe_time_field: str = "time4"
    # The web page a 订阅通知 opens; {number} is the case number. "" = none.
    subscribe_page: str = ""
    # One instance refreshes the shared access token at a time; a refresher that died is replaced after this.
    token_lease_seconds: int = 60

    def template_for(self, notice: str | None) -> str | None:
        return _by_notice(self.templates, notice)

    def subscribe_template_for(self, notice: str | None) -> str | None:
        return _by_notice(self.subscribe_templates, notice)


def _by_notice(entries: tuple[str, ...], notice: str | None) -> str | None:
    table = dict(entry.split("=", 1) for entry in entries)
    return table.get(notice or "") or table.get("*") or None


@dataclass(frozen=True)
class FakeWechatSettings:
    # Numbers WeChat has changed over the years; the fake enforces whatever is set here.
    window_hours: int = 48
    window_quota: int = 5
    event_window_seconds: int = 60
    event_window_quota: int = 3
    token_ttl_seconds: int = 7200
    media_ttl_days: int = 3
    # media/get answers a video with a temporary download link; it dies after this (WeChat's figure: unverified).
    video_link_ttl_seconds: int = 600


@dataclass(frozen=True)
class TextsSettings:
    # A city's own TOML file overriding any sentence of bot/texts.toml, key by key.
    override_file: str = ""


@dataclass(frozen=True)
class ConsoleSettings:
    # The operator console (bot/console/) at /console/.
    # A session ends after this many hours without a request (sliding); signing in again starts a new one.
    session_hours: int = 12
    # This many failed sign-ins in a row lock the account for lockout_minutes.
    max_failed_logins: int = 5
    lockout_minutes: int = 15
    # Cookies are marked Secure when the request came over HTTPS (directly, or per X-Forwarded-Proto from the
    # reverse proxy): "auto". "always" for a deployment only ever behind HTTPS, "never" for plain-HTTP testing.
    secure_cookies: str = "auto"
    # Cases per inbox page.
    page_size: int = 50


@dataclass(frozen=True)
class PollSettings:
    # Opinion polls (意见征集, bot/services/polls.py): how long one may run …
    min_hours: int = 1
    max_days: int = 30
    # … the scheduler tick that distributes, reminds and closes them (durable poll_jobs rows, leased) …
    tick_seconds: float = 2.0
    lease_seconds: int = 120
    batch_size: int = 20
    # … residents per distribution or reminder transaction …
    chunk_size: int = 500
    # … and how long a grid worker's invite code (绑定 <code>) stays valid.
    invite_hours: int = 72


@dataclass(frozen=True)
class FieldWorkSettings:
    # Field work (issue 6): a case open longer than this many days, or reopened this many times, is a
    # long-running case (积案) on the supervisors' list, wanting a responsible leader (包案领导) …
    long_running_days: int = 180
    long_running_reopens: int = 2
    # … and documents staff attach to cases (a signed mediation agreement, a 息诉罢访 commitment) are at most
    # this large (bytes), of these types.
    max_file_bytes: int = 10 * 1024 * 1024
    file_types: tuple[str, ...] = ("application/pdf", "image/jpeg", "image/png")


@dataclass(frozen=True)
class MetricsSettings:
    # GET /metrics in the Prometheus text format. It shows case counts: only these client networks (CIDRs) may
    # read it. Behind a reverse proxy every request comes from the proxy's address, so the proxy must refuse
    # /metrics from outside itself.
    enabled: bool = True
    allow_from: tuple[str, ...] = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class LoggingSettings:
    # text: one readable line per record (a developer's terminal); json: one JSON object per line (deployments).
    format: str = "text"
    level: str = "info"


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    wechat: WechatSettings = field(default_factory=WechatSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    dialog: DialogSettings = field(default_factory=DialogSettings)
    complaint: ComplaintSettings = field(default_factory=ComplaintSettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    deadlines: DeadlinesSettings = field(default_factory=DeadlinesSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    push: PushSettings = field(default_factory=PushSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    fake_wechat: FakeWechatSettings = field(default_factory=FakeWechatSettings)
    texts: TextsSettings = field(default_factory=TextsSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    polls: PollSettings = field(default_factory=PollSettings)
    fieldwork: FieldWorkSettings = field(default_factory=FieldWorkSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    @property
    def is_sqlite(self) -> bool:
        return self.database.url.startswith("sqlite")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.server.timezone)


def _convert(name: str, hint: typing.Any, raw: typing.Any) -> typing.Any:
    """Turn a TOML value or an environment string into the declared type, or raise ConfigError."""
    from_env = isinstance(raw, str)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            if from_env and raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if from_env and raw.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if hint is str:
            if not isinstance(raw, str):
                raise ValueError("expected a string")
            return raw
        if typing.get_origin(hint) is tuple:
            if from_env:
                raw = [item.strip() for item in raw.split(",") if item.strip()]
            if not isinstance(raw, list | tuple) or not all(isinstance(i, str) for i in raw):
                raise ValueError("expected a list of strings")
            return tuple(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {exc} (got {raw!r})") from None
    raise ConfigError(f"setting {name}: unsupported type")  # pragma: no cover - declaration bug


def _build_section(section: str, cls: type, table: dict, env: typing.Mapping[str, str]) -> typing.Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"setting {section}.{sorted(unknown)[0]}: unknown setting")
    values = {}
    for f in dataclasses.fields(cls):
        name = f"{section}.{f.name}"
        env_name = f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"
        if env_name in env:
            values[f.name] = _convert(env_name, hints[f.name], env[env_name])
        elif f.name in table:
            values[f.name] = _convert(name, hints[f.name], table[f.name])
    return cls(**values)


def load_settings(path: str | os.PathLike | None = None, env: typing.Mapping[str, str] | None = None) -> Settings:
    """Read settings. `path=None` reads ./config.toml when present, else defaults only."""
    env = os.environ if env is None else env
    data: dict = {}
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    sections = {}
    for f in dataclasses.fields(Settings):
        table = data.pop(f.name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"setting {f.name}: expected a [{f.name}] table")
        sections[f.name] = _build_section(f.name, typing.get_type_hints(Settings)[f.name], table, env)
    if data:
        raise ConfigError(f"setting {sorted(data)[0]}: unknown section")
    settings = Settings(**sections)
    validate(settings)
    return settings


def _check_aes_key(name: str, key: str) -> None:
    if len(key) != 43:
        raise ConfigError(f"setting {name}: must be 43 characters (WeChat's EncodingAESKey), got {len(key)}")
    try:
        decoded = base64.b64decode(key + "=", validate=True)
    except binascii.Error:
        raise ConfigError(f"setting {name}: not valid base64") from None
    if len(decoded) != 32:  # pragma: no cover - 43 base64 chars always decode to 32 bytes
        raise ConfigError(f"setting {name}: must decode to 32 bytes")


def validate(s: Settings) -> None:
    if not 1 <= s.server.port <= 65535:
        raise ConfigError(f"setting server.port: must be 1–65535, got {s.server.port}")
    try:
        ZoneInfo(s.server.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"setting server.timezone: unknown time zone {s.server.timezone!r}") from None
    if not s.database.url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "setting database.url: must start with sqlite+aiosqlite:// or postgresql+asyncpg://, "
            f"got {s.database.url!r}"
        )
    if not re.fullmatch(r"[A-Za-z0-9]{3,32}", s.wechat.token):
        raise ConfigError("setting wechat.token: required, letters and digits (3–32 characters)")
    if s.wechat.encryption_mode not in ("safe", "compatible", "plain"):
        raise ConfigError("setting wechat.encryption_mode: must be safe, compatible or plain")
    if s.wechat.encryption_mode != "plain" and not s.wechat.encoding_aes_key:
        raise ConfigError(f"setting wechat.encoding_aes_key: required in {s.wechat.encryption_mode} mode")
    if s.wechat.encoding_aes_key:
        _check_aes_key("wechat.encoding_aes_key", s.wechat.encoding_aes_key)
    if s.wechat.previous_encoding_aes_key:
        _check_aes_key("wechat.previous_encoding_aes_key", s.wechat.previous_encoding_aes_key)
    if not s.wechat.app_id:
        raise ConfigError("setting wechat.app_id: required")
    if not s.wechat.app_secret:
        raise ConfigError("setting wechat.app_secret: required")
    if not s.wechat.qrcode_image_url.startswith(("https://", "http://")):
        raise ConfigError("setting wechat.qrcode_image_url: must be an http:// or https:// URL")
    if not s.wechat.fake_api:
        # The development values are public (they are in this repository): anyone could sign with them.
        dev = WechatSettings()
        for name in ("app_secret", "token", "encoding_aes_key", "app_id"):
            if getattr(s.wechat, name) and getattr(s.wechat, name) == getattr(dev, name):
                raise ConfigError(f"setting wechat.{name}: the development value cannot be used with the real WeChat")
    elif s.server.host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            "setting wechat.fake_api: the fake WeChat API has no authentication and shows what was sent to "
            f"residents; serve it on a loopback host only (server.host is {s.server.host!r})"
        )
    if not s.webhook.path.startswith("/"):
        raise ConfigError("setting webhook.path: must start with /")
    if not 0.1 <= s.webhook.reply_budget_seconds <= 4.8:
        raise ConfigError("setting webhook.reply_budget_seconds: must be between 0.1 and 4.8 (WeChat waits 5 s)")
    if s.webhook.dedupe_retention_hours < 1:
        raise ConfigError("setting webhook.dedupe_retention_hours: must be at least 1")
    if s.webhook.conversation_retention_days < 1:
        raise ConfigError("setting webhook.conversation_retention_days: must be at least 1")
    if s.webhook.max_body_bytes < 1024:
        raise ConfigError("setting webhook.max_body_bytes: must be at least 1024")
    if not 200 <= s.webhook.max_text_bytes <= 2048:
        raise ConfigError("setting webhook.max_text_bytes: must be between 200 and 2048")
    if len(s.complaint.categories) < 1:
        raise ConfigError("setting complaint.categories: at least one category")
    if s.dialog.idle_timeout_minutes < 1:
        raise ConfigError("setting dialog.idle_timeout_minutes: must be at least 1")
    for name in ("units", "tiers", "pools"):
        for item in getattr(s.routing, name):
            key, _, value = item.partition("=")
            if not key.strip() or not value.strip():
                raise ConfigError(f"setting routing.{name}: {item!r} is not of the form key=value")
    for item in s.routing.by_street:
        if not re.fullmatch(r"[^/=\s]+/[^/=]+=[^=]+", item.strip()):
            raise ConfigError(f"setting routing.by_street: {item!r} is not of the form street/category=unit")
        category = item.split("/", 1)[1].split("=", 1)[0].strip()
        if category != "*" and category not in s.complaint.categories:
            raise ConfigError(f"setting routing.by_street: {category!r} in {item!r} is not one of complaint.categories")
    for item in s.routing.by_grid:
        # An area's code is what bot/services/areas.py CODE allows.
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}/[^/=]+=[^=]*[^=\s][^=]*", item.strip()):
            raise ConfigError(f"setting routing.by_grid: {item!r} is not of the form code/category=unit")
        category = item.split("/", 1)[1].split("=", 1)[0].strip()
        if category != "*" and category not in s.complaint.categories:
            raise ConfigError(f"setting routing.by_grid: {category!r} in {item!r} is not one of complaint.categories")
    pools = s.routing.table("pools")
    for category, tier in s.routing.table("tiers").items():
        if tier not in pools:
            raise ConfigError(f"setting routing.tiers: tier {tier!r} of {category!r} has no entry in routing.pools")
    if s.lifecycle.handling_days < 1 or s.lifecycle.return_window_hours < 0:
        raise ConfigError("setting lifecycle.handling_days: must be at least 1 (and return_window_hours ≥ 0)")
    if s.dialog.draft_retention_days < 1:
        raise ConfigError("setting dialog.draft_retention_days: must be at least 1")
    if s.dialog.max_failed_tries < 1:
        raise ConfigError("setting dialog.max_failed_tries: must be at least 1")
    _validate_deadlines(s.deadlines)
    _validate_dispatch(s.dispatch)
    worst_send = s.wechat.api_timeout_seconds * (s.wechat.api_max_retries + 1) * 2
    if s.outbox.lease_seconds <= worst_send:
        raise ConfigError(
            f"setting outbox.lease_seconds: must exceed the slowest possible send ({worst_send:.0f} s = "
            "api_timeout_seconds × (api_max_retries + 1) × 2), or a message could be sent twice"
        )
    if s.texts.override_file and not Path(s.texts.override_file).is_file():
        raise ConfigError(f"setting texts.override_file: file {s.texts.override_file!r} not found")
    _validate_push(s)
    _validate_media(s)
    _validate_console(s.console)
    _validate_polls(s.polls)
    _validate_observability(s)
    if s.fieldwork.long_running_days < 1 or s.fieldwork.long_running_reopens < 1 or s.fieldwork.max_file_bytes < 1:
        raise ConfigError(
            "setting fieldwork.long_running_days: must be at least 1 (so must long_running_reopens and max_file_bytes)"
        )


def _validate_deadlines(d: DeadlinesSettings) -> None:
    if d.day_kind not in ("natural", "working"):
        raise ConfigError(f"setting deadlines.day_kind: must be natural or working, got {d.day_kind!r}")
    if not 0 < d.warn_share < 1:
        raise ConfigError(f"setting deadlines.warn_share: must be between 0 and 1 (exclusive), got {d.warn_share}")
    if d.escalate_after_days < 0:
        raise ConfigError("setting deadlines.escalate_after_days: must be at least 0")
    if d.extension_max_days < 1:
        raise ConfigError("setting deadlines.extension_max_days: must be at least 1")
    if d.tick_seconds <= 0:
        raise ConfigError("setting deadlines.tick_seconds: must be greater than 0")
    if d.batch_size < 1:
        raise ConfigError("setting deadlines.batch_size: must be at least 1")
    if d.lease_seconds < 5:
        raise ConfigError("setting deadlines.lease_seconds: must be at least 5")


def _validate_dispatch(d: DispatchSettings) -> None:
    if d.checkin_minutes < 1:
        raise ConfigError(f"setting dispatch.checkin_minutes: must be at least 1, got {d.checkin_minutes}")
    seen = set()
    for entry in d.urgency_minutes:
        grade, _, minutes = entry.partition("=")
        grade = grade.strip()
        if grade not in URGENCIES or not minutes.strip().isdigit() or int(minutes) < 1:
            raise ConfigError(
                f"setting dispatch.urgency_minutes: entries are grade=minutes (grade 蓝, 黄 or 红; minutes ≥ 1), "
                f"got {entry!r}"
            )
        if grade in seen:
            raise ConfigError(f"setting dispatch.urgency_minutes: {grade} given twice")
        seen.add(grade)


def _validate_push(s: Settings) -> None:
    p = s.push
    if p.window_hours < 1 or p.window_quota < 0:
        raise ConfigError("setting push.window_hours: must be at least 1 (and push.window_quota at least 0)")
    if p.event_window_seconds < 1 or p.event_window_quota < 0:
        raise ConfigError(
            "setting push.event_window_seconds: must be at least 1 (and push.event_window_quota at least 0)"
        )
    for setting in ("templates", "subscribe_templates"):
        for entry in getattr(p, setting):
            if not re.fullmatch(r"(\*|[a-z_]+)=[A-Za-z0-9_-]+", entry):
                raise ConfigError(
                    f"setting push.{setting}: entries are notice=template_id or *=template_id, got {entry!r}"
                )
    for name in ("template_number_field", "template_status_field", "template_text_field"):
        if not getattr(p, name):
            raise ConfigError(f"setting push.{name}: required (the template field it fills)")
    for channel in p.fallback:
        if channel not in FALLBACK_CHANNELS:
            raise ConfigError(f"setting push.fallback: channels are {' and '.join(FALLBACK_CHANNELS)}, got {channel!r}")
    if len(set(p.fallback)) != len(p.fallback):
        raise ConfigError("setting push.fallback: a channel is listed twice")
    for name in ("subscribe_number_field", "subscribe_status_field", "subscribe_text_field", "subscribe_time_field"):
        value = getattr(p, name)
        if value and not re.fullmatch(r"[a-z_]+[0-9]+", value):
            raise ConfigError(
                f"setting push.{name}: a 订阅通知 field is its type and number, e.g. thing3; got {value!r}"
            )
    if "subscribe" in p.fallback and not p.subscribe_templates:
        raise ConfigError('setting push.subscribe_templates: required when push.fallback has "subscribe"')
    for name in ("template_url", "subscribe_page"):
        url = getattr(p, name)
        if url and not url.startswith(("https://", "http://")):
            raise ConfigError(f"setting push.{name}: must be an http(s) URL or empty, got {url!r}")
        try:
            url.format(number="X")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"setting push.{name}: the only placeholder is {{number}}") from None
    worst_fetch = s.wechat.api_timeout_seconds * (s.wechat.api_max_retries + 1)
    if p.token_lease_seconds <= worst_fetch:
        raise ConfigError(
            f"setting push.token_lease_seconds: must exceed the slowest token fetch ({worst_fetch:.0f} s = "
            "api_timeout_seconds × (api_max_retries + 1))"
        )


def _validate_console(c: ConsoleSettings) -> None:
    if c.session_hours < 1:
        raise ConfigError("setting console.session_hours: must be at least 1")
    if c.max_failed_logins < 1 or c.lockout_minutes < 1:
        raise ConfigError("setting console.max_failed_logins: must be at least 1 (and console.lockout_minutes too)")
    if c.secure_cookies not in ("auto", "always", "never"):
        raise ConfigError(f"setting console.secure_cookies: auto, always or never, got {c.secure_cookies!r}")
    if not 10 <= c.page_size <= 500:
        raise ConfigError("setting console.page_size: between 10 and 500")


def _validate_polls(p: PollSettings) -> None:
    if not 1 <= p.min_hours <= p.max_days * 24:
        raise ConfigError("setting polls.min_hours: at least 1, and no longer than polls.max_days")
    if p.tick_seconds <= 0 or p.lease_seconds < 10:
        raise ConfigError("setting polls.tick_seconds: must be greater than 0 (and polls.lease_seconds at least 10)")
    if p.batch_size < 1 or p.chunk_size < 1 or p.invite_hours < 1:
        raise ConfigError("setting polls.batch_size: must be at least 1 (so must chunk_size and invite_hours)")


def _check_networks(name: str, cidrs: tuple[str, ...]) -> None:
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr.strip())
        except ValueError:
            raise ConfigError(f"setting {name}: {cidr!r} is not a network (e.g. 10.0.0.0/8)") from None


def _validate_observability(s: Settings) -> None:
    _check_networks("server.trusted_proxies", s.server.trusted_proxies)
    _check_networks("metrics.allow_from", s.metrics.allow_from)
    if s.logging.format not in ("text", "json"):
        raise ConfigError(f"setting logging.format: text or json, got {s.logging.format!r}")
    if s.logging.level.lower() not in LOG_LEVELS:
        raise ConfigError(f"setting logging.level: one of {', '.join(LOG_LEVELS)}, got {s.logging.level!r}")


def _validate_media(s: Settings) -> None:
    m = s.media
    if not m.store_dir.strip():
        raise ConfigError("setting media.store_dir: required (the directory media files are stored in)")
    if m.tick_seconds <= 0:
        raise ConfigError("setting media.tick_seconds: must be greater than 0")
    if m.batch_size < 1:
        raise ConfigError("setting media.batch_size: must be at least 1")
    if m.max_attempts < 1:
        raise ConfigError("setting media.max_attempts: must be at least 1")
    if m.backoff_base_seconds <= 0:
        raise ConfigError("setting media.backoff_base_seconds: must be greater than 0")
    # The token, media/get and, for a video, its download link: each may take every retry.
    worst_fetch = s.wechat.api_timeout_seconds * (s.wechat.api_max_retries + 1) * 3
    if m.lease_seconds <= worst_fetch:
        raise ConfigError(
            f"setting media.lease_seconds: must exceed the slowest possible download ({worst_fetch:.0f} s = "
            "api_timeout_seconds × (api_max_retries + 1) × 3), or a file could be fetched twice"
        )
