"""The CSV importer on both buses with a real SQLite ledger: reports, publishing, duplicates, files."""

from __future__ import annotations

import codecs
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.bus.base import Bus
from pipeline.journal import importer, table
from pipeline.journal.import_mappings import find_mapping, list_mappings, save_mapping
from pipeline.journal.importer import (
    ImportFileError,
    RowError,
    check_file,
    import_file,
)
from pipeline.topics import CATALOG, RAW_TRADES, dlq_name
from storage.db import Database

BINANCE_HEADER = "Date(UTC),Pair,Side,Price,Executed,Amount,Fee"
SOL_BUY = "2024-11-16 14:35:02,SOLBUSD,BUY,110.03,0.1800000000SOL,19.8054BUSD,0.00018BNB"
BAD = "2024-11-16 15:01:44,SOLBUSD,HOLD,0,0.1000000000SOL,11.003BUSD,0.0001BNB"
BTC_SELL = '2024-11-17 09:12:00,BTCUSDT,SELL,"91,234.5",0.0100000000BTC,912.345USDT,0.912345USDT'
GENERIC_HEADER = "trade_id,symbol,side,entry_price,exit_price,quantity,entry_time,exit_time,pnl,notes"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "desk.db")
    yield database
    database.close()


def new_user() -> str:
    return f"importer-test-{uuid.uuid4().hex[:12]}"


def csv_bytes(*lines: str, encoding: str = "utf-8") -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


def consume_user(
    bus: Bus, group: str, topic: str, user_id: str, expected: int, timeout: float = 90.0
) -> list[dict[str, Any]]:
    """Read ``topic`` from the start until caught up; return this user's messages, decoded."""
    consumer = bus.consumer(group, [topic])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for record in consumer.poll(500, 1.0):
                if record.key == user_id.encode():
                    found.append(orjson.loads(record.value or b""))
            if len(found) >= expected and consumer.assignment() and consumer.lag() == 0:
                return found
        raise AssertionError(f"{topic}: {len(found)} messages of {user_id}, expected {expected}")
    finally:
        consumer.close()


def store_fills(db: Database, user_id: str, raw_ids: list[str]) -> None:
    """Record fills in the ledger as the normalizer would (filling whatever columns it requires)."""

    def insert(d: Any) -> None:
        columns = [c for c in d.conn.execute("PRAGMA table_info(journal_fills)").fetchall() if c[3] or c[5]]
        filler = {"INTEGER": 1, "REAL": 1.0}
        for i, fid in enumerate(raw_ids):
            given = {"fill_id": fid, "user_id": user_id, "seq": i}
            values = [given.get(c[1], filler.get(c[2].upper(), "x")) for c in columns]
            d.conn.execute(
                f"INSERT INTO journal_fills ({', '.join(c[1] for c in columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                values,
            )

    db.write(insert)


def test_import_publishes_new_rows_dead_letters_bad_ones_and_skips_them_the_second_time(
    bus: Bus, db: Database, group_name: Callable[..., str]
) -> None:
    bus.create_topics(CATALOG.values())
    user = new_user()
    data = csv_bytes(BINANCE_HEADER, SOL_BUY, SOL_BUY, "", BAD, BTC_SELL)

    dry = check_file(data, user_id=user, db=db)
    report = import_file(data, user_id=user, producer=bus.producer(), db=db)

    expected = {
        "format": "binance-spot",
        "rows": 4,
        "accepted": 3,
        "duplicates": 0,
        "rejected": [
            {"row": 5, "column": "Side", "value": "HOLD", "reason": "one of BUY, SELL"},
            {"row": 5, "column": "Price", "value": "0", "reason": "> 0"},
        ],
    }
    assert dry.to_json() == expected and dry.published == 0
    assert report.to_json() == expected and report.published == 3
    assert report.rejected[0] == RowError(5, "Side", "HOLD", "one of BUY, SELL")
    assert (report.encoding, report.warnings) == ("utf-8", [])

    raws = consume_user(bus, group_name("raw"), RAW_TRADES, user, 3)
    assert sorted(r["row"] for r in raws) == [2, 3, 6]
    by_row = {r["row"]: r for r in raws}
    header = BINANCE_HEADER.split(",")
    assert by_row[2]["payload"] == dict(zip(header, SOL_BUY.split(",")))
    assert by_row[3]["payload"] == by_row[2]["payload"]
    assert by_row[6]["payload"]["Price"] == "91,234.5"
    assert len({r["raw_id"] for r in raws}) == 3 and all(r["raw_id"].startswith("f-") for r in raws)
    assert {(r["format"], r["source"], r["mapping"], r["user_id"]) for r in raws} == {
        ("binance-spot", "csv", None, user)
    }

    dead = consume_user(bus, group_name("dlq"), dlq_name(RAW_TRADES), user, 1)
    assert len(dead) == 1
    assert (dead[0]["source_topic"], dead[0]["source_offset"], dead[0]["stage"]) == (RAW_TRADES, 5, "import")
    assert orjson.loads(dead[0]["value"]) == dict(zip(header, BAD.split(",")))
    assert [v["field"] for v in dead[0]["violations"]] == ["Side", "Price"]

    store_fills(db, user, [r["raw_id"] for r in raws])
    again = import_file(data, user_id=user, producer=bus.producer(), db=db)
    assert (again.rows, again.accepted, again.duplicates, again.published) == (4, 0, 3, 0)
    assert len(consume_user(bus, group_name("raw-again"), RAW_TRADES, user, 3)) == 3


