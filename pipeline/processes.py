"""Stages in processes of their own, for the cores one interpreter cannot use.

``STAGE_PROCESSES`` names stages (of ``STAGES``) that the runtime runs as children
``python -m pipeline run --stage NAME`` instead of threads. A child reads the same settings
(environment over ``.env``, same working folder and ``DATA_DIR``) and joins the same consumer
group, so nothing else changes: the embedded bus and the store are shared files, Kafka is
shared by nature. A child that exits is started again after a pause (its group resumes from the
last commit); stopping the runtime stops the children (SIGTERM, then SIGKILL after a grace
period), and a child whose parent is gone (even killed) stops itself. Each child's output goes
to ``DATA_DIR/logs/<stage>.log``.

Worth it where one interpreter is the limit: the journal's four stages reach about twice the
throughput as four processes on two cores (``python -m bench.journal --processes``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline.runner import Worker

log = logging.getLogger(__name__)

GRACE_S = 15.0
# Set in a child's environment: the child stops when its parent is gone, even after a SIGKILL.
PARENT_PID_ENV = "PIPELINE_PARENT_PID"


class StageProcess(Worker):
    """Runs one stage as a child process and keeps it running until stopped."""

    kind = "process"

    def __init__(
        self,
        name: str,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        lag: Callable[[], int | None] | None = None,
        restart_pause_s: float = 2.0,
    ) -> None:
        super().__init__(name)
        self.data_dir = data_dir.resolve()
        # The child runs its stage itself: it must not start children of its own.
        self.env = {
            **(env if env is not None else os.environ),
            "STAGE_PROCESSES": "",
            "DATA_DIR": str(self.data_dir),
            "EMBEDDED_BUS_SHARED": "1",
            PARENT_PID_ENV: str(os.getpid()),
        }
        self.lag = lag
        self.restart_pause_s = restart_pause_s
        self.log_path = self.data_dir / "logs" / f"{name}.log"
        self.pid: int | None = None
        self.restarts = 0

    def status(self) -> dict[str, object]:
        """The child's pid (its own row holds its counters) and how often it was started again."""
        return {"child_pid": self.pid, "restarts": self.restarts}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pipeline", "run", "--stage", self.name]

    def _run(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        while not self._stop.is_set():
            with open(self.log_path, "ab") as out:
                proc = subprocess.Popen(
                    self.command(), env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            self.pid = proc.pid
            log.info("stage %s runs in process %d (log: %s)", self.name, proc.pid, self.log_path)
            try:
                code = self._watch(proc)
            finally:
                self.pid = None
            if code is None:  # stopped by us
                return
            self.restarts += 1
            self.health.error(f"process exited with code {code}; started again (log: {self.log_path})")
            log.warning("stage %s: process exited with code %s; starting it again", self.name, code)
            self._stop.wait(self.restart_pause_s)

    def _watch(self, proc: subprocess.Popen[bytes]) -> int | None:
        """Wait until the child exits (return its code) or we are stopped (stop it, return None)."""
        last_lag = 0.0
        while not self._stop.wait(0.5):
            code = proc.poll()
            if code is not None:
                return code
            if self.lag is not None and time.monotonic() - last_lag > 5.0:
                last_lag = time.monotonic()
                lag = self.lag()
                with self.health.lock:
                    self.health.lag = lag if lag is not None else self.health.lag
                    self.health.last_activity_at = time.time()
        proc.terminate()
        try:
            proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("stage %s: process %d did not stop in %.0f s; killing it", self.name, proc.pid, GRACE_S)
            proc.kill()
            proc.wait()
        return None

    def stop(self, timeout: float = GRACE_S + 5.0) -> None:
        super().stop(timeout)
