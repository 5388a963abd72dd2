"""The stock analysis on both buses: news and prices in, alerts out, through the triggers, the two
analyses and the aggregation as stage runners; bad input dead-lettered with its rule while the
stages go on; a burst of 1,000 bars making a handful of jobs; the news collector against a local
feed server (conditional requests, a malformed feed, an item without a title, backoff)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest

from pipeline.analysis.news import SymbolTagger, merged_aliases
from pipeline.bus.base import Bus, Record
from pipeline.messages import StockNews, StockPrice, build, encode, ms_iso
from pipeline.runner import Stage, StageRunner
from pipeline.sources.news import NewsCollector
from pipeline.stages.aggregation import Aggregation
from pipeline.stages.analysis_triggers import AnalysisTriggers
from pipeline.stages.sentiment_analysis import SentimentAnalysis
from pipeline.stages.technical_analysis import TechnicalAnalysis
from pipeline.topics import (
    ALERTS,
    ANALYSIS_RESULTS,
    ANALYSIS_TRIGGERS,
    CATALOG,
    STOCK_NEWS_RAW,
    STOCK_PRICES_RAW,
    dlq_name,
)
from storage import analysis
from storage.db import Database
from tests.fakes.feed_server import FeedServer, rss
from tests.fakes.market_servers import wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "desk.db")
    yield database
    database.close()


def unique_symbol() -> str:
    return f"Z{time.time_ns() % 10**8:08d}"  # a shared broker keeps other runs' messages


def grouped(stage: Stage, group: str) -> Stage:
    """``stage`` in a consumer group of the test's own (the broker is shared across runs)."""
    stage.__class__ = type(type(stage).__name__, (type(stage),), {"group_id": property(lambda _: group)})
    return stage


def start(stack: ExitStack, runner: StageRunner) -> StageRunner:
    runner.start()
    stack.callback(runner.stop)
    return runner


def read(bus: Bus, group: str, topics: list[str]) -> Callable[[], list[Record]]:
    consumer = bus.consumer(group, topics, auto_offset_reset="earliest")
    seen: list[Record] = []

    def poll() -> list[Record]:
        seen.extend(consumer.poll(500, 0.2))
        return seen

    return poll


def bar(symbol: str, start: int, close: float, prev: float, volume: float = 1000.0) -> bytes:
    high, low = max(close, prev) * 1.001, min(close, prev) * 0.999
    message = build(
        StockPrice,
        symbol=symbol,
        time=ms_iso(start),
        open=prev,
        high=high,
        low=low,
        close=close,
        volume=volume,
        collected_at=ms_iso(start + 60_000),
    )
    return encode(message)


def news(symbol: str, k: int, title: str, at: int) -> bytes:
    message = build(
        StockNews,
        news_id=f"n-{symbol}-{k}",
        symbol=symbol,
        title=title,
        content="",
        source="wire",
        source_url="",
        published_at=ms_iso(at),
        collected_at=ms_iso(at),
        category="general",
        tags=[],
    )
    return encode(message)


def pipeline(stack: ExitStack, bus: Bus, db: Database, group_name: Callable[..., str]) -> None:
    stages: list[tuple[Stage, float]] = [
        (AnalysisTriggers(db), 0.2),
        (TechnicalAnalysis(db), 0.0),
        (SentimentAnalysis(db), 0.0),
        (Aggregation(db), 0.0),
    ]
    for stage, fill in stages:
        start(stack, StageRunner(grouped(stage, group_name(stage.name)), bus, fill_wait_s=fill, poll_timeout=0.1))


