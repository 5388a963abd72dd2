"""signal-store: writes ``crypto.ml_signals`` to SQLite, idempotently, keeping ``retention_ms`` of them.

A signal's id is (symbol, model, timestamp), so a replayed topic or a batch delivered twice gives
the same rows. Signals older than the retention (counted from the newest stored one, not the wall
clock, so an old replay is not pruned as it is written) are deleted at most once a minute.
"""

from __future__ import annotations

import time
from typing import ClassVar

import orjson

from pipeline.messages import Message, MLSignal
from pipeline.runner import Stage
from pipeline.topics import ML_SIGNALS
from storage import signals
from storage.db import Database


class SignalStore(Stage):
    """Sink stage; runs on its runner's thread and writes through the database's writer."""

    name: ClassVar[str] = "signal-store"
    inputs: ClassVar[tuple[str, ...]] = (ML_SIGNALS,)

    def __init__(self, db: Database, *, retention_ms: int = 7 * 86_400_000) -> None:
        self.db = db
        self.retention_ms = retention_ms
        self._pruned_at = 0.0

    def process_batch(self, messages: list[Message]) -> list[Message]:
        rows = [
            (
                s.symbol,
                s.model,
                s.timestamp,
                s.signal,
                s.prediction_type,
                s.predicted_value,
                s.current_price,
                s.expected_change_pct,
                s.confidence,
                str(s.metadata.get("model_version", "")),
                orjson.dumps(s.features).decode(),
            )
            for s in messages
            if isinstance(s, MLSignal)
        ]
        prune = time.monotonic() - self._pruned_at > 60
        if prune:
            self._pruned_at = time.monotonic()

        if rows:
            keep = self.retention_ms if prune else None
            self.db.write(lambda db: signals.store(db.conn, rows, keep_ms=keep))
        return []
