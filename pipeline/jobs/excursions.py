"""The ``excursions`` worker: keeps every closed trade's MFE, MAE and R up to date in
``trade_excursions`` (the rules are ``pipeline.journal.excursions``).

``refresh`` is one pass: it reads the closed trades with what each was last computed from, computes
only those whose inputs changed (a new trade, an edited setup, a stop, new risk defaults) or that had
no bars while newer bars have arrived since, and stores them in one transaction. The first pass over
100,000 round trips takes a few seconds; later passes cost a read of the journal and nothing else
when nothing changed (``bench.excursions``). The worker runs a pass whenever the store's change token
moves, checking every ``every_s``.

With a backfill URL (``BARS_BACKFILL``) a trade without bars gets its span fetched from Binance's
public klines (``pipeline.sources.klines``) and computed again; at most ``MAX_FETCHES`` spans a pass.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlite_utils

from pipeline.errors import PipelineError
from pipeline.journal.excursions import COLUMNS, INPUTS, MINUTE_MS, Bars, RiskDefaults, compute
from pipeline.runner import Worker
from pipeline.sources.klines import Kline, fetch_klines
from storage import excursions as door
from storage import market
from storage.db import Database

log = logging.getLogger(__name__)

MAX_FETCHES = 20


@dataclass
class Pass:
    """What one pass did."""

    closed: int = 0
    computed: int = 0
    without_bars: int = 0
    fetched_bars: int = 0
    seconds: float = 0.0


def signatures(trades: pd.DataFrame, risk: RiskDefaults) -> pd.Series:
    """One text per trade that changes whenever an input of its result does."""
    salt = hashlib.blake2b(risk.signature().encode(), digest_size=6).hexdigest()
    if trades.empty:
        return pd.Series([], dtype=object)
    text = [c for c in INPUTS if c in ("symbol", "side", "setup")]
    numbers = [c for c in INPUTS if c not in text]
    canonical = pd.concat(
        [
            trades[text].fillna("").astype(str),
            trades[numbers].apply(pd.to_numeric, errors="coerce").astype(float),
        ],
        axis=1,
    )
    hashed = pd.util.hash_pandas_object(canonical, index=False).to_numpy()
    return pd.Series([f"{h:016x}{salt}" for h in hashed.tolist()], index=trades.index, dtype=object)


FEW = 200  # a symbol with fewer trades to compute reads the bars of each trade, not of its whole span


def _bars(db: Database, trades: pd.DataFrame) -> dict[str, Bars]:
    """The bars under ``trades``: per symbol, the whole span, or each trade's own when there are few."""
    out = {}
    for symbol, rows in trades.groupby("symbol"):
        if len(rows) >= FEW:
            spans = [(int(rows["entry_time"].min()) - MINUTE_MS, int(rows["exit_time"].max()))]
        else:
            spans = [(int(a) - MINUTE_MS, int(b)) for a, b in zip(rows["entry_time"], rows["exit_time"])]
        parts = [market.ohlc_between(db, str(symbol), int(a), int(b)) for a, b in spans]
        frame = pd.concat(parts).drop_duplicates("start") if len(parts) > 1 else parts[0]
        if not frame.empty:
            out[str(symbol)] = Bars.of(frame)
    return out


def _rows(results: pd.DataFrame, sigs: pd.Series, newest: dict[str, int], now: int) -> list[tuple[Any, ...]]:
    frame = results.assign(
        sig=sigs.to_numpy(), bars_until=[newest.get(s) for s in results["symbol"]], computed_at=now
    ).astype(object)
    frame = frame.where(frame.notna(), None)
    for column in ("best_exit_time", "worst_time", "bars"):
        frame[column] = [None if v is None else int(v) for v in frame[column]]
    return list(frame[door.COLUMNS].itertuples(index=False, name=None))


