"""What the Discord bot reads of the desk, and the two orders it may publish.

``Desk`` reads like a page does: the storage doors (the account and orders, signals and the model
registry's rows, the journal, bars, the workers' published status) and the bus's own description
of the dead-letter topics; never a stage's live objects, so it is right whether the stages are
threads of the app, processes of their own or on another machine. Every method is blocking (SQLite
on the calling thread's reader connection) and returns a ``Reply``; the bot calls them from a
thread pool, off its event loop.

Stock alerts (seed 003's ``alerts`` topic) have no table yet, so ``AlertTail`` reads the topic on a
thread of its own, as a consumer group of its own (``discord-bot.alerts``, never a stage's) that
never commits: it reads the topic from its start at every start (30 days of alerts at most) and
keeps the newest ``keep`` in memory. When a storage door for alerts lands, ``Desk`` should read it
instead.

``/close`` and ``/cancel`` publish the same manual orders as the Portfolio page's buttons
(``pipeline.trading.manual``); a close's market time is the stored account's ``market_time`` of
its symbol (a replay's time is the past), as the page does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from pipeline.bus.base import Bus, Producer
from pipeline.errors import BadMessageError
from pipeline.journal import analytics
from pipeline.messages import Alert, Order, decode
from pipeline.notify import bot_replies as replies
from pipeline.notify.bot_inputs import BotInputError, order_id_of, period_of, shown, status_of, symbol_of, window_of
from pipeline.notify.bot_replies import Reply
from pipeline.notify.chart import render
from pipeline.topics import ALERTS, CATALOG
from pipeline.trading.manual import cancel_request, close_request, publish
from storage import journal, market, models, orders, signals, status
from storage.db import Database

log = logging.getLogger(__name__)

ALERTS_GROUP = "discord-bot.alerts"
ORDERS_SHOWN = 60
ALERTS_SHOWN = 10
DLQ_TOPICS = tuple(name for name, spec in CATALOG.items() if spec.is_dead_letter)


class AlertTail:
    """Keeps the newest stock alerts of the ``alerts`` topic; ``latest`` is safe from any thread."""

    def __init__(self, bus: Bus, *, keep: int = 50, group_id: str = ALERTS_GROUP, topic: str = ALERTS) -> None:
        self.bus = bus
        self.group_id, self.topic = group_id, topic
        self._alerts: deque[Alert] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.read = 0
        self.rejected = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="discord-bot:alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def latest(self, n: int) -> list[Alert]:
        """The ``n`` newest alerts read so far by their own time, newest first (alerts of one time in
        the order read, the last first). Read order alone is no time order: the topic's partitions
        are read in turn, so an alert can be read before an older one of another partition."""
        with self._lock:
            read = list(self._alerts)[::-1]
        return sorted(read, key=lambda a: datetime.fromisoformat(a.timestamp), reverse=True)[:n]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                consumer = self.bus.consumer(self.group_id, [self.topic], auto_offset_reset="earliest")
            except Exception:  # a broker that is down now may be up later
                log.warning("discord-bot: cannot read %s; trying again in 5 s", self.topic, exc_info=True)
                self._stop.wait(5.0)
                continue
            try:
                while not self._stop.is_set():
                    for record in consumer.poll(500, 0.5):
                        self._take(record.value or b"")
            except Exception:
                log.warning("discord-bot: reading %s failed; starting again", self.topic, exc_info=True)
                self._stop.wait(1.0)
            finally:
                consumer.close()

    def _take(self, value: bytes) -> None:
        try:
            alert = decode(ALERTS, value)
        except BadMessageError:
            self.rejected += 1  # the stages that read alerts dead-letter it; the bot only skips it
            return
        assert isinstance(alert, Alert)
        with self._lock:
            self._alerts.append(alert)
            self.read += 1


@dataclass(frozen=True)
class Pending:
    """A trading command waiting for its confirmation button."""

    kind: str  # "close" or "cancel"
    target: str  # the symbol to close, or the order id to cancel
    order_ids: tuple[str, ...]  # the positions (BUY order ids) to close, or the order to cancel


class Desk:
    """The desk as the bot sees it. Call from any thread; each thread reads on its own connection."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        producer: Producer,
        *,
        symbols: tuple[str, ...],
        user_id: str,
        starting_balance: float,
        alerts: AlertTail | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db, self.bus, self.producer = db, bus, producer
        self.symbols, self.user_id, self.starting_balance = symbols, user_id, starting_balance
        self.alert_tail = alerts
        self.clock = clock

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def known_symbols(self) -> list[str]:
        return sorted(set(self.symbols) | set(market.symbols(self.db)))

    # -- read commands

    def portfolio(self) -> Reply:
        exchange = status.stage(self.db, "virtual-exchange")
        return replies.portfolio_reply(
            orders.portfolio_state(self.db),
            exchange_running=exchange is not None and exchange.running,
            starting_balance=self.starting_balance,
        )

    def orders(self, status_text: str | None) -> Reply:
        wanted = status_of(status_text)
        frame = orders.orders(self.db, status=wanted, limit=ORDERS_SHOWN)
        rows = frame.drop(columns=["created", "updated"]).to_dict("records")
        return replies.orders_reply(rows, wanted)

    def signals(self, symbol_text: str) -> Reply:
        symbol = symbol_of(symbol_text, self.known_symbols())
        active = [
            {**row, "metrics": _json(row["metrics"]), "baselines": _json(row["baselines"])}
            for row in models.rows(self.db, symbol=symbol, active_only=True)
        ]
        names = sorted({r["model"] for r in active} | set(_signal_models(self.db, symbol)))
        latest = []
        for name in names:
            frame = signals.signals(self.db, symbol, model=name, limit=1)
            latest.extend(frame.drop(columns=["time"]).to_dict("records"))
        return replies.signals_reply(symbol, latest, active)

    def journal(self, period_text: str | None) -> Reply:
        period = period_of(period_text, self._now_ms())
        closed = journal.closed_trades(self.db, self.user_id, since_ms=period.since_ms, until_ms=period.until_ms)
        stats = analytics.summary(closed)
        recent = [
            a
            for a in journal.alerts(self.db, self.user_id, limit=200)
            if (period.since_ms is None or a["timestamp"] >= period.since_ms)
            and (period.until_ms is None or a["timestamp"] < period.until_ms)
        ][:5]
        return replies.journal_reply(period.label, stats, recent, user_id=self.user_id)

    def alerts(self) -> Reply:
        if self.alert_tail is None:
            stock: list[dict[str, Any]] = []
            note = "the bot does not read the alerts topic here"
        else:
            stock = [a.model_dump(mode="json") for a in self.alert_tail.latest(ALERTS_SHOWN)]
            note = f"nothing on the {ALERTS} topic yet"
        behavioural = journal.alerts(self.db, self.user_id, limit=ALERTS_SHOWN)
        return replies.alerts_reply(stock, behavioural, stock_note=note)

    def health(self) -> Reply:
        workers = status.stages(self.db)
        dead = {t.name: t.messages for t in self.bus.describe_topics(DLQ_TOPICS)}
        return replies.health_reply(workers, dead)

    def chart(self, symbol_text: str, window_text: str | None) -> Reply:
        symbol = symbol_of(symbol_text, self.known_symbols())
        window_ms, label = window_of(window_text)
        span = market.span(self.db, symbol)
        if span is None:
            raise BotInputError(f"No bars of {symbol} yet: the market-store stage writes them as ticks arrive.")
        since = span[1] - window_ms + market.MINUTE_MS
        bars = market.bars(self.db, symbol, since_ms=since, limit=window_ms // market.MINUTE_MS)
        rows = list(zip(*(bars[c].tolist() for c in ("start", "open", "high", "low", "close", "volume"))))
        chart = render(symbol, rows, window_ms=window_ms, window_label=label)
        page = replies.Page(
            f"{symbol} · last {label}",
            f"{chart.candles} candles of {chart.interval_min} min, {replies.utc_text(chart.first_ms)} to "
            f"{replies.utc_text(chart.last_ms + chart.interval_min * market.MINUTE_MS)}",
            color=replies.BLUE,
            image="chart.png",
        )
        return Reply(pages=(replies.fit(page),), file=("chart.png", chart.png))

    # -- trading commands: a prompt, then the order once confirmed

    def close_prompt(self, symbol_text: str) -> tuple[Reply, Pending]:
        symbol = symbol_of(symbol_text, self.known_symbols())
        positions = [p for p in _positions(self.db) if p["symbol"] == symbol]
        if not positions:
            held = sorted({p["symbol"] for p in _positions(self.db)})
            where = f"open positions: {', '.join(held)}" if held else "there is no open position"
            raise BotInputError(f"No open position in {symbol}: {where}.")
        return replies.close_prompt(symbol, positions), Pending(
            "close", symbol, tuple(p["order_id"] for p in positions)
        )

    def confirm_close(self, pending: Pending) -> tuple[int, str]:
        """Publish a close of every position of ``pending`` still open; return the orders sent and
        the one-line outcome."""
        state = orders.portfolio_state(self.db) or {}
        still = [p for p in state.get("positions") or [] if p["order_id"] in pending.order_ids]
        if not still:
            return 0, f"Nothing sent: the {pending.target} position closed meanwhile."
        seen = (state.get("market_time") or {}).get(pending.target)
        now_ms = int(seen) if seen else self._now_ms()
        sent = []
        for i, p in enumerate(still):  # one id each: a manual close's id is its time and symbol
            order = close_request(
                p["order_id"], p["symbol"], float(p["quantity"]), float(p["price"]), now_ms=now_ms + i
            )
            publish(self.producer, order)
            sent.append(order.order_id)
        return len(sent), f"Close of {pending.target} sent ({', '.join(sent)}): it fills at the next tick."

    def cancel_prompt(self, order_id_text: str) -> tuple[Reply, Pending]:
        pending = _pending(self.db)
        order_id = order_id_of(order_id_text, list(pending))
        return replies.cancel_prompt(pending[order_id]), Pending("cancel", order_id, (order_id,))

    def confirm_cancel(self, pending: Pending) -> tuple[int, str]:
        """Publish the cancel of ``pending``'s order if it is still pending; as ``confirm_close``."""
        waiting = _pending(self.db)
        if pending.target not in waiting:
            return 0, f"Nothing sent: {pending.target} is no longer pending."
        order = Order.model_validate(waiting[pending.target], strict=False)
        publish(self.producer, cancel_request(order, now_ms=self._now_ms()))
        return 1, f"Cancel of {pending.target} sent: the exchange cancels it if it is still pending."


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _positions(db: Database) -> list[dict[str, Any]]:
    return list((orders.portfolio_state(db) or {}).get("positions") or [])


def _pending(db: Database) -> dict[str, Mapping[str, Any]]:
    return {o["order_id"]: o for o in (orders.portfolio_state(db) or {}).get("pending") or []}


def _signal_models(db: Database, symbol: str) -> list[str]:
    return sorted(set(signals.signals(db, symbol, limit=50)["model"]))


__all__ = ["AlertTail", "BotInputError", "Desk", "Pending", "shown"]