def test_text_encodings_and_delimiters_import(bus: Bus, db: Database, group_name: Callable[..., str]) -> None:
    bus.create_topics(CATALOG.values())
    user = new_user()
    note = "Café crème – à revoir, trop tôt"
    latin = csv_bytes(
        GENERIC_HEADER,
        f'T-1,ETHUSDT,BUY,3100.5,3180.25,2,2024-11-16T14:35:02Z,2024-11-16 18:00:00,,"{note}"',
        encoding="cp1252",
    )
    utf16 = csv_bytes(BINANCE_HEADER, SOL_BUY, encoding="utf-16")
    semicolons = csv_bytes(
        BINANCE_HEADER.replace(",", ";"),
        "2024-11-17 09:12:00;BTCUSDT;SELL;91,234.5;0.0100000000BTC;912.345USDT;0.912345USDT",
    )

    first = import_file(latin, user_id=user, producer=bus.producer(), db=db)
    assert (first.format, first.accepted, first.encoding) == ("generic", 1, "cp1252")
    assert any("cp1252" in w for w in first.warnings)
    second = import_file(utf16, user_id=user, producer=bus.producer(), db=db)
    assert (second.format, second.accepted, second.encoding, second.warnings) == ("binance-spot", 1, "utf-16", [])
    third = import_file(semicolons, user_id=user, producer=bus.producer(), db=db, source="upload")
    assert (third.format, third.accepted, third.rejected) == ("binance-spot", 1, [])

    payloads = {
        r["source"] + ":" + r["format"]: r["payload"] for r in consume_user(bus, group_name("raw"), RAW_TRADES, user, 3)
    }
    assert payloads["csv:generic"]["notes"] == note
    assert payloads["csv:binance-spot"]["Executed"] == "0.1800000000SOL"
    assert payloads["upload:binance-spot"]["Price"] == "91,234.5"


