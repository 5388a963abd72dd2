"""paper-journal: ``crypto.orders`` -> ``raw-trades``, every position the virtual exchange closes as a
trade of the account ``paper:<model>`` (``pipeline.journal.paper``).

Stateless: a raw trade's id is derived from its order id, so reading the compacted orders topic from
the start again (a new group, a restart before a commit) publishes the same raw trades, which the
normalizer stores once. A close the exchange said without a fill's price or time is dead-lettered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from pipeline.bus.base import OffsetReset
from pipeline.journal.paper import raw_trade_of
from pipeline.messages import Order
from pipeline.runner import Output, Stage
from pipeline.topics import ORDERS


class PaperJournal(Stage):
    """Runs on its runner's thread; holds no state."""

    name: ClassVar[str] = "paper-journal"
    inputs: ClassVar[tuple[str, ...]] = (ORDERS,)
    offset_reset: ClassVar[OffsetReset] = "earliest"  # a new desk journals every close the topic kept
    input_model = Order

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def process(self, message: Order) -> Sequence[Output]:
        raw = raw_trade_of(message, int(self.clock() * 1000))
        return [] if raw is None else [raw]
