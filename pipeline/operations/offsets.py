"""Rewinding (or forwarding) a consumer group: plan the new committed offsets, then set them.

A reset goes to the earliest or latest offset, a time (the first message at or after it) or an
offset, on every partition of one topic or of every topic the group has committed on, or on one
partition; offsets are kept within each partition's log (start to end). As Kafka's own
``kafka-consumer-groups --reset-offsets``, it is done only while the group has no active
members: a group with members is refused with one line, here before anything is planned and by
the bus again when the offsets are set (a consumer that joined in between). Cost: one
``describe_groups`` and one ``describe_topics`` per plan; one ``offsets_for_time`` for a time.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pipeline.bus.base import GROUP_HAS_MEMBERS, Bus, GroupState
from pipeline.errors import PipelineError
from pipeline.operations.browse import partitions_of

TargetKind = Literal["earliest", "latest", "time", "offset"]
_RELATIVE = re.compile(r"^-(\d+)([smhd])$")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ResetError(PipelineError):
    """A reset that cannot be done: a group with active members, nothing to reset, a bad target."""


@dataclass(frozen=True)
class Target:
    """Where a reset goes: ``earliest``, ``latest``, a time (ms since the epoch) or an offset."""

    kind: TargetKind
    value: int = 0

    @staticmethod
    def parse(text: str, now_ms: int | None = None) -> Target:
        """``earliest``, ``latest``, an offset (a whole number), an ISO time
        (``2026-05-01T09:30:00Z``; no zone means UTC) or a time back from now (``-15m``, ``-2h``)."""
        text = text.strip()
        if text in ("earliest", "latest"):
            return Target(text)  # type: ignore[arg-type]
        if text.isdigit():
            return Target("offset", int(text))
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        relative = _RELATIVE.match(text)
        if relative:
            return Target("time", now_ms - int(relative.group(1)) * _UNITS_S[relative.group(2)] * 1000)
        try:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ResetError(
                f"--reset-to {text!r}: say earliest, latest, an offset, an ISO time or -15m/-2h/-1d"
            ) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return Target("time", int(at.timestamp() * 1000))

    def __str__(self) -> str:
        if self.kind == "time":
            return datetime.fromtimestamp(self.value / 1000, tz=UTC).isoformat(timespec="seconds")
        return str(self.value) if self.kind == "offset" else self.kind


@dataclass(frozen=True)
class Move:
    """One partition of a reset: the committed offset now (None: none yet) and the new one."""

    topic: str
    partition: int
    current: int | None
    new: int
    start: int
    end: int

    @property
    def lag_after(self) -> int:
        return max(self.end - self.new, 0)


@dataclass(frozen=True)
class Plan:
    """A reset to apply: the group, its members when planned, where it goes, and each partition's move."""

    group_id: str
    members: int
    target: Target
    moves: list[Move]


def members_line(group_id: str, members: int) -> str:
    """The one line that refuses a reset of a group with active members."""
    return (
        f"consumer group {group_id!r} has {members} active member{'s' * (members != 1)}: its offsets are reset "
        "only while it has none (stop its consumers first), as kafka-consumer-groups --reset-offsets requires"
    )


def group(bus: Bus, group_id: str) -> GroupState | None:
    return next((g for g in bus.describe_groups() if g.group_id == group_id), None)


def plan(bus: Bus, group_id: str, target: Target, *, topic: str | None = None, partition: int | None = None) -> Plan:
    """Where each partition of the reset goes; one line when the group has members or there is
    nothing to reset (no ``topic`` named and no offsets committed)."""
    state = group(bus, group_id)
    members = state.members if state is not None else 0
    if members:
        raise ResetError(members_line(group_id, members))
    committed = {(p.topic, p.partition): p.committed for p in (state.partitions if state else [])}
    if topic is None:
        if partition is not None:
            raise ResetError("--partition needs --topic")
        topics = sorted({t for t, _ in committed})
        if not topics:
            raise ResetError(f"consumer group {group_id!r} has no committed offsets: name the topic to reset (--topic)")
    else:
        topics = [topic]
    moves: list[Move] = []
    for name in topics:
        parts = partitions_of(bus, name, partition if topic is not None else None)
        at = bus.offsets_for_time(name, target.value) if target.kind == "time" else {}
        for p, s in sorted(parts.items()):
            if target.kind == "earliest":
                new = s.start_offset
            elif target.kind == "latest":
                new = s.end_offset
            elif target.kind == "time":
                new = at.get(p, s.end_offset)
            else:
                new = target.value
            moves.append(
                Move(
                    name,
                    p,
                    committed.get((name, p)),
                    min(max(new, s.start_offset), s.end_offset),
                    s.start_offset,
                    s.end_offset,
                )
            )
    return Plan(group_id, members, target, moves)


def apply(bus: Bus, reset: Plan) -> None:
    """Set the planned offsets; one line when the group has active members by now."""
    outcome = bus.reset_offsets(reset.group_id, {(m.topic, m.partition): m.new for m in reset.moves})
    if outcome == GROUP_HAS_MEMBERS:
        state = group(bus, reset.group_id)
        raise ResetError(members_line(reset.group_id, state.members if state and state.members else 1))
