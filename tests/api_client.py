"""Another city platform calling frontdoor's JSON API and Open311 over HTTP with its token."""

from __future__ import annotations

import json

from bot.app import STORE
from bot.services import api_tokens, cases


async def add_token(h, name: str, role: str, *, unit: str | None = None) -> str:
    async with h.app[STORE].write() as tx:
        _row, token = await api_tokens.add(tx, name, role, unit=unit, now=h.clock.now())
    return token


async def revoke_token(h, name: str) -> None:
    async with h.app[STORE].write() as tx:
        await api_tokens.revoke(tx, name, now=h.clock.now())


class Platform:
    """Calls with `Authorization: Bearer <token>` (or none, when token is None)."""

    def __init__(self, h, token: str | None, *, prefix: str = "/api/v1"):
        self.h, self.token, self.base = h, token, h.url + prefix

    def _headers(self, extra: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    async def get(self, path: str, *, headers: dict | None = None, **params) -> tuple[int, object, dict]:
        """(status, the parsed JSON body, headers); the raw text is kept in self.raw."""
        async with self.h.http.get(self.base + path, params=params, headers=self._headers(headers)) as resp:
            self.raw = await resp.text()
            assert resp.content_type == "application/json", self.raw
            return resp.status, json.loads(self.raw), dict(resp.headers)

    async def post(self, path: str, body: object = None, *, raw: bytes | None = None) -> tuple[int, object]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body, ensure_ascii=False).encode())
        headers = self._headers({"Content-Type": "application/json"})
        async with self.h.http.post(self.base + path, data=data, headers=headers) as resp:
            self.raw = await resp.text()
            assert resp.content_type == "application/json", self.raw
            return resp.status, json.loads(self.raw)

    async def act(self, number: str, action: str, **fields) -> tuple[int, object]:
        return await self.post(f"/cases/{number}/actions/{action}", fields)


async def many(h, count: int, *, minutes: int = 1, description: str = "第{i}件诉求", **kw) -> list[str]:
    """Cases straight through the service (the webhook is not what is tested here), `minutes` apart."""
    numbers = []
    for i in range(count):
        async with h.app[STORE].write() as tx:
            new = cases.NewComplaint(
                kw.get("openid", f"o_many_{i}"),
                kw.get("category", "其他"),
                kw.get("place", f"某路{i}号"),
                kw.get("latitude"),
                kw.get("longitude"),
                description.format(i=i),
                [],
                [],
                kw.get("phone"),
            )
            numbers.append(
                await cases.submit_complaint(
                    tx, new, now=h.clock.now(), tz=h.settings.tz, prefix="XF", acceptance_days=15
                )
            )
        h.clock.advance(minutes=minutes)
    return numbers
