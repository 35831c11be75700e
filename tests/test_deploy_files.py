"""The sample deployment files in deploy/ stay true to the code: the environment file names only real settings
and yields a production configuration (PostgreSQL, the real WeChat API, safe mode, loopback) — so nobody deploys
the development fake by copying it; nginx routes the paths the app serves, with the limits the app has; the
systemd unit, nginx's upstream and the README name the same instances."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import re
import typing
from pathlib import Path

import pytest

from bot.api import app as api_app
from bot.app import CONSOLE_PREFIX, FAKE_PREFIX
from bot.config import ENV_PREFIX, ConfigError, Settings, load_settings
from bot.console import app as console_app
from bot.console.auth import UPLOAD_SLACK

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENV_FILE = DEPLOY / "frontdoor.env"
NGINX_FILE = DEPLOY / "nginx.conf"
UNIT_FILE = DEPLOY / "frontdoor@.service"

PLACEHOLDER = re.compile(r"<[^<>]+>")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# --- the environment file ---------------------------------------------------------------------------------------


def read_env(path: Path) -> tuple[dict[str, str], list[str]]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them (whole-line comments only), and the names of the
    commented-out FRONTDOOR_ examples (`# FRONTDOOR_X=…`)."""
    values: dict[str, str] = {}
    commented: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(("#", ";")):
            if m := re.match(r"[#;]\s*(FRONTDOOR_[A-Z0-9_]+)=", line):
                commented.append(m.group(1))
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path.name}:{number}: not KEY=VALUE: {line!r}"
        assert key not in values, f"{path.name}:{number}: {key} given twice"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values, commented


