"""Settings: file, environment overrides, and a clear message — not a traceback — for a bad one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_documents_exactly_the_defaults():
    assert load_settings(ROOT / "config.example.toml", env={}) == load_settings(os.devnull, env={}) == Settings()


def test_environment_overrides_the_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = 9000\n[database]\nurl = "sqlite+aiosqlite:///x.db"\n')
    s = load_settings(
        cfg,
        env={
            "FRONTDOOR_SERVER_PORT": "9100",
            "FRONTDOOR_WECHAT_TOKEN": "abcToken1",
            "FRONTDOOR_COMPLAINT_CATEGORIES": "噪音, 停车",
            "FRONTDOOR_WECHAT_FAKE_API": "yes",
        },
    )
    assert (s.server.port, s.database.url, s.wechat.token) == (9100, "sqlite+aiosqlite:///x.db", "abcToken1")
    assert s.complaint.categories == ("噪音", "停车") and s.wechat.fake_api is True


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FRONTDOOR_SERVER_PORT": "eighty"}, "FRONTDOOR_SERVER_PORT"),
        ({"FRONTDOOR_SERVER_PORT": "70000"}, "server.port"),
        ({"FRONTDOOR_DATABASE_URL": "mysql://x"}, "database.url"),
        ({"FRONTDOOR_WECHAT_ENCODING_AES_KEY": "short"}, "wechat.encoding_aes_key"),
        ({"FRONTDOOR_WECHAT_ENCODING_AES_KEY": "!" * 43}, "wechat.encoding_aes_key"),
        ({"FRONTDOOR_WECHAT_TOKEN": ""}, "wechat.token"),
        ({"FRONTDOOR_WECHAT_APP_ID": ""}, "wechat.app_id"),
        ({"FRONTDOOR_WECHAT_FAKE_API": "false"}, "wechat.app_secret"),
        ({"FRONTDOOR_WECHAT_FAKE_API": "maybe"}, "FRONTDOOR_WECHAT_FAKE_API"),
        # The development token and key are public: refused when talking to the real WeChat.
        ({"FRONTDOOR_WECHAT_FAKE_API": "false", "FRONTDOOR_WECHAT_APP_SECRET": "s3cret"}, "wechat.token"),
        (
            {"FRONTDOOR_WECHAT_FAKE_API": "false", "FRONTDOOR_WECHAT_APP_SECRET": "s", "FRONTDOOR_WECHAT_TOKEN": "t0k"},
            "wechat.encoding_aes_key",
        ),
        ({"FRONTDOOR_SERVER_HOST": "0.0.0.0"}, "wechat.fake_api"),  # the fake has no authentication
        ({"FRONTDOOR_WECHAT_ENCRYPTION_MODE": "aes"}, "wechat.encryption_mode"),
        ({"FRONTDOOR_WECHAT_QRCODE_IMAGE_URL": "mp.weixin.qq.com/cgi-bin/showqrcode"}, "wechat.qrcode_image_url"),
        ({"FRONTDOOR_WECHAT_ENCODING_AES_KEY": ""}, "wechat.encoding_aes_key"),  # safe mode needs a key
        ({"FRONTDOOR_WEBHOOK_REPLY_BUDGET_SECONDS": "6"}, "webhook.reply_budget_seconds"),
        ({"FRONTDOOR_SERVER_TIMEZONE": "Mars/Olympus"}, "server.timezone"),
        ({"FRONTDOOR_TEXTS_OVERRIDE_FILE": "/nonexistent.toml"}, "texts.override_file"),
    ],
)
def test_bad_settings_name_the_setting(env, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings(os.devnull, env=env)


def test_a_real_deployment_configuration_is_accepted():
    s = load_settings(
        os.devnull,
        env={
            "FRONTDOOR_WECHAT_FAKE_API": "false",
            "FRONTDOOR_SERVER_HOST": "0.0.0.0",
            "FRONTDOOR_WECHAT_TOKEN": "cityT0ken",
            "FRONTDOOR_WECHAT_ENCODING_AES_KEY": "Q" * 43,
            "FRONTDOOR_WECHAT_APP_ID": "wx1234567890abcdef",
            "FRONTDOOR_WECHAT_APP_SECRET": "0123456789abcdef0123456789abcdef",
            "FRONTDOOR_DATABASE_URL": "postgresql+asyncpg://frontdoor@db/frontdoor",
        },
    )
    assert s.wechat.encryption_mode == "safe" and not s.wechat.fake_api


def test_unknown_keys_and_broken_files_are_named(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"server\.prot: unknown"):
        load_settings(cfg, env={})
    cfg.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_serve_with_a_bad_setting_stops_with_a_message_not_a_traceback(tmp_path):
    env = {**os.environ, "FRONTDOOR_SERVER_PORT": "not-a-port"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "FRONTDOOR_SERVER_PORT" in done.stderr and "Traceback" not in done.stderr


def test_a_city_can_reword_any_sentence(tmp_path):
    from bot.texts import Texts

    override = tmp_path / "texts.toml"
    override.write_text('[complaint]\nplace_prompt = "第 2 步：请告诉我们地点。"\n')
    texts = Texts(override)
    assert texts("complaint.place_prompt") == "第 2 步：请告诉我们地点。"
    assert "第 1 步" in texts("complaint.category_prompt", choices="1. 其他")
    override.write_text('[complaint]\nno_such_sentence = "x"\n')
    with pytest.raises(ConfigError, match="no_such_sentence"):
        Texts(override)
