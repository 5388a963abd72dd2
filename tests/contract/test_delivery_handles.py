"""The producers' delivery handles (``pipeline.bus.base.Delivery``): Kafka's producer gives them (a
handle covers what was produced since the previous one, is done once that is durable, readable by
anyone, or refused, and counts what was refused); the embedded bus's gives none (callers flush)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.bus.base import Bus, delivery_of
from pipeline.bus.client_metrics import counted_producer
from pipeline.topics import TopicSpec
from tests.integration.test_runner import wait_for

ON_KAFKA = pytest.mark.parametrize("bus", [pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True)


@ON_KAFKA
def test_a_handle_is_done_once_its_messages_are_durable(bus: Bus, topic_name: Callable[..., str]) -> None:
    topic = topic_name("d")
    bus.create_topics([TopicSpec(topic, 1, 3_600_000)])
    producer = bus.producer("low")
    empty = delivery_of(producer)
    assert empty is not None and empty.done() and empty.undelivered() == 0  # nothing produced: done at once
    for i in range(3):
        producer.produce(topic, b"%d" % i, key=b"k")
    first = delivery_of(producer)
    producer.produce(topic, b"3", key=b"k")
    second = delivery_of(producer)
    assert first is not None and second is not None
    wait_for(lambda: first.done() and second.done(), timeout=30)
    assert first.undelivered() == 0 and second.undelivered() == 0
    assert [r.value for r in bus.read(topic, 0, 0, 10)] == [b"0", b"1", b"2", b"3"]
    producer.close()


@ON_KAFKA
def test_a_handle_counts_what_the_bus_refused(bus: Bus, topic_name: Callable[..., str]) -> None:
    topic = topic_name("c")
    bus.create_topics([TopicSpec(topic, 1, 3_600_000, cleanup="compact")])
    producer = bus.producer("low")
    producer.produce(topic, b"kept", key=b"k")
    good = delivery_of(producer)
    assert good is not None
    wait_for(good.done, timeout=30)
    producer.produce(topic, b"keyless")  # a compacted topic refuses a message without a key
    producer.produce(topic, b"kept too", key=b"k")
    bad = delivery_of(producer)
    assert bad is not None
    wait_for(bad.done, timeout=30)
    assert good.undelivered() == 0  # a handle answers for its own messages only
    assert bad.undelivered() >= 1  # the broker refuses the keyless message's whole request, neighbours too
    producer.flush(30)
    producer.close()


@pytest.mark.parametrize("bus", ["embedded"], indirect=True)
def test_the_embedded_producer_gives_no_handle_so_callers_flush(bus: Bus) -> None:
    producer = bus.producer("low")
    assert delivery_of(producer) is None
    assert delivery_of(counted_producer(producer)) is None  # as the runner holds it
    producer.close()
