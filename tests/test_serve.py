"""The README's way in: `frontdoor serve` on its embedded defaults, then `frontdoor chat` — as real processes."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import free_port, pg_database


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = {**os.environ, "FRONTDOOR_SERVER_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    env.pop("FRONTDOOR_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(port, proc)
        yield tmp_path, env, proc
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def test_serve_on_embedded_defaults_then_chat_files_a_complaint(served):
    cwd, env, proc = served
    chat = subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--openid", "o_newcomer"],
        cwd=cwd,
        env=env,
        text=True,
        timeout=60,
        input="投诉\n4\n白云区某某村\n/photo\n供销社装修的渣土砸坏了我家门窗\n跳过\n提交\n我的案件\n/quit\n",
        capture_output=True,
    )
    assert chat.returncode == 0, chat.stderr
    assert "案件编号：XF" in chat.stdout and "房屋损坏｜待受理" in chat.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "bot", "cases", "list"], cwd=cwd, env=env, text=True, capture_output=True, timeout=60
    )
    assert "房屋损坏" in listed.stdout and "白云区某某村" in listed.stdout
    assert (cwd / "data" / "frontdoor.db").is_file()
    proc.send_signal(signal.SIGINT)
    banner = proc.communicate(timeout=15)[0]
    assert f"{cwd}/data/frontdoor.db" in banner
    assert "/wechat" in banner and "/fake-wechat" in banner
    assert "Traceback" not in banner


def test_serve_on_postgresql_refuses_an_unmigrated_database(tmp_path):
    with pg_database("frontdoor_unmigrated") as url:
        env = {**os.environ, "FRONTDOOR_DATABASE_URL": url, "FRONTDOOR_SERVER_PORT": str(free_port())}

        def frontdoor(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, text=True, capture_output=True, timeout=60
            )

        refused = frontdoor("serve")
        assert refused.returncode == 2 and "frontdoor db upgrade" in refused.stderr
        upgraded = frontdoor("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert "up to date" in frontdoor("db", "check").stdout


def test_reading_commands_in_an_empty_directory_explain_instead_of_crashing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDOOR_")}
    for args in (["cases", "list"], ["drafts", "list"]):
        done = subprocess.run(
            [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=env, text=True, capture_output=True, timeout=60
        )
        assert done.returncode == 2 and "frontdoor serve" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # and nothing was created by looking
