"""News into ``stock_news_raw`` (seed 003's news collector): RSS/Atom feeds polled politely, and news
files imported (CSV or JSON lines).

``NewsPublisher`` is what both share: each item is tagged with the symbols it names
(``pipeline.analysis.news``), becomes one ``StockNews`` per symbol, and is published; an item
whose id the store already holds, or that this publisher already sent, is skipped (counted), so
a re-fetched or re-imported item is published once. What breaks a rule (no title, no time, a
malformed feed) is dead-lettered on ``stock_news_raw_dlq`` with the rule and the raw input, and
the rest goes on.

``NewsCollector`` (the ``news-collector`` source) fetches each of ``NEWS_FEEDS`` every
``NEWS_POLL_SECONDS`` with ``If-None-Match``/``If-Modified-Since`` from the last answer (a 304
costs nothing), a 20 s timeout, and on errors backs off (twice the interval per failure in a
row, at most an hour). Feeds are parsed by feedparser (RSS 0.9x-2.0, RSS 1.0, Atom). The body is
limited to ``MAX_FEED_BYTES``.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.analysis.news import NewsItem, RowError, SymbolTagger, item_from_entry, items_from_file, news_fields
from pipeline.bus.base import Producer
from pipeline.dead_letters import publish_dead_letter
from pipeline.errors import BadMessageError, PipelineError, Violation
from pipeline.messages import StockNews, build, encode
from pipeline.runner import Worker
from pipeline.topics import STOCK_NEWS_RAW

log = logging.getLogger(__name__)

MAX_FEED_BYTES = 5 * 1024 * 1024
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_BACKOFF_S = 3600.0
USER_AGENT = "TradersDesk-news/1 (+feedparser)"

Known = Callable[[Sequence[str]], set[str]]


class NewsPublisher:
    """Tags, checks and publishes items; remembers (bounded) what it sent. One thread at a time."""

    def __init__(self, producer: Producer, tagger: SymbolTagger, known: Known, *, stage: str) -> None:
        self.producer = producer
        self.tagger = tagger
        self.known = known
        self.stage = stage
        self.sent: dict[str, None] = {}
        self.counts: Counter[str] = Counter()

    def publish(self, items: Sequence[NewsItem], collected_at: str | None = None) -> int:
        """Publish the items not seen before; return how many messages were produced."""
        collected = collected_at or datetime.now(tz=UTC).isoformat(timespec="seconds")
        ids = [i.news_id for i in items]
        stored = self.known([i for i in ids if i not in self.sent]) if ids else set()
        produced = 0
        for item in items:
            nid = item.news_id
            if nid in self.sent or nid in stored:
                self.counts["seen before"] += 1
                continue
            messages = news_fields(item, self.tagger, collected)
            if not messages:
                self.counts["names no known symbol"] += 1
                continue
            for fields in messages:
                try:
                    message = build(StockNews, **fields)
                except BadMessageError as exc:
                    self.reject(repr(fields), exc, key=str(fields.get("symbol") or ""))
                    continue
                self.producer.produce(STOCK_NEWS_RAW, encode(message), key=message.key())
                produced += 1
            self.sent[nid] = None
            self.counts["published"] += 1
        while len(self.sent) > 50_000:
            self.sent.pop(next(iter(self.sent)))
        return produced

    def reject(self, raw: str, exc: BadMessageError | str, *, key: str | None = None) -> str:
        """Dead-letter ``raw`` with the reason; count it by rule; return the reason."""
        error = exc if isinstance(exc, BadMessageError) else BadMessageError(exc)
        reason = publish_dead_letter(
            self.producer, error, topic=STOCK_NEWS_RAW, value=raw, stage=self.stage, key=key.encode() if key else None
        )
        self.counts[error.violations[0].rule if error.violations else reason] += 1
        return reason


@dataclass
class FeedState:
    """What the collector remembers of one feed between polls."""

    url: str
    etag: str | None = None
    modified: str | None = None
    next_at: float = 0.0
    failures: int = 0
    last_status: str = "not fetched yet"
    items: int = 0


class NewsCollector(Worker):
    """The ``news-collector`` source: polls ``feeds`` on its own thread."""

    kind = "source"

    def __init__(
        self,
        producer: Producer,
        tagger: SymbolTagger,
        known: Known,
        feeds: Iterable[str],
        *,
        poll_s: float = 300.0,
        timeout_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("news-collector")
        self.publisher = NewsPublisher(producer, tagger, known, stage=self.name)
        self.feeds = [FeedState(u) for u in feeds]
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._lock = threading.Lock()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            for feed in self.feeds:
                if self._stop.is_set():
                    break
                if feed.next_at <= now:
                    self.poll(feed)
            wait = min((f.next_at for f in self.feeds), default=now + self.poll_s) - self.clock()
            self._stop.wait(max(0.05, min(wait, 5.0)))

    def poll(self, feed: FeedState) -> None:
        """Fetch and publish one feed now; schedule its next fetch."""
        try:
            status, body = self._fetch(feed)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self._failed(feed, f"fetch failed: {getattr(exc, 'reason', exc)}")
            return
        if status == 304:
            self._ok(feed, "not modified (304)")
            return
        produced = self._publish(feed, body)
        if produced is not None:
            self._ok(feed, f"200, {produced} new message(s)")

    def _fetch(self, feed: FeedState) -> tuple[int, bytes]:
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9",
        }
        if feed.etag:
            headers["If-None-Match"] = feed.etag
        if feed.modified:
            headers["If-Modified-Since"] = feed.modified
        request = urllib.request.Request(feed.url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # http(s) or file:// only (config)
                body = resp.read(MAX_FEED_BYTES + 1)
                if len(body) > MAX_FEED_BYTES:
                    raise ValueError(f"the feed is larger than {MAX_FEED_BYTES // 1024 // 1024} MiB")
                feed.etag = resp.headers.get("ETag") or feed.etag
                feed.modified = resp.headers.get("Last-Modified") or feed.modified
                return int(getattr(resp, "status", 200) or 200), body
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return 304, b""
            raise urllib.error.URLError(f"HTTP {exc.code}") from None

    def _publish(self, feed: FeedState, body: bytes) -> int | None:
        import feedparser

        parsed = feedparser.parse(body)
        if parsed.get("bozo") and not parsed.get("entries"):
            error = parsed.get("bozo_exception")
            rule = f"a well-formed RSS or Atom feed ({type(error).__name__}: {str(error)[:120]})"
            reason = self.publisher.reject(
                body[:4000].decode("utf-8", "replace"), BadMessageError([Violation("feed", feed.url, rule)])
            )
            with self.health.lock:
                self.health.dead_lettered += 1
            self._failed(feed, reason)
            self.publisher.producer.flush(30.0)
            return None
        source = str(parsed.get("feed", {}).get("title") or feed.url)
        items: list[NewsItem] = []
        for entry in parsed.get("entries", []):
            item, problems = item_from_entry(entry, source)
            if item is None:
                self.publisher.reject(repr(dict(entry))[:4000], BadMessageError(problems))
                with self.health.lock:
                    self.health.dead_lettered += 1
                continue
            items.append(item)
        produced = self.publisher.publish(items)
        undelivered = self.publisher.producer.flush(30.0)
        with self.health.lock:
            self.health.produced += produced - undelivered
            self.health.last_activity_at = time.time()
        feed.items += len(items)
        return produced

    def _ok(self, feed: FeedState, status: str) -> None:
        with self._lock:
            feed.failures = 0
            feed.last_status = status
            feed.next_at = self.clock() + self.poll_s

    def _failed(self, feed: FeedState, reason: str) -> None:
        with self._lock:
            feed.failures += 1
            feed.last_status = reason
            feed.next_at = self.clock() + min(self.poll_s * 2**feed.failures, MAX_BACKOFF_S)
        self.health.error(f"{feed.url}: {reason}")
        log.warning("news-collector: %s: %s (retry in %.0f s)", feed.url, reason, feed.next_at - self.clock())

    def status(self) -> dict[str, Any]:
        with self._lock:
            feeds = [
                {"url": f.url, "status": f.last_status, "failures": f.failures, "items": f.items} for f in self.feeds
            ]
        return {"feeds": feeds, "counts": dict(self.publisher.counts)}


@dataclass
class ImportReport:
    """What ``import_news_file`` did: items read, messages published, rows refused (with why)."""

    items: int = 0
    published: int = 0
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def import_news_file(path: Path, publisher: NewsPublisher) -> ImportReport:
    """Publish a CSV or JSON-lines news file; refused rows are dead-lettered and listed."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise PipelineError(f"{path}: {size:,} bytes is over the {MAX_FILE_BYTES // 1024 // 1024} MiB limit")
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise PipelineError(f"{path}: not a text file (it holds NUL bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    report = ImportReport()
    items: list[NewsItem] = []
    for found in items_from_file(text, path.name):
        if isinstance(found, RowError):
            report.errors.append(str(found))
            publisher.reject(
                found.raw,
                BadMessageError(
                    [Violation(f"line {found.line}: {v.field}", v.value, v.rule) for v in found.violations]
                ),
            )
            continue
        items.append(found)
    report.items = len(items)
    report.published = publisher.publish(items)
    if publisher.producer.flush(60.0):
        raise PipelineError("the bus did not take every message; nothing is lost, run the import again")
    report.counts = dict(publisher.counts)
    return report
