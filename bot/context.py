"""What a handler or dialog gets to work with for one inbound message."""

from __future__ import annotations

from dataclasses import dataclass

from bot.clock import Clock
from bot.config import Settings
from bot.texts import Texts
from storage.fast import Tx


@dataclass
class Ctx:
    tx: Tx
    clock: Clock
    settings: Settings
    texts: Texts
    openid: str
    # Set by a handler that detached the sender (an unfollow): intake then keeps no row of this message.
    forgotten: bool = False
