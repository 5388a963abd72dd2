"""Bus throughput: produce and consume (with decode and validation) of ~200-byte market ticks.

    python -m bench.bus --backend embedded|kafka --messages N [--repeat R]

Each run uses a new topic of 3 partitions. What is timed:

* ``produce``: N ``produce`` calls and the ``flush`` that makes them durable (topic creation is not
  timed);
* ``consume``: from before the first ``poll`` of a new consumer group (joining the group, getting
  its partitions, the first fetch of up to 10,000 messages) until all N messages were polled,
  validated into ``MarketData`` and committed batch by batch; ``first_poll_s`` is the first poll's
  share of it (on Kafka mostly the group join). Closing the consumer is not timed.

Prints one JSON object per line: {"backend", "op", "messages", "seconds", "msgs_per_s"}, one per
run, then the median of the runs with "stat": "median". Kafka needs KAFKA_BOOTSTRAP_SERVERS
(`make kafka-up` prints it). The embedded log is written under a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

from pipeline.bus.base import Bus
from pipeline.messages import MarketData, encode
from pipeline.topics import TopicSpec

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT")


def payloads(n: int) -> list[tuple[bytes, bytes]]:
    """Return ``n`` distinct encoded ticks (key, value), about 200 bytes each."""
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        sym = SYMBOLS[i % len(SYMBOLS)]
        price = 100.0 + (i % 1000) * 0.137
        tick = MarketData(symbol=sym, timestamp=now + i, price=price, open=price * 0.99, high=price * 1.02,
                          low=price * 0.97, volume=123456.789 + i, price_change_pct=1.2345,
                          tick_volume=0.5 + (i % 7))
        out.append((sym.encode(), encode(tick)))
    return out


def make_bus(backend: str, folder: str, shared: bool = False) -> Bus:
    if backend == "kafka":
        from pipeline.bus.kafka import KafkaBus

        servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            sys.exit("error: set KAFKA_BOOTSTRAP_SERVERS (make kafka-up prints it)")
        return KafkaBus(servers)
    from pipeline.bus.embedded import EmbeddedBus

    return EmbeddedBus(os.path.join(folder, "bus.db"), shared=shared)


def run_once(bus: Bus, messages: list[tuple[bytes, bytes]]) -> tuple[float, float, float]:
    """Return (produce seconds, consume seconds, of which the first poll)."""
    topic = f"bench.market_data.{uuid.uuid4().hex[:8]}"
    bus.create_topics([TopicSpec(topic, 3, 86_400_000, compression="lz4")])
    producer = bus.producer()
    start = time.perf_counter()
    for key, value in messages:
        producer.produce(topic, value, key=key)
    if producer.flush(120):
        raise RuntimeError("undelivered messages")
    produce_s = time.perf_counter() - start

    consumer = bus.consumer(f"bench-{topic}", [topic])
    validate = MarketData.model_validate_json
    got = 0
    start = time.perf_counter()
    records = consumer.poll(10_000, 30.0)  # joins the group, gets partitions, fetches the first batch
    first_poll_s = time.perf_counter() - start
    while True:
        for r in records:
            validate(r.value)
        got += len(records)
        consumer.commit(records)
        if got >= len(messages):
            break
        records = consumer.poll(10_000, 5.0)
        if not records:
            raise RuntimeError(f"consumed {got} of {len(messages)}")
    consume_s = time.perf_counter() - start
    consumer.close()
    return produce_s, consume_s, first_poll_s
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("embedded", "kafka"), required=True)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    messages = payloads(args.messages)
    size = sum(len(v) for _, v in messages) / len(messages)
    results: dict[str, list[float]] = {"produce": [], "consume": []}
    first_polls: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        bus = make_bus(args.backend, folder)
        try:
            for _ in range(args.repeat):
                produce_s, consume_s, first_poll_s = run_once(bus, messages)
                first_polls.append(first_poll_s)
                for op, seconds in (("produce", produce_s), ("consume", consume_s)):
                    results[op].append(seconds)
                    line = {"backend": args.backend, "op": op, "messages": args.messages,
                            "seconds": round(seconds, 4), "msgs_per_s": round(args.messages / seconds),
                            "avg_bytes": round(size)}
                    if op == "consume":
                        line["first_poll_s"] = round(first_poll_s, 4)
                    print(json.dumps(line), flush=True)
        finally:
            bus.close()
    for op, runs in results.items():
        seconds = statistics.median(runs)
        line = {"backend": args.backend, "op": op, "messages": args.messages, "stat": "median",
                "seconds": round(seconds, 4), "msgs_per_s": round(args.messages / seconds)}
        if op == "consume":
            line["first_poll_s"] = round(statistics.median(first_polls), 4)
        print(json.dumps(line))


if __name__ == "__main__":
    main()
