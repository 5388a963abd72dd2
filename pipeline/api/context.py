"""What the API's routes use, passed in by the wiring: never the whole runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.api.guard import GuardSettings, allowed_hosts
from pipeline.api.tokens import TokenStore
from pipeline.bus.base import Bus, Producer
from pipeline.fanout import TradeFanout
from pipeline.journal.behaviour_settings import BehaviourRules
from storage.db import Database


@dataclass(frozen=True)
class ApiContext:
    """The bus (live routes read it with groups of their own), the producer routes publish with,
    the store routes read, the desk's own user, the tokens and what the gate admits (every route
    acts for its token's user only), how many WebSockets may be open at once; the stock routes'
    low-latency fan-out (None: ``WS /ws/stocks`` has nothing to push) and ``SUBSCRIBED_SYMBOLS``."""

    bus: Bus
    producer: Producer
    db: Database
    user_id: str
    tokens: TokenStore
    guard: GuardSettings
    max_websockets: int = 64
    fanout: TradeFanout | None = None
    stock_symbols: tuple[str, ...] = ()
    # The pre-trade check's rules, cooldown and the models whose view it gives.
    behaviour: BehaviourRules = field(default_factory=BehaviourRules)
    pretrade_cooldown_min: int = 0
    models: tuple[str, ...] = ()


def loopback_context(
    bus: Bus, producer: Producer, db: Database, user_id: str, data_dir: Path, **extra: Any
) -> ApiContext:
    """An ``ApiContext`` for a server on loopback with the default gate and the tokens under
    ``data_dir`` (benchmarks and tools; the app's comes from ``Runtime.api_context``)."""
    from pipeline.journal.importer import MAX_UPLOAD_BYTES

    guard = GuardSettings(
        hosts=allowed_hosts("127.0.0.1", ()), origins=frozenset(), max_body=1024 * 1024, max_upload=MAX_UPLOAD_BYTES
    )
    return ApiContext(
        bus=bus, producer=producer, db=db, user_id=user_id, tokens=TokenStore(data_dir), guard=guard, **extra
    )
