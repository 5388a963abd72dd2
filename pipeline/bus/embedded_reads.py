"""Reads of the embedded log outside any consumer group: a range of one partition, an offset by time.

Both run on the bus's reader connection (``read`` is ``EmbeddedBus._read``): they join no group,
take no membership and commit nothing, so no group sees a difference. Cost: a range read is one
seek of the primary key (topic, partition, offset) and a scan of the rows returned; an offset by
time is a binary search, about 20 such seeks for a million messages in a partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pipeline.bus.base import Record
from pipeline.bus.embedded_log import decode_headers

Read = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_RANGE = (
    "SELECT offset, key, value, timestamp, headers FROM messages "
    "WHERE topic=? AND partition=? AND offset>=? ORDER BY offset LIMIT ?"
)
_FIRST_AT = "SELECT offset, timestamp FROM messages WHERE topic=? AND partition=? AND offset>=? ORDER BY offset LIMIT 1"


def read_range(read: Read, topic: str, partition: int, offset: int, max_messages: int) -> list[Record]:
    """Up to ``max_messages`` records of one partition from ``offset`` on, in offset order."""
    rows = read(_RANGE, (topic, partition, offset, max(max_messages, 0)))
    return [Record(topic, partition, off, key, value, ts, decode_headers(h)) for off, key, value, ts, h in rows]


def offset_for_time(read: Read, topic: str, partition: int, timestamp_ms: int) -> int:
    """The earliest offset whose timestamp is at or after ``timestamp_ms``, else the end offset.

    Like Kafka's time index, this takes timestamps to grow with offsets, which they do for one
    producing process; a record written out of time order by another process may be found a few
    milliseconds off."""
    ((lo, end),) = read(
        "SELECT start_offset, next_offset FROM partitions WHERE topic=? AND partition=?", (topic, partition)
    )
    hi = end
    while lo < hi:
        mid = (lo + hi) // 2
        row = read(_FIRST_AT, (topic, partition, mid))
        if not row or row[0][1] >= timestamp_ms:
            hi = mid
        else:  # every record up to this one is older: look after it
            lo = row[0][0] + 1
    row = read(_FIRST_AT, (topic, partition, lo)) if lo < end else []
    return int(row[0][0]) if row else int(end)
