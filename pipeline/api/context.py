"""What the API's routes use, passed in by the wiring: never the whole runtime."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.api.guard import GuardSettings
from pipeline.api.tokens import TokenStore
from pipeline.bus.base import Bus, Producer
from storage.db import Database


@dataclass(frozen=True)
class ApiContext:
    """The bus (live routes read it with groups of their own), the producer routes publish with,
    the store routes read, the desk's own user, the tokens and what the gate admits (every route
    acts for its token's user only), and how many WebSockets may be open at once."""

    bus: Bus
    producer: Producer
    db: Database
    user_id: str
    tokens: TokenStore
    guard: GuardSettings
    max_websockets: int = 64