def refresh(db: Database, risk: RiskDefaults, *, backfill_url: str | None = None) -> Pass:
    """Compute what changed since the last pass and store it; return what was done."""
    started = time.perf_counter()
    trades = door.closed_with_state(db)
    done = Pass(closed=len(trades))
    if trades.empty:
        return done
    newest = market.newest_bars(db)
    sigs = signatures(trades, risk)
    newer_bars = np.array(
        [
            isinstance(status, str)
            and status != "ok"
            and (newest.get(symbol) or -1) > (-1 if pd.isna(until) else until)
            for symbol, status, until in zip(trades["symbol"], trades["status"], trades["bars_until"])
        ],
        dtype=bool,
    )
    need = (sigs.to_numpy() != trades["sig"].to_numpy()) | newer_bars
    todo = trades[need].reset_index(drop=True)
    if todo.empty:
        db.write(lambda d: door.forget_orphans(d.conn))
        done.seconds = time.perf_counter() - started
        return done
    todo_sigs = sigs[need].reset_index(drop=True)
    results = compute(todo, _bars(db, todo), risk)
    if backfill_url:
        done.fetched_bars = _backfill(db, backfill_url, todo, results)
        if done.fetched_bars:
            newest = market.newest_bars(db)
            results = compute(todo, _bars(db, todo), risk)
    rows = _rows(results[COLUMNS], todo_sigs, newest, int(time.time() * 1000))

    def write(d: sqlite_utils.Database) -> None:
        door.store(d.conn, rows)
        door.forget_orphans(d.conn)

    db.write(write)
    done.computed = len(rows)
    done.without_bars = int((results["status"] != "ok").sum())
    done.seconds = time.perf_counter() - started
    return done


def _backfill(db: Database, base_url: str, trades: pd.DataFrame, results: pd.DataFrame) -> int:
    """Fetch the bars of trades that have none (a span each, at most ``MAX_FETCHES``); return how many
    bars were added."""
    missing = trades[(results["status"] != "ok").to_numpy()].head(MAX_FETCHES)
    added = 0
    for trade in missing.itertuples(index=False):
        symbol = str(trade.symbol)
        try:
            klines = fetch_klines(base_url, symbol, int(trade.entry_time) - MINUTE_MS, int(trade.exit_time))
        except PipelineError as exc:  # an unknown symbol, a network failure: the trade keeps its reason
            log.info("excursions: no bars fetched for %s %s: %s", symbol, trade.trade_id, exc)
            continue
        if klines:
            added += db.write(functools.partial(_add_bars, symbol=symbol, klines=klines))
    return added


def _add_bars(d: sqlite_utils.Database, *, symbol: str, klines: list[Kline]) -> int:
    return market.add_bars(d.conn, symbol, klines)


class ExcursionsWorker(Worker):
    """Runs ``refresh`` on its own thread whenever the store's change token moves (checked every
    ``every_s``); its status says what the last pass did."""

    kind = "source"

    def __init__(
        self, db: Database, risk: RiskDefaults, *, every_s: float = 5.0, backfill_url: str | None = None
    ) -> None:
        super().__init__("excursions")
        self.db, self.risk, self.every_s, self.backfill_url = db, risk, every_s, backfill_url
        self.last: Pass | None = None

    def status(self) -> dict[str, Any]:
        last = self.last
        return {} if last is None else dict(vars(last))

    def _run(self) -> None:
        token: tuple[Any, ...] | None = None
        while not self._stop.is_set():
            now = door.change_token(self.db)
            if now != token:
                try:
                    self.last = refresh(self.db, self.risk, backfill_url=self.backfill_url)
                    token = now
                except Exception as exc:  # a bad pass is reported; the next change tries again
                    log.exception("excursions: the pass failed")
                    self.health.error(f"{type(exc).__name__}: {exc}")
                else:
                    with self.health.lock:
                        self.health.processed += self.last.computed
                        self.health.last_activity_at = time.time()
            self._stop.wait(self.every_s)
