"""Load generator: simulated residents talking to a webhook in WeChat's safe mode, each like a person (the next
message only after the previous reply arrived).

Run by bench/webhook.py as its own OS process, so its CPU can be told apart from the server's. Protocol on
stdin/stdout: it prepares (pre-signs requests, opens the HTTP session), prints `ready`, waits for the line
`go <t0> <start> <end>` (wall-clock epoch seconds), starts at t0, counts what completes in [start, end), stops
sending at `end`, waits for the replies still in flight and prints one JSON line with the results.

Modes:
- `dialog`: the complaint dialog 投诉 → category number → place → description → phone → 提交, again and again.
  Every reply must be the next step's question (the 提交 reply must carry a case number); a reply that is not
  is counted as `unexpected` and the resident sends 取消 and starts over.
- `echo`: the same six texts in a loop against the echo baseline; the reply must repeat the text.

Signing and reply decryption use a fast path (`Wire`) doing what bot.wechat.simulator does, minus xmltodict; a
sample of replies is also opened with the simulator itself and compared (`wire_mismatch` if they differ).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from yarl import URL

from bot.config import Settings, load_settings
from bot.texts import Texts
from bot.wechat.protocol import signature
from bot.wechat.simulator import ACCOUNT, ReplyError, Signed, WeChatServer, nonce, text_xml

HEADERS = {"Content-Type": "text/xml"}
# Open one reply in this many with the simulator as well, to prove the fast path reads replies the same way.
CROSS_CHECK_EVERY = 500

_CDATA = r"<!\[CDATA\[(.*?)\]\]>"
_OUTER = {
    name: re.compile(rf"<{name}>(?:{_CDATA}|([^<]*))</{name}>", re.S)
    for name in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce")
}
_MSG_TYPE = re.compile(rf"<MsgType>{_CDATA}</MsgType>", re.S)
_CONTENT = re.compile(r"<Content><!\[CDATA\[(.*)\]\]></Content>", re.S)


@dataclass(slots=True)
class Request:
    text: str
    url: URL
    body: bytes

    def signed(self) -> Signed:
        """The same request in the simulator's terms (for the cross-check)."""
        return Signed(dict(self.url.query), self.body.decode())


class Wire:
    """Signs and encrypts a message as WeChat does (safe mode) and opens the passive reply."""

    def __init__(self, settings: Settings, webhook_url: str | list[str], msg_ids: Iterator[int] | None = None):
        wx = settings.wechat
        self.token, self.app_id = wx.token, wx.app_id
        self.prp = PrpCrypto(WeChatCrypto(wx.token, wx.encoding_aes_key, wx.app_id).key)
        self.reference = WeChatServer(wx.token, wx.app_id, wx.encoding_aes_key, mode="safe")
        # Several URLs (instances behind a balancer, bench/cluster.py) take the requests in turn, as nginx's
        # round robin does: one resident's messages land on every instance.
        # MsgIds are what WeChat deduplicates by, unique across all its users: generator processes started in the
        # same second must not hand out the same ones (the simulator's own counter is unique per process only).
        self.msg_ids = msg_ids
        self.urls = itertools.cycle([webhook_url] if isinstance(webhook_url, str) else webhook_url)

    def sign(self, openid: str, text: str) -> Request:
        msg_id = next(self.msg_ids) if self.msg_ids else None
        return self.sign_xml(openid, text_xml(openid, text, msg_id=msg_id), text)

    def sign_xml(self, openid: str, xml: str, text: str) -> Request:
        """Any message's XML (e.g. a tapped msgmenu option, bench/polls.py); `text` is what the resident said."""
        ts, n = str(int(time.time())), nonce()
        encrypted = self.prp.encrypt(xml, self.app_id).decode()
        query = {
            "signature": signature(self.token, ts, n),
            "timestamp": ts,
            "nonce": n,
            "openid": openid,
            "encrypt_type": "aes",
            "msg_signature": signature(self.token, ts, n, encrypted),
        }
        body = f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        return Request(text, URL(f"{next(self.urls)}?{urlencode(query)}", encoded=True), body.encode())

    def open(self, status: int, body: str) -> str | None:
        """The reply's text; None for `success`/empty. Raises ReplyError on anything WeChat would reject."""
        if status != 200:
            raise ReplyError(f"HTTP {status}: {body[:200]}")
        if body in ("", "success"):
            return None
        outer = {}
        for name, pattern in _OUTER.items():
            m = pattern.search(body)
            if m is None:
                raise ReplyError(f"reply without {name}")
            outer[name] = m.group(1) if m.group(1) is not None else m.group(2)
        if signature(self.token, outer["TimeStamp"], outer["Nonce"], outer["Encrypt"]) != outer["MsgSignature"]:
            raise ReplyError("reply signature does not match")
        try:
            xml = self.prp.decrypt(outer["Encrypt"], self.app_id)
        except Exception as exc:
            raise ReplyError(f"cannot decrypt reply: {exc!r}") from None
        msg_type = _MSG_TYPE.search(xml)
        if msg_type is None or msg_type.group(1) != "text":
            raise ReplyError(f"unexpected reply type {msg_type and msg_type.group(1)}")
        content = _CONTENT.search(xml)
        if content is None:
            raise ReplyError("text reply without Content")
        return content.group(1).replace("]]]]><![CDATA[>", "]]>")