def known_env_names() -> dict[str, tuple[str, str]]:
    """FRONTDOOR_<SECTION>_<KEY> → (section, key), derived as load_settings derives them. load_settings ignores
    names it does not know, so an unknown one (a typo) would silently leave its setting at the default."""
    names = {}
    hints = typing.get_type_hints(Settings)
    for section in (f.name for f in dataclasses.fields(Settings)):
        for f in dataclasses.fields(hints[section]):
            names[f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"] = (section, f.name)
    return names


def filled(env: dict[str, str]) -> dict[str, str]:
    """The sample with its placeholders replaced by values that look like the real ones."""
    real = {
        "FRONTDOOR_WECHAT_TOKEN": "cityToken2024xf",
        "FRONTDOOR_WECHAT_ENCODING_AES_KEY": base64.b64encode(bytes(range(7, 39))).decode().rstrip("="),
        "FRONTDOOR_WECHAT_APP_ID": "wx0123456789abcdef",
        "FRONTDOOR_WECHAT_APP_SECRET": "0123456789abcdef0123456789abcdef",
    }
    out = {}
    for key, value in env.items():
        if key in real:
            out[key] = real[key]
        else:
            out[key] = PLACEHOLDER.sub("secret", value)
    return out


def _load(env: dict[str, str], tmp_path: Path) -> Settings:
    # An empty file: the environment alone, whatever config.toml the working directory holds.
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    return load_settings(empty, env=env)


def test_every_variable_in_the_env_file_is_a_setting():
    values, commented = read_env(ENV_FILE)
    known = known_env_names()
    assert values, "no settings in deploy/frontdoor.env"
    unknown = sorted(name for name in [*values, *commented] if name not in known)
    assert not unknown, f"deploy/frontdoor.env names no setting: {unknown}"


def test_the_known_names_catch_a_typo():
    known = known_env_names()
    assert "FRONTDOOR_WECHAT_ENCODING_AES_KEY" in known and "FRONTDOOR_FAKE_WECHAT_TOKEN_TTL_SECONDS" in known
    assert "FRONTDOOR_WECHAT_AES_KEY" not in known and "FRONTDOOR_DATABASE_POOLSIZE" not in known


def test_the_env_file_is_a_production_configuration(tmp_path):
    values, _ = read_env(ENV_FILE)
    s = _load(filled(values), tmp_path)
    assert s.database.url.startswith("postgresql+asyncpg://") and not s.is_sqlite
    assert s.wechat.fake_api is False
    assert s.wechat.encryption_mode == "safe" and s.wechat.encoding_aes_key
    assert s.wechat.api_base_url == "https://api.weixin.qq.com"
    assert s.server.host == "127.0.0.1"
    assert s.console.secure_cookies == "always"
    assert Path(s.media.store_dir).is_absolute()
    # Each instance's port comes from its systemd name (--port %i), not from the shared file.
    assert "FRONTDOOR_SERVER_PORT" not in values
    assert (s.logging.format, s.logging.level) == ("json", "info")
    # nginx on the same host is trusted to name the client; the instance then allows /metrics to no one nginx
    # itself would refuse (its allow list in deploy/nginx.conf: loopback and 10.0.0.0/8).
    assert [ipaddress.ip_network(n).is_loopback for n in s.server.trusted_proxies] == [True, True]
    nginx_allows = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8")]
    assert s.metrics.allow_from and all(
        any(ipaddress.ip_network(n).subnet_of(a) for a in nginx_allows if a.version == ipaddress.ip_network(n).version)
        for n in s.metrics.allow_from
    )


def test_placeholders_left_in_stop_start_up(tmp_path):
    values, _ = read_env(ENV_FILE)
    assert {k for k, v in values.items() if PLACEHOLDER.search(v)} >= {
        "FRONTDOOR_WECHAT_TOKEN",
        "FRONTDOOR_WECHAT_ENCODING_AES_KEY",
        "FRONTDOOR_WECHAT_APP_SECRET",
    }
    with pytest.raises(ConfigError):
        _load(values, tmp_path)


# --- nginx ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Location:
    modifier: str  # "=", "^~" or "" (a prefix)
    path: str
    directives: dict[str, list[str]]


def _block_body(text: str, open_brace: int) -> tuple[str, int]:
    depth = 0
    for i in range(open_brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : i], i
    raise AssertionError("unbalanced braces in deploy/nginx.conf")


def _directives(body: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for statement in body.split(";"):
        words = statement.split()
        if words:
            out.setdefault(words[0], []).append(" ".join(words[1:]))
    return out


def _without_blocks(body: str) -> str:
    while (m := re.search(r"[^;{}]*\{", body)) is not None:
        _, end = _block_body(body, m.end() - 1)
        body = body[: m.start()] + ";" + body[end + 1 :]
    return body


@dataclasses.dataclass
class Nginx:
    upstreams: dict[str, list[str]]
    server: dict[str, list[str]]  # the TLS server block's own directives
    locations: list[Location]

    def location_for(self, path: str) -> Location:
        """What nginx would pick (this file has no regex locations): an exact match, else the longest prefix."""
        for loc in self.locations:
            if loc.modifier == "=" and loc.path == path:
                return loc
        prefixes = [loc for loc in self.locations if loc.modifier != "=" and path.startswith(loc.path)]
        assert prefixes, f"no location for {path}"
        return max(prefixes, key=lambda loc: len(loc.path))

    def setting(self, loc: Location, name: str) -> str | None:
        values = loc.directives.get(name) or self.server.get(name)
        return values[-1] if values else None


def read_nginx() -> Nginx:
    text = re.sub(r"#[^\n]*", "", NGINX_FILE.read_text(encoding="utf-8"))
    upstreams = {}
    for m in re.finditer(r"\bupstream\s+(\S+)\s*\{", text):
        body, _ = _block_body(text, m.end() - 1)
        upstreams[m.group(1)] = _directives(body).get("server", [])
    servers = []
    for m in re.finditer(r"\bserver\s*\{", text):
        body, _ = _block_body(text, m.end() - 1)
        servers.append(body)
    tls = [body for body in servers if re.search(r"\blisten\s+[^;]*\b443\b[^;]*\bssl\b", body)]
    assert len(tls) == 1, "deploy/nginx.conf: expected one TLS server block"
    locations = []
    for m in re.finditer(r"\blocation\s+(?:(=|\^~)\s+)?(\S+)\s*\{", tls[0]):
        body, _ = _block_body(tls[0], m.end() - 1)
        locations.append(Location(m.group(1) or "", m.group(2), _directives(body)))
    return Nginx(upstreams, _directives(_without_blocks(tls[0])), locations)


def _bytes(size: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", size)
    assert m, size
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def _seconds(span: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", span)
    assert m, span
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def _proxied(nginx: Nginx, loc: Location) -> bool:
    return any(
        target == f"http://{name}" for target in loc.directives.get("proxy_pass", []) for name in nginx.upstreams
    )


def test_nginx_routes_the_webhook_within_wechats_limits():
    nginx, defaults = read_nginx(), Settings()
    values, _ = read_env(ENV_FILE)
    path = values.get("FRONTDOOR_WEBHOOK_PATH", defaults.webhook.path)
    loc = nginx.location_for(path)
    assert (loc.modifier, loc.path) == ("=", path) and _proxied(nginx, loc)
    assert _bytes(nginx.setting(loc, "client_max_body_size")) == defaults.webhook.max_body_bytes
    # WeChat waits 5 s; the instance answers within reply_budget_seconds by itself.
    assert defaults.webhook.reply_budget_seconds < _seconds(nginx.setting(loc, "proxy_read_timeout")) <= 5
    assert _seconds(nginx.setting(loc, "proxy_connect_timeout")) <= 2


def test_nginx_streams_the_console_live_updates_unbuffered():
    nginx = read_nginx()
    live = next(r for r in console_app.routes() if r.kwargs.get("name") == "live")
    loc = nginx.location_for(CONSOLE_PREFIX + live.path)
    assert _proxied(nginx, loc)
    assert nginx.setting(loc, "proxy_buffering") == "off"
    assert nginx.setting(loc, "proxy_http_version") == "1.1"
    # The empty Connection header is set at server level (no location sets headers of its own).
    assert 'Connection ""' in nginx.server.get("proxy_set_header", [])
    assert _seconds(nginx.setting(loc, "proxy_read_timeout")) >= 300


def test_nginx_routes_every_part_of_the_app():
    nginx = read_nginx()
    for path in ("/healthz", "/readyz", CONSOLE_PREFIX + "/cases", api_app.V1_PREFIX + "/cases"):
        assert _proxied(nginx, nginx.location_for(path)), path
    assert _proxied(nginx, nginx.location_for(api_app.OPEN311_PREFIX + "/services.json"))
    upload = nginx.location_for(CONSOLE_PREFIX + "/cases/XF20260101-0001/files")
    assert _bytes(nginx.setting(upload, "client_max_body_size")) >= Settings().fieldwork.max_file_bytes + UPLOAD_SLACK
    for header in ("X-Request-Id $request_id", "X-Forwarded-For $proxy_add_x_forwarded_for"):
        assert header in nginx.server["proxy_set_header"]
    assert "X-Forwarded-Proto $scheme" in nginx.server["proxy_set_header"]  # console.secure_cookies = "auto"
    # No location may set its own headers: nginx would then drop every server-level one there.
    assert not [loc.path for loc in nginx.locations if "proxy_set_header" in loc.directives]


def test_nginx_keeps_the_fake_and_the_metrics_private():
    nginx = read_nginx()
    fake = nginx.location_for(FAKE_PREFIX + "/cgi-bin/token")
    assert fake.directives.get("deny") == ["all"] and not _proxied(nginx, fake)
    for path in ("/metrics", "/readyz"):
        loc = nginx.location_for(path)
        assert loc.directives.get("deny") == ["all"] and "127.0.0.1" in loc.directives.get("allow", []), path


def test_instances_match_across_nginx_systemd_and_the_readme():
    nginx = read_nginx()
    assert len(nginx.upstreams) == 1
    (servers,) = nginx.upstreams.values()
    upstream = {}
    for server in servers:
        m = re.match(r"([\d.]+):(\d+)\b", server)
        assert m, server
        upstream[int(m.group(2))] = m.group(1)
    assert len(upstream) >= 2 and set(upstream.values()) <= set(LOOPBACK)
    # Each instance's own metrics, scraped one by one.
    for port in upstream:
        loc = nginx.location_for(f"/metrics/{port}")
        assert (loc.path, loc.directives["proxy_pass"]) == (f"/metrics/{port}", [f"http://127.0.0.1:{port}/metrics"])
        assert loc.directives.get("deny") == ["all"]
    per_instance = {int(loc.path.rsplit("/", 1)[1]) for loc in nginx.locations if loc.path.startswith("/metrics/")}
    assert per_instance == set(upstream)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Running for a city", 1)[1].split("\n## ", 1)[0]
    assert {int(p) for p in re.findall(r"frontdoor@(\d+)", section)} == set(upstream)
    started = re.search(r"systemctl enable --now ((?:frontdoor@\d+\s*)+)", section)
    assert started and {int(p) for p in re.findall(r"@(\d+)", started.group(1))} == set(upstream)
    loop = re.search(r"for port in ([\d ]+);", section)
    assert loop and {int(p) for p in loop.group(1).split()} == set(upstream)


# --- systemd ----------------------------------------------------------------------------------------------------


def read_unit() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_serves_one_port_and_never_migrates():
    unit = read_unit()
    assert unit["ExecStart"] == ["/opt/frontdoor/.venv/bin/frontdoor serve --port %i"]
    assert not any("db" in cmd or "upgrade" in cmd for cmd in unit.get("ExecStartPre", []))
    assert unit["EnvironmentFile"] == ["/etc/frontdoor/frontdoor.env"]
    assert unit["User"][0] not in ("", "root") and unit["Restart"] == ["on-failure"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    # aiohttp's run_app waits up to 60 s for requests in flight: systemd must not kill it sooner.
    assert _seconds(unit["TimeoutStopSec"][0]) > 60


def test_the_unit_may_write_the_media_store():
    values, _ = read_env(ENV_FILE)
    writable = " ".join(read_unit().get("ReadWritePaths", [])).split()
    assert values["FRONTDOOR_MEDIA_STORE_DIR"] in [p.lstrip("-") for p in writable]
