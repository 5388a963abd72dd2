"""Publishes what this process's workers say about themselves to ``storage.status``, every second.

Pages read those rows instead of the workers, so a page is right whether a stage runs as a thread
of the app or as a process of its own. Runs on its own daemon thread; ``publish`` may also be
called directly (the runtime does, once at start and once at stop).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.runner import Worker
from pipeline.worker_health import Health
from storage import status
from storage.db import Database

log = logging.getLogger(__name__)

FORGET_AFTER_S = 3600.0  # rows of processes gone this long are deleted at start


class StatusBoard:
    """Writes one ``stage_status`` row per worker of ``workers()`` every ``every_s`` seconds."""

    def __init__(self, db: Database, workers: Callable[[], Sequence[Worker]], *, every_s: float = 1.0) -> None:
        self.db = db
        self.workers = workers
        self.every_s = every_s
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-board", daemon=True)
        self._details: dict[str, dict[str, object]] = {}

    def snapshot(self) -> list[status.StageStatus]:
        """Return every worker's status now."""
        now = time.time()
        out = []
        for w in self.workers():
            h = w.health.snapshot()
            try:
                details = w.status()
            except Exception:  # a worker that cannot describe itself keeps what it said last
                log.debug("status of %s failed", w.name, exc_info=True)
                details = self._details.get(w.name, {})
            self._details[w.name] = details
            out.append(
                status.StageStatus(
                    name=w.name,
                    kind=w.kind,
                    running=h.running,
                    processed=h.processed,
                    produced=h.produced,
                    dead_lettered=h.dead_lettered,
                    errors=h.errors,
                    last_error=h.last_error,
                    lag=h.lag,
                    started_at=h.started_at,
                    last_activity_at=h.last_activity_at,
                    details=details,
                    pid=self.pid,
                    updated_at=now,
                    retried=h.retried,
                    metrics=self._metrics(w, h),
                )
            )
        return out

    @staticmethod
    def _metrics(w: Worker, h: Health) -> dict[str, Any]:
        """A stage's batch-latency histogram and its bus clients' metrics (pipeline.bus.client_metrics)."""
        if w.kind != "stage":
            return {}
        try:
            client = w.client_metrics()
        except Exception:  # figures for pages, never a reason to lose the row
            log.debug("client metrics of %s failed", w.name, exc_info=True)
            client = {}
        return {"batch_latency": h.batch_latency(), **({"client": client} if client else {})}

    def publish(self) -> None:
        rows = self.snapshot()
        if rows:
            self.db.write(lambda db: status.publish(db.conn, rows))

    def start(self) -> None:
        self.db.write(lambda db: status.forget(db.conn, time.time() - FORGET_AFTER_S))
        self.publish()
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing, then publish once more (the workers are stopped by now)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        try:
            self.publish()
        except Exception:  # the store may be closing; the rows go stale and stop showing anyway
            log.debug("last status not published", exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.publish()
            except Exception:  # a busy store must not stop the board; the next second tries again
                log.warning("could not publish the workers' status", exc_info=True)
