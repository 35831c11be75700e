"""What a handler or dialog gets to work with for one inbound message."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.config import Settings
from bot.texts import Texts


@dataclass
class Ctx:
    session: AsyncSession
    clock: Clock
    settings: Settings
    texts: Texts
    openid: str