# ---- what residents say --------------------------------------------------------------------------------


_CUT = "\x00"


def _fixed_start(texts: Texts, key: str, **placeholders: str) -> str:
    """The beginning of a sentence, up to its first placeholder."""
    return texts(key, **{name: _CUT for name in placeholders}).split(_CUT, 1)[0]


class DialogScript:
    """The six messages of one complaint and what each reply must contain (taken from bot/texts.toml)."""

    def __init__(self, settings: Settings):
        texts = Texts(settings.texts.override_file)
        self.categories = len(settings.complaint.categories)
        self.expect = [
            _fixed_start(texts, "complaint.category_prompt", choices=""),  # after 投诉
            _fixed_start(texts, "complaint.place_prompt"),  # after the category
            _fixed_start(texts, "complaint.description_prompt", max_photos=""),  # after the place
            _fixed_start(texts, "complaint.phone_prompt"),  # after the description
            _fixed_start(texts, "dialog.confirm_head"),  # after the phone: the summary
        ]
        submitted = _fixed_start(texts, "complaint.submitted", number="", days="", day_unit="")
        prefix = re.escape(settings.complaint.case_number_prefix)
        self.case_number = re.compile(re.escape(submitted) + rf"({prefix}\d{{8}}-\d{{4,}})")

    def messages(self, resident: int, cycle: int) -> list[str]:
        return [
            "投诉",
            str((resident + cycle) % self.categories + 1),
            f"云城街道幸福小区{resident % 40 + 1}栋{cycle % 6 + 1}单元门口",
            f"楼下餐馆每天夜里十一点后还在营业，油烟和噪音扰民，第{cycle + 1}次反映，请尽快处理。",
            f"138{resident % 10000:04d}{cycle % 10000:04d}",
            "提交",
        ]

    def check(self, step: int, reply: str) -> str | None:
        """None if the reply fits the step; for 提交 the case number. Raises Unexpected otherwise."""
        if step < len(self.expect):
            if self.expect[step] not in reply:
                raise Unexpected(reply)
            return None
        m = self.case_number.search(reply)
        if m is None:
            raise Unexpected(reply)
        return m.group(1)


class Unexpected(Exception):
    pass


# ---- the run ---------------------------------------------------------------------------------------------


@dataclass
class Window:
    t0: float
    start: float
    end: float