def test_utf8_bom_is_not_part_of_the_first_column(db: Database) -> None:
    report = check_file(codecs.BOM_UTF8 + csv_bytes(BINANCE_HEADER, SOL_BUY), user_id=new_user(), db=db)
    assert (report.format, report.accepted, report.encoding) == ("binance-spot", 1, "utf-8")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"\r\n \r\n", "empty"),
        (csv_bytes(BINANCE_HEADER), "no rows"),
        (csv_bytes(BINANCE_HEADER, "", ","), "no rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "PNG"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "ZIP"),
        (b"Date,Pair\x00,Side\n" + bytes(100), "not a CSV text file"),
    ],
)
def test_unreadable_files_are_refused_whole(db: Database, data: bytes, words: str) -> None:
    class Refuse:
        def produce(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("nothing may be published for an unreadable file")

        def produce_many(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("nothing may be published for an unreadable file")

        def flush(self, timeout: float = 30.0) -> int:
            raise AssertionError("nothing may be published for an unreadable file")

        def close(self) -> None:
            pass

    with pytest.raises(ImportFileError, match=words) as info:
        import_file(data, user_id=new_user(), producer=Refuse(), db=db)
    assert info.value.needs_mapping is False


def test_a_file_over_the_limit_names_its_size_and_the_limit(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "MAX_UPLOAD_BYTES", 100)
    data = csv_bytes(BINANCE_HEADER, SOL_BUY, SOL_BUY)
    with pytest.raises(ImportFileError) as info:
        check_file(data, user_id=new_user(), db=db)
    assert f"({len(data)} bytes)" in str(info.value) and "(100 bytes)" in str(info.value)


def test_an_unknown_header_asks_for_a_mapping_which_can_be_saved_and_found(db: Database) -> None:
    data = csv_bytes("Ticker;Dir;Fill Px;Qty;When;Comment", "XRP-USDT;ask;0.5123;1,000;16/11/2024 14:35;=1+1")
    with pytest.raises(ImportFileError) as info:
        check_file(data, user_id=new_user(), db=db)
    assert info.value.needs_mapping and info.value.header == ["Ticker", "Dir", "Fill Px", "Qty", "When", "Comment"]
    assert "Ticker, Dir, Fill Px" in str(info.value) and "mapping" in str(info.value)

    mapping = {
        "kind": "fill",
        "symbol": "Ticker",
        "side": "Dir",
        "price": "Fill Px",
        "quantity": "Qty",
        "time": "When",
        "time_format": "%d/%m/%Y %H:%M",
        "side_sell": "ask",
    }
    report = check_file(data, user_id=new_user(), db=db, mapping=mapping)
    assert (report.format, report.accepted, report.rejected) == ("custom", 1, [])
    with pytest.raises(ImportFileError) as bad_mapping:
        check_file(data, user_id=new_user(), db=db, mapping={"kind": "fill", "symbol": "Ticker"})
    assert bad_mapping.value.needs_mapping and "price" in str(bad_mapping.value)

    save_mapping(db, "my broker", info.value.header, {**mapping, "side_sell": "a"})
    save_mapping(db, "my broker", info.value.header, mapping)  # replaces
    save_mapping(db, "other", ["a", "b"], {"kind": "trade"})
    assert [m["name"] for m in list_mappings(db)] == ["my broker", "other"]
    found = find_mapping(db, [" TICKER", "dir", "Fill  Px", "qty", "when", "comment "])
    assert found is not None and found["mapping"] == mapping and found["header"] == info.value.header
    assert find_mapping(db, ["Ticker", "Dir"]) is None


def test_duplicates_by_exchange_id_and_by_trade_id(db: Database) -> None:
    user = new_user()
    bybit = (
        "Spot Pairs,Order Type,Direction,Filled Value,Filled Price,Filled Quantity,Fees,Transaction ID,"
        "Order No.,Timestamp (UTC)"
    )
    row = (
        "BTCUSDT,MARKET,BUY,4570.12345678,91402.46913560,0.05000000,0.00005,2280000000123,1808200000987,"
        "14:35 2024-11-16"
    )
    report = check_file(csv_bytes(bybit, row, row, row.replace("2280000000123", "2280000000124")), user_id=user, db=db)
    assert (report.rows, report.accepted, report.duplicates) == (3, 2, 1)

    trades = csv_bytes(
        GENERIC_HEADER, "T-1,ETHUSDT,BUY,3100,3180,2,1731767702,1731780000,,", ",ETHUSDT,SELL,3100,,1,1731767702,,,"
    )
    first = check_file(trades, user_id=user, db=db)
    assert (first.accepted, first.duplicates) == (2, 0)
    from pipeline.journal.fills import TradeEntry, entry_fingerprint

    trade_id = entry_fingerprint(user, TradeEntry("ETHUSDT", "BUY", 3100.0, 2.0, 1, external_id="T-1"), 0)
    db.write(
        lambda d: d.conn.execute(
            "INSERT INTO journal_ledger_records (trade_id, user_id, symbol, fill_id, record) "
            "VALUES (?, ?, 'ETHUSDT', ?, '{}')",
            (trade_id, user, trade_id),
        )
    )
    second = check_file(trades, user_id=user, db=db)
    assert (second.accepted, second.duplicates) == (1, 1)


def test_rejections_are_capped_but_counted_and_rows_add_up(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "MAX_REJECTED", 3)
    lines = [BINANCE_HEADER, SOL_BUY, *[BAD] * 5, BTC_SELL, SOL_BUY + ",extra"]
    report = check_file(csv_bytes(*lines), user_id=new_user(), db=db)
    assert (report.rows, report.accepted, report.duplicates, report.rejected_rows) == (8, 2, 0, 6)
    assert len(report.rejected) == 3 and [e.row for e in report.rejected] == [3, 3, 4]
    assert any("6 rows were rejected" in w for w in report.warnings)


def test_progress_reports_bytes_in_about_one_percent_steps(db: Database) -> None:
    data = csv_bytes(
        BINANCE_HEADER, *[SOL_BUY.replace("14:35:02", f"14:{i // 60 % 60:02d}:{i % 60:02d}") for i in range(20_000)]
    )
    calls: list[tuple[int, int]] = []
    report = check_file(data, user_id=new_user(), db=db, progress=lambda done, total: calls.append((done, total)))
    assert report.rows == 20_000
    assert 5 <= len(calls) <= 102
    assert calls[-1] == (len(data), len(data))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_every_rejection_names_a_column_even_for_rows_that_are_not_rows(db: Database) -> None:
    long_cell = '"' + "x" * 200_000 + '"'  # past the CSV reader's field limit
    data = csv_bytes(BINANCE_HEADER, SOL_BUY + ",extra,cells", long_cell + ",a,b,c,d,e,f", SOL_BUY)
    report = check_file(data, user_id=new_user(), db=db)
    assert report.accepted == 1 and len(report.rejected) == 2
    assert all(e.column for e in report.rejected), report.rejected
    assert {e.column for e in report.rejected} == {"(cell 8)", "(whole row)"}
