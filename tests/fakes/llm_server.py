"""A local server that speaks the OpenAI chat-completions API (``POST /v1/chat/completions``), as
vLLM, Ollama or OpenAI answer it, for the LLM sentiment client's tests.

``mode`` says how it answers: ``ok`` (a JSON object scoring every item it was asked about with
``score``), ``slow`` (the same after ``delay_s``), ``refusal`` (a message whose ``refusal`` is set
and ``content`` null), ``malformed`` (content that is not JSON), ``http500``. It records every
request body and the Authorization header it got.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class FakeLlm:
    def __init__(self, mode: str = "ok", *, score: float = -0.8, delay_s: float = 0.0) -> None:
        self.mode = mode
        self.score = score
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake._answer(self, json.loads(body or b"{}"))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def _answer(self, handler: BaseHTTPRequestHandler, request: dict[str, Any]) -> None:
        self.requests.append(request)
        self.authorizations.append(handler.headers.get("Authorization"))
        if handler.path != "/v1/chat/completions":
            self._send(handler, 404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        if self.mode == "slow":
            time.sleep(self.delay_s)
        if self.mode == "http500":
            self._send(handler, 500, {"error": {"message": "the model crashed", "type": "server_error"}})
            return
        user = request["messages"][-1]["content"]
        ids = re.findall(r'"id": "([^"]+)"', user)
        content: str | None = json.dumps(
            {"items": [{"id": i, "score": self.score, "confidence": 0.9, "reason": "fake reading"} for i in ids]}
        )
        refusal = None
        if self.mode == "refusal":
            content, refusal = None, "I can't help with that request."
        elif self.mode == "malformed":
            content = "Sure! Here are the scores: items = [bad"
        self._send(
            handler,
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "?"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            },
        )

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the slow answer's timeout)
            pass

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
