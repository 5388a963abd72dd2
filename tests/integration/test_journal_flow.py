"""The journal end to end on both buses: a CSV export through the importer, normalizer, enricher,
behaviour and journal store into SQLite; re-imports, overlapping and older exports, bad rows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline.bus.base import Bus
from pipeline.journal.behaviour_settings import BehaviourRules
from pipeline.journal.importer import import_file
from pipeline.messages import MarketData, Message, encode
from pipeline.runner import Stage, StageRunner
from pipeline.stages.behaviour import BehaviourStage
from pipeline.stages.enricher import Enricher
from pipeline.stages.journal_store import JournalStore
from pipeline.stages.market_store import MarketStore
from pipeline.stages.normalizer import Normalizer
from pipeline.topics import CATALOG
from storage.db import Database
from storage.journal import ImportTracker

pytestmark = pytest.mark.timeout(240)

BINANCE = "\ufeffDate(UTC),Pair,Side,Price,Executed,Amount,Fee\n"


def binance(*rows: str) -> bytes:
    return (BINANCE + "\n".join(rows) + "\n").encode()


class Journal:
    """The four journal stages on one bus and one database, with group ids no other test uses."""

    def __init__(self, bus: Bus, db: Database) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.bus, self.db = bus, db
        self.user = f"u-{suffix}"
        stages: list[Stage] = []
        for cls, args in (
            (Normalizer, (db,)),
            (Enricher, (db,)),
            (BehaviourStage, (db, BehaviourRules())),
            (JournalStore, (db,)),
        ):
            # From the end of each topic: a shared broker holds other tests' and runs' messages.
            stages.append(type(cls.__name__, (cls,), {"name": f"{cls.name}-{suffix}", "offset_reset": "latest"})(*args))
        self.runners = [StageRunner(s, bus, poll_timeout=0.1) for s in stages]
        self.producer = bus.producer()

    def start(self) -> None:
        """Start the stages and return once each has joined its group and found its topics' end."""
        for r in self.runners:
            r.start()
        groups = {r.stage.group_id for r in self.runners}
        deadline = time.monotonic() + 60
        while {g.group_id for g in self.bus.describe_groups() if g.group_id in groups and g.members} != groups:
            assert time.monotonic() < deadline, "the journal stages did not join their groups"
            time.sleep(0.2)
        time.sleep(1.0)

    def stop(self) -> None:
        for r in self.runners:
            r.stop()

    def import_(self, data: bytes, keep_ids: bool = False):
        return import_file(data, user_id=self.user, producer=self.producer, db=self.db, keep_ids=keep_ids)

    def follow(self, tracker: ImportTracker, timeout: float = 60.0) -> ImportTracker:
        """Refresh ``tracker`` until it has caught up (or the time is up)."""
        deadline = time.monotonic() + timeout
        while True:
            tracker.refresh(self.db)
            if tracker.caught_up or time.monotonic() > deadline:
                return tracker
            time.sleep(0.2)

    def rows(self, expected: int, kind: str | None = None, timeout: float = 60.0) -> list[dict]:
        sql = (
            "SELECT * FROM journal_trades WHERE user_id=?"
            + (" AND kind=?" if kind else "")
            + " ORDER BY entry_time, trade_id"
        )
        params = (self.user, kind) if kind else (self.user,)
        deadline = time.monotonic() + timeout
        while True:
            rows = self.db.query(sql, params)
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    def settle(self, seconds: float = 1.5) -> None:
        """Wait until every stage has consumed what there is, then a little more."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if all(r.health.snapshot().lag == 0 for r in self.runners):
                break
        time.sleep(seconds)


@pytest.fixture
def journal(bus: Bus, tmp_path: Path) -> Iterator[Journal]:
    bus.create_topics(CATALOG.values())
    db = Database(tmp_path / "desk.db")
    j = Journal(bus, db)
    j.start()
    yield j
    j.stop()
    db.close()


def test_binance_export_becomes_fifo_round_trips_once_however_often_it_is_imported(journal: Journal) -> None:
    data = binance(
        "2024-11-16 14:35:02,SOLUSDT,BUY,200,1.0SOL,200USDT,0.2USDT",
        "2024-11-16 14:40:00,SOLUSDT,BUY,210,1.0SOL,210USDT,0.21USDT",
        "2024-11-16 15:00:00,SOL/USDT,SELL,220,1.5SOL,330USDT,0.33USDT",
        "2024-11-16 15:10:00,SOLUSDT,SELL,0,1.0SOL,0USDT,0USDT",
    )
    report = journal.import_(data)
    assert (report.rows, report.accepted, report.duplicates) == (4, 3, 0)
    assert [(e.row, e.column) for e in report.rejected] == [(5, "Price")]
    trips = journal.rows(2, kind="round_trip")
    assert [(t["entry_price"], t["quantity"]) for t in trips] == [(200.0, 1.0), (210.0, 0.5)]
    # P&L net of the matched share of both fills' fees, in USDT
    assert trips[0]["pnl"] == pytest.approx(20.0 - 0.2 - 0.22)
    assert trips[1]["pnl"] == pytest.approx(5.0 - 0.105 - 0.11)
    assert orjson.loads(trips[0]["context"])["entry"]["missing"] is True  # no SOLUSDT market data here
    lots = journal.rows(2, kind="lot")
    assert len(lots) == 2

    again = journal.import_(data)
    assert (again.accepted, again.duplicates) == (0, 3)
    journal.settle()
    assert len(journal.rows(0)) == 4  # 2 lots + 2 round trips, nothing twice
    fills = journal.db.query("SELECT count(*) AS n FROM journal_fills WHERE user_id=?", (journal.user,))
    assert fills[0]["n"] == 3


def test_identical_fills_in_one_file_are_both_kept_and_an_older_export_rebuilds_the_fifo(journal: Journal) -> None:
    newer = binance(
        "2024-11-16 10:00:00,BTCUSDT,SELL,91000,0.01BTC,910USDT,0.91USDT",
        "2024-11-16 10:00:00,BTCUSDT,SELL,91000,0.01BTC,910USDT,0.91USDT",
    )
    assert journal.import_(newer).accepted == 2
    shorts = journal.rows(2, kind="lot")
    assert [r["side"] for r in shorts] == ["SELL", "SELL"]
    # An older export arrives: a buy before the sells turns one short into a closed long.
    older = binance(
        "2024-11-15 09:00:00,BTCUSDT,BUY,90000,0.01BTC,900USDT,0.9USDT",
        "2024-11-16 10:00:00,BTCUSDT,SELL,91000,0.01BTC,910USDT,0.91USDT",
    )
    report = journal.import_(older)
    assert (report.accepted, report.duplicates) == (1, 1)
    trips = journal.rows(1, kind="round_trip")
    assert len(trips) == 1 and trips[0]["entry_price"] == 90000.0 and trips[0]["exit_price"] == 91000.0
    journal.settle()
    lots = journal.db.query(
        "SELECT side, quantity FROM journal_trades WHERE user_id=? AND kind='lot' ORDER BY side", (journal.user,)
    )
    # the buy lot (closed by the first sell) and the second sell's short lot; the first short is retracted
    assert [(r["side"], r["quantity"]) for r in lots] == [("BUY", 0.01), ("SELL", 0.01)]


def test_market_context_comes_from_stored_bars(journal: Journal) -> None:
    store = MarketStore(journal.db)
    t0 = int(time.time() * 1000) // 60_000 * 60_000 - 90 * 60_000
    ticks: list[Message] = [
        MarketData(
            symbol="ETHUSDT",
            timestamp=t0 + i * 60_000,
            price=3000.0 + i,
            open=2900.0,
            high=3200.0,
            low=2800.0,
            volume=1e6,
            price_change_pct=1.0,
            tick_volume=1.0,
        )
        for i in range(80)
    ]
    store.process_batch(ticks)
    entry = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((t0 + 70 * 60_000 + 5_000) / 1000))
    journal.import_(binance(f"{entry},ETHUSDT,BUY,3070,1ETH,3070USDT,0.001ETH"))
    (lot,) = journal.rows(1, kind="lot")
    context = orjson.loads(lot["context"])["entry"]
    assert context["price"] == 3070.0 and context["trend"] == "up"
    assert context["volatility_pct"] > 0
    assert lot["fees"] == pytest.approx(0.001 * 3070)  # fee in the base asset, converted at the fill price


def test_a_loss_then_a_bigger_quick_entry_on_the_same_symbol_raises_a_revenge_alert(journal: Journal) -> None:
    data = binance(
        "2024-11-16 09:00:00,SOLUSDT,BUY,200,10SOL,2000USDT,0USDT",
        "2024-11-16 09:30:00,SOLUSDT,SELL,140,10SOL,1400USDT,0USDT",
        "2024-11-16 09:36:00,SOLUSDT,BUY,141,20SOL,2820USDT,0USDT",
    )
    journal.import_(data)
    deadline = time.monotonic() + 60
    alerts: list[dict] = []
    while time.monotonic() < deadline and not alerts:
        alerts = journal.db.query(
            "SELECT * FROM journal_alerts WHERE user_id=? AND alert_type='revenge_trading'", (journal.user,)
        )
        time.sleep(0.2)
    assert alerts, journal.db.query("SELECT * FROM journal_alerts WHERE user_id=?", (journal.user,))
    trade_ids = orjson.loads(alerts[0]["trade_ids"])
    rows = {r["trade_id"]: r for r in journal.rows(3)}
    kinds = sorted(rows[i]["kind"] for i in trade_ids if i in rows)
    assert "round_trip" in kinds and "lot" in kinds  # names the loss and the revenge entry


def test_an_older_export_extending_a_loss_streak_leaves_one_streak_alert(journal: Journal) -> None:
    def losing_trip(hour: int) -> tuple[str, str]:  # a buy at 100, sold at 90 an hour... later
        return (
            f"2024-11-16 {hour:02d}:00:00,ETHUSDT,BUY,100,1ETH,100USDT,0USDT",
            f"2024-11-16 {hour:02d}:30:00,ETHUSDT,SELL,90,1ETH,90USDT,0USDT",
        )

    def streak_alerts(expected_trips: int) -> list[dict]:
        deadline = time.monotonic() + 60
        while True:
            alerts = journal.db.query(
                "SELECT * FROM journal_alerts WHERE user_id=? AND alert_type='loss_streak'", (journal.user,)
            )
            longest = max((len(orjson.loads(a["trade_ids"])) for a in alerts), default=0)
            if longest >= expected_trips or time.monotonic() > deadline:
                journal.settle()
                return journal.db.query(
                    "SELECT * FROM journal_alerts WHERE user_id=? AND alert_type='loss_streak'", (journal.user,)
                )
            time.sleep(0.2)

    journal.import_(binance(*losing_trip(12), *losing_trip(13), *losing_trip(14)))
    [first] = streak_alerts(3)
    # An older export: a loss at 11:00 comes before the streak (the FIFO is rebuilt, every record sent again).
    journal.import_(binance(*losing_trip(11)))
    [alert] = streak_alerts(4)
    assert alert["alert_id"] != first["alert_id"] and len(orjson.loads(alert["trade_ids"])) == 4


def test_producing_a_raw_trade_twice_stores_it_once(journal: Journal) -> None:
    from pipeline.messages import RawTrade
    from pipeline.topics import RAW_TRADES

    raw = RawTrade(
        raw_id="t-" + uuid.uuid4().hex,
        user_id=journal.user,
        source="api",
        format="manual",
        received_at=int(time.time() * 1000),
        payload={
            "symbol": "xrp/usdt",
            "side": "buy",
            "entry_price": 0.5,
            "quantity": 100,
            "entry_time": "2024-11-16T10:00:00Z",
            "exit_price": 0.55,
            "exit_time": "2024-11-16T11:00:00Z",
            "notes": '=HYPERLINK("x")',
        },
    )
    for _ in range(2):
        journal.producer.produce(RAW_TRADES, encode(raw), key=journal.user.encode())
    assert journal.producer.flush(10) == 0
    journal.settle()
    rows = journal.rows(1)
    assert len(rows) == 1
    assert rows[0]["symbol"] == "XRPUSDT" and rows[0]["pnl"] == pytest.approx(5.0)
    assert rows[0]["notes"] == '=HYPERLINK("x")'  # formula-like text kept as text


def test_an_import_is_followed_into_the_journal_as_fills_and_the_round_trips_they_closed(journal: Journal) -> None:
    # An earlier import left one lot open; this export (newest first, as Binance writes it) closes it
    # with its oldest sell, then holds 40 buy-and-sell pairs of its own: 81 fills, 41 round trips.
    first = journal.import_(binance("2024-11-14 08:00:00,ETHUSDT,BUY,3000,1ETH,3000USDT,0USDT"), keep_ids=True)
    assert first.unit == "fill" and len(first.published_ids) == 1
    rows = ["2024-11-15 08:00:00,ETHUSDT,SELL,3100,1ETH,3100USDT,0USDT"]
    for i in range(40):
        stamp = f"2024-11-16 {10 + i // 20:02d}:{i % 20 * 2:02d}"
        rows += [
            f"{stamp}:00,SOLUSDT,BUY,{200 + i},1SOL,{200 + i}USDT,0USDT",
            f"{stamp}:30,SOLUSDT,SELL,{201 + i},1SOL,{201 + i}USDT,0USDT",
        ]
    report = journal.import_(binance(*reversed(rows)), keep_ids=True)
    assert (report.unit, report.accepted, len(report.published_ids)) == ("fill", 81, 81)

    tracker = journal.follow(ImportTracker(report.published_ids))
    assert tracker.caught_up, vars(tracker)
    assert (tracker.fills, tracker.fills_in_ledger, tracker.round_trips, tracker.round_trips_in_journal) == (
        81,
        81,
        41,
        41,
    )
    assert len(journal.rows(41, kind="round_trip")) == 41  # what the journal holds, counted apart
    opened = journal.follow(ImportTracker(first.published_ids))
    assert (opened.caught_up, opened.fills_in_ledger, opened.round_trips) == (True, 1, 0)  # it closed nothing

    trades = journal.import_(
        b"trade_id,user_id,symbol,side,entry_price,exit_price,quantity,entry_time,exit_time,"
        b"pnl,notes,source\n"
        b"x1,,XRPUSDT,BUY,0.5,0.55,100,2024-11-16T10:00:00Z,2024-11-16T11:00:00Z,,,\n"
        b"x2,,XRPUSDT,SELL,0.6,0.5,100,2024-11-16T12:00:00Z,2024-11-16T13:00:00Z,,,\n",
        keep_ids=True,
    )
    assert trades.unit == "trade"
    whole = journal.follow(ImportTracker(trades.published_ids))
    assert (whole.caught_up, whole.trades, whole.trades_in_journal, whole.fills) == (True, 2, 2, 0)

    never = ImportTracker(["f-not-published"])
    never.refresh(journal.db)
    assert (never.caught_up, never.fills_in_ledger, never.round_trips) == (False, 0, None)
