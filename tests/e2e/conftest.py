"""Browser tests of the console: Playwright driving the machine's Chromium (Debian's `chromium` package, with
`fonts-wqy-microhei` so Chinese renders; `make test` installs both when missing — never `playwright install`).

One Chromium per test module, a fresh browser context (cookies, zh-CN) per page a test asks for, and a real
frontdoor per test on SQLite (tests/test_console.py covers PostgreSQL over HTTP). The tests of a module share
its event loop (`pytest.mark.asyncio(loop_scope="module")`), as the browser does.

Without Chromium the tests skip locally and fail under FRONTDOOR_REQUIRE_PG=1 (CI: nothing may skip).
Screenshots go to test-artifacts/screenshots/ at the repository root, and so does one of every open page of a
test that failed. Every page is watched: a JS error, a CSP violation or any other error the browser console
logs fails the test (see Console.problems).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Response, async_playwright

from storage import migrate
from tests.conftest import start_harness
from tests.console_client import PASSWORD

CHROMIUM = os.environ.get("FRONTDOOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
# Long enough for a slow CI machine, short enough that a missing element fails in seconds, not half a minute.
TIMEOUT_MS = 10_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"

_FAILED_STATUS = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")
_REPORT = pytest.StashKey[pytest.TestReport]()


def _executable() -> str | None:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    executable = _executable()
    if executable is None:
        message = (
            f"Chromium not found ({CHROMIUM}, or `chromium` on PATH): `make test` installs Debian's chromium "
            "and fonts-wqy-microhei (apt-get) when missing"
        )
        if os.environ.get("FRONTDOOR_REQUIRE_PG") == "1":
            pytest.fail(f"browser tests required (FRONTDOOR_REQUIRE_PG=1): {message}")
        pytest.skip(message)
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def db_url(tmp_path):
    """SQLite only, in this directory (the HTTP tests of the console run on PostgreSQL too)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/frontdoor.db"
    migrate.upgrade(url)
    return url


@pytest_asyncio.fixture(loop_scope="module")
async def harness(db_url, clock):
    async with start_harness(db_url, clock) as h:
        yield h


class Console:
    """Browser windows on one running frontdoor, each its own context (its own cookies), all watched."""

    def __init__(self, browser: Browser, h):
        self.browser, self.h = browser, h
        self.contexts: list[BrowserContext] = []
        self.pages: list[Page] = []
        self.seen: list[tuple[str, str, str]] = []  # (page url, kind, text)
        self.documents: set[str] = set()  # URLs loaded as pages: their status is each test's to check

    async def page(self) -> Page:
        context = await self.browser.new_context(
            base_url=self.h.url, locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("console", lambda msg: self._console(page, msg))
        page.on("pageerror", lambda exc: self.seen.append((page.url, "pageerror", str(exc))))
        page.on("response", self._response)
        self.pages.append(page)
        return page

    async def signed_in(self, name: str, password: str = PASSWORD) -> Page:
        page = await self.page()
        await sign_in(page, name, password)
        return page

    def _response(self, response: Response) -> None:
        if response.request.resource_type == "document":
            self.documents.add(response.url)

    def _console(self, page: Page, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.seen.append((page.url, "console", f"{msg.text} ({msg.location.get('url') or 'inline'})"))

    def problems(self) -> list[str]:
        """Every error the browser reported, except a page's own HTTP status (a refusal's 403 is what a test
        asks for, and checks)."""
        found = []
        for url, kind, text in self.seen:
            failed = _FAILED_STATUS.match(text)
            source = text.rsplit(" (", 1)[-1].rstrip(")")
            if failed and source in self.documents:
                continue
            found.append(f"{kind} on {url}: {text}")
        return found

    def take(self, pattern: str) -> list[str]:
        """The problems matching `pattern`, which a test provoked on purpose: they no longer count."""
        matching = [p for p in self.seen if re.search(pattern, p[2])]
        self.seen = [p for p in self.seen if p not in matching]
        return [text for _, _, text in matching]

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def console(browser, harness, request):
    """Closed before the harness (it depends on it), so no page holds a connection to a stopping server."""
    watched = Console(browser, harness)
    for stale in SCREENSHOTS.glob(f"failed-{request.node.name}-*.png"):
        stale.unlink()
    try:
        yield watched
        report = request.node.stash.get(_REPORT, None)
        if report is not None and report.failed:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            for i, page in enumerate(watched.pages):
                if not page.is_closed():
                    await page.screenshot(path=SCREENSHOTS / f"failed-{request.node.name}-{i}.png", full_page=True)
        problems = watched.problems()
        assert not problems, "the browser reported errors:\n" + "\n".join(problems)
    finally:
        await watched.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[_REPORT] = report
    return report


async def sign_in(page: Page, name: str, password: str = PASSWORD) -> None:
    """Through the sign-in form, as staff do; the inbox is where it lands."""
    if "/console/login" not in page.url or not await page.get_by_label("用户名").count():
        await page.goto("/console/login")
    await page.get_by_label("用户名").fill(name)
    await page.get_by_label("密码").fill(password)
    await page.get_by_role("button", name="登录", exact=True).click()
    await page.wait_for_url("**/console/cases")


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    await page.screenshot(path=path, full_page=True)
    return path
