"""The normalizer's ledger on a real SQLite file: a redelivered batch publishes its records again, also
after a rebuild and across the 005 migration."""

from __future__ import annotations

import time
from pathlib import Path

import sqlite_utils

from bench.journal import raw_trades
from pipeline.journal.fills import Fill, fill_fingerprint
from pipeline.messages import Message, RawTrade, Side, Trade, encode
from pipeline.stages.normalizer import Normalizer
from storage.db import Database, connect
from storage.migrations import MIGRATIONS, apply_migrations


def trades(messages: list[Message]) -> list[Trade]:
    """The normalizer's outputs, each checked to be a Trade record (all it publishes)."""
    out = []
    for m in messages:
        assert isinstance(m, Trade)
        out.append(m)
    return out


def test_a_redelivered_batch_publishes_the_same_records_again_and_stores_nothing_twice(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    stage = Normalizer(db)
    batch = [stage.prepare(RawTrade.model_validate_json(v)) for _, v in raw_trades(6, "u")]
    first = trades(stage.process_batch(batch))
    # The ledger committed, but say the outputs were lost before the flush: the bus delivers the
    # same raw trades again, and they must produce the same records (downstream upserts by id).
    again = trades(stage.process_batch(batch))
    assert [t.trade_id for t in again] == [t.trade_id for t in first]
    assert [t.model_dump() for t in again] == [t.model_dump() for t in first]
    assert [t.kind for t in first] == ["lot", "round_trip"] * 3
    assert db.query("SELECT count(*) AS n FROM journal_fills")[0]["n"] == 6
    db.close()


def _fill(user: str, stamp: str, side: Side, price: float, row: int) -> RawTrade:
    """A Binance spot fill of 0.01 BTC as the importer publishes it."""
    payload = {
        "Date(UTC)": stamp,
        "Pair": "BTCUSDT",
        "Side": side,
        "Price": f"{price}",
        "Executed": "0.01BTC",
        "Amount": f"{price * 0.01}USDT",
        "Fee": "0.5USDT",
    }
    fill = Fill(
        "BTCUSDT", side, price, 0.01, int(time.mktime(time.strptime(stamp + "+0000", "%Y-%m-%d %H:%M:%S%z")) * 1000)
    )
    return RawTrade(
        raw_id=fill_fingerprint(user, fill, 0, venue="binance-spot"),
        user_id=user,
        source="csv",
        format="binance-spot",
        received_at=int(time.time() * 1000),
        payload=payload,
        row=row,
    )


def test_a_redelivery_after_an_older_fill_rebuilt_the_fifo_republishes_what_stands_now(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    stage = Normalizer(db)
    sell = stage.prepare(_fill("u", "2024-11-16 10:00:00", "SELL", 91000.0, 2))
    (short,) = trades(stage.process_batch([sell]))
    assert (short.kind, short.side) == ("lot", "SELL")
    buy = stage.prepare(_fill("u", "2024-11-15 09:00:00", "BUY", 90000.0, 3))
    rebuilt = trades(stage.process_batch([buy]))
    assert [(t.kind, t.void) for t in rebuilt] == [("trade", True), ("lot", False), ("round_trip", False)]
    assert rebuilt[0].trade_id == short.trade_id  # the short is retracted: the sell closed the older buy
    # Both raw trades delivered again (outputs lost in a crash): the records as they stand now, not the short.
    again = trades(stage.process_batch([sell, buy]))
    assert sorted(t.trade_id for t in again) == sorted(t.trade_id for t in rebuilt[1:])
    assert not any(t.trade_id == short.trade_id for t in again)
    db.close()


def test_migration_moves_the_records_of_fills_onto_their_rows(tmp_path: Path) -> None:
    """A ledger written before 005 (records of fills in journal_ledger_records) republishes the same."""
    path = tmp_path / "desk.db"
    conn = connect(path)
    apply_migrations(sqlite_utils.Database(conn), [m for m in MIGRATIONS if m[0] < "005"])
    batch = [RawTrade.model_validate_json(v) for _, v in raw_trades(4, "u")]
    conn.close()
    # What the normalizer before 005 stored for these four fills: the fills, and each record by its fill.
    db = Database(tmp_path / "new.db")
    stage = Normalizer(db)
    first = trades(stage.process_batch([stage.prepare(r) for r in batch]))
    rows = db.query("SELECT * FROM journal_fills ORDER BY rowid")
    db.close()
    conn = connect(path)
    columns = [c for c in rows[0] if c != "records"]
    conn.executemany(
        f"INSERT INTO journal_fills ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})",
        [[r[c] for c in columns] for r in rows],
    )
    conn.executemany(
        "INSERT INTO journal_ledger_records VALUES (?,?,?,?,?)",
        [(t.trade_id, t.user_id, t.symbol, t.fill_ids[-1], encode(t).decode()) for t in first],
    )
    conn.close()
    db = Database(path)
    assert db.applied[0] == "005_fill_records"
    assert db.query("SELECT count(*) AS n FROM journal_ledger_records")[0]["n"] == 0
    again = Normalizer(db).process_batch([Normalizer(db).prepare(r) for r in batch])
    assert [t.model_dump() for t in again] == [t.model_dump() for t in first]
    db.close()
