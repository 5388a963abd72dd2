"""What every market source shares: validation against seed 001's rules, per-symbol ordering,
dead letters with the reason, and health counters.

A source turns whatever it receives (a REST answer, a WebSocket frame, a CSV row) into the
fields of a ``MarketData`` and calls ``emit``. ``emit`` never raises for bad input: a tick that
breaks a rule, an unknown symbol, a tick older than or equal to the last one of its symbol, or
(for live feeds) a stale one is counted by reason and dead-lettered on ``crypto.market_data_dlq``
with the raw input, and the feed goes on. ``reject`` does the same for input that could not even
be parsed (a malformed frame).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.bus.base import Producer
from pipeline.dead_letters import publish_dead_letter
from pipeline.errors import BadMessageError, Violation
from pipeline.messages import MarketData, build, check_fresh, encode
from pipeline.runner import FEED_HEADER, REPLAY, Worker
from pipeline.topics import MARKET_DATA

LIVE = b"live"


class MarketSource(Worker):
    """Base of the sources of ``crypto.market_data``. Subclasses implement ``_run`` and call
    ``emit`` / ``reject``; ``flush`` delivers what was emitted (call it once per batch or frame)."""

    kind = "source"
    # Replays are exempt from the freshness rule (header ``feed: replay``); live feeds are not.
    replay: bool = False

    def __init__(
        self, name: str, producer: Producer, symbols: Iterable[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(name)
        self.producer = producer
        self.symbols = frozenset(symbols)
        self.clock = clock
        self.rejections: Counter[str] = Counter()  # reason (the rule broken) -> count
        self._last_ts: dict[str, int] = {}
        self._pending = 0
        self._headers = [(FEED_HEADER, REPLAY if self.replay else LIVE)]
        self._counts_lock = threading.Lock()

    def emit(self, raw: Any, **fields: Any) -> MarketData | None:
        """Validate ``fields`` as a tick and publish it; dead-letter ``raw`` instead when it breaks a
        rule. Return the tick, or None when it was rejected."""
        try:
            tick = build(MarketData, **fields)
            assert isinstance(tick, MarketData)
            if self.symbols and tick.symbol not in self.symbols:
                raise BadMessageError(
                    [
                        Violation(
                            "symbol", tick.symbol, f"one of the configured symbols ({', '.join(sorted(self.symbols))})"
                        )
                    ]
                )
            if not self.replay:
                check_fresh(tick, int(self.clock() * 1000))
            last = self._last_ts.get(tick.symbol)
            if last is not None and tick.timestamp <= last:
                what = "duplicate" if tick.timestamp == last else "out of order"
                raise BadMessageError(
                    [
                        Violation(
                            "timestamp",
                            tick.timestamp,
                            f"newer than the symbol's last tick ({last}); this one is {what}",
                        )
                    ]
                )
        except BadMessageError as exc:
            self.reject(raw, exc, key=str(fields.get("symbol") or "") or None)
            return None
        self._last_ts[tick.symbol] = tick.timestamp
        self.producer.produce(MARKET_DATA, encode(tick), key=tick.key(), headers=self._headers)
        self._pending += 1
        return tick

    def reject(self, raw: Any, exc: BadMessageError | str, *, key: str | None = None) -> None:
        """Dead-letter ``raw`` (a frame, a row, a dict) with the reason; count it; go on."""
        if isinstance(exc, str):
            exc = BadMessageError(exc)
        value = raw if isinstance(raw, (bytes, str)) else repr(raw)
        reason = publish_dead_letter(
            self.producer, exc, topic=MARKET_DATA, value=value, stage=self.name, key=key.encode() if key else None
        )
        rule = exc.violations[0].rule if exc.violations else reason
        with self._counts_lock:
            self.rejections[rule] += 1
        with self.health.lock:
            self.health.dead_lettered += 1
            self.health.last_error = reason

    def flush(self, timeout: float = 30.0) -> int:
        """Deliver what was emitted; return how many ticks were not delivered (also counted as errors)."""
        pending, self._pending = self._pending, 0
        undelivered = self.producer.flush(timeout)
        with self.health.lock:
            self.health.produced += max(0, pending - undelivered)
            self.health.last_activity_at = time.time()
        if undelivered:
            self.health.error(f"{undelivered} ticks not delivered")
        return undelivered

    def status(self) -> dict[str, Any]:
        """The ticks this source refused, by the rule they broke."""
        return {"rejections": self.rejection_counts()}

    def rejection_counts(self) -> dict[str, int]:
        """Return a copy of the rejections by rule (safe from any thread)."""
        with self._counts_lock:
            return dict(self.rejections)