class Generator:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        # The account's settings as the servers have them (FRONTDOOR_* in the environment; defaults otherwise).
        self.settings = load_settings(path=os.devnull)
        # A block of 100,000 MsgIds per resident index (so a generator's block is at least that), all of a second's
        # blocks within 10**9 for up to 10,000 residents, and below 2**63.
        msg_ids = itertools.count(int(time.time()) * 10**9 + args.first * 10**5)
        self.wire = Wire(self.settings, args.url, msg_ids=msg_ids)
        self.script = DialogScript(self.settings)
        self.openids = [f"o_bench_{args.run_id}_{i:04d}" for i in range(args.first, args.first + args.residents)]
        # Whole cycles (6 requests) signed before the clock starts; more are signed on the fly if these run out.
        self.pool: list[list[list[Request]]] = []
        self.latencies: list[float] = []  # ms, requests completed in the window
        self.ok = 0
        self.deferred = 0
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.submitted: list[str] = []  # case numbers from 提交 replies (whole run)
        self.submit_deferred = 0
        self.submit_failed = 0
        self.sent = 0
        self.signed_inline = 0
        self.dialogs_in_window = 0
        self.replies = 0

    def _openid(self, index: int, cycle: int) -> str:
        """Each dialog is filed by a new resident in this slot: one resident filing the same matter again and
        again would (rightly) be asked whether it belongs to their earlier case."""
        return f"{self.openids[index]}_{cycle}"

    def _cycle(self, index: int, cycle: int) -> list[Request]:
        openid = self._openid(index, cycle)
        return [self.wire.sign(openid, text) for text in self.script.messages(self.args.first + index, cycle)]

    def presign(self) -> None:
        cycles = max(1, -(-self.args.presign // 6))
        self.pool = [[self._cycle(i, c) for c in range(cycles)] for i in range(len(self.openids))]

    def _next_cycle(self, index: int, cycle: int) -> list[Request]:
        pool = self.pool[index]
        if cycle < len(pool):
            requests, pool[cycle] = pool[cycle], []  # let it be freed once used
            return requests
        self.signed_inline += 6
        return self._cycle(index, cycle)

    def _error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{kind}: {detail[:300]}")

    async def _send(self, http: aiohttp.ClientSession, request: Request, window: Window) -> tuple[bool, object]:
        """(in window, reply text / None for deferred / an Exception)."""
        self.sent += 1
        started = time.perf_counter()
        try:
            async with http.post(request.url, data=request.body, headers=HEADERS) as resp:
                status, body = resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, body, failure = None, "", exc
        elapsed = time.perf_counter() - started
        in_window = window.start <= time.time() < window.end
        if in_window:
            self.latencies.append(elapsed * 1000)
        if status is None:
            return in_window, failure
        self.replies += 1
        try:
            outcome = self.wire.open(status, body)
        except ReplyError as exc:
            return in_window, exc
        if self.replies % CROSS_CHECK_EVERY == 1:
            return in_window, self._cross_check(request, status, body, outcome)
        return in_window, outcome

    def _cross_check(self, request: Request, status: int, body: str, fast: str | None) -> object:
        try:
            reference = self.wire.reference.open_reply(request.signed(), status, body)
        except ReplyError as exc:
            return exc
        if reference != fast:
            return ReplyError(f"wire_mismatch: simulator read {reference!r}, fast path read {fast!r}")
        return fast

    def _tally(self, in_window: bool, outcome: object) -> bool:
        """Count a reply; True if it is a usable text."""
        if isinstance(outcome, Exception):
            if in_window:
                kind = "wire_mismatch" if "wire_mismatch" in str(outcome) else type(outcome).__name__
                self._error(kind, str(outcome) or repr(outcome))
            return False
        if outcome is None:
            if in_window:
                self.deferred += 1
            return False
        if outcome == "":
            if in_window:
                self._error("empty", "empty text reply")
            return False
        return True

    async def dialog_resident(self, http: aiohttp.ClientSession, index: int, window: Window) -> None:
        cycle = 0
        while time.time() < window.end:
            requests = self._next_cycle(index, cycle)
            cycle += 1
            for step, request in enumerate(requests):
                if time.time() >= window.end:
                    return
                in_window, outcome = await self._send(http, request, window)
                usable = self._tally(in_window, outcome)
                is_submit = step == len(requests) - 1
                if usable:
                    try:
                        number = self.script.check(step, outcome)
                    except Unexpected as exc:
                        if in_window:
                            self._error("unexpected", f"step {step} ({request.text}): {exc}")
                        usable = False
                    else:
                        if is_submit:
                            self.submitted.append(number)
                if is_submit and not usable:
                    if outcome is None:
                        self.submit_deferred += 1
                    else:
                        self.submit_failed += 1
                if usable:
                    if in_window:
                        self.ok += 1
                        self.dialogs_in_window += is_submit
                    continue
                if outcome is None:  # deferred: the server still handles it, the dialog goes on
                    continue
                # Out of step (an error, a timeout, a reply for another step): start over cleanly.
                self.signed_inline += 1
                cancel = self.wire.sign(self._openid(index, cycle - 1), "取消")
                in_window, outcome = await self._send(http, cancel, window)
                if self._tally(in_window, outcome) and in_window:
                    self.ok += 1
                break

    async def echo_resident(self, http: aiohttp.ClientSession, index: int, window: Window) -> None:
        cycle = 0
        while time.time() < window.end:
            for request in self._next_cycle(index, cycle):
                if time.time() >= window.end:
                    return
                in_window, outcome = await self._send(http, request, window)
                if self._tally(in_window, outcome):
                    if outcome != request.text:
                        if in_window:
                            self._error("unexpected", f"echo of {request.text!r} was {outcome!r}")
                    elif in_window:
                        self.ok += 1
            cycle += 1

    async def run(self) -> dict:
        self.presign()
        connector = aiohttp.TCPConnector(limit=len(self.openids) + 8, limit_per_host=0)
        timeout = aiohttp.ClientTimeout(total=self.args.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            print("ready", flush=True)
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            word, *times = line.split()
            if word != "go":
                raise SystemExit(f"expected 'go', got {line!r}")
            window = Window(*map(float, times))
            await asyncio.sleep(max(0.0, window.t0 - time.time()))
            resident = self.dialog_resident if self.args.mode == "dialog" else self.echo_resident
            # Spread the first messages over a few milliseconds instead of 64 connects at one instant.
            await asyncio.gather(*(self._staggered(resident, http, i, window) for i in range(len(self.openids))))
        return {
            "ok": self.ok,
            "deferred": self.deferred,
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
            "latencies_ms": self.latencies,
            "sent": self.sent,
            "submitted": self.submitted,
            "submit_deferred": self.submit_deferred,
            "submit_failed": self.submit_failed,
            "signed_inline": self.signed_inline,
            "dialogs_in_window": self.dialogs_in_window,
        }

    @staticmethod
    async def _staggered(resident, http, index: int, window: Window) -> None:
        await asyncio.sleep(random.random() * 0.05)
        await resident(http, index, window)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--url",
        required=True,
        action="append",
        help="the webhook URL, e.g. http://127.0.0.1:8080/wechat (repeat: in turn)",
    )
    p.add_argument("--mode", choices=["dialog", "echo"], required=True)
    p.add_argument("--residents", type=int, default=64)
    p.add_argument("--first", type=int, default=0, help="index of the first resident (several generators)")
    p.add_argument("--run-id", default="x", help="part of every openid")
    p.add_argument("--presign", type=int, default=600, help="messages to sign ahead, per resident")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as failed")
    args = p.parse_args()
    result = asyncio.run(Generator(args).run())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
