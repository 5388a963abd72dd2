"""The excursions worker's passes on a real store: every closed trade measured once, then only what
changed (a new setup, bars that arrived), trades without bars stored as such, and bars fetched from a
local server that speaks Binance's klines format when a symbol has none."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.jobs.excursions import refresh
from pipeline.journal.excursions import RiskDefaults
from storage import excursions, journal, market
from storage.db import Database
from tests.fakes.klines import FakeBinanceKlines
from tests.unit.test_excursions import BARS, T0, M, journal_row

RISK = RiskDefaults(default_pct=1.0, per_setup=(("scalp", 0.5),))


@pytest.fixture
def db(tmp_path: Path):
    store = Database(tmp_path / "desk.db")
    rows = [
        journal_row("long"),
        journal_row("bare", stop_loss=None),
        journal_row("sol", symbol="SOLUSDT"),
        journal_row("open", exit_price=None, exit_time=None, pnl=None),  # not closed: never measured
    ]

    def write(d) -> None:
        for row in rows:
            d.conn.execute(
                f"INSERT INTO journal_trades ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        market.add_bars(d.conn, "BTCUSDT", [(T0 + m * M, o, h, lo, c, 1.0) for m, o, h, lo, c in BARS])

    store.write(write)
    yield store
    store.close()


def stored(db: Database) -> dict[str, dict]:
    return excursions.for_user(db, "trader").set_index("trade_id").to_dict("index")


def test_a_pass_measures_every_closed_trade_then_only_what_changed(db: Database) -> None:
    first = refresh(db, RISK)
    assert (first.closed, first.computed, first.without_bars) == (3, 3, 1)
    rows = stored(db)
    assert set(rows) == {"long", "bare", "sol"}
    long = rows["long"]
    assert (long["status"], long["mfe"], long["mae"], long["mfe_r"], long["best_exit_time"]) == (
        "ok",
        6.0,
        3.0,
        3.0,
        T0 + 2 * M,
    )
    assert long["r"] == pytest.approx(1.9) and long["captured_pct"] == pytest.approx(400 / 6)
    assert rows["sol"]["mfe"] != rows["sol"]["mfe"]  # NULL in the store: NaN, never 0
    assert (rows["sol"]["status"], rows["sol"]["reason"]) == ("no_bars", "no SOLUSDT bars in the store")
    assert rows["bare"]["risk_source"] == "default" and rows["bare"]["r"] == pytest.approx(3.8)

    assert refresh(db, RISK).computed == 0  # nothing changed
    journal.annotate(db, "bare", notes=None, tags=None, setup="scalp")  # its setup's default risk is 0.5 %
    again = refresh(db, RISK)
    assert again.computed == 1 and stored(db)["bare"]["r"] == pytest.approx(7.6 / (0.5 * 2))

    sol = [(T0 + m * M, o * 2, h * 2, lo * 2, c * 2, 1.0) for m, o, h, lo, c in BARS]
    db.write(lambda d: market.add_bars(d.conn, "SOLUSDT", sol))
    later = refresh(db, RISK)
    assert later.computed == 1 and stored(db)["sol"]["status"] == "ok"
    assert stored(db)["sol"]["mfe"] == pytest.approx(212.0 - 100.0)  # SOL's highs are twice BTC's
    assert refresh(db, RiskDefaults(default_pct=2.0, per_setup=(("scalp", 0.5),))).computed == 3  # new defaults


def test_missing_bars_are_fetched_from_a_klines_server(db: Database) -> None:
    sol = [(T0 + m * M, o, h * 1.5, lo, c, 3.0) for m, o, h, lo, c in BARS]
    with FakeBinanceKlines({"SOLUSDT": sol}) as server:
        done = refresh(db, RISK, backfill_url=server.base_url)
        assert done.fetched_bars == 6  # the minute before the entry (its bar may overlap) to the exit
        assert [r["symbol"] for r in server.requests] == ["SOLUSDT"]
    rows = stored(db)
    assert rows["sol"]["status"] == "ok" and rows["sol"]["mfe"] == pytest.approx(106.0 * 1.5 - 100.0)
    assert market.newest_bars(db) == {"BTCUSDT": T0 + 5 * M, "SOLUSDT": T0 + 4 * M}  # fetched up to the exit
    # A symbol Binance does not know keeps its reason; fetched bars never replace the store's own.
    db.write(lambda d: d.conn.execute("UPDATE journal_trades SET symbol='NOPEUSDT' WHERE trade_id='sol'"))
    with FakeBinanceKlines({}) as server:
        assert refresh(db, RISK, backfill_url=server.base_url).fetched_bars == 0
    assert stored(db)["sol"]["reason"] == "no NOPEUSDT bars in the store"
    assert db.write(lambda d: market.add_bars(d.conn, "BTCUSDT", [(T0, 1.0, 1.0, 1.0, 1.0, 1.0)])) == 0
    assert market.ohlc_between(db, "BTCUSDT", T0, T0)["high"].tolist() == [101.0]
