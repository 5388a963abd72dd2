"""The ``lag-history`` worker: every ``every_s`` (5 s) it reads every consumer group's lag per
partition from the bus (``Bus.describe_groups``: committed offset against the end) and stores it
(``storage.lag_history``: every sample of the last hour, the last of each minute of the last day),
so the Pipeline page charts lag over time whoever opens it and whenever.

The samples are the committed lag, as Kafka's own tools show it: a group that processed but has not
committed yet counts as behind. Each process that runs this worker samples (run it in one; the
default runs it in the app or in ``pipeline run``). Cost per sample: one describe of the groups
(on Kafka a few admin requests per group) and two row writes per partition; a prune a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlite_utils

from pipeline.bus.base import Bus
from pipeline.runner import Worker
from storage import lag_history as door
from storage.db import Database

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 60.0


class LagRecorder(Worker):
    """Runs ``sample_once`` on its own thread every ``every_s``."""

    kind = "source"

    def __init__(self, db: Database, bus: Bus, *, every_s: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__("lag-history")
        self.db = db
        self.bus = bus
        self.every_s = every_s
        self.clock = clock
        self._pruned_at = float("-inf")

    def sample_once(self) -> int:
        """Store one sample of every group's partitions (and prune once a minute); return how many."""
        now = self.clock()
        samples = [
            door.LagSample(g.group_id, p.topic, p.partition, now, p.lag)
            for g in self.bus.describe_groups()
            for p in g.partitions
        ]
        prune = now - self._pruned_at >= PRUNE_EVERY_S

        def write(db: sqlite_utils.Database) -> None:
            door.record(db.conn, samples)
            if prune:
                door.prune(db.conn, now)

        self.db.write(write)
        if prune:
            self._pruned_at = now
        with self.health.lock:
            self.health.processed += len(samples)
            self.health.last_activity_at = time.time()
        return len(samples)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception as exc:  # noqa: BLE001 - a busy broker or store: the next sample tries again
                log.warning("lag sample failed: %s", exc)
                self.health.error(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.every_s)
