"""analysis-scheduler: ``scheduled`` triggers on ``ANALYSIS_SCHEDULE`` (a cron expression in New
York time; ``pipeline.analysis.triggers.Schedule``), one per symbol, so results stay fresh when
no bar or news comes (a quiet symbol, the technicals of a closed market, news ageing).

Sleeps on its stop event until the next firing; a firing missed while the process was down is
not made up (the next one comes). Runs on its own thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.analysis.triggers import Schedule, trigger_id
from pipeline.bus.base import Producer
from pipeline.messages import AnalysisTrigger, encode, ms_iso
from pipeline.runner import Worker


class AnalysisScheduler(Worker):
    """Publishes a ``scheduled`` trigger for each of ``symbols`` at every firing of ``schedule``."""

    kind = "source"

    def __init__(
        self,
        producer: Producer,
        symbols: Sequence[str],
        schedule: Schedule,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__("analysis-scheduler")
        self.producer = producer
        self.symbols = tuple(symbols)
        self.schedule = schedule
        self.clock = clock
        self.next_at: float | None = None
        self.fired = 0

    def fire(self, at_s: float) -> int:
        """Publish one scheduled trigger per symbol, stamped ``at_s``; return how many."""
        stamp = ms_iso(int(at_s * 1000))
        for symbol in self.symbols:
            trigger = AnalysisTrigger(
                trigger_id=trigger_id(),
                symbol=symbol,
                trigger_type="scheduled",
                timestamp=stamp,
                metadata={"data_count": 0, "priority": "normal", "schedule": self.schedule.expression},
            )
            self.producer.produce(trigger.topic, encode(trigger), key=trigger.key())
        undelivered = self.producer.flush(30.0)
        with self.health.lock:
            self.health.produced += len(self.symbols) - undelivered
            self.health.last_activity_at = time.time()
        self.fired += 1
        return len(self.symbols)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.next_at = self.schedule.next_after(self.clock())
            while not self._stop.is_set() and self.clock() < self.next_at:
                self._stop.wait(min(30.0, max(0.01, self.next_at - self.clock())))
            if not self._stop.is_set():
                self.fire(self.next_at)

    def status(self) -> dict[str, Any]:
        return {"schedule": self.schedule.expression, "next_at": self.next_at, "fired": self.fired}
