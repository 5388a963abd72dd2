"""journal-store: ``enriched-trades`` and ``behavioral-alerts`` -> SQLite, idempotently.

Trades are upserted by ``trade_id`` and alerts by ``alert_id`` (a ``void`` record deletes its id),
so a batch delivered twice, or a replay of both topics, gives the same rows. The trader's own edits
live in ``journal_annotations`` and are never touched here.
"""

from __future__ import annotations

import sqlite3
import time
from typing import ClassVar

import orjson

from pipeline.messages import BehavioralAlert, EnrichedTrade, Message
from pipeline.runner import Stage
from pipeline.topics import BEHAVIORAL_ALERTS, ENRICHED_TRADES
from storage import journal
from storage.db import Database


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def write_journal(conn: sqlite3.Connection, messages: list[Message], now_ms: int) -> None:
    """Upsert trades and alerts, delete voided ones; runs inside the caller's transaction."""
    trades = [m for m in messages if isinstance(m, EnrichedTrade)]
    alerts = [a for a in messages if isinstance(a, BehavioralAlert)]
    journal.store(
        conn,
        trades=[
            (
                t.trade_id,
                t.user_id,
                t.symbol,
                t.side,
                t.kind,
                t.entry_price,
                t.exit_price,
                t.quantity,
                t.entry_time,
                t.exit_time,
                t.pnl,
                t.fees,
                t.stop_loss,
                t.notes,
                _dumps(list(t.tags)),
                t.setup,
                t.emotion,
                t.lot_id,
                _dumps(list(t.fill_ids)),
                t.source,
                _dumps(t.context),
                now_ms,
            )
            for t in trades
            if not t.void
        ],
        void_trades=[t.trade_id for t in trades if t.void],
        alerts=[
            (
                a.alert_id,
                a.user_id,
                a.alert_type,
                a.severity,
                a.timestamp,
                _dumps(a.trade_ids),
                a.message,
                _dumps(a.details),
                now_ms,
            )
            for a in alerts
            if not a.void
        ],
        void_alerts=[a.alert_id for a in alerts if a.void],
    )


class JournalStore(Stage):
    """Sink stage; runs on its runner's thread and writes through the database's writer."""

    name: ClassVar[str] = "journal-store"
    inputs: ClassVar[tuple[str, ...]] = (ENRICHED_TRADES, BEHAVIORAL_ALERTS)

    def __init__(self, db: Database) -> None:
        self.db = db

    def process_batch(self, messages: list[Message]) -> list[Message]:
        now = int(time.time() * 1000)
        self.db.write(lambda db: write_journal(db.conn, messages, now))
        return []
