"""A member of staff using the console over HTTP, as a browser would (cookies, forms with their CSRF token)."""

from __future__ import annotations

import re
from html import unescape

import aiohttp

from bot.app import STORE
from bot.services import operators

PASSWORD = "一个足够长的密码2026"
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


async def add_operator(h, name: str, role: str, *, unit: str | None = None, password: str = PASSWORD) -> None:
    async with h.app[STORE].write() as tx:
        await operators.add(tx, name, role, operators.hash_password(password), unit=unit, now=h.clock.now())


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return unescape(found.group(1))


class Staff:
    """One browser: its own cookie jar (IP hosts allowed, as the console runs on 127.0.0.1 in tests)."""

    def __init__(self, h):
        self.h = h
        self.base = h.url + "/console"
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def __aenter__(self) -> Staff:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.close()

    async def get(self, path: str, **kw) -> tuple[int, str]:
        async with self.http.get(self.base + path, allow_redirects=kw.pop("allow_redirects", True), **kw) as resp:
            text = await resp.text()
            if 'name="csrf"' in text:
                self.csrf = csrf_of(text)
            return resp.status, text

    async def login(self, name: str, password: str = PASSWORD) -> tuple[int, str]:
        status, page = await self.get("/login")
        assert status == 200
        data = {"csrf": csrf_of(page), "name": name, "password": password, "next": ""}
        async with self.http.post(self.base + "/login", data=data) as resp:
            text = await resp.text()
            if 'name="csrf"' in text:
                self.csrf = csrf_of(text)
            return resp.status, text

    async def post(self, path: str, data: dict | None = None, *, csrf: bool = True) -> tuple[int, str]:
        form = dict(data or {})
        if csrf:
            form["csrf"] = self.csrf
        async with self.http.post(self.base + path, data=form) as resp:
            text = await resp.text()
            if 'name="csrf"' in text:
                self.csrf = csrf_of(text)
            return resp.status, text

    async def act(self, number: str, action: str, **fields) -> tuple[int, str]:
        await self.get(f"/cases/{number}")  # the page the form is on, with its token
        return await self.post(f"/cases/{number}/{action}", fields)
