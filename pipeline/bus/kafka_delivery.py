"""The delivery reports of a Kafka producer's messages, shared out per ``Producer.delivery`` handle.

``pipeline.bus.kafka.KafkaProducer`` gives each message an ``on_delivery`` callback: the ``Share``
of the messages made since its last ``delivery()`` call. A share counts its messages not yet
reported and those refused, passes every report on to the producer, and is the handle a stage's
runner asks whether its batch's outputs are all acknowledged (``done``, serving the reports that
have arrived) and how many were refused (``undelivered``). Cost: a lock and two counters a report.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from confluent_kafka import KafkaError


class _Polled(Protocol):
    def poll(self, timeout: float) -> int: ...


class Owner(Protocol):
    """What a share needs of its producer (``KafkaProducer``, which imports this module)."""

    @property
    def _failed_lock(self) -> threading.Lock: ...

    @property
    def _producer(self) -> _Polled: ...

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None: ...


class Share:
    """The delivery reports of the messages a producer made between two ``delivery()`` calls: the
    ``on_delivery`` callback of each of them, and the ``Delivery`` handle on them."""

    __slots__ = ("_owner", "failed", "outstanding")

    def __init__(self, owner: Owner) -> None:
        self._owner = owner
        self.outstanding = 0  # produced, not yet reported (under the owner's lock)
        self.failed = 0

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        with self._owner._failed_lock:  # reports may be served on another thread (client_metrics)
            self.outstanding -= 1
            if err is not None:
                self.failed += 1
        self._owner._on_delivery(err, msg)

    def done(self) -> bool:
        if self.outstanding > 0:
            self._owner._producer.poll(0)  # serve the reports that have arrived
        return self.outstanding <= 0

    def undelivered(self) -> int:
        return self.failed
