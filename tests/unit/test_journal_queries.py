"""The journal's read models on a real SQLite file and on the tests' PostgreSQL (the ``store``
fixture), with rows written as the journal store would."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from storage import journal
from storage.db import Database
from storage.sql import upsert as sql_upsert

USER = "trader"
HOUR = 3_600_000
T0 = 1_731_700_000_000  # 2024-11-15 19:46:40 UTC


def trade_row(trade_id: str, **over: object) -> dict:
    row = {
        "trade_id": trade_id,
        "user_id": USER,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "kind": "trade",
        "entry_price": 100.0,
        "exit_price": 110.0,
        "quantity": 1.0,
        "entry_time": T0,
        "exit_time": T0 + HOUR,
        "pnl": 10.0,
        "fees": 0.5,
        "stop_loss": None,
        "notes": None,
        "tags": [],
        "setup": None,
        "emotion": None,
        "lot_id": None,
        "fill_ids": [],
        "source": "manual",
        "context": {"entry": {"missing": True}, "exit": {"missing": True}},
        "stored_at": T0,
    }
    row.update(over)
    return row


def upsert(db: Database, *rows: dict) -> None:
    """Upsert by trade_id with raw SQL, JSON columns as text (what the journal store writes)."""

    def write(d) -> None:
        for row in rows:
            values = {k: json.dumps(v) if k in ("tags", "fill_ids", "context") else v for k, v in row.items()}
            d.conn.execute(sql_upsert("journal_trades", list(values), "trade_id"), tuple(values.values()))

    db.write(write)


def fill_row(fill_id: str, symbol: str = "BTCUSDT", user_id: str = USER) -> tuple:
    return (fill_id, 1, user_id, symbol, "BUY", 100.0, 1.0, T0, None, None, None, None, "csv", "binance")


@pytest.fixture
def db(store: Database) -> Database:
    return store


@pytest.fixture
def journal_rows(db: Database) -> Database:
    """Three closed whole trades, one open trade, a lot half closed by two round trips, another user."""
    upsert(
        db,
        trade_row(
            "t1", pnl=100.0, fees=1.0, tags=["breakout", "trend"], setup="breakout", entry_time=T0, exit_time=T0 + HOUR
        ),
        trade_row(
            "t2",
            symbol="ETHUSDT",
            pnl=-50.0,
            fees=2.0,
            tags=["fomo"],
            setup="reversal",
            entry_time=T0 + 2 * HOUR,
            exit_time=T0 + 3 * HOUR,
        ),
        trade_row("t3", pnl=30.0, fees=None, tags=["trend"], entry_time=T0 + 4 * HOUR, exit_time=T0 + 5 * HOUR),
        trade_row(
            "open1",
            symbol="ETHUSDT",
            side="SELL",
            entry_price=2000.0,
            exit_price=None,
            exit_time=None,
            pnl=None,
            quantity=0.5,
            entry_time=T0 + 6 * HOUR,
        ),
        trade_row(
            "lot-a",
            kind="lot",
            entry_price=90.0,
            exit_price=None,
            exit_time=None,
            pnl=None,
            quantity=2.0,
            entry_time=T0 - HOUR,
            lot_id="lot-a",
            fill_ids=["f-a"],
            source="csv",
        ),
        trade_row(
            "rt-1",
            kind="round_trip",
            entry_price=90.0,
            exit_price=95.0,
            quantity=0.5,
            pnl=-80.0,
            entry_time=T0 - HOUR,
            exit_time=T0 + 7 * HOUR,
            lot_id="lot-a",
            source="csv",
        ),
        trade_row(
            "rt-2",
            kind="round_trip",
            entry_price=90.0,
            exit_price=96.0,
            quantity=0.75,
            pnl=20.0,
            entry_time=T0 - HOUR,
            exit_time=T0 + 8 * HOUR,
            lot_id="lot-a",
            source="csv",
        ),
        trade_row("other", user_id="someone-else", pnl=1000.0),
    )
    db.write(
        lambda d: d.conn.executemany(
            "INSERT INTO journal_fills (fill_id, seq, user_id, symbol, side, price, quantity, time, fee, fee_asset, "
            "fee_quote, exchange_id, source, format) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [fill_row("f-a"), fill_row("f-b"), fill_row("f-c", "ETHUSDT"), fill_row("f-x", user_id="someone-else")],
        )
    )
    return db


def test_an_empty_journal(db: Database) -> None:
    frame = journal.trades(db, USER)
    assert frame.empty and list(frame.columns) == journal.TRADE_COLUMNS
    assert journal.closed_trades(db, USER).empty
    assert journal.open_positions(db, USER).empty
    assert list(journal.open_positions(db, USER).columns) == journal.POSITION_COLUMNS
    assert journal.alerts(db, USER) == []
    assert journal.symbols(db, USER) == journal.tags(db, USER) == journal.setups(db, USER) == []
    assert journal.journal_summary(db, USER) == {
        "fills": 0,
        "trades": 0,
        "open_positions": 0,
        "net_pnl": 0.0,
        "fees": 0.0,
        "win_rate": None,
        "profit_factor": None,
        "expectancy": None,
        "max_drawdown": 0.0,
    }


def test_trades_newest_first_with_parsed_columns(journal_rows: Database) -> None:
    frame = journal.trades(journal_rows, USER)
    # Newest by exit time when closed, else entry time.
    assert frame["trade_id"].tolist() == ["rt-2", "rt-1", "open1", "t3", "t2", "t1", "lot-a"]
    row = frame.set_index("trade_id").loc["t1"]
    assert row["tags"] == ["breakout", "trend"]
    assert row["context"] == {"entry": {"missing": True}, "exit": {"missing": True}}
    assert row["entry_time"] == T0 and row["exit_time"] == T0 + HOUR
    assert not row["annotated"]
    assert frame.set_index("trade_id").loc["lot-a", "fill_ids"] == ["f-a"]
    assert pd.isna(frame.set_index("trade_id").loc["open1", "exit_time"])


def test_filters(journal_rows: Database) -> None:
    ids = lambda **f: journal.trades(journal_rows, USER, **f)["trade_id"].tolist()  # noqa: E731 - a one-line query helper
    assert ids(symbol="ETHUSDT") == ["open1", "t2"]
    assert ids(tag="trend") == ["t3", "t1"]
    assert ids(tag="nope") == []
    assert ids(setup="breakout") == ["t1"]
    assert ids(kind="lot") == ["lot-a"]
    assert ids(kind=["lot", "round_trip"]) == ["rt-2", "rt-1", "lot-a"]
    # since <= time < until; a closed trade's time is its exit.
    assert ids(since_ms=T0 + 3 * HOUR, until_ms=T0 + 6 * HOUR) == ["t3", "t2"]
    assert ids(until_ms=T0 + HOUR) == ["lot-a"]
    assert ids(limit=2) == ["rt-2", "rt-1"]
    assert ids(symbol="BTCUSDT", tag="trend", setup="breakout") == ["t1"]


def test_closed_trades_are_whole_trades_with_exit_and_round_trips(journal_rows: Database) -> None:
    closed = journal.closed_trades(journal_rows, USER)
    assert closed["trade_id"].tolist() == ["rt-2", "rt-1", "t3", "t2", "t1"]
    assert journal.closed_trades(journal_rows, USER, kind="lot").empty
    assert journal.closed_trades(journal_rows, USER, kind="round_trip")["trade_id"].tolist() == ["rt-2", "rt-1"]
    assert journal.closed_trades(journal_rows, USER, symbol="ETHUSDT")["trade_id"].tolist() == ["t2"]


def test_lot_open_quantity_after_partial_round_trips(journal_rows: Database) -> None:
    frame = journal.trades(journal_rows, USER).set_index("trade_id")
    assert frame.loc["lot-a", "open_quantity"] == pytest.approx(2.0 - 0.5 - 0.75)
    assert frame.loc["open1", "open_quantity"] == pytest.approx(0.5)
    assert frame.loc[["t1", "t2", "t3", "rt-1", "rt-2"], "open_quantity"].tolist() == [0.0] * 5

    # Closing the rest of the lot (up to float dust) leaves nothing open.
    upsert(
        journal_rows,
        trade_row(
            "rt-3",
            kind="round_trip",
            entry_price=90.0,
            exit_price=99.0,
            quantity=0.75 - 1e-12,
            pnl=6.0,
            entry_time=T0 - HOUR,
            exit_time=T0 + 9 * HOUR,
            lot_id="lot-a",
            source="csv",
        ),
    )
    frame = journal.trades(journal_rows, USER).set_index("trade_id")
    assert frame.loc["lot-a", "open_quantity"] == 0.0
    assert journal.open_positions(journal_rows, USER)["symbol"].tolist() == ["ETHUSDT"]


def test_open_positions(journal_rows: Database) -> None:
    upsert(
        journal_rows,
        trade_row(
            "lot-b",
            kind="lot",
            entry_price=120.0,
            exit_price=None,
            exit_time=None,
            pnl=None,
            quantity=0.25,
            entry_time=T0 + 10 * HOUR,
            lot_id="lot-b",
        ),
    )
    positions = journal.open_positions(journal_rows, USER)
    assert positions[["symbol", "side"]].values.tolist() == [["BTCUSDT", "BUY"], ["ETHUSDT", "SELL"]]
    btc = positions.iloc[0]
    assert btc["open_quantity"] == pytest.approx(1.0)  # 0.75 left of lot-a + 0.25 of lot-b
    assert btc["avg_entry_price"] == pytest.approx((0.75 * 90 + 0.25 * 120) / 1.0)
    assert btc["open_lots"] == 2
    assert btc["opened_at"] == T0 - HOUR and btc["last_entry_at"] == T0 + 10 * HOUR
    eth = positions.iloc[1]
    assert (eth["open_quantity"], eth["avg_entry_price"], eth["open_lots"]) == (0.5, 2000.0, 1)
    assert journal.open_positions(journal_rows, USER, symbol="ETHUSDT")["symbol"].tolist() == ["ETHUSDT"]


def test_annotations_override_and_survive_an_upsert_of_the_trade(journal_rows: Database) -> None:
    journal.annotate(journal_rows, "t1", notes="  Chased it  ", tags=["late", " late", "", "discipline"], setup="")
    row = journal.trades(journal_rows, USER).set_index("trade_id").loc["t1"]
    assert (row["notes"], row["tags"], row["setup"], row["annotated"]) == (
        "Chased it",
        ["late", "discipline"],
        None,
        True,
    )
    assert journal.trades(journal_rows, USER, tag="late")["trade_id"].tolist() == ["t1"]
    assert journal.trades(journal_rows, USER, tag="breakout").empty  # the edit removed it
    assert journal.trades(journal_rows, USER, setup="breakout").empty

    # A replay of the topics upserts the stored trade again: the edit stays.
    upsert(
        journal_rows,
        trade_row(
            "t1", pnl=100.0, tags=["breakout", "trend"], setup="breakout", notes="from the file", stored_at=T0 + 99
        ),
    )
    row = journal.trades(journal_rows, USER).set_index("trade_id").loc["t1"]
    assert (row["notes"], row["tags"], row["setup"]) == ("Chased it", ["late", "discipline"], None)
    assert row["stored_at"] == T0 + 99

    # A second edit replaces the first; a comma-separated string is split.
    journal.annotate(journal_rows, "t1", notes=None, tags="a, b,a", setup="breakout")
    row = journal.trades(journal_rows, USER).set_index("trade_id").loc["t1"]
    assert (row["notes"], row["tags"], row["setup"]) == (None, ["a", "b"], "breakout")
    assert journal.tags(journal_rows, USER) == ["a", "b", "fomo", "trend"]
    assert journal.setups(journal_rows, USER) == ["breakout", "reversal"]
    (count,) = journal_rows.query("SELECT COUNT(*) AS n FROM journal_annotations")
    assert count["n"] == 1


def test_choices_for_the_filters(journal_rows: Database) -> None:
    assert journal.symbols(journal_rows, USER) == ["BTCUSDT", "ETHUSDT"]
    assert journal.tags(journal_rows, USER) == ["breakout", "fomo", "trend"]
    assert journal.setups(journal_rows, USER) == ["breakout", "reversal"]


def test_summary_keys_and_values(journal_rows: Database) -> None:
    summary = journal.journal_summary(journal_rows, USER)
    assert list(summary) == [
        "fills",
        "trades",
        "open_positions",
        "net_pnl",
        "fees",
        "win_rate",
        "profit_factor",
        "expectancy",
        "max_drawdown",
    ]
    # Closed in exit order: t1 +100, t2 -50, t3 +30, rt-1 -80, rt-2 +20 (fees 1 + 2 + 0.5 + 0.5).
    assert summary["fills"] == 3
    assert summary["trades"] == 5
    assert summary["open_positions"] == 2
    assert summary["net_pnl"] == pytest.approx(20.0)
    assert summary["fees"] == pytest.approx(4.0)
    assert summary["win_rate"] == pytest.approx(0.6)
    assert summary["profit_factor"] == pytest.approx(150 / 130)
    assert summary["expectancy"] == pytest.approx(4.0)
    assert summary["max_drawdown"] == pytest.approx(100.0)
    json.dumps(summary, allow_nan=False)

    eth = journal.journal_summary(journal_rows, USER, symbol="ETHUSDT")
    assert (eth["fills"], eth["trades"], eth["open_positions"], eth["net_pnl"]) == (1, 1, 1, -50.0)
    assert eth["profit_factor"] == 0.0 and eth["max_drawdown"] == pytest.approx(50.0)


def test_alerts_newest_first_and_parsed(db: Database) -> None:
    rows = [
        (
            "a1",
            USER,
            "revenge_trading",
            "high",
            T0,
            json.dumps(["t1", "t2"]),
            "Revenge?",
            json.dumps({"loss": 500}),
            T0,
        ),
        ("a2", USER, "overtrading", "medium", T0 + HOUR, json.dumps(["t3"]), "Slow down", "{}", T0),
        ("a3", "someone-else", "overtrading", "low", T0, json.dumps(["x"]), "n/a", "{}", T0),
    ]
    db.write(lambda d: d.conn.executemany("INSERT INTO journal_alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows))
    alerts = journal.alerts(db, USER)
    assert [a["alert_id"] for a in alerts] == ["a2", "a1"]
    assert alerts[1]["trade_ids"] == ["t1", "t2"] and alerts[1]["details"] == {"loss": 500}
    assert alerts[1]["severity"] == "high" and alerts[1]["message"] == "Revenge?"
    assert [a["alert_id"] for a in journal.alerts(db, USER, limit=1)] == ["a2"]
