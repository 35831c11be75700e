"""`frontdoor fake-wechat`: the fake WeChat API on its own port, for several `serve` instances to share.

One `serve` in development mounts the fake inside itself. Instances of a cluster must all talk to one WeChat —
one access token, one customer-service window per resident, one list of what was sent — so a rehearsal of a
city's deployment (and the multi-instance test) runs the fake alone and points every instance at it with
`wechat.fake_api = false` and `wechat.api_base_url = http://HOST:PORT/fake-wechat`.
"""

from __future__ import annotations

import argparse

from bot.config import Settings


def serve(settings: Settings, host: str, port: int) -> None:
    from aiohttp import web

    from bot.app import FAKE_PREFIX
    from bot.clock import Clock
    from bot.wechat.fake import FakeWeChat

    root = web.Application()
    root.add_subapp(FAKE_PREFIX + "/", FakeWeChat.from_settings(settings, Clock()).app())
    web.run_app(root, host=host, port=port, print=None, access_log=None)


def register(sub: argparse._SubParsersAction, settings_of) -> None:
    fake = sub.add_parser("fake-wechat", help="the fake WeChat API alone, shared by several serve instances")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8090)

    def run(args) -> int:
        from bot.app import FAKE_PREFIX
        from bot.texts import Texts

        settings = settings_of(args)
        api = f"http://{args.host}:{args.port}{FAKE_PREFIX}"
        print(
            Texts(settings.texts.override_file)("cli.fake_banner", api=api, app_id=settings.wechat.app_id), flush=True
        )
        serve(settings, args.host, args.port)
        return 0

    fake.set_defaults(func=run)
