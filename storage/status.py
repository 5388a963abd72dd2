"""What workers publish about themselves (``stage_status``): health and page-facing details.

Every process that runs workers (the app, ``pipeline run``, a stage process) rewrites one row per
worker every second: its counters, its last error, and ``details``, what a page shows of it (ticks
skipped and why, the market time the exchange has seen, a feed's rejections). Pages read rows
here, never a stage's objects, so they are right whether a stage is a thread of the app or a
process of its own, on this host or another. A row not rewritten for ``STALE_S`` is a process that
is gone and is not shown; a process that stops cleanly writes its rows once more as not running.

A stage run as a child process has two rows: the parent's (kind ``process``, with the child's pid
in ``details``) and the child's own (its counters). ``stages`` merges them into one.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.db import Database
from storage.sql import upsert

STALE_S = 15.0
HOST = socket.gethostname()


@dataclass(frozen=True)
class StageStatus:
    """One worker as it last described itself."""

    name: str
    kind: str
    running: bool
    processed: int = 0
    produced: int = 0
    dead_lettered: int = 0
    errors: int = 0
    last_error: str | None = None
    lag: int = 0
    started_at: float | None = None
    last_activity_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    host: str = HOST
    pid: int = 0
    updated_at: float = 0.0
    retried: int = 0
    # Numbers for /metrics and the Pipeline page's charts, e.g. ``batch_latency``: ``{"le": [...],
    # "counts": [...], "sum": s}`` (cumulative bucket counts of the stage's batch latency in seconds).
    metrics: dict[str, Any] = field(default_factory=dict)


COLUMNS = (
    "name, host, pid, kind, running, processed, produced, dead_lettered, errors, last_error, lag,"
    " started_at, last_activity_at, details, updated_at, retried, metrics"
)


def publish(conn: sqlite3.Connection, statuses: Sequence[StageStatus]) -> None:
    """Write this process's rows (inside the caller's write transaction)."""
    conn.executemany(
        upsert("stage_status", COLUMNS, "name, host, pid"),
        [
            (
                s.name,
                s.host,
                s.pid,
                s.kind,
                int(s.running),
                s.processed,
                s.produced,
                s.dead_lettered,
                s.errors,
                s.last_error,
                s.lag,
                s.started_at,
                s.last_activity_at,
                json.dumps(s.details, default=str),
                s.updated_at,
                s.retried,
                json.dumps(s.metrics),
            )
            for s in statuses
        ],
    )


def forget(conn: sqlite3.Connection, older_than: float) -> None:
    """Delete rows not rewritten since ``older_than`` (Unix seconds)."""
    conn.execute("DELETE FROM stage_status WHERE updated_at < ?", (older_than,))


def _status(row: sqlite3.Row | tuple[Any, ...]) -> StageStatus:
    (
        name,
        host,
        pid,
        kind,
        running,
        processed,
        produced,
        dead,
        errors,
        last_error,
        lag,
        started,
        active,
        details,
        updated,
        retried,
        metrics,
    ) = row
    return StageStatus(
        name,
        kind,
        bool(running),
        processed,
        produced,
        dead,
        errors,
        last_error,
        lag,
        started,
        active,
        json.loads(details),
        host,
        pid,
        updated,
        retried,
        json.loads(metrics),
    )


def stages(db: Database, *, now: float | None = None, stale_s: float = STALE_S) -> list[StageStatus]:
    """Return every worker that published in the last ``stale_s`` seconds, a stage process merged
    with its child's own row, in the order they were started."""
    now = time.time() if now is None else now
    rows = [
        _status(r)
        for r in db.reader().conn.execute(
            f"SELECT {COLUMNS} FROM stage_status WHERE updated_at >= ? ORDER BY started_at, name", (now - stale_s,)
        )
    ]
    children = {(s.host, s.pid, s.name): s for s in rows if s.kind != "process"}
    merged: list[StageStatus] = []
    used: set[tuple[str, int, str]] = set()
    for s in rows:
        if s.kind != "process":
            continue
        child = children.get((s.host, int(s.details.get("child_pid") or 0), s.name))
        if child is None:
            merged.append(s)
            continue
        used.add((child.host, child.pid, child.name))
        merged.append(
            StageStatus(
                s.name,
                s.kind,
                s.running and child.running,
                child.processed,
                child.produced,
                child.dead_lettered,
                s.errors + child.errors,
                child.last_error or s.last_error,
                child.lag,
                s.started_at,
                child.last_activity_at,
                {**child.details, **s.details},
                s.host,
                s.pid,
                max(s.updated_at, child.updated_at),
                child.retried,
                child.metrics,
            )
        )
    merged.extend(s for s in rows if s.kind != "process" and (s.host, s.pid, s.name) not in used)
    return sorted(merged, key=lambda s: s.started_at or 0.0)


def stage(db: Database, name: str, *, now: float | None = None) -> StageStatus | None:
    """Return the named worker's status (the first if several processes run it), or None."""
    return next((s for s in stages(db, now=now) if s.name == name), None)
