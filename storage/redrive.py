"""The redrive log's door (``redrive_log``): which dead letters went back to their source topic.

A dead letter is known by the coordinates its message had on its source topic (topic, partition,
offset), or by its own on the dead-letter topic when it never was a message there (a source's
frame, partition -1). ``claim`` takes coordinates for one redrive inside one write transaction, so
two redrives at once (the page and the command line) never publish the same message twice; a
claim becomes ``published`` once the message is durable on the bus, and is released when it was
not. A claim a crash left behind stays ``claimed``: that message may or may not be on the bus, and
it is not published again by itself (the page lists it). Cost: one indexed lookup per coordinate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlite_utils

from storage.db import Database
from storage.select import select_in

State = Literal["claimed", "published"]
Coordinates = tuple[str, int, int]


@dataclass(frozen=True)
class Redriven:
    """One dead letter's redrive: its coordinates, the dead letter it was, its state and times."""

    topic: str
    partition: int
    offset: int
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    state: State
    edited: bool
    claimed_at: int
    published_at: int | None


_COLUMNS = 'topic, partition, "offset", dlq_topic, dlq_partition, dlq_offset, state, edited, claimed_at, published_at'
_BY_OFFSETS = f'SELECT {_COLUMNS} FROM redrive_log WHERE topic=? AND partition=? AND "offset" IN ({{marks}})'


def _row(r: Sequence[Any]) -> Redriven:
    return Redriven(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])


def _known(conn: sqlite3.Connection, coordinates: Iterable[Coordinates]) -> dict[Coordinates, Redriven]:
    """Earlier redrives of ``coordinates``: primary-key lookups, a chunk of offsets per partition."""
    by_partition: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in coordinates:
        by_partition.setdefault((topic, partition), []).append(offset)
    out: dict[Coordinates, Redriven] = {}
    for (topic, partition), offsets in by_partition.items():
        for row in select_in(conn, _BY_OFFSETS, offsets, params=(topic, partition)):
            out[(row[0], row[1], row[2])] = _row(row)
    return out


def claim(
    db: Database, wanted: Sequence[tuple[Coordinates, Coordinates, bool]], now_ms: int
) -> tuple[list[Coordinates], dict[Coordinates, Redriven]]:
    """Claim each (coordinates, dead letter's coordinates, edited) not redriven yet; return the
    coordinates claimed now and, for the others, their earlier redrive."""

    def write(d: sqlite_utils.Database) -> tuple[list[Coordinates], dict[Coordinates, Redriven]]:
        conn = d.conn
        known = _known(conn, (c for c, _, _ in wanted))
        fresh: list[Coordinates] = []
        taken: set[Coordinates] = set()
        rows = []
        for c, letter, edited in wanted:
            if c in known or c in taken:
                continue
            taken.add(c)
            fresh.append(c)
            rows.append((*c, *letter, "claimed", int(edited), now_ms, None))
        conn.executemany(f"INSERT INTO redrive_log ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        return fresh, known

    return db.write(write)


def confirm(db: Database, claimed: Sequence[Coordinates], now_ms: int) -> None:
    """Mark claims as published (their messages are durable on the bus)."""
    db.write(
        lambda d: d.conn.executemany(
            "UPDATE redrive_log SET state='published', published_at=? WHERE topic=? AND partition=? AND \"offset\"=?",
            [(now_ms, *c) for c in claimed],
        )
    )


def release(db: Database, claimed: Sequence[Coordinates]) -> None:
    """Drop claims whose messages did not reach the bus, so a later redrive may try them again."""
    db.write(
        lambda d: d.conn.executemany(
            "DELETE FROM redrive_log WHERE topic=? AND partition=? AND \"offset\"=? AND state='claimed'", list(claimed)
        )
    )


def lookup(db: Database, coordinates: Sequence[Coordinates]) -> dict[Coordinates, Redriven]:
    """The earlier redrives of these coordinates, if any."""
    return _known(db.reader().conn, coordinates)


def recent(db: Database, limit: int = 200) -> list[Redriven]:
    """The last redrives, newest first (the page lists them, with any claim a crash left)."""
    rows = (
        db.reader()
        .conn.execute(f"SELECT {_COLUMNS} FROM redrive_log ORDER BY claimed_at DESC LIMIT ?", (limit,))
        .fetchall()
    )
    return [_row(r) for r in rows]
