"""What a worker (a stage's runner, a source, a job) reports about itself: counters, errors, lag and
the batch-latency histogram. ``pipeline.status_board`` publishes it; pages read that, never a
worker's live ``Health``.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from dataclasses import dataclass, field, replace
from typing import Any

# Upper bounds (seconds) of the batch-latency histogram's buckets.
BATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Health:
    """What a worker reports; ``snapshot()`` returns a copy safe to read from any thread."""

    name: str
    kind: str
    running: bool = False
    processed: int = 0
    produced: int = 0
    dead_lettered: int = 0
    retried: int = 0
    errors: int = 0
    last_error: str | None = None
    lag: int = 0
    started_at: float | None = None
    last_activity_at: float | None = None
    # Batch latency (poll to commit) as counts per ``BATCH_BUCKETS_S`` bucket (the last: above them).
    batch_counts: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BUCKETS_S) + 1))
    batch_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> Health:
        with self.lock:
            return replace(self, batch_counts=list(self.batch_counts), lock=threading.Lock())

    def batch_done(self, seconds: float) -> None:
        """Count one batch that took ``seconds`` from its poll to its commit (caller holds the lock)."""
        self.batch_counts[bisect.bisect_left(BATCH_BUCKETS_S, seconds)] += 1
        self.batch_seconds += seconds

    def batch_latency(self) -> dict[str, Any]:
        """The histogram as Prometheus has it: upper bounds and cumulative counts, and the sum."""
        return {
            "le": list(BATCH_BUCKETS_S),
            "counts": list(itertools.accumulate(self.batch_counts)),
            "sum": self.batch_seconds,
        }

    def error(self, message: str) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = message
