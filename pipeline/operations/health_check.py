"""The health check's round trip (seed 003): produce a health-check message, read it back, time it.

It looks up the end of the one-partition ``health-check`` topic, produces a ``HealthCheck`` with an
id of its own, flushes, and reads from that end (``Bus.read``: no consumer group) until it finds
its id. The latency is from before the produce to the read that found it: what a message takes
through the bus, flush included. Several checks at once do not confuse each other (each looks for
its own id). Cost: one message on the topic (kept an hour) and, on Kafka, about three requests.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.bus.base import Bus, Producer
from pipeline.errors import PipelineError
from pipeline.messages import HealthCheck, encode
from pipeline.topics import HEALTH_CHECK

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RoundTrip:
    """One check: whether the message came back, how long it took (ms), or what went wrong."""

    ok: bool
    latency_ms: float | None
    error: str | None = None
    checked_at: float = 0.0

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "ok": self.ok,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
        }
        if self.error:
            body["error"] = self.error
        return body


def round_trip(
    bus: Bus,
    producer: Producer,
    *,
    timeout_s: float = TIMEOUT_S,
    clock: Callable[[], float] = time.perf_counter,
) -> RoundTrip:
    """Produce a health-check message and read it back; never raises (a failure is the answer)."""
    checked_at = time.time()
    try:
        (state,) = [t for t in bus.describe_topics([HEALTH_CHECK]) if t.name == HEALTH_CHECK]
        position = state.partitions[0].end_offset
        check_id = uuid.uuid4().hex
        message = HealthCheck(check_id=check_id, sent_at=int(checked_at * 1000), host=socket.gethostname()[:64])
        started = clock()
        producer.produce(HEALTH_CHECK, encode(message), key=check_id.encode())
        if producer.flush(timeout_s):
            return RoundTrip(False, None, "the health-check message was not delivered", checked_at)
        wanted = check_id.encode()
        while clock() - started < timeout_s:
            records = bus.read(HEALTH_CHECK, 0, position, 100)
            for r in records:
                if r.key == wanted:
                    return RoundTrip(True, (clock() - started) * 1000, None, checked_at)
            if records:
                position = records[-1].offset + 1
            else:
                time.sleep(0.002)
        return RoundTrip(False, None, f"the health-check message did not come back within {timeout_s:g} s", checked_at)
    except PipelineError as exc:
        return RoundTrip(False, None, f"{type(exc).__name__}: {exc}", checked_at)
    except Exception as exc:  # noqa: BLE001 - any failure of the bus is what the check reports (by kind only:
        return RoundTrip(False, None, type(exc).__name__, checked_at)  # a client's text may name its settings)
