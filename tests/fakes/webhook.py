"""A local webhook receiver (Discord-like or generic): accepts JSON POSTs on 127.0.0.1 and records them.

It answers 204 unless told otherwise: ``answer_next(Answer(500), ...)`` scripts the next answers
(a status, a body, headers, and a delay: a delay longer than the client's timeout is a hung
webhook). ``close()`` releases held requests and frees the port, so the URL then refuses
connections. Use as a context manager::

    with WebhookFake() as hook:
        hook.answer_next(Answer(429, b'{"retry_after": 0.05}'))
        ...
        hook.wait_for(1)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.http import LocalHttpFake


@dataclass(frozen=True)
class Answer:
    """How the fake answers one request."""

    status: int = 204
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it, and the status it was answered with."""

    method: str
    path: str
    headers: Message
    body: bytes
    status: int
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookFake(LocalHttpFake):
    """A webhook at ``url`` (path ``path``); every request lands in ``requests``."""

    def __init__(self, *, path: str = "/hook", default: Answer = Answer()) -> None:
        super().__init__()
        self.path = path
        self.default = default
        self.requests: list[Seen] = []
        self._script: deque[Answer] = deque()
        self._changed = threading.Condition()
        self._closing = threading.Event()
        # The base routes only GET; this instance's handler class is its own, so POST is added here.
        self.server.RequestHandlerClass.do_POST = lambda handler: self._serve(handler)  # type: ignore[attr-defined]  # its own handler class

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def answer_next(self, *answers: Answer) -> None:
        with self._changed:
            self._script.extend(answers)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._changed:
            answer = self._script.popleft() if self._script else self.default
            if handler.command != "POST":
                answer = Answer(405)
            self.requests.append(
                Seen(handler.command, handler.path, handler.headers, body, answer.status, time.monotonic())
            )
            self._changed.notify_all()
        if answer.delay_s and self._closing.wait(answer.delay_s):
            return  # closing: drop the connection unanswered
        handler.send_response(answer.status)
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(answer.body)))
        if answer.body:
            handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        handler.wfile.write(answer.body)

    def delivered(self) -> list[Any]:
        """The JSON bodies answered with a 2xx, in arrival order."""
        with self._changed:
            return [r.json() for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 10.0, *, delivered: bool = True) -> bool:
        """Wait until ``count`` requests were delivered (or, with ``delivered=False``, received at all)."""
        return self.wait_until(
            lambda seen: sum(1 for r in seen if not delivered or 200 <= r.status < 300) >= count, timeout
        )

    def wait_until(self, condition: Callable[[list[Seen]], bool], timeout: float = 10.0) -> bool:
        """Wait until ``condition(requests so far)`` holds; False if it did not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def close(self) -> None:
        self._closing.set()
        super().close()
