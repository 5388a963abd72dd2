"""A job on its own thread with a progress a page can read: the part every job shares.

``start`` and ``snapshot`` are called from any thread; ``work`` runs on the job's thread, or on
the caller's when ``run`` is called directly (the CLI does). A job always ends, and says why it
failed: a ``PipelineError`` with its message, anything else with its type.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


@dataclass
class JobState:
    """What a page shows of a job; subclasses add their results."""

    running: bool = False
    progress: float = 0.0
    message: str = "waiting"
    errors: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def error(self) -> str | None:
        """The first error, if the job failed."""
        return self.errors[0] if self.errors else None


class Job:
    """Runs ``work`` once on a thread of its own; ``snapshot`` returns a copy of its state."""

    name = "job"

    def __init__(self, state: JobState | None = None) -> None:
        self._state = state or JobState()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._state.running

    def snapshot(self) -> JobState:
        with self._lock:
            state = copy.copy(self._state)
            state.errors = list(self._state.errors)
            return state

    def start(self) -> None:
        with self._lock:
            self._state.running, self._state.started_at = True, time.time()
        self._thread.start()

    def progress(self, fraction: float, message: str) -> None:
        """Say how far the job is (0 to 1) and what it does now."""
        with self._lock:
            self._state.progress, self._state.message = min(1.0, max(0.0, fraction)), message

    def fail(self, error: str) -> None:
        """Record an error; the job goes on unless ``work`` stops."""
        with self._lock:
            self._state.errors.append(error)

    def run(self) -> None:
        """Run ``work``; record why it failed, if it did, and mark the job finished."""
        with self._lock:
            self._state.running = True
            self._state.started_at = self._state.started_at or time.time()
        try:
            message = self.work()
        except PipelineError as exc:
            self.fail(str(exc))
            message = "failed"
        except Exception as exc:  # a job must end and say why, whatever happened
            log.exception("%s failed", self.name)
            self.fail(f"{type(exc).__name__}: {exc}")
            message = "failed"
        with self._lock:
            self._state.running, self._state.finished_at = False, time.time()
            self._state.progress, self._state.message = 1.0, message

    def work(self) -> str:
        """Do the job; return the last message to show (e.g. "done in 3.2 s")."""
        raise NotImplementedError
