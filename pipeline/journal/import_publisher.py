"""Sends an import's accepted rows to ``raw-trades`` and its rejected ones to the dead-letter topic,
keyed by the user so their order is kept, flushing every ``FLUSH_EVERY`` messages (backpressure: a
fast reader never queues a whole file in memory). A flush that leaves messages undelivered is a
``TransientError``: importing the file again skips the rows already stored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import orjson

from pipeline.bus.base import Producer
from pipeline.errors import TransientError, Violation
from pipeline.messages import DeadLetter, RawTrade, encode
from pipeline.topics import RAW_TRADES, dlq_name

FLUSH_TIMEOUT_S = 120.0
FLUSH_EVERY = 10_000


class ImportPublisher:
    """Sends accepted rows to ``raw-trades`` and rejected ones to its dead-letter topic."""

    def __init__(
        self,
        producer: Producer,
        user_id: str,
        source: str,
        fmt: str,
        now_ms: int,
        mapping: Mapping[str, str] | None,
        keep_ids: bool = False,
    ) -> None:
        self.producer, self.user_id, self.source, self.fmt, self.now = producer, user_id, source, fmt, now_ms
        self.mapping = dict(mapping) if mapping is not None else None
        self.key = user_id.encode()
        self.published = 0
        self.ids: list[str] | None = [] if keep_ids else None
        self._unflushed = 0

    def raw(self, raw_id: str, line: int, row: dict[str, str]) -> None:
        raw = RawTrade(
            raw_id=raw_id,
            user_id=self.user_id,
            source=self.source,
            format=self.fmt,
            received_at=self.now,
            payload=row,
            row=line,
            mapping=self.mapping,
        )
        self.producer.produce(RAW_TRADES, encode(raw), key=self.key)
        self.published += 1
        if self.ids is not None:
            self.ids.append(raw_id)
        self._sent()

    def dead(self, line: int, row: object, violations: list[Violation], reason: str) -> None:
        letter = DeadLetter(
            source_topic=RAW_TRADES,
            source_partition=-1,
            source_offset=line,
            source_key=self.user_id,
            value=orjson.dumps(row).decode(),
            reason=reason,
            violations=[{"field": v.field, "value": v.value, "rule": v.rule} for v in violations],
            stage="import",
            retry_count=0,
            failed_at=int(time.time() * 1000),
        )
        self.producer.produce(dlq_name(RAW_TRADES), encode(letter), key=self.key)
        self._sent()

    def _sent(self) -> None:
        self._unflushed += 1
        if self._unflushed >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self._unflushed = 0
        left = self.producer.flush(FLUSH_TIMEOUT_S)
        if left:
            raise TransientError(
                f"{left} messages of the import were not delivered to the bus; "
                "import the file again (rows already stored are skipped)"
            )
