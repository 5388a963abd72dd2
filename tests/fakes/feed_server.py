"""A local RSS/Atom server for the news collector's tests: serves ``body`` at ``/feed`` with an
ETag and Last-Modified, answers 304 to a matching ``If-None-Match``, or an error status while
``status`` says so. Records the conditional headers of every request."""

from __future__ import annotations

import hashlib
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.http import LocalHttpFake


class FeedServer(LocalHttpFake):
    def __init__(self, body: str = "", *, status: int = 200) -> None:
        super().__init__()
        self.body = body
        self.status = status
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/feed"

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        data = self.body.encode()
        etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        self.requests.append(
            {
                "if_none_match": handler.headers.get("If-None-Match"),
                "if_modified_since": handler.headers.get("If-Modified-Since"),
            }
        )
        if self.status != 200:
            handler.send_response(self.status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if handler.headers.get("If-None-Match") == etag:
            handler.send_response(304)
            handler.send_header("ETag", etag)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        handler.send_header("ETag", etag)
        handler.send_header("Last-Modified", "Fri, 04 Dec 2026 08:00:00 GMT")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def rss(items: list[dict[str, str]], title: str = "Market wire") -> str:
    """An RSS 2.0 document with ``items`` (keys: title, link, pubDate, description, guid)."""
    parts = []
    for item in items:
        fields = "".join(f"<{k}>{v}</{k}>" for k, v in item.items())
        parts.append(f"<item>{fields}</item>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://127.0.0.1/</link><description>test</description>"
        + "".join(parts)
        + "</channel></rss>"
    )
