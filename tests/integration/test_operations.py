"""Operating the pipeline on both buses: the message browser (paging, filters, from a time, never
moving a group), redrive (idempotent by source coordinates, also when two run at once; an edit
that breaks the contract refused; rate-limited) and offset resets (refused while a group has
members), and the health check's round trip."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from pipeline.bus.base import Bus, Record
from pipeline.dead_letters import publish_dead_letter
from pipeline.errors import BadMessageError, UnknownPartitionError, UnknownTopicError
from pipeline.messages import MarketData
from pipeline.operations import browse, offsets, redrive
from pipeline.operations.browse import Filters
from pipeline.operations.health_check import round_trip
from pipeline.topics import HEALTH_CHECK, TopicSpec, dlq_name
from storage.db import Database
from tests.contract.test_bus_contract import keys_by_partition
from tests.integration.test_runner import tick

pytestmark = pytest.mark.timeout(240)


def contract(_topic: str) -> type[MarketData]:
    return MarketData


def fill(bus: Bus, partitions: int = 3, per_partition: int = 40) -> str:
    """A topic whose message i of partition p has price p * 1000 + i and key keys[p]."""
    topic = f"test.ops.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(topic, partitions, 3_600_000), TopicSpec(dlq_name(topic), 2, 3_600_000)])
    keys = keys_by_partition(partitions, "sym")
    producer = bus.producer()
    for i in range(per_partition):
        for p in range(partitions):
            producer.produce(topic, tick("BTCUSDT" if p else "ETHUSDT", price=p * 1000 + i + 1.0), key=keys[p])
    assert producer.flush() == 0
    return topic


def prices(page: browse.Page) -> list[float]:
    return [orjson.loads(r.value or b"")["price"] for r in page.records]


def test_the_browser_pages_both_ways_filters_and_never_moves_a_group(bus: Bus) -> None:
    topic = fill(bus)
    stage = bus.consumer(f"stage-{uuid.uuid4().hex[:6]}", [topic])
    seen: list[Record] = []
    deadline = time.monotonic() + 60
    while len(seen) < 120 and time.monotonic() < deadline:
        seen.extend(stage.poll(500, 0.2))
    stage.commit(seen[:50])
    before = {g.group_id: g.partitions for g in bus.describe_groups()}

    first = browse.open_page(bus, topic, partition=1, start="beginning", size=15)
    assert prices(first) == [1001.0 + i for i in range(15)] and first.at_start and not first.at_end
    second = browse.turn(bus, topic, first.partitions, first.after, "forward", 15)
    assert prices(second) == [1016.0 + i for i in range(15)]
    back = browse.turn(bus, topic, second.partitions, second.before, "backward", 15)
    assert prices(back) == prices(first), "the page before the second is the first again"
    last = browse.open_page(bus, topic, partition=1, start="end", size=15)
    assert prices(last) == [1026.0 + i for i in range(15)] and last.at_end

    everything = browse.open_page(bus, topic, start="beginning", size=200)
    assert len(everything.records) == 120 and everything.at_end
    stamps = [(r.timestamp, r.partition, r.offset) for r in everything.records]
    assert stamps == sorted(stamps), "across partitions a page is in time order"
    middle = everything.records[60]
    from_time = browse.open_page(bus, topic, start="time", time_ms=middle.timestamp, size=200)
    assert all(r.timestamp >= middle.timestamp for r in from_time.records)
    assert len(from_time.records) == sum(1 for r in everything.records if r.timestamp >= middle.timestamp)
    from_offset = browse.open_page(bus, topic, start="offset", offset=38, size=10)
    assert sorted(r.offset for r in from_offset.records) == [38, 38, 38, 39, 39, 39]

    keyed = browse.open_page(
        bus, topic, start="beginning", size=500, filters=Filters(key=(first.records[0].key or b"").decode())
    )
    assert len(keyed.records) == 40 and {r.partition for r in keyed.records} == {1}
    grep = browse.open_page(bus, topic, start="end", size=500, filters=Filters(grep="ethusdt"))
    assert {r.partition for r in grep.records} == {0} and len(grep.records) == 40
    path = browse.open_page(bus, topic, start="beginning", size=5, filters=Filters(path="$.price", equals="2005.0"))
    assert prices(path) == [2005.0]
    rare = browse.open_page(bus, topic, start="beginning", size=5, max_scan=30, filters=Filters(grep="nowhere"))
    assert rare.records == [] and rare.exhausted and rare.scanned == 30
    rest = browse.turn(bus, topic, rare.partitions, rare.after, "forward", 5, Filters(grep="nowhere"))
    assert rest.records == [] and rest.at_end, "the next page goes on where the scan stopped"

    assert {g.group_id: g.partitions for g in bus.describe_groups()} == before, "browsing moved or made a group"
    stage.close()

    with pytest.raises(UnknownTopicError, match="there is no topic 'no-such-topic'"):
        browse.open_page(bus, "no-such-topic")
    with pytest.raises(UnknownPartitionError, match="has partitions 0-2; there is no partition 7"):
        browse.open_page(bus, topic, partition=7)
    with pytest.raises(browse.FilterError, match="does not parse"):
        Filters(path="$[")


def dead_letters(bus: Bus, topic: str, count: int, *, stages: tuple[str, ...] = ("market-store",)) -> None:
    """``count`` stale ticks of ``topic`` dead-lettered by each of ``stages`` (the same source coordinates)."""
    producer = bus.producer()
    for i in range(count):
        for stage in stages:
            publish_dead_letter(
                producer,
                "timestamp=1 breaks rule: within the last 5 minutes",
                topic=topic,
                value=tick(price=i + 1.0),
                stage=stage,
                key=b"BTCUSDT",
                partition=i % 3,
                offset=i,
            )
    assert producer.flush() == 0


def republished(bus: Bus, topic: str) -> list[tuple[float, bytes | None]]:
    """(price, redriven_from) of every redriven message on ``topic``."""
    out = []
    for p in range(3):
        for r in bus.read(topic, p, 0, 10_000):
            if r.header(redrive.REDRIVEN_FROM) is not None:
                out.append((orjson.loads(r.value or b"")["price"], r.header(redrive.REDRIVEN_FROM)))
    return out


def test_redrive_publishes_each_message_once_by_its_source_coordinates(bus: Bus, tmp_path: Path) -> None:
    topic = fill(bus, per_partition=0)
    dead_letters(bus, topic, 30, stages=("market-store", "ml"))  # two letters per message
    db = Database(tmp_path / "desk.db")
    try:
        letters = list(redrive.letters(bus, dlq_name(topic)))
        assert len(letters) == 60 and letters[0].letter.reason.startswith("timestamp=1")
        dry = redrive.redrive(db, bus.producer(), letters, dry_run=True, contract=contract)
        assert (dry.published, dry.skipped, dry.failed) == (30, 30, 0) and republished(bus, topic) == []

        ml_only = redrive.LetterFilter(conditions=redrive.LetterFilter.parse(["stage=ml", "reason~5 MINUTES"]))
        picked = list(redrive.letters(bus, dlq_name(topic), ml_only, limit=10))
        assert len(picked) == 10 and {i.letter.stage for i in picked} == {"ml"}
        first = redrive.redrive(db, bus.producer(), picked, contract=contract)
        assert (first.selected, first.published, first.skipped, first.failed) == (10, 10, 0, 0)

        # Everything now, from two redrives at once: 30 messages, each published once in all.
        reports: list[redrive.Report] = []

        def run() -> None:
            reports.append(redrive.redrive(db, bus.producer(), list(letters), contract=contract))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r.published for r in reports) == 20 and all(r.failed == 0 for r in reports)
        assert all(r.published + r.skipped == 60 for r in reports)
        again = redrive.redrive(db, bus.producer(), letters, contract=contract)
        assert (again.published, again.skipped) == (0, 60) and again.reasons == {"skipped: already published": 60}
        got = republished(bus, topic)
        assert sorted(price for price, _ in got) == [i + 1.0 for i in range(30)], "each message once"
    finally:
        db.close()


def test_an_edited_dead_letter_is_checked_before_anything_is_published(bus: Bus, tmp_path: Path) -> None:
    topic = fill(bus, per_partition=0)
    dead_letters(bus, topic, 1)
    db = Database(tmp_path / "desk.db")
    try:
        (item,) = redrive.letters(bus, dlq_name(topic))
        assert item == redrive.letter_at(bus, dlq_name(topic), item.record.partition, item.record.offset)
        bad = {**orjson.loads(item.letter.value), "price": -3}
        with pytest.raises(BadMessageError) as refused:
            redrive.redrive_one(db, bus.producer(), item, orjson.dumps(bad).decode(), contract=contract)
        (violation,) = refused.value.violations
        assert (violation.field, violation.value, violation.rule) == ("price", -3, "price > 0.0")
        assert republished(bus, topic) == [] and redrive.log.lookup(db, [item.coordinates]) == {}

        good = {**bad, "price": 77.0}
        report = redrive.redrive_one(db, bus.producer(), item, orjson.dumps(good).decode(), contract=contract)
        assert report.published == 1
        where = f"{item.record.topic}:{item.record.partition}:{item.record.offset}".encode()
        assert republished(bus, topic) == [(77.0, where)]
        [logged] = redrive.log.lookup(db, [item.coordinates]).values()
        assert logged.edited and logged.state == "published"
        assert redrive.redrive_one(db, bus.producer(), item, contract=contract).skipped == 1
        with pytest.raises(redrive.RedriveError, match="no dead letter at"):
            redrive.letter_at(bus, dlq_name(topic), 0, 999)
        with pytest.raises(redrive.RedriveError, match="not a dead-letter topic"):
            list(redrive.letters(bus, topic))
    finally:
        db.close()


def test_the_rate_limiter_spaces_batches_at_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = redrive.RateLimiter(100.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait(50)
    assert now[0] == pytest.approx(1.5), "a second's worth at once, then 100 a second"
    with pytest.raises(redrive.RedriveError):
        redrive.RateLimiter(0)


def test_an_offset_reset_is_planned_applied_and_refused_while_the_group_has_members(bus: Bus) -> None:
    topic = fill(bus, partitions=2, per_partition=10)
    group = f"readers-{uuid.uuid4().hex[:6]}"
    consumer = bus.consumer(group, [topic])
    got: list[Record] = []
    deadline = time.monotonic() + 60
    while len(got) < 20 and time.monotonic() < deadline:
        got.extend(consumer.poll(100, 0.2))
    consumer.commit(got)
    with pytest.raises(offsets.ResetError, match="has 1 active member: its offsets are reset only while it has none"):
        offsets.plan(bus, group, offsets.Target.parse("earliest"))
    consumer.close()

    plan = offsets.plan(bus, group, offsets.Target.parse("earliest"))
    assert [(m.topic, m.partition, m.current, m.new) for m in plan.moves] == [(topic, 0, 10, 0), (topic, 1, 10, 0)]
    offsets.apply(bus, plan)
    state = offsets.group(bus, group)
    assert state is not None and [p.committed for p in state.partitions] == [0, 0] and state.lag == 20

    one = offsets.plan(bus, group, offsets.Target.parse("7"), topic=topic, partition=1)
    assert [(m.partition, m.new) for m in one.moves] == [(1, 7)]
    offsets.apply(bus, one)
    latest = offsets.plan(bus, group, offsets.Target.parse("latest"), topic=topic)
    assert [m.new for m in latest.moves] == [10, 10]
    stamp = got[5].timestamp
    by_time = offsets.plan(bus, group, offsets.Target("time", stamp), topic=topic)
    assert all(m.new <= 10 for m in by_time.moves)

    rejoined = bus.consumer(group, [topic])
    rejoined.poll(10, 0.5)
    try:
        with pytest.raises(offsets.ResetError, match="1 active member"):
            offsets.apply(bus, latest)
    finally:
        rejoined.close()
    with pytest.raises(offsets.ResetError, match="no committed offsets"):
        offsets.plan(bus, f"never-{uuid.uuid4().hex[:6]}", offsets.Target.parse("earliest"))
    with pytest.raises(offsets.ResetError, match="--reset-to 'yesterday'"):
        offsets.Target.parse("yesterday")
    assert offsets.Target.parse("-15m", now_ms=1_000_000).value == 100_000
    assert offsets.Target.parse("2026-01-02T03:04:05Z").value == 1767323045000


def test_the_health_check_round_trip_comes_back_with_its_latency(bus: Bus) -> None:
    bus.create_topics([TopicSpec(HEALTH_CHECK, 1, 3_600_000)])
    checks = [round_trip(bus, bus.producer()) for _ in range(3)]
    assert all(c.ok and c.latency_ms is not None and c.latency_ms > 0 for c in checks), checks
    assert checks[0].to_json()["ok"] is True
