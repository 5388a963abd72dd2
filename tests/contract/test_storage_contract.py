"""The storage doors' contract, run on both stores: a SQLite file and the tests' own PostgreSQL
server (the ``store`` fixture, tests/conftest.py). Each test writes through a door, reads back
through the doors, and checks the rule the door promises: idempotent upserts (the same id twice
is one row, the newer values win), insert-if-new counts, rollback of a failed write, ordering,
and the migrations giving both stores the same tables and columns. The journal's read models run
on both stores in tests/unit/test_journal_queries.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from storage import imports, ledger, market, optimise, orders, redrive, signals, stocks
from storage import status as status_door
from storage.db import Database
from storage.migrations import MIGRATIONS, postgres_ddl
from storage.postgres import COPY_FROM, _copied, to_pg
from storage.sql import insert_new

T0 = 1_731_700_000_000
MIN = 60_000


def _columns(db: Any, table: str) -> list[str]:
    if db.dialect == "postgres":
        rows = db.query(
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            (table,),
        )
    else:
        rows = db.query(f"SELECT name FROM pragma_table_info('{table}')")
    return [r["name"] for r in rows]


def _tables(db: Any) -> set[str]:
    if db.dialect == "postgres":
        rows = db.query("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'")
    else:
        rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r["name"] for r in rows}


def test_every_migration_gives_the_same_tables_and_columns(store: Database, tmp_path: Any) -> None:
    names = [name for name, _ in MIGRATIONS]
    recorded = [r["name"] for r in store.query("SELECT name FROM _migrations ORDER BY name")]
    assert recorded == sorted(names)
    reference = Database(tmp_path / "reference.db")
    try:
        assert _tables(store) == _tables(reference)
        for table in sorted(_tables(reference)):
            assert _columns(store, table) == _columns(reference, table), table
    finally:
        reference.close()


def test_postgres_ddl_maps_types_mechanically() -> None:
    ddl = 'CREATE TABLE x (a INTEGER NOT NULL, b REAL, c BLOB, "window" INTEGER, PRIMARY KEY (a)) WITHOUT ROWID'
    assert postgres_ddl(ddl) == (
        'CREATE TABLE x (a BIGINT NOT NULL, b DOUBLE PRECISION, c BYTEA, "window" BIGINT, PRIMARY KEY (a))'
    )
    assert postgres_ddl("UPDATE t SET c = 'INTEGER'") == "UPDATE t SET c = 'INTEGER'"


def test_placeholders_are_translated_outside_quotes_only() -> None:
    assert to_pg("SELECT a FROM t WHERE b = ? AND c LIKE 'x%?' AND d = :name AND e::text = ?") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%?' AND d = %(name)s AND e::text = %s"
    )
    assert to_pg("SELECT \"offset\", ':kept' FROM t") == "SELECT \"offset\", ':kept' FROM t"


def test_a_failed_write_leaves_nothing(store: Database) -> None:
    def write(d: Any) -> None:
        market.store_ticks(d.conn, [("BTCUSDT", T0, 100.0, None, None, None, None, None, 1.0)])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.write(write)
    assert store.query("SELECT count(*) AS n FROM ticks")[0]["n"] == 0
    store.write(lambda d: market.store_ticks(d.conn, [("BTCUSDT", T0, 100.0, None, None, None, None, None, 1.0)]))
    assert store.query("SELECT count(*) AS n FROM ticks")[0]["n"] == 1


def test_ticks_upsert_and_make_bars(store: Database) -> None:
    ticks = [("BTCUSDT", T0 + i * 1000, 100.0 + i, None, None, None, None, None, 1.0) for i in range(5)]
    store.write(lambda d: market.store_ticks(d.conn, ticks))
    store.write(lambda d: market.store_ticks(d.conn, ticks[2:]))  # redelivered: nothing doubles
    store.write(lambda d: market.store_ticks(d.conn, [("BTCUSDT", T0 + 4000, 90.0, None, None, None, None, None, 2.0)]))
    assert store.query("SELECT count(*) AS n FROM ticks")[0]["n"] == 5
    frame = market.bars(store, "BTCUSDT")
    assert len(frame) == 1
    bar = frame.iloc[0]
    start = T0 - T0 % MIN
    assert (int(bar["start"]), bar["open"], bar["high"], bar["low"], bar["close"]) == (start, 100.0, 103.0, 90.0, 90.0)
    assert bar["volume"] == pytest.approx(6.0) and int(bar["ticks"]) == 5
    assert market.symbols(store) == ["BTCUSDT"]
    assert market.span(store, "BTCUSDT") == (start, start)
    assert market.newest_bars(store) == {"BTCUSDT": start}


def test_added_bars_count_only_new_ones_and_never_replace(store: Database) -> None:
    rows = [(T0 + i * MIN, 1.0, 2.0, 0.5, 1.5, 10.0) for i in range(3)]
    assert store.write(lambda d: market.add_bars(d.conn, "ETHUSDT", rows)) == 3
    moved = [(T0 + i * MIN, 9.0, 9.0, 9.0, 9.0, 9.0) for i in range(1, 5)]
    assert store.write(lambda d: market.add_bars(d.conn, "ETHUSDT", moved)) == 2
    hist = market.history(store, "ETHUSDT")
    assert [h[0] for h in hist] == [T0 + i * MIN for i in range(5)]
    assert [h[4] for h in hist] == [1.5, 1.5, 1.5, 9.0, 9.0]  # the stored ones kept


def test_ledger_fills_lots_and_records(store: Database) -> None:
    def fill(i: int, symbol: str = "BTCUSDT") -> tuple[Any, ...]:
        return (f"f-{i}", i, "u", symbol, "BUY", 100.0 + i, 1.0, T0 + i, None, None, 0.0, None, "csv", "binance", "")

    assert store.write(lambda d: ledger.last_seq(d.conn)) == 0
    store.write(lambda d: ledger.add_fills(d.conn, [fill(1), fill(2), fill(3, "ETHUSDT")]))
    assert store.write(lambda d: ledger.last_seq(d.conn)) == 3
    assert ledger.known_ids(store, ["f-1", "f-9", "t-1"]) == {"f-1"}
    assert [f[0] for f in store.write(lambda d: ledger.fills(d.conn, ("u", "BTCUSDT")))] == ["f-1", "f-2"]
    assert store.write(lambda d: ledger.last_fill_time(d.conn, ("u", "BTCUSDT"))) == T0 + 2
    assert ledger.last_fill_time_from(store, "u", "BTCUSDT", "csv") == T0 + 2
    assert ledger.last_fill_time_from(store, "u", "BTCUSDT", "api") is None
    store.write(lambda d: ledger.set_fill_records(d.conn, [("b", "f-2"), ("a", "f-1")]))
    assert store.write(lambda d: ledger.fill_records(d.conn, ["f-2", "f-1"])) == ["a", "b"]  # in fill order
    lot = ("lot-1", "u", "BTCUSDT", "BUY", 101.0, 1.0, 0.5, T0, 1, 0.0)
    store.write(lambda d: ledger.replace_lots(d.conn, ("u", "BTCUSDT"), [lot]))
    store.write(lambda d: ledger.replace_lots(d.conn, ("u", "BTCUSDT"), [lot]))
    assert store.write(lambda d: ledger.lots(d.conn, ("u", "BTCUSDT"))) == [lot]
    store.write(lambda d: ledger.record_trades(d.conn, [("t-1", "u", "BTCUSDT", "t-1", "old")]))
    store.write(lambda d: ledger.record_trades(d.conn, [("t-1", "u", "BTCUSDT", "t-1", "new")]))
    assert store.write(lambda d: ledger.trade_records(d.conn, ["t-1"])) == ["new"]
    assert ledger.known_ids(store, ["t-1"]) == {"t-1"}
    fills = ledger.fills_between(store, "u", "BTCUSDT", T0, T0 + 10)
    assert [(f["fill_id"], f["time"]) for f in fills] == [("f-1", T0 + 1), ("f-2", T0 + 2)]


def test_signals_upsert_by_symbol_model_time(store: Database) -> None:
    def row(ts: int, value: float) -> tuple[Any, ...]:
        return ("BTCUSDT", "rf", ts, "BUY", "direction", value, 100.0, 1.0, 0.7, "v1", "{}")

    store.write(lambda d: signals.store(d.conn, [row(T0, 1.0), row(T0 + MIN, 2.0)]))
    store.write(lambda d: signals.store(d.conn, [row(T0 + MIN, 3.0)], keep_ms=10 * MIN))
    got = signals.latest_of(store, "BTCUSDT", ["rf"])
    assert len(got) == 1 and got[0]["timestamp"] == T0 + MIN and got[0]["predicted_value"] == 3.0
    assert store.query("SELECT count(*) AS n FROM ml_signals")[0]["n"] == 2


def _order(order_id: str, status: str, updated: int) -> tuple[Any, ...]:
    return (
        order_id, "BTCUSDT", "BUY", "MARKET", status, 1.0, 100.0, T0, updated, "ml", "rf",
        None, None, None, None, None, None, None, None, None, None, json.dumps({"status": status}),
    )  # fmt: skip


def test_orders_keep_their_last_state_and_a_pending_never_undoes_a_fill(store: Database) -> None:
    def write(rows: list[tuple[Any, ...]], now: int) -> None:
        store.write(
            lambda d: orders.store(
                d.conn, rows, equity=(now, 1000.0, 1000.0, 0.0, 0.0, 0.0), snapshot_json='{"n": 1}', now_ms=now
            )
        )

    write([_order("o1", "PENDING", T0)], T0)
    write([_order("o1", "FILLED", T0 + 1)], T0 + 1)
    write([_order("o1", "PENDING", T0 + 2)], T0 + 2)  # a redelivered older state
    frame = orders.orders(store)
    assert list(frame["status"]) == ["FILLED"] and int(frame["updated_at"].iloc[0]) == T0 + 1
    write([], T0 + 2)  # the same equity point again
    assert len(orders.equity_curve(store)) == 3
    assert orders.portfolio_state(store) == {"n": 1, "updated_at": T0 + 2}
    assert store.query("SELECT count(*) AS n FROM portfolio_state")[0]["n"] == 1


def test_stage_status_is_one_row_per_worker(store: Database) -> None:
    now = 1_700_000_000.0
    first = status_door.StageStatus(name="normalizer", kind="stage", running=True, processed=1, pid=7, updated_at=now)
    again = status_door.StageStatus(name="normalizer", kind="stage", running=True, processed=5, pid=7, updated_at=now)
    store.write(lambda d: status_door.publish(d.conn, [first]))
    store.write(lambda d: status_door.publish(d.conn, [again]))
    got = status_door.stages(store, now=now + 1)
    assert [(s.name, s.processed, s.running) for s in got] == [("normalizer", 5, True)]
    store.write(lambda d: status_door.forget(d.conn, now + 1))
    assert status_door.stages(store, now=now + 1) == []


def test_stock_trades_once_and_bars_resampled(store: Database) -> None:
    trades = [("AAPL", T0 + i, i, 190.0, 10.0, "V", ("@",), "C", T0) for i in range(3)]
    assert store.write(lambda d: stocks.store_trades(d.conn, trades)) == 3
    assert (
        store.write(
            lambda d: stocks.store_trades(d.conn, [*trades[1:], ("AAPL", T0 + 9, 9, 1.0, 1.0, None, (), None, T0)])
        )
        == 1
    )
    assert stocks.trade_count(store) == 4
    start = T0 - T0 % (60 * MIN)
    bars = [("AAPL", "1Min", start + i * MIN, 1.0 + i, 2.0 + i, 0.5, 1.5 + i, 100.0, 5, 1.2) for i in range(6)]
    store.write(lambda d: stocks.store_bars(d.conn, bars))
    store.write(lambda d: stocks.store_bars(d.conn, bars[-1:]))
    assert stocks.bar_count(store) == 6
    five = stocks.bars(store, "AAPL", "5Min")
    assert len(five) == 2
    assert stocks.symbols(store) == ["AAPL"] and stocks.has_symbol(store, "AAPL")


def test_optimise_runs_replace_and_filter_by_window(store: Database) -> None:
    run = {"run_id": "r1", "created_at": T0, "symbol": "BTCUSDT", "model": "rf", "request": {}, "summary": {"a": 1}}
    run["curve"] = []
    trials: list[dict[str, Any]] = [
        {"window": w, "number": n, "value": 0.1 * n, "params": {}, "metrics": {}} for w in (0, 1) for n in (0, 1)
    ]
    optimise.save(store, run, trials)
    optimise.save(store, {**run, "summary": {"a": 2}}, trials[:3])
    assert [r["run_id"] for r in optimise.runs(store)] == ["r1"]
    assert [(t["window"], t["number"]) for t in optimise.trials(store, "r1")] == [(0, 0), (0, 1), (1, 0)]
    assert [(t["window"], t["number"]) for t in optimise.trials(store, "r1", window=1)] == [(1, 0)]
    optimise.delete(store, "r1")
    assert optimise.runs(store) == []


def test_redrive_claims_each_coordinate_once(store: Database) -> None:
    a, b = ("topic", 0, 5), ("topic", 1, 5)
    letter = ("topic.dlq", 0, 1)
    fresh, known = redrive.claim(store, [(a, letter, False), (a, letter, False), (b, letter, True)], T0)
    assert fresh == [a, b] and known == {}
    redrive.confirm(store, [a], T0 + 1)
    redrive.release(store, [b])
    fresh, known = redrive.claim(store, [(a, letter, False), (b, letter, False)], T0 + 2)
    assert fresh == [b] and known[a].state == "published" and known[a].published_at == T0 + 1
    assert {r.offset for r in redrive.recent(store)} == {5}


def test_import_mappings_upsert_by_name(store: Database) -> None:
    imports.save_mapping(store, "mine", ["a", "b"], {"time": "a"}, T0)
    imports.save_mapping(store, "mine", ["a", "c"], {"time": "c"}, T0 + 1)
    assert imports.mappings(store) == [
        {"name": "mine", "header": ["a", "c"], "mapping": {"time": "c"}, "created_at": T0 + 1}
    ]


def test_every_read_door_runs_on_both_stores(store: Database) -> None:
    """Each read door's SQL is accepted and answers on a store holding a few rows (PostgreSQL checks
    grouping, aliases and types when it plans a statement, so an empty answer still proves the SQL)."""
    from storage import analysis, behaviour, drift, excursions, models

    ticks = [("BTCUSDT", T0 + i * 20_000, 100.0 + i, None, None, None, None, None, 1.0) for i in range(6)]
    store.write(lambda d: market.store_ticks(d.conn, ticks))
    sig = [("BTCUSDT", "rf", T0 + i * 20_000, "BUY", "direction", 1.0, 100.0, 0.1, 0.6, "v1", "{}") for i in range(6)]
    store.write(lambda d: signals.store(d.conn, sig))
    end = T0 + 10 * MIN
    assert len(market.history(store, "BTCUSDT", limit=1)) == 1
    assert market.before(store, "BTCUSDT", end, limit=5)
    assert market.closes_until(store, "BTCUSDT", end, 5)
    assert market.close_between(store, "BTCUSDT", T0 - MIN, end) is not None
    assert not market.between(store, ["BTCUSDT"], T0 - MIN, end).empty
    assert not market.ohlc_between(store, "BTCUSDT", T0 - MIN, end).empty
    assert list(market.latest_ticks(store)["symbol"]) == ["BTCUSDT"]
    assert store.write(lambda d: market.price_at(d.conn, "BTCUSDT", end, 3_600_000)) == 105.0
    market.buy_and_hold(store, ["BTCUSDT"], T0 - MIN, end, 1000.0)
    assert market.resampled(store, "BTCUSDT", 5 * MIN, T0 - 10 * MIN, end, 10)
    assert market.bars_between(store, "BTCUSDT", T0 - MIN, end, 10)
    store.write(lambda d: market.prune_ticks(d.conn, {"BTCUSDT": T0}, 1))
    assert len(signals.signals(store, "BTCUSDT")) == 6
    assert len(signals.latest(store)) == 1
    assert signals.signal_at(store, "BTCUSDT", "rf", end, 3_600_000) is not None
    assert len(signals.between(store, "BTCUSDT", T0, end, models=["rf"])) == 6
    per_bar = signals.last_per_bar(store, "BTCUSDT", "rf", T0 - MIN)
    assert list(per_bar["timestamp"]) == sorted({T0 + i * 20_000 for i in range(6)} & set(per_bar["timestamp"]))
    assert len(per_bar) == len({(T0 + i * 20_000) // MIN for i in range(6)})
    assert orders.order_symbols(store) == [] and orders.traded_symbols(store) == []
    assert orders.position_order(store, "BTCUSDT", T0, end) is None
    assert drift.latest(store).empty and drift.history(store, "BTCUSDT", "rf").empty
    excursions.change_token(store)
    assert excursions.closed_with_state(store).empty and excursions.for_user(store, "u").empty
    assert excursions.of_trade(store, "x") is None and store.write(lambda d: excursions.forget_orphans(d.conn)) == 0
    assert analysis.news(store, "AAPL") == [] and analysis.latest_results(store, "AAPL") == {}
    assert (
        analysis.aggregates(store, "AAPL") == []
        and analysis.alerts(store, "AAPL") == []
        and analysis.symbols(store) == []
    )
    assert store.write(lambda d: analysis.alert_state(d.conn, "AAPL")) is None
    assert store.write(lambda d: analysis.alerts_caused_by(d.conn, ["r"])) == []
    assert store.write(lambda d: analysis.known_news_ids(d.conn, ["n"])) == set()
    assert models.rows(store) is not None and store.write(lambda d: models.next_version(d.conn, "BTCUSDT", "rf")) == 1
    assert stocks.bars_range(store, "AAPL", "1Min", 0, end, 10) == [] and stocks.latest_bars(store) == []
    assert stocks.latest_trades(store) == {} and stocks.trades(store, "AAPL") == []
    ctx = {"u": "u", "f0": T0, "hi": end, "hist": 0, "k": 5, "closes": 5, "lo": 0, "min_loss": 1.0, "min_pct": 1.0}
    assert store.write(lambda d: behaviour.context(d.conn, ctx)) == []
    assert store.write(lambda d: behaviour.day_counts(d.conn, "u", 0, end)) == []
    assert store.write(lambda d: behaviour.day_entries(d.conn, "u", 0, end, 10, 0)) == []
    assert store.write(lambda d: behaviour.stored_results(d.conn, ["t"])) == {}


def test_large_batches_keep_the_row_by_row_rules(store: Database) -> None:
    """Batches big enough for PostgreSQL's COPY path: an upsert with a key repeated in the batch
    ends with the last row's values, insert-if-new counts only new rows, a plain insert of a row
    already there fails the whole write and leaves nothing."""
    n = 120
    assert n >= COPY_FROM and _copied(market._UPSERT_TICK) is not None  # PostgreSQL takes the COPY path
    assert _copied(insert_new("bars_1m", ["symbol", *market.BAR_COLUMNS])) is not None
    ticks = [("BTCUSDT", T0 + i, 1.0, None, None, None, None, None, 1.0) for i in range(n)]
    again = [("BTCUSDT", T0 + i, 2.0 + i, None, None, None, None, None, 1.0) for i in range(n)]
    store.write(lambda d: d.conn.executemany(market._UPSERT_TICK, ticks + again))
    rows = store.query("SELECT timestamp, price FROM ticks ORDER BY timestamp")
    assert [(r["timestamp"], r["price"]) for r in rows] == [(T0 + i, 2.0 + i) for i in range(n)]
    bars = [(T0 + i * MIN, 1.0, 2.0, 0.5, 1.5, 10.0) for i in range(n)]
    assert store.write(lambda d: market.add_bars(d.conn, "ETHUSDT", bars[: n // 2])) == n // 2
    assert store.write(lambda d: market.add_bars(d.conn, "ETHUSDT", bars + bars)) == n - n // 2
    assert store.query("SELECT count(*) AS n FROM bars_1m")[0]["n"] == n

    def fill(i: int) -> tuple[Any, ...]:
        return (f"f-{i}", i, "u", "BTCUSDT", "BUY", 100.0, 1.0, T0 + i, None, None, 0.0, None, "csv", "binance", "")

    store.write(lambda d: ledger.add_fills(d.conn, [fill(i) for i in range(n)]))
    with pytest.raises(Exception):  # noqa: B017 - each store raises its own driver's IntegrityError
        store.write(lambda d: ledger.add_fills(d.conn, [fill(i) for i in range(n, 2 * n)] + [fill(0)]))
    assert store.write(lambda d: ledger.last_seq(d.conn)) == n - 1
    assert store.query("SELECT count(*) AS n FROM journal_fills")[0]["n"] == n
    # the store still writes after a failed one (the temporary tables of the COPY path included)
    store.write(lambda d: d.conn.executemany(market._UPSERT_TICK, again))


def test_an_unreachable_store_is_one_clear_error_without_its_password(tmp_path: Any) -> None:
    from pipeline.config import load_config
    from pipeline.errors import ConfigError
    from pipeline.wiring import build_runtime
    from tests.fakes.postgres_server import free_port

    url = f"postgresql://desk:s3cret-pw@127.0.0.1:{free_port()}/desk"
    config = load_config({"DATA_DIR": str(tmp_path), "DATABASE_URL": url, "STAGES": "journal-store"})
    assert "s3cret-pw" not in repr(config)
    with pytest.raises(ConfigError) as caught:
        build_runtime(config)
    message = str(caught.value)
    assert "DATABASE_URL is not usable" in message and "postgresql://desk@127.0.0.1" in message
    assert "s3cret-pw" not in message
    with pytest.raises(ConfigError, match="DATABASE_URL must start with postgresql://"):
        load_config({"DATABASE_URL": "mysql://desk:s3cret-pw@db/desk"})


def test_lag_samples_keep_one_row_per_tier_and_time(store: Database) -> None:
    from storage import lag_history

    now = 1_700_000_000.0
    samples = [lag_history.LagSample("g", "t", 0, now - 30 + i, i) for i in range(60)]  # many in one minute
    store.write(lambda d: lag_history.record(d.conn, samples))
    store.write(lambda d: lag_history.record(d.conn, samples[-1:]))  # the same sample again
    assert lag_history.count(store) == 60 + len({s.at - s.at % 60 for s in samples})
    got = lag_history.history(store, "g", since=now - 3600, now=now + 60)
    assert [s.lag for s in got] == list(range(60))
    assert store.write(lambda d: lag_history.prune(d.conn, now + 10 * 3600)) == 60


@pytest.mark.parametrize("repeats", [2, 30])
def test_a_partial_upsert_in_a_large_batch_applies_rows_in_order(store: Database, repeats: int) -> None:
    """An upsert that sets only some columns, with keys repeated in one batch: the columns it sets
    end with the key's last row, the others keep the first row's (as one statement per row leaves
    them), whether PostgreSQL sends it in runs (few repeats) or row by row (many)."""
    sql = (
        "INSERT INTO alert_state (symbol, signal, risk, updated_at) VALUES (?,?,?,?) "
        "ON CONFLICT (symbol) DO UPDATE SET signal = excluded.signal"
    )
    symbols = [f"S{i}" for i in range(60 // repeats)]
    rows = [(symbols[i % len(symbols)], f"sig-{i}", i, T0 + i) for i in range(60)]
    store.write(lambda d: d.conn.executemany(sql, rows))
    got = {r["symbol"]: r for r in store.query("SELECT symbol, signal, risk, updated_at FROM alert_state")}
    for n, symbol in enumerate(symbols):
        last = max(i for i in range(60) if i % len(symbols) == n)
        assert (got[symbol]["signal"], got[symbol]["risk"], got[symbol]["updated_at"]) == (f"sig-{last}", n, T0 + n)
