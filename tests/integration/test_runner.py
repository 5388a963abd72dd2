"""The stage runner on both buses: dead letters, freshness, isolation, retries, commits."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import orjson

from pipeline.bus.base import Bus, Record
from pipeline.errors import TransientError
from pipeline.messages import MarketData, Message, encode
from pipeline.runner import Stage, StageRunner
from pipeline.topics import TopicSpec, dlq_name
from storage.db import Database


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def tick(symbol: str = "BTCUSDT", ts: int | None = None, price: float = 100.0) -> bytes:
    return encode(
        MarketData(
            symbol=symbol,
            timestamp=ts or int(time.time() * 1000),
            price=price,
            open=price,
            high=price * 1.1,
            low=price * 0.9,
            volume=10.0,
            price_change_pct=0.0,
        )
    )


class Recorder(Stage):
    """A sink of ``make_stage``: the messages it processed and how many batches it got."""

    seen: list[MarketData]
    calls: int


def make_stage(topic: str, fail_on: Callable[[MarketData], Exception | None] = lambda m: None) -> Recorder:
    class Sink(Recorder):
        name: ClassVar[str] = f"test-sink-{uuid.uuid4().hex[:6]}"
        inputs: ClassVar[tuple[str, ...]] = (topic,)
        input_model: ClassVar[type[Message] | None] = MarketData

        def __init__(self) -> None:
            self.seen: list[MarketData] = []
            self.calls = 0

        def process_batch(self, messages: list[MarketData]) -> list[Message]:
            self.calls += 1
            for msg in messages:
                exc = fail_on(msg)
                if exc is not None:
                    raise exc
            self.seen.extend(messages)
            return []

    return Sink()


def topics(bus: Bus) -> str:
    name = f"test.runner.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(name, 2, 3_600_000), TopicSpec(dlq_name(name), 1, 3_600_000)])
    return name


def dead_letters(bus: Bus, topic: str, n: int) -> list[dict]:
    consumer = bus.consumer(f"dlq-reader-{uuid.uuid4().hex[:6]}", [dlq_name(topic)])
    out: list[Record] = []
    deadline = time.monotonic() + 60
    while len(out) < n and time.monotonic() < deadline:
        out.extend(consumer.poll(100, 0.5))
    consumer.close()
    return [orjson.loads(r.value or b"") for r in out]


def test_bad_and_stale_messages_are_dead_lettered_and_the_stage_goes_on(bus: Bus) -> None:
    topic = topics(bus)
    stage = make_stage(topic)
    runner = StageRunner(stage, bus, poll_timeout=0.2)
    producer = bus.producer()
    old = int(time.time() * 1000) - 10 * 60_000
    producer.produce(topic, tick("BTCUSDT", price=1.0), key=b"BTCUSDT")
    producer.produce(topic, b"{not json", key=b"BTCUSDT")
    producer.produce(
        topic,
        json.dumps(
            {
                "symbol": "BTCUSDT",
                "timestamp": 1,
                "price": -5,
                "open": 1,
                "high": 2,
                "low": 1,
                "volume": 1,
                "price_change_pct": 0,
            }
        ).encode(),
        key=b"BTCUSDT",
    )
    producer.produce(topic, tick("ETHUSDT", ts=old, price=2.0), key=b"ETHUSDT")
    producer.produce(topic, tick("ETHUSDT", ts=old, price=3.0), key=b"ETHUSDT", headers=[("feed", b"replay")])
    producer.produce(topic, tick("SOLUSDT", price=4.0), key=b"SOLUSDT")
    assert producer.flush() == 0
    runner.start()
    try:
        wait_for(lambda: runner.health.snapshot().processed == 6)
        assert sorted(m.price for m in stage.seen) == [1.0, 3.0, 4.0]
        letters = dead_letters(bus, topic, 3)
        reasons = sorted(d["reason"] for d in letters)
        assert any("valid JSON" in r for r in reasons)
        assert any("price=-5" in r and "price > 0" in r for r in reasons)
        assert any("within the last 5 minutes" in r for r in reasons)
        for d in letters:
            assert d["source_topic"] == topic and d["stage"] == stage.name and d["retry_count"] == 0
            assert d["source_offset"] >= 0 and d["source_partition"] in (0, 1)
        stale = next(d for d in letters if "5 minutes" in d["reason"])
        assert stale["violations"][0]["field"] == "timestamp" and stale["source_key"] == "ETHUSDT"
        health = runner.health.snapshot()
        assert health.dead_lettered == 3 and health.running
    finally:
        runner.stop()
    # committed: a new runner of the same stage sees nothing again
    again = StageRunner(stage, bus, poll_timeout=0.2)
    seen_before = len(stage.seen)
    again.start()
    try:
        producer.produce(topic, tick("BTCUSDT", price=5.0), key=b"BTCUSDT")
        producer.flush()
        wait_for(lambda: len(stage.seen) > seen_before)
        time.sleep(0.5)
        assert [m.price for m in stage.seen[seen_before:]] == [5.0]
    finally:
        again.stop()


def test_a_crashing_message_is_isolated_and_transient_errors_are_retried(bus: Bus) -> None:
    topic = topics(bus)
    flaky = {"left": 2}

    def fail_on(m: MarketData) -> Exception | None:
        if m.price == 13.0:
            return ValueError("unlucky price")
        if m.price == 7.0 and flaky["left"]:
            flaky["left"] -= 1
            return TransientError("database busy")
        return None

    stage = make_stage(topic, fail_on)
    runner = StageRunner(stage, bus, poll_timeout=0.2, backoff_s=0.01)
    producer = bus.producer()
    for price in (1.0, 13.0, 7.0, 2.0):
        producer.produce(topic, tick(price=price), key=b"BTCUSDT")
    assert producer.flush() == 0
    runner.start()
    try:
        wait_for(lambda: runner.health.snapshot().processed == 4)
        assert sorted(m.price for m in stage.seen) == [1.0, 2.0, 7.0]
        [letter] = dead_letters(bus, topic, 1)
        assert "ValueError: unlucky price" in letter["reason"]
        assert json.loads(letter["value"])["price"] == 13.0
        assert flaky["left"] == 0
        assert runner.health.snapshot().errors >= 2  # the two retries show in health
    finally:
        runner.stop()


# -- commit order: offsets are committed only once what a batch made is durable -----------------------


def _prices(n: int, first: float = 1.0) -> list[float]:
    return [first + i for i in range(n)]


def test_a_sink_that_crashes_mid_batch_gets_exactly_that_batch_again(
    bus: Bus, tmp_path: Path, topic_name: Callable[..., str], group_name: Callable[..., str]
) -> None:
    """A plain sink writes each batch in one SQLite transaction; one batch dies half-way through its
    write. The runner starts again from the last commit: every message ends up in the table once, and
    the messages delivered twice are exactly the crashed batch's."""
    topic = topic_name("sink")
    bus.create_topics([TopicSpec(topic, 2, 3_600_000), TopicSpec(dlq_name(topic), 1, 3_600_000)])
    db = Database(tmp_path / "sink.db")
    db.write(lambda d: d.conn.execute("CREATE TABLE got (partition INT, offset INT, price REAL)"))
    crash_at = 120.0
    deliveries: list[list[tuple[int, int]]] = []
    crashed: list[list[tuple[int, int]]] = []

    class Sink(Stage):
        name: ClassVar[str] = group_name("sink")
        inputs: ClassVar[tuple[str, ...]] = (topic,)
        input_model: ClassVar[type[Message] | None] = MarketData
        isolates_failures: ClassVar[bool] = False  # a failure restarts from the last commit

        def prepare_record(self, message: Message, record: Record) -> tuple[Message, Record]:
            return message, record

        def process_batch(self, items: list[tuple[MarketData, Record]]) -> list[Message]:
            batch = [(r.partition, r.offset) for _, r in items]
            deliveries.append(batch)

            def write(d: Any) -> None:
                for m, r in items:
                    d.conn.execute("INSERT INTO got VALUES (?, ?, ?)", (r.partition, r.offset, m.price))
                    if m.price == crash_at and not crashed:
                        crashed.append(batch)
                        raise RuntimeError("the sink died half-way through its write")

            db.write(write)
            return []

    producer = bus.producer()
    prices = _prices(300)
    for i, price in enumerate(prices):
        producer.produce(topic, tick(("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3], price=price), key=f"k{i % 5}".encode())
    assert producer.flush() == 0
    runner = StageRunner(Sink(), bus, poll_timeout=0.2, max_batch=50, backoff_s=0.01)
    runner.start()
    try:
        wait_for(lambda: runner.health.snapshot().processed == len(prices))
    finally:
        runner.stop()
    rows = db.query("SELECT partition, offset, price FROM got")
    db.close()
    assert sorted(r["price"] for r in rows) == prices  # nothing lost, nothing twice
    assert len({(r["partition"], r["offset"]) for r in rows}) == len(prices)
    assert len(crashed) == 1 and len(crashed[0]) > 1 and runner.health.snapshot().errors == 1
    delivered: dict[tuple[int, int], int] = {}
    for batch in deliveries:
        for position in batch:
            delivered[position] = delivered.get(position, 0) + 1
    assert {p for p, n in delivered.items() if n == 2} == set(crashed[0])  # exactly that batch again
    assert max(delivered.values()) == 2 and len(delivered) == len(prices)


def _copy_symbol(price: float) -> str:
    """A symbol per price (letters only, as the symbol rule wants): 40.0 -> "AAAOUSDT"."""
    n, letters = int(price), ""
    for _ in range(4):
        n, d = divmod(n, 26)
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[d] + letters
    return f"{letters}USDT"


def copier(
    source: str, target: str, group: str, *, refuse_once: float | None = None, on_delivery: bool = True
) -> tuple[Stage, list[float]]:
    """A stage that copies each tick to ``target`` under a symbol made of its price (keyed; keyless
    once for ``refuse_once``, which a compacted ``target`` refuses) and, with ``on_delivery``,
    commits asynchronously once its outputs are delivered (``Stage.commit_on_delivery``). Returns
    the stage and the prices it tried to copy keyless."""
    tries: list[float] = []

    class Copied(MarketData):
        topic: ClassVar[str] = target
        key_field: ClassVar[str | None] = "symbol"

    class Keyless(Copied):
        key_field: ClassVar[str | None] = None

    class Copier(Stage):
        name: ClassVar[str] = group
        inputs: ClassVar[tuple[str, ...]] = (source,)
        input_model: ClassVar[type[Message] | None] = MarketData
        commit_async: ClassVar[bool] = on_delivery
        commit_on_delivery: ClassVar[bool] = on_delivery

        def process(self, message: Message) -> list[Message]:
            assert isinstance(message, MarketData)
            fields = {**message.model_dump(), "symbol": _copy_symbol(message.price)}
            if message.price == refuse_once:
                tries.append(message.price)
                if len(tries) == 1:
                    return [Keyless(**fields)]
            return [Copied(**fields)]

    return Copier(), tries


def test_outputs_not_delivered_are_not_committed_and_come_again(
    bus: Bus, topic_name: Callable[..., str], group_name: Callable[..., str]
) -> None:
    """A stage's outputs go to a compacted topic; one output is keyless on its first try, which the bus
    refuses (flush reports it). The runner commits nothing of that batch and takes it again, so every
    input has its output in the end."""
    source, target = topic_name("in"), topic_name("out")
    bus.create_topics(
        [
            TopicSpec(source, 2, 3_600_000),
            TopicSpec(dlq_name(source), 1, 3_600_000),
            TopicSpec(target, 1, 3_600_000, cleanup="compact"),
        ]
    )
    bad_price = 40.0
    stage, tries = copier(source, target, group_name("copier"), refuse_once=bad_price, on_delivery=False)

    producer = bus.producer()
    prices = _prices(80)
    for price in prices:
        producer.produce(source, tick("BTCUSDT", price=price), key=b"BTCUSDT")
    assert producer.flush() == 0
    runner = StageRunner(stage, bus, poll_timeout=0.2, max_batch=25, backoff_s=0.01)
    runner.start()
    try:
        wait_for(lambda: runner.health.snapshot().processed == len(prices))
    finally:
        runner.stop()
    assert len(tries) == 2  # the batch with the refused output came again
    assert "outputs not delivered" in (runner.health.snapshot().last_error or "")
    reader = bus.consumer(group_name("reader"), [target], auto_offset_reset="earliest")
    got: set[bytes] = set()
    deadline = time.monotonic() + 60
    while len(got) < len(prices) and time.monotonic() < deadline:
        got.update(r.key for r in reader.poll(500, 0.3) if r.key is not None)
    reader.close()
    assert got == {_copy_symbol(p).encode() for p in prices}  # nothing lost


def test_a_runner_that_fills_only_while_busy_takes_a_lone_record_at_once_and_gathers_a_stream(bus: Bus) -> None:
    """``fill_when_busy``: a record after a quiet spell is handled at once, not after the fill wait
    (two minutes here: waiting for it would fail the first wait); records that follow a batch
    within the wait are gathered until the batch is full."""
    topic = topics(bus)
    stage = make_stage(topic)
    runner = StageRunner(stage, bus, max_batch=5, poll_timeout=0.1, fill_wait_s=120.0, fill_when_busy=True)
    producer = bus.producer()
    runner.start()
    try:
        producer.produce(topic, tick(price=1.0), key=b"BTCUSDT")
        assert producer.flush(10) == 0
        wait_for(lambda: len(stage.seen) == 1)
        assert stage.calls == 1
        for i in range(5):
            producer.produce(topic, tick(price=2.0 + i), key=b"BTCUSDT")
        assert producer.flush(10) == 0
        wait_for(lambda: len(stage.seen) == 6)
        assert stage.calls == 2, "the five records that followed were gathered into one batch"
        assert [m.price for m in stage.seen] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    finally:
        runner.stop()
        producer.close()


def test_a_filling_batch_looks_for_more_every_few_milliseconds_not_at_every_record(bus: Bus) -> None:
    """While a batch fills, a poll that found records is followed by a pause of ``FILL_LOOK_S``
    before the next look. The consumer here always has one more record ready, as a stream faster
    than the looks: polling at every record would make one poll per record until the batch is full
    (a thousand), within microseconds; with the pauses the fill window holds a dozen looks at most
    (fewer on a slow machine). A poll that fills the batch ends the fill at once."""
    from pipeline import runner as runner_module

    stage = make_stage(topics(bus))
    runner = StageRunner(stage, bus, max_batch=1000, fill_wait_s=0.05)

    class Stream:
        def __init__(self, per_poll: int) -> None:
            self.per_poll, self.polls = per_poll, 0

        def poll(self, max_records: int, timeout: float) -> list[Record]:
            self.polls += 1
            n = min(self.per_poll, max_records)
            return [Record("t", 0, self.polls * 1000 + i, None, b"", 0) for i in range(n)]

    stream = Stream(per_poll=1)
    started = time.monotonic()
    batch = runner._fill(stream, [Record("t", 0, 0, None, b"", 0)])  # type: ignore[arg-type]
    took = time.monotonic() - started
    assert 0.05 <= took < 5.0
    assert len(batch) == 1 + stream.polls
    assert stream.polls <= 0.05 / runner_module.FILL_LOOK_S + 2, stream.polls

    full = Stream(per_poll=5000)
    assert len(runner._fill(full, [Record("t", 0, 0, None, b"", 0)])) == 1000  # type: ignore[arg-type]
    assert full.polls == 1
    runner.stop()
