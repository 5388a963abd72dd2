"""The normalizer's ledger on a real SQLite file: a redelivered batch publishes its records again."""

from __future__ import annotations

from pathlib import Path

from bench.journal import raw_trades
from pipeline.messages import RawTrade
from pipeline.stages.normalizer import Normalizer
from storage.db import Database


def test_a_redelivered_batch_publishes_the_same_records_again_and_stores_nothing_twice(tmp_path: Path) -> None:
    db = Database(tmp_path / "desk.db")
    stage = Normalizer(db)
    batch = [stage.prepare(RawTrade.model_validate_json(v)) for _, v in raw_trades(6, "u")]
    first = stage.process_batch(batch)
    # The ledger committed, but say the outputs were lost before the flush: the bus delivers the
    # same raw trades again, and they must produce the same records (downstream upserts by id).
    again = stage.process_batch(batch)
    assert [t.trade_id for t in again] == [t.trade_id for t in first]
    assert [t.model_dump() for t in again] == [t.model_dump() for t in first]
    assert [t.kind for t in first] == ["lot", "round_trip"] * 3
    assert db.query("SELECT count(*) AS n FROM journal_fills")[0]["n"] == 6
    db.close()
