"""1 % poison of every kind the contracts know, among good traffic, through the journal's four stages
on both buses: every good trade is stored, every bad message is dead-lettered exactly once by each
stage that reads it (with its reason), and nothing stops."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from bench.bus import BenchBus
from pipeline.bus.base import Bus, read_to_end
from pipeline.topics import CATALOG, ENRICHED_TRADES, NORMALIZED_TRADES, RAW_TRADES, dlq_name
from storage.db import Database
from tests.conftest import _Names
from tests.integration.test_journal_flow import Journal

pytestmark = pytest.mark.timeout(240)

GOOD = 1200
NOW = int(time.time() * 1000)


def good_raw(user: str, i: int) -> bytes:
    payload = {
        "symbol": ["BTCUSDT", "ETHUSDT", "AAPL"][i % 3],
        "side": "BUY" if i % 2 else "SELL",
        "entry_price": 100.0 + i,
        "exit_price": 101.0 + i,
        "quantity": 1.5,
        "entry_time": NOW - 86_400_000 + i * 1000,
        "exit_time": NOW - 86_400_000 + i * 1000 + 500,
        "notes": f"trade {i}",
    }
    raw = {
        "raw_id": f"t-{user}-{i}",
        "user_id": user,
        "source": "api",
        "format": "manual",
        "received_at": NOW,
        "payload": payload,
    }
    return orjson.dumps(raw)


def raw_poisons(user: str) -> list[tuple[str, bytes]]:
    """(kind, bytes) on raw-trades: every way a raw trade can break its contract or its rules."""
    base = orjson.loads(good_raw(user, 0))

    def variant(**over: object) -> bytes:
        return orjson.dumps({**base, "raw_id": f"bad-{uuid.uuid4().hex[:8]}", **over})

    def payload(**over: object) -> bytes:
        return variant(payload={**base["payload"], **over})

    return [
        ("not JSON", b"{not json"),
        ("empty", b""),
        ("a JSON list", b"[1, 2, 3]"),
        ("a JSON string", b'"trade"'),
        ("missing raw_id", orjson.dumps({k: v for k, v in base.items() if k != "raw_id"})),
        ("wrong type", variant(received_at="yesterday")),
        ("unknown format enum", variant(format="nope")),
        ("payload not an object", variant(payload="BTCUSDT BUY 1")),
        ("unknown side enum", payload(side="HOLD")),
        ("NaN literal", good_raw(user, 1).replace(b'"quantity":1.5', b'"quantity":NaN')),
        ("overflowing value", payload(entry_price=1e308, quantity=10)),
        ("symbol that is a date", payload(symbol="2024-03-01")),
        ("a time in 1970", payload(entry_time=1000, exit_time=2000)),
        ("custom without mapping", variant(format="custom")),
    ]


def trade_poisons(user: str) -> list[tuple[str, bytes]]:
    """(kind, bytes) for normalized-trades and enriched-trades."""
    trade = {
        "trade_id": f"x-{uuid.uuid4().hex[:8]}",
        "user_id": user,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "entry_price": 1.0,
        "quantity": 1.0,
        "entry_time": NOW - 1000,
        "source": "api",
    }
    return [
        ("unknown kind enum", orjson.dumps({**trade, "kind": "weird"})),
        ("unknown side enum", orjson.dumps({**trade, "side": "HOLD"})),
        ("exit before entry", orjson.dumps({**trade, "exit_price": 2.0, "exit_time": 1})),
        ("negative quantity", orjson.dumps({**trade, "quantity": -1})),
        ("Infinity literal", orjson.dumps(trade).replace(b'"entry_price":1.0', b'"entry_price":Infinity')),
    ]


def letters(bus: Bus, topic: str, user: str, stage: str) -> list[dict]:
    out = []
    for r in read_to_end(bus, dlq_name(topic), f"poison-reader-{uuid.uuid4().hex[:6]}"):
        letter = orjson.loads(r.value or b"{}")
        if letter.get("source_key") == user and letter.get("stage") == stage:
            out.append(letter)
    return out


def test_poison_of_every_kind_is_dead_lettered_once_and_the_good_is_all_stored(
    bus: Bus, tmp_path: Path, names: _Names
) -> None:
    if bus.name == "kafka":
        # The test broker is shared: the poison goes to topics of this run's own, so no other test
        # that reads the journal's topics from their start meets it. The ``bus`` fixture deletes
        # them (and the run's groups) once every client is closed, as it does a contract test's.
        own = BenchBus(bus, uuid.uuid4().hex[:8])
        own.suffix = f".poison{own.suffix.removeprefix('.bench')}"  # not a benchmark's leftover
        bus = own
    bus.create_topics(CATALOG.values())
    if isinstance(bus, BenchBus):
        names.topics.extend(bus.physical(t) for t in CATALOG)  # the dead-letter topics among them
    db = Database(tmp_path / "desk.db")
    journal = Journal(bus, db)
    user = journal.user
    key = user.encode()
    raw_bad, trade_bad = raw_poisons(user), trade_poisons(user)
    journal.start()
    try:
        producer = bus.producer()
        bad_at = {i * (GOOD // len(raw_bad)) for i in range(len(raw_bad))}  # spread through the traffic
        poisons = iter(raw_bad)
        for i in range(GOOD):
            if i in bad_at:
                producer.produce(RAW_TRADES, next(poisons)[1], key=key)
            producer.produce(RAW_TRADES, good_raw(user, i), key=key)
        for _, value in trade_bad:
            producer.produce(NORMALIZED_TRADES, value, key=key)
            producer.produce(ENRICHED_TRADES, value, key=key)
        assert producer.flush(60) == 0

        def stored() -> int:
            return int(db.query("SELECT count(*) AS n FROM journal_trades WHERE user_id=?", (user,))[0]["n"])

        deadline = time.monotonic() + 150
        while stored() < GOOD and time.monotonic() < deadline:
            time.sleep(0.3)
        assert stored() == GOOD
        stages = {r.stage.name.split("-")[0]: r.stage.name for r in journal.runners}
        expected = {
            (RAW_TRADES, stages["normalizer"]): len(raw_bad),
            (NORMALIZED_TRADES, stages["enricher"]): len(trade_bad),
            (ENRICHED_TRADES, stages["behaviour"]): len(trade_bad),
            (ENRICHED_TRADES, stages["journal"]): len(trade_bad),
        }
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = {(t, s): letters(bus, t, user, s) for t, s in expected}
            if all(len(v) >= expected[k] for k, v in found.items()):
                break
            time.sleep(0.5)
        assert all(r.health.snapshot().running for r in journal.runners)
    finally:
        journal.stop()
        db.close()
        if isinstance(bus, BenchBus):
            names.groups.extend(sorted(bus._groups))
    for (topic, stage), got in found.items():
        offsets = [d["source_offset"] for d in got]
        assert len(offsets) == len(set(offsets)) == expected[(topic, stage)], (topic, stage, got)
        assert all(d["reason"] and d["violations"] for d in got)
    reasons = {d["reason"] for d in found[(RAW_TRADES, stages["normalizer"])]}
    assert any("format" in r and "one of" in r for r in reasons)  # the unknown enum, by name
    assert any("symbol" in r for r in reasons) and any("valid JSON" in r for r in reasons)
