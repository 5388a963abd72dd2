"""A newest-first export is published oldest first, so the normalizer extends its FIFO instead of
rebuilding it (and republishing every record) once per batch; read options travel with each row."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.bus.base import Bus
from pipeline.journal.importer import import_file
from pipeline.messages import RawTrade
from pipeline.stages.normalizer import Normalizer
from pipeline.topics import CATALOG, RAW_TRADES
from storage.db import Database

HEADER = "Date(UTC),Pair,Side,Price,Executed,Amount,Fee"


def newest_first(n: int) -> bytes:
    lines = [HEADER]
    for i in reversed(range(n)):
        side = "BUY" if i % 2 == 0 else "SELL"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1_700_000_000 + i * 60))
        lines.append(f"{stamp},BTCUSDT,{side},{30000 + i},0.01BTC,{300 + i / 100}USDT,0.3USDT")
    return ("\n".join(lines) + "\n").encode()


def read_raw(bus: Bus, group: str, user: str, expected: int) -> list[RawTrade]:
    consumer = bus.consumer(group, [RAW_TRADES])
    found: list[RawTrade] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for record in consumer.poll(500, 1.0):
                if record.key == user.encode():
                    found.append(RawTrade.model_validate(orjson.loads(record.value or b"{}")))
    finally:
        consumer.close()
    return found


def test_a_newest_first_file_is_published_oldest_first_and_never_rebuilds(
    bus: Bus, tmp_path: Path, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    user = f"order-{uuid.uuid4().hex[:8]}"
    report = import_file(newest_first(40), user_id=user, producer=bus.producer(), db=db)
    assert report.accepted == 40
    raws = read_raw(bus, group_name("raw"), user, 40)
    assert [r.row for r in raws] == list(range(41, 1, -1))  # the file's last line is its oldest fill
    stage = Normalizer(db)
    published: list[Any] = []
    for start in range(0, 40, 7):  # the normalizer's batches, as the runner hands them over
        published += stage.process_batch([stage.prepare(r) for r in raws[start : start + 7]])
    kinds = [t.kind for t in published]
    assert kinds.count("round_trip") == 20 and kinds.count("lot") == 20
    assert not any(t.void for t in published) and len(published) == 40  # no rebuild: each record once
    db.close()


def test_the_import_time_zone_travels_with_each_row(bus: Bus, tmp_path: Path, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    user = f"zone-{uuid.uuid4().hex[:8]}"
    data = b"Date,Time,Symbol,Quantity,Price,Side\n07/01/2025,12:00:00,SAP,1,250,Buy\n"
    report = import_file(data, user_id=user, producer=bus.producer(), db=db, options={"timezone": "Europe/Berlin"})
    assert (report.format, report.accepted) == ("tradervue", 1)
    (raw,) = read_raw(bus, group_name("raw"), user, 1)
    assert raw.mapping == {"timezone": "Europe/Berlin"}
    stage = Normalizer(db)
    lot: Any
    (lot,) = stage.process_batch([stage.prepare(raw)])
    assert lot.entry_time == 1751364000000  # 2025-07-01 10:00 UTC
    db.close()


def test_rows_wait_for_their_turn_unchanged_whatever_their_cells_hold(
    bus: Bus, tmp_path: Path, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    user = f"cells-{uuid.uuid4().hex[:8]}"
    note = 'unit\x1fseparator, a comma and "quotes"'
    data = (
        "trade_id,symbol,side,entry_price,quantity,entry_time,notes\n"
        f'T-2,ETHUSDT,BUY,3100,1,2024-11-16T15:00:00Z,"{note.replace(chr(34), chr(34) * 2)}"\n'
        "T-1,ETHUSDT,BUY,3000,1,2024-11-16T14:00:00Z,plain\n"
    ).encode()
    report = import_file(data, user_id=user, producer=bus.producer(), db=db)
    assert report.accepted == 2
    first, second = read_raw(bus, group_name("raw"), user, 2)
    assert isinstance(first.payload, dict) and isinstance(second.payload, dict)
    assert (first.payload["trade_id"], second.payload["trade_id"]) == ("T-1", "T-2")  # oldest first
    assert second.payload["notes"] == note
    db.close()


class _Refuse:
    """A producer that fails the test if anything is produced."""

    def produce(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("nothing of a refused file may be published")

    def produce_many(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("nothing of a refused file may be published")

    def flush(self, timeout: float = 30.0) -> int:
        raise AssertionError("nothing of a refused file may be published")

    def close(self) -> None:
        pass


def test_nothing_of_a_file_of_another_kind_or_needing_a_mapping_is_published(tmp_path: Path) -> None:
    from pipeline.journal.importer import ImportFileError

    db = Database(tmp_path / "desk.db")
    deposit = b"Date(UTC),Coin,Network,Amount,Address,TXID,Status\n2024-01-01 00:00:00,BTC,BTC,1,bc1q,ab,Completed\n"
    with pytest.raises(ImportFileError) as info:
        import_file(deposit, user_id="u", producer=_Refuse(), db=db)
    assert info.value.kind is not None and "deposit or withdrawal history" in str(info.value)
    unknown = b"Trade Date;Product;Trade Type;Traded Price;Amount\n2020/09/29 17:55:30;LTC/USD;Buy;46,43;0,9\n"
    with pytest.raises(ImportFileError) as mapping:
        import_file(unknown, user_id="u", producer=_Refuse(), db=db)
    assert mapping.value.needs_mapping and mapping.value.guess["price"] == "Traded Price"
    db.close()
