"""The message browser: a page of any topic's messages, from an offset, a time, the start or the end,
one partition or all of them, filtered by key, a substring or a JSON path of the value, with
paging both ways.

It reads with ``Bus.read`` only, so it joins no consumer group and never moves a committed offset.
Across partitions a page is ordered by timestamp (then partition and offset); a cursor is the
offset per partition where the next page forward (``after``) or backward (``before``) starts, so
paging is exact however the partitions interleave. A filter that matches rarely would scan a whole
topic: a page scans at most ``max_scan`` messages (10,000 by default) and says so (``exhausted``),
and the next page goes on from there. Cost: one ``Bus.read`` per partition per ``chunk`` messages
scanned, about 1 ms each on the embedded bus and a few ms on Kafka on loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import jsonpath
import orjson

from pipeline.bus.base import Bus, PartitionState, Record
from pipeline.errors import PipelineError, UnknownPartitionError, UnknownTopicError

Direction = Literal["forward", "backward"]
Start = Literal["beginning", "end", "offset", "time"]

PAGE_SIZE = 100
MAX_SCAN = 10_000


class FilterError(PipelineError):
    """A filter that cannot be used (a JSON path that does not parse): one line naming it."""


@dataclass(frozen=True)
class Filters:
    """What a message must match: its key exactly, a substring of its value (case-insensitive), and a
    JSON path of its value that selects something (equal to ``equals`` when given: a JSON literal,
    or text compared with the selected value as text)."""

    key: str | None = None
    grep: str | None = None
    path: str | None = None
    equals: str | None = None

    def __post_init__(self) -> None:
        if self.path:
            _ = self._query  # a bad path fails here, once, with one line
        elif self.equals is not None:
            raise FilterError("--equals needs a JSON path (--path) to compare with")

    @property
    def active(self) -> bool:
        return bool(self.key is not None or self.grep or self.path)

    @cached_property
    def _query(self) -> jsonpath.JSONPath | jsonpath.CompoundJSONPath:
        try:
            return jsonpath.compile(self.path or "$")
        except jsonpath.JSONPathError as exc:
            first = str(exc).splitlines()[0]
            raise FilterError(f"the JSON path {self.path!r} does not parse: {first}") from None

    @cached_property
    def _wanted(self) -> Any:
        if self.equals is None:
            return None
        try:
            return orjson.loads(self.equals)
        except orjson.JSONDecodeError:
            return self.equals

    def matches(self, record: Record) -> bool:
        if self.key is not None and (record.key or b"").decode("utf-8", "replace") != self.key:
            return False
        if self.grep and self.grep.casefold() not in (record.value or b"").decode("utf-8", "replace").casefold():
            return False
        if self.path:
            try:
                document = orjson.loads(record.value or b"null")
            except orjson.JSONDecodeError:
                return False
            found = self._query.findall(document)
            if not found:
                return False
            if self.equals is not None:
                return any(v == self._wanted or (isinstance(v, str) and v == self.equals) for v in found)
        return True


@dataclass(frozen=True)
class Page:
    """One page: its records in time order, where the pages before and after it start, how many
    messages it scanned, and whether it stopped at the scan limit before finding a page."""

    topic: str
    records: list[Record]
    before: dict[int, int]
    after: dict[int, int]
    partitions: dict[int, PartitionState]
    scanned: int = 0
    exhausted: bool = False
    at_start: bool = field(default=False)
    at_end: bool = field(default=False)


def partitions_of(bus: Bus, topic: str, partition: int | None = None) -> dict[int, PartitionState]:
    """The partitions a browse covers (all of them, or ``partition``); a missing topic or partition
    raises one line."""
    states = [t for t in bus.describe_topics([topic]) if t.name == topic]
    if not states:
        raise UnknownTopicError(f"there is no topic {topic!r} on the {bus.name} bus (python -m pipeline topics)")
    parts = {p.partition: p for p in states[0].partitions}
    if partition is None:
        return parts
    if partition not in parts:
        raise UnknownPartitionError(
            f"topic {topic!r} has partitions 0-{len(parts) - 1}; there is no partition {partition}"
        )
    return {partition: parts[partition]}


def open_page(
    bus: Bus,
    topic: str,
    *,
    partition: int | None = None,
    start: Start = "end",
    offset: int | None = None,
    time_ms: int | None = None,
    size: int = PAGE_SIZE,
    filters: Filters | None = None,
    max_scan: int = MAX_SCAN,
) -> Page:
    """The first page of a browse: forward from the start, an offset (on every partition browsed) or
    a time; backward from the end (the newest messages)."""
    parts = partitions_of(bus, topic, partition)
    if start == "end":
        return turn(bus, topic, parts, {p: s.end_offset for p, s in parts.items()}, "backward", size, filters, max_scan)
    if start == "beginning":
        cursor = {p: s.start_offset for p, s in parts.items()}
    elif start == "offset":
        if offset is None:
            raise FilterError("a browse from an offset needs the offset")
        cursor = {p: min(max(offset, s.start_offset), s.end_offset) for p, s in parts.items()}
    else:
        if time_ms is None:
            raise FilterError("a browse from a time needs the time")
        at = bus.offsets_for_time(topic, time_ms)
        cursor = {p: at.get(p, s.end_offset) for p, s in parts.items()}
    return turn(bus, topic, parts, cursor, "forward", size, filters, max_scan)


def turn(
    bus: Bus,
    topic: str,
    parts: Mapping[int, PartitionState],
    cursor: Mapping[int, int],
    direction: Direction,
    size: int = PAGE_SIZE,
    filters: Filters | None = None,
    max_scan: int = MAX_SCAN,
) -> Page:
    """The page after (``forward`` from ``cursor``, a page's ``after``) or before (``backward`` to
    ``cursor``, a page's ``before``) another."""
    match = (filters or Filters()).matches
    budget = _Budget(max_scan)
    found: dict[int, list[Record]] = {}
    reached: dict[int, int] = {}
    for p in sorted(cursor):
        scan = _scan_forward if direction == "forward" else _scan_backward
        found[p], reached[p] = scan(bus, topic, p, cursor[p], parts[p], size, match, budget)
    candidates = [r for records in found.values() for r in records]
    candidates.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    shown = candidates[:size] if direction == "forward" else candidates[-size:] if size else []
    taken: dict[int, list[int]] = {}
    for r in shown:
        taken.setdefault(r.partition, []).append(r.offset)
    before, after = {}, {}
    for p, at in cursor.items():
        if direction == "forward":
            before[p] = at
            after[p] = max(taken[p]) + 1 if p in taken else at if found[p] else reached[p]
        else:
            after[p] = at
            before[p] = min(taken[p]) if p in taken else at if found[p] else reached[p]
    return Page(
        topic=topic,
        records=shown,
        before=before,
        after=after,
        partitions=dict(parts),
        scanned=budget.used,
        exhausted=budget.left <= 0,
        at_start=all(before[p] <= parts[p].start_offset for p in cursor),
        at_end=all(after[p] >= parts[p].end_offset for p in cursor),
    )


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total
        self.used = 0

    def take(self, n: int) -> None:
        self.left -= n
        self.used += n


def _chunk(size: int) -> int:
    return max(size, 200)


def _scan_forward(
    bus: Bus,
    topic: str,
    p: int,
    at: int,
    state: PartitionState,
    size: int,
    match: Callable[[Record], bool],
    budget: _Budget,
) -> tuple[list[Record], int]:
    """Up to ``size`` matching records from ``at`` on, and the offset the scan reached."""
    out: list[Record] = []
    position = max(at, state.start_offset)
    while len(out) < size and position < state.end_offset and budget.left > 0:
        records = bus.read(topic, p, position, min(_chunk(size), budget.left))
        if not records:
            break
        budget.take(len(records))
        for r in records:
            if match(r):
                out.append(r)
                if len(out) == size:
                    return out, r.offset + 1
        position = records[-1].offset + 1
    return out, position


def _scan_backward(
    bus: Bus,
    topic: str,
    p: int,
    below: int,
    state: PartitionState,
    size: int,
    match: Callable[[Record], bool],
    budget: _Budget,
) -> tuple[list[Record], int]:
    """Up to ``size`` matching records just below ``below``, and the offset the scan reached down to."""
    out: list[Record] = []
    top = min(below, state.end_offset)
    while len(out) < size and top > state.start_offset and budget.left > 0:
        count = min(_chunk(size), budget.left, top - state.start_offset)
        records = [r for r in bus.read(topic, p, top - count, count) if r.offset < top]
        budget.take(max(len(records), 1))
        for r in reversed(records):
            if match(r):
                out.append(r)
                if len(out) == size:
                    return out[::-1], r.offset
        top -= count
    return out[::-1], max(top, state.start_offset)


def describe(record: Record) -> dict[str, Any]:
    """A record as the browser shows it: key, partition, offset, time, headers and the value as
    JSON when it is JSON (else text)."""
    try:
        value: Any = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        value = (record.value or b"").decode("utf-8", "replace")
    return {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "headers": {k: v.decode("utf-8", "replace") for k, v in record.headers},
        "value": value,
    }
