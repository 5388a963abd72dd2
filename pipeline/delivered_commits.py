"""Input offsets that wait for their batch's outputs to be delivered, committed in batch order.

A stage that sets ``Stage.commit_on_delivery`` does not flush its producer after each batch (on
Kafka a flush waits for the broker's acknowledgement of every output, a few milliseconds during
which the next poll waits too). The runner instead takes the producer's ``Delivery`` handle on the
batch's outputs (``pipeline.bus.base.delivery_of``), queues it here with the batch's records, and
polls the next batch at once; ``settle`` commits past a batch once its handle is done.

Invariants:

* batches are committed in the order they were queued, never one before an earlier one, so a
  commit never skips an output that is not durable (at-least-once, as flushing first is);
* a batch with an undelivered output is never committed, nor any batch queued after it: ``settle``
  drops them all and raises ``TransientError`` (the runner then starts again from the last commit,
  as it does when a flush reports an undelivered output), and so does every later ``settle`` until
  ``clear``;
* ``drain`` (partitions revoked, consumer closing) flushes first, so everything queued is then
  either committed or, from the first failed batch on, dropped.

Only a batch's last record per partition is kept (a commit is past the highest offset), so the
queue costs a few records per batch. Used from the runner's thread only (a revoke callback runs on
it too, inside a poll).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from pipeline.bus.base import Delivery, Producer, Record
from pipeline.errors import TransientError

# Commits past records (the consumer's ``commit`` under the runner's policy for a refused commit).
Commit = Callable[[Sequence[Record]], None]
UNDELIVERED = "outputs not delivered; not committing"


class DeliveredCommits:
    """The batches whose outputs are on their way, oldest first."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Delivery, list[Record]]] = deque()
        self._failure: str | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, delivery: Delivery, records: Sequence[Record]) -> None:
        """Queue a batch: its records are committed past once ``delivery`` is done and every batch
        queued before it is committed."""
        last: dict[tuple[str, int], Record] = {}
        for r in records:
            tp = (r.topic, r.partition)
            if tp not in last or r.offset > last[tp].offset:
                last[tp] = r
        self._queue.append((delivery, list(last.values())))

    def settle(self, commit: Commit) -> None:
        """Commit past the batches at the front whose outputs are all delivered, in order; stop at
        the first one still waiting. Raise ``TransientError`` at a batch with an undelivered output
        (it and every batch after it are dropped, never committed)."""
        if self._failure is not None:
            raise TransientError(self._failure)
        queue = self._queue
        while queue:
            delivery, records = queue[0]
            if not delivery.done():
                return
            undelivered = delivery.undelivered()
            if undelivered:
                self._failure = f"{UNDELIVERED} ({undelivered} refused)"
                queue.clear()
                raise TransientError(self._failure)
            commit(records)
            queue.popleft()

    def drain(self, producer: Producer, commit: Commit, timeout: float = 30.0) -> None:
        """Flush ``producer``, then commit what is safe: every batch up to the first with an
        undelivered output (``settle``'s ``TransientError`` then). Batches still not done after the
        flush's ``timeout`` are dropped, uncommitted, and raise as undelivered. With nothing queued
        it does nothing (no flush)."""
        if not self._queue:
            return  # nothing waits (a failure seen before is raised by the next ``settle``)
        producer.flush(timeout)
        self.settle(commit)
        if self._queue:  # not delivered within the timeout: never committed
            self._failure = f"{UNDELIVERED} (not acknowledged in {timeout:g} s)"
            self._queue.clear()
            raise TransientError(self._failure)

    def clear(self) -> None:
        """Forget every queued batch and any failure (a new consumer reads from the last commit)."""
        self._queue.clear()
        self._failure = None