def test_news_and_prices_in_a_risk_alert_out_once(bus: Bus, db: Database, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    symbol = unique_symbol()
    alerts = read(bus, group_name("alerts"), [ALERTS])
    now = int(time.time() * 1000) // 60_000 * 60_000
    producer = bus.producer()
    with ExitStack() as stack:
        pipeline(stack, bus, db, group_name)
        price = 100.0
        for i in range(60):  # flat, then 5 % down over the last ten bars
            new = price * (0.995 if i >= 50 else 1.0 + (0.0005 if i % 2 else -0.0005))
            producer.produce(STOCK_PRICES_RAW, bar(symbol, now - (60 - i) * 60_000, new, price), key=symbol.encode())
            price = new
        titles = [
            "Shares plunge after fraud probe",
            "Lawsuit and layoffs hit the company",
            "Company misses, stock tumbles",
        ]
        for k, title in enumerate(titles):
            producer.produce(STOCK_NEWS_RAW, news(symbol, k, title, now - k * 60_000), key=symbol.encode())
        assert producer.flush(30) == 0
        found = wait_for(lambda: [r for r in alerts() if r.key == symbol.encode()], 60, "an alert")
        time.sleep(1.0)  # later results of the same state must not alert again
        found = [orjson.loads(r.value or b"") for r in alerts() if r.key == symbol.encode()]
    risk = [a for a in found if a["alert_type"] == "risk_alert"]
    assert len(risk) == 1, found
    # Whichever analysis lands first turns the risk on; the other cause then alerts no more (hysteresis).
    assert risk[0]["priority"] in ("high", "critical")
    assert "fell" in risk[0]["message"] or "3 negative news items" in risk[0]["message"]
    stored = analysis.alerts(db, symbol)
    assert [a["alert_id"] for a in stored if a["alert_type"] == "risk_alert"] == [risk[0]["alert_id"]]
    kinds = {r.analysis_type for r in analysis.latest_results(db, symbol).values()}
    assert kinds == {"technical", "sentiment"}
    sentiment = analysis.latest_results(db, symbol)["sentiment"]
    assert sentiment.score < -0.3 and next(i["news_id"] for i in sentiment.details["items"]) == f"n-{symbol}-0"
    assert all(n["sentiment"] is not None and n["sentiment"] < 0 for n in analysis.news(db, symbol))
    assert analysis.aggregates(db, symbol)


def test_bad_input_is_dead_lettered_with_its_rule_and_the_stages_go_on(
    bus: Bus, db: Database, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    symbol = unique_symbol()
    dead = read(bus, group_name("dlq"), [dlq_name(STOCK_NEWS_RAW), dlq_name(ANALYSIS_RESULTS)])
    now = int(time.time() * 1000)
    producer = bus.producer()
    untitled = orjson.loads(news(symbol, 0, "x", now))
    untitled["title"] = ""
    untimed = {**orjson.loads(news(symbol, 1, "y", now)), "published_at": ""}
    result = {
        "result_id": f"r-{symbol}",
        "symbol": symbol,
        "analysis_type": "technical",
        "timestamp": ms_iso(now),
        "results": {"score": 1.7, "confidence": 0.5, "details": {}},
    }
    with ExitStack() as stack:
        pipeline(stack, bus, db, group_name)
        producer.produce(STOCK_NEWS_RAW, orjson.dumps(untitled), key=symbol.encode())
        producer.produce(STOCK_NEWS_RAW, orjson.dumps(untimed), key=symbol.encode())
        producer.produce(ANALYSIS_RESULTS, orjson.dumps(result), key=symbol.encode())
        producer.produce(STOCK_NEWS_RAW, news(symbol, 2, "Shares surge on record profit", now), key=symbol.encode())
        assert producer.flush(30) == 0
        letters = wait_for(
            lambda: (
                [orjson.loads(r.value or b"") for r in dead() if r.key == symbol.encode()][:3]
                if len([r for r in dead() if r.key == symbol.encode()]) >= 3
                else None
            ),
            60,
            "three dead letters",
        )
        wait_for(lambda: "sentiment" in analysis.latest_results(db, symbol), 60, "the good item analysed")
    rules = {(v["field"], v["rule"]) for letter in letters for v in letter["violations"]}
    assert ("title", "a title that is not blank") in rules or (
        "title",
        "String should have at least 1 character",
    ) in rules
    assert any(field == "published_at" for field, _ in rules)
    assert ("results.score", "results.score <= 1.0") in rules
    assert {letter["stage"] for letter in letters} == {"analysis-triggers", "aggregation"}
    assert [n["news_id"] for n in analysis.news(db, symbol)] == [f"n-{symbol}-2"]


def test_a_burst_of_1000_bars_for_one_symbol_makes_a_handful_of_jobs(
    bus: Bus, db: Database, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    symbol = unique_symbol()
    triggers = read(bus, group_name("triggers"), [ANALYSIS_TRIGGERS])
    results = read(bus, group_name("results"), [ANALYSIS_RESULTS])
    now = int(time.time() * 1000) // 60_000 * 60_000
    producer = bus.producer()
    with ExitStack() as stack:
        start(stack, StageRunner(grouped(AnalysisTriggers(db), group_name("t")), bus, fill_wait_s=0.25, max_batch=5000))
        start(stack, StageRunner(grouped(TechnicalAnalysis(db), group_name("a")), bus))
        price = 100.0
        for i in range(1000):
            new = price * (1.0002 if i % 3 else 0.9999)
            producer.produce(STOCK_PRICES_RAW, bar(symbol, now - (1000 - i) * 60_000, new, price), key=symbol.encode())
            price = new
        assert producer.flush(30) == 0
        counted = wait_for(
            lambda: (
                sum(
                    orjson.loads(r.value or b"")["metadata"]["data_count"]
                    for r in triggers()
                    if r.key == symbol.encode()
                )
                == 1000
            ),
            60,
            "triggers covering the 1,000 bars",
        )
        assert counted
        wait_for(lambda: [r for r in results() if r.key == symbol.encode()], 60, "a technical result")
        time.sleep(0.5)
        jobs = [r for r in triggers() if r.key == symbol.encode()]
        made = [r for r in results() if r.key == symbol.encode()]
    assert 1 <= len(jobs) <= 5, f"{len(jobs)} triggers for one burst"
    assert 1 <= len(made) <= len(jobs)
    last = orjson.loads(jobs[-1].value or b"")["metadata"]
    assert len(last["bars"]) == 60 and last["bars"][-1][4] == pytest.approx(price)


ITEMS = [
    {
        "title": "Apple beats earnings expectations",
        "link": "https://news.test/a?utm_source=rss",
        "pubDate": "Fri, 04 Dec 2026 08:00:00 GMT",
    },
    {
        "title": "Vietcombank công bố kế hoạch tăng vốn",
        "link": "https://news.test/b",
        "pubDate": "Fri, 04 Dec 2026 07:00:00 GMT",
    },
    {"title": "Weather is fine today", "link": "https://news.test/c", "pubDate": "Fri, 04 Dec 2026 06:00:00 GMT"},
    {"link": "https://news.test/d", "pubDate": "Fri, 04 Dec 2026 05:00:00 GMT", "description": "no title"},
]


def test_the_news_collector_polls_politely_and_dead_letters_what_it_cannot_read(
    bus: Bus, db: Database, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    symbol = unique_symbol()
    tagger = SymbolTagger(merged_aliases({symbol: ("Apple",), "VCB": ("Vietcombank",)}))
    group = group_name("news")
    raw = read(bus, group, [STOCK_NEWS_RAW, dlq_name(STOCK_NEWS_RAW)])
    with FeedServer(rss(ITEMS)) as good, FeedServer('<?xml version="1.0"?><rss><channel><title>x</title><ite') as bad:
        collector = NewsCollector(
            bus.producer(),
            tagger,
            lambda ids: analysis.known_news_ids(db.reader().conn, ids),
            [good.url, bad.url],
            poll_s=60,
        )
        for feed in collector.feeds:
            collector.poll(feed)
        collector.poll(collector.feeds[0])  # again: 304, nothing new
        mine = wait_for(
            lambda: (
                [r for r in raw() if r.topic == STOCK_NEWS_RAW and r.key in (symbol.encode(), b"VCB")]
                if len([r for r in raw() if r.topic.endswith("_dlq")]) >= 2
                else None
            ),
            60,
            "news and dead letters",
        )
        good_feed, bad_feed = collector.feeds
        assert good.requests[1]["if_none_match"] and good_feed.last_status == "not modified (304)"
        assert bad_feed.failures == 1 and bad_feed.next_at - collector.clock() > 60  # backed off: 120 s
        good.status = 503
        collector.poll(good_feed)
        assert good_feed.failures == 1 and "HTTP 503" in good_feed.last_status
    messages = [orjson.loads(r.value or b"") for r in mine]
    assert sorted(m["symbol"] for m in messages) == sorted([symbol, "VCB"])
    apple = next(m for m in messages if m["symbol"] == symbol)
    assert apple["category"] == "earnings" and apple["published_at"] == "2026-12-04T08:00:00+00:00"
    letters = [orjson.loads(r.value or b"") for r in raw() if r.topic.endswith("_dlq")]
    rules = " | ".join(v["rule"] for letter in letters for v in letter["violations"])
    assert "a title that is not blank" in rules and "a well-formed RSS or Atom feed" in rules
    assert collector.publisher.counts["names no known symbol"] >= 1
