"""The consumer groups' lag over time (``lag_samples``): per group, topic and partition, for the
Pipeline page's lag chart.

Bounded by design, two tiers per partition:

* tier 0 (``FINE``): every sample, kept ``FINE_KEEP_S`` (one hour);
* tier 1 (``COARSE``): the last sample of each minute, kept ``COARSE_KEEP_S`` (one day).

``record`` writes a sample to both (tier 1 by an upsert on the minute, so the minute holds its last
sample) and ``prune`` deletes what is older than each tier keeps. At one sample every 5 s a
partition holds at most 720 + 1,440 rows. ``history`` reads tier 0 for the last hour and tier 1
before it. Plain SQL that PostgreSQL accepts too (``ON CONFLICT ... DO UPDATE``). Cost: two row
writes per partition and sample; a prune is one indexed delete.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db import Database

FINE, COARSE = 0, 1
FINE_KEEP_S = 3600.0
COARSE_KEEP_S = 86_400.0
COARSE_STEP_S = 60.0


@dataclass(frozen=True)
class LagSample:
    """A group's lag on one partition at ``at`` (Unix seconds)."""

    group_id: str
    topic: str
    partition: int
    at: float
    lag: int


_UPSERT = (
    "INSERT INTO lag_samples (group_id, topic, partition, tier, at, lag) VALUES (?,?,?,?,?,?)"
    " ON CONFLICT (group_id, topic, partition, tier, at) DO UPDATE SET lag = excluded.lag"
)


def record(conn: sqlite3.Connection, samples: Sequence[LagSample]) -> None:
    """Store ``samples`` in both tiers (inside the caller's write transaction)."""
    rows = []
    for s in samples:
        rows.append((s.group_id, s.topic, s.partition, FINE, s.at, s.lag))
        minute = s.at - s.at % COARSE_STEP_S
        rows.append((s.group_id, s.topic, s.partition, COARSE, minute, s.lag))
    conn.executemany(_UPSERT, rows)


def prune(conn: sqlite3.Connection, now: float) -> int:
    """Delete what each tier no longer keeps; return how many rows went."""
    cur = conn.execute(
        "DELETE FROM lag_samples WHERE (tier = ? AND at < ?) OR (tier = ? AND at < ?)",
        (FINE, now - FINE_KEEP_S, COARSE, now - COARSE_KEEP_S),
    )
    return cur.rowcount


def history(db: Database, group_id: str, *, since: float, now: float) -> list[LagSample]:
    """The group's samples from ``since``: every one of the last hour, one a minute before it."""
    fine_from = now - FINE_KEEP_S
    rows = db.reader().conn.execute(
        "SELECT group_id, topic, partition, at, lag FROM lag_samples WHERE group_id = ? AND at >= ?"
        " AND ((tier = ? AND at >= ?) OR (tier = ? AND at < ?)) ORDER BY at, topic, partition",
        (group_id, since, FINE, fine_from, COARSE, fine_from),
    )
    return [LagSample(*r) for r in rows]


def count(db: Database) -> int:
    """How many samples are stored, both tiers (for checks of the bound)."""
    return int(db.reader().conn.execute("SELECT COUNT(*) FROM lag_samples").fetchone()[0])
