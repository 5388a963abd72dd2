"""Exchange trade history into ``raw-trades``: polls a trade-history client and publishes what is new."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, ConfigError, TransientError
from pipeline.journal.fills import fill_fingerprint, normalize_symbol
from pipeline.journal.payloads import PARSERS
from pipeline.messages import RawTrade, encode
from pipeline.runner import Worker
from pipeline.sources.exchange_api import TradeHistoryClient
from pipeline.topics import RAW_TRADES

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# (symbol, venue) -> the time of the newest fill this venue's sync stored, or None.
Resume = Callable[[str, str], "int | None"]


class ExchangeHistorySource(Worker):
    """Polls one exchange's trade history every ``interval_s`` and publishes new trades.

    Each trade goes to ``raw-trades`` as received, keyed by user, with a ``raw_id`` from the
    exchange's trade id, so polling the same history twice gives the same ids. The last trade
    time per symbol is kept in memory, starting where the ledger's newest fill from this venue
    stands (``resume``, read on the first poll: a restart picks up where the sync stopped) or at
    ``since_ms``. Runs on its own thread;
    ``poll_once`` may also be called directly. Errors go to health; the next poll retries.
    """

    kind = "source"

    def __init__(
        self,
        client: TradeHistoryClient,
        producer: Producer,
        *,
        user_id: str,
        symbols: Sequence[str],
        interval_s: float = 300.0,
        since_ms: int | None = None,
        clock: Clock = time.time,
        resume: Resume | None = None,
    ) -> None:
        super().__init__(f"{client.venue}-history")
        self.client = client
        self.producer = producer
        self.user_id = user_id
        self.symbols = tuple(normalize_symbol(s) for s in symbols)
        self.interval_s = interval_s
        self.clock = clock
        self.parse = PARSERS[client.format]
        self._since: dict[str, int | None] = dict.fromkeys(self.symbols, since_ms)
        self._resume = resume
        self._resumed: set[str] = set()
        self._seen_at_since: dict[str, set[str]] = {s: set() for s in self.symbols}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)

    def poll_once(self) -> int:
        """Fetch every symbol once and publish what is new; return how many were published."""
        published = 0
        for symbol in self.symbols:
            if self._stop.is_set():
                break
            try:
                published += self._poll(symbol)
            except (TransientError, ConfigError) as exc:
                log.warning("%s %s: %s", self.name, symbol, exc)
                self.health.error(f"{symbol}: {exc}")
            except Exception as exc:  # a bug must not stop the other symbols or the process
                log.exception("%s %s failed", self.name, symbol)
                self.health.error(f"{symbol}: {type(exc).__name__}: {exc}")
        with self.health.lock:
            self.health.last_activity_at = time.time()
        return published

    def _poll(self, symbol: str) -> int:
        if self._resume is not None and symbol not in self._resumed:
            stored = self._resume(symbol, self.client.venue)
            self._resumed.add(symbol)
            if stored is not None and (self._since[symbol] is None or stored > self._since[symbol]):  # type: ignore[operator]
                self._since[symbol] = stored
        since = self._since[symbol]
        seen = self._seen_at_since[symbol]
        now_ms = int(self.clock() * 1000)
        batch: list[tuple[int, RawTrade]] = []
        for raw in self.client.fetch(symbol, since):
            try:
                fill = self.parse(raw)
            except BadMessageError as exc:
                self.health.error(f"{symbol}: skipped a {self.client.venue} trade: {exc}")
                continue
            raw_id = fill_fingerprint(self.user_id, fill, 0, venue=self.client.venue)
            if since is not None and (fill.time < since or (fill.time == since and raw_id in seen)):
                continue
            batch.append(
                (
                    fill.time,
                    RawTrade(
                        raw_id=raw_id,
                        user_id=self.user_id,
                        source=self.client.venue,
                        format=self.client.format,
                        received_at=now_ms,
                        payload=dict(raw),
                    ),
                )
            )
        if not batch:
            return 0
        key = self.user_id.encode()
        for _, message in batch:
            self.producer.produce(RAW_TRADES, encode(message), key=key)
        undelivered = self.producer.flush(30.0)
        if undelivered:
            raise TransientError(f"{undelivered} of {len(batch)} trades not delivered to {RAW_TRADES}")
        last = max(t for t, _ in batch)
        at_last = {m.raw_id for t, m in batch if t == last}
        self._seen_at_since[symbol] = (seen | at_last) if last == since else at_last
        self._since[symbol] = last
        with self.health.lock:
            self.health.produced += len(batch)
        return len(batch)
