"""The worker that serves the API with uvicorn on its own thread."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI

from pipeline.errors import PipelineError
from pipeline.runner import Worker

log = logging.getLogger(__name__)


class ApiServer(Worker):
    """Serves the API with uvicorn on its own thread (kind "source": it publishes what it gets)."""

    kind = "source"

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        super().__init__("api")
        import uvicorn

        self.host, self.port = host, port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", ws="websockets-sansio")
        )

    def _run(self) -> None:
        from pipeline.api.guard import wide_bind_notice

        notice = wide_bind_notice(self.host)
        if notice:
            log.warning(notice)
        try:
            self.server.run()
        except SystemExit as exc:  # uvicorn exits when it cannot bind; say so in health instead
            raise PipelineError(f"the trades API could not listen on {self.host}:{self.port} ({exc})") from None
        if not self._stop.is_set() and not self.server.started:
            raise PipelineError(f"the trades API could not listen on {self.host}:{self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        super().stop(timeout)

    def wait_started(self, timeout: float = 10.0) -> bool:
        """Return True once the server accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.started:
                return True
            if self._thread is not None and not self._thread.is_alive():
                return False
            time.sleep(0.05)
        return False
