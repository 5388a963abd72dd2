"""Imports' tables: the trader's saved column mappings (``import_mappings``), and following one
import's published rows into the ledger and the journal (``ImportTracker``, for the Import page).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from storage import ledger
from storage.db import Database
from storage.select import select_in

# --------------------------------------------------------------------------- import mappings


def save_mapping(db: Database, name: str, header: list[str], mapping: dict[str, str], now_ms: int) -> None:
    """Save (or replace) the column mapping called ``name``, made for files with ``header``."""
    row = (name, json.dumps(header), json.dumps(mapping), now_ms)
    db.write(
        lambda d: d.conn.execute(
            "INSERT INTO import_mappings (name, header, mapping, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET header = excluded.header, mapping = excluded.mapping, "
            "created_at = excluded.created_at",
            row,
        )
    )


def mappings(db: Database) -> list[dict[str, Any]]:
    """Return the saved mappings: name, header (list), mapping (dict), created_at (ms), by name."""
    rows = db.query("SELECT name, header, mapping, created_at FROM import_mappings ORDER BY name")
    return [{**r, "header": json.loads(r["header"]), "mapping": json.loads(r["mapping"])} for r in rows]


# --------------------------------------------------------------------------- following an import


def stored_trade_ids(conn: sqlite3.Connection, trade_ids: Iterable[str]) -> set[str]:
    """Return which of ``trade_ids`` the journal holds."""
    return {r[0] for r in select_in(conn, "SELECT trade_id FROM journal_trades WHERE trade_id IN ({marks})", trade_ids)}


class ImportTracker:
    """Follows the rows one import published into the journal, for the Import page's counters.

    A fill file's rows are fills: the normalizer pairs them FIFO with the open lots into round trips,
    listing each round trip under its closing fill (the ledger's ``fill_records``); the journal store
    then stores them. A trade file's rows are whole trades, stored by their own id. ``refresh`` looks
    up only what has not arrived yet, so following a large import costs one lookup per row in all.
    The round trips are read from the ledger once every fill is in it: a file in descending time
    order makes the ledger re-pair its fills batch after batch until then.

    Use from one thread at a time (a page's fragment).
    """

    def __init__(self, raw_ids: Sequence[str]) -> None:
        self.fill_ids = [i for i in raw_ids if i.startswith("f-")]
        self.fills = len(self.fill_ids)
        self.trades = len(raw_ids) - self.fills
        self._fills_pending = set(self.fill_ids)
        self._trades_pending = {i for i in raw_ids if not i.startswith("f-")}
        self._round_trips_pending: set[str] | None = None
        self.round_trips: int | None = None  # known once every fill is in the ledger
        self.progress_at = time.monotonic()

    @property
    def fills_in_ledger(self) -> int:
        return self.fills - len(self._fills_pending)

    @property
    def trades_in_journal(self) -> int:
        return self.trades - len(self._trades_pending)

    @property
    def round_trips_in_journal(self) -> int:
        pending = self._round_trips_pending
        return 0 if self.round_trips is None or pending is None else self.round_trips - len(pending)

    @property
    def caught_up(self) -> bool:
        """Every fill is in the ledger, and every round trip and whole trade in the journal."""
        round_trips_done = self.fills == 0 or (self._round_trips_pending is not None and not self._round_trips_pending)
        return not self._fills_pending and not self._trades_pending and round_trips_done

    def refresh(self, db: Database) -> None:
        """Look up what has not arrived yet."""
        before = (len(self._fills_pending), len(self._trades_pending), len(self._round_trips_pending or ()))
        conn = db.reader().conn
        self._fills_pending -= ledger.existing(conn, "journal_fills", "fill_id", self._fills_pending)
        if not self._fills_pending and self._round_trips_pending is None and self.fills:
            made = {
                record["trade_id"]
                for records in ledger.fill_records(conn, self.fill_ids)
                for line in records.splitlines()
                if '"round_trip"' in line
                for record in (json.loads(line),)
                if record.get("kind") == "round_trip"
            }
            self.round_trips = len(made)
            self._round_trips_pending = made
        if self._round_trips_pending:
            self._round_trips_pending -= stored_trade_ids(conn, self._round_trips_pending)
        self._trades_pending -= stored_trade_ids(conn, self._trades_pending)
        if (len(self._fills_pending), len(self._trades_pending), len(self._round_trips_pending or ())) != before:
            self.progress_at = time.monotonic()
