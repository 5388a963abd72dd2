"""What the API's routes use, passed in by the wiring: never the whole runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.bus.base import Bus, Producer
from pipeline.fanout import TradeFanout
from pipeline.journal.behaviour_settings import BehaviourRules
from storage.db import Database


@dataclass(frozen=True)
class ApiContext:
    """The bus (live routes read it with groups of their own), the producer routes publish with,
    the store routes read, and the user a request means when it names none; the stock routes'
    low-latency fan-out (None: ``WS /ws/stocks`` has nothing to push) and ``SUBSCRIBED_SYMBOLS``."""

    bus: Bus
    producer: Producer
    db: Database
    user_id: str
    fanout: TradeFanout | None = None
    stock_symbols: tuple[str, ...] = ()
    # The pre-trade check's rules, cooldown and the models whose view it gives.
    behaviour: BehaviourRules = field(default_factory=BehaviourRules)
    pretrade_cooldown_min: int = 0
    models: tuple[str, ...] = ()
