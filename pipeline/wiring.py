"""The one place that turns a ``Config`` into a running pipeline: bus, topics, store, workers.

``Runtime`` is what the app (through ``runtime.get_runtime``) and ``python -m pipeline run``
hold. Its methods are called from page threads; workers run on their own threads.
"""

from __future__ import annotations

import functools
import gc
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.bus import create_bus
from pipeline.bus.base import Bus, GroupState, Producer, TopicState
from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.processes import StageProcess
from pipeline.runner import Health, StageRunner, Worker
from pipeline.sources.simulator import MarketSimulator, SimulatorSource
from pipeline.stages.behaviour import BehaviourStage
from pipeline.stages.enricher import Enricher
from pipeline.stages.journal_store import JournalStore
from pipeline.stages.market_store import MarketStore
from pipeline.stages.normalizer import Normalizer
from pipeline.stages.signal_store import SignalStore
from pipeline.status_board import StatusBoard
from pipeline.topics import CATALOG
from storage.db import Database

if TYPE_CHECKING:
    from pipeline.api.context import ApiContext
    from pipeline.jobs.backtests import BacktestJob, BacktestRequest
    from pipeline.jobs.training import Source, TrainingJob
    from pipeline.ml.registry import Registry

log = logging.getLogger(__name__)

WorkerFactory = Callable[["Runtime"], "Worker | list[Worker]"]


def _api(rt: Runtime) -> Worker:
    from pipeline.api.app import create_app  # FastAPI loads only when the API is wanted
    from pipeline.api.server import ApiServer

    return ApiServer(create_app(rt.api_context()), rt.config.api_host, rt.config.api_port)


def _ml(rt: Runtime) -> Worker:
    from pipeline.stages.ml import MLStage  # scikit-learn loads only when models are wanted

    return StageRunner(
        MLStage(
            rt.db, rt.registry, models=rt.config.ml_models, buy_pct=rt.config.ml_buy_pct, sell_pct=rt.config.ml_sell_pct
        ),
        rt.bus,
    )


def _decision(rt: Runtime) -> Worker:
    from pipeline.stages.decision import DecisionStage  # backtrader loads only when trading

    c = rt.config
    return StageRunner(
        DecisionStage(
            rt.bus, model=c.decision_model, confirm_models=c.decision_confirm_models, risk=c.risk, exchange=c.exchange
        ),
        rt.bus,
    )


def _virtual_exchange(rt: Runtime) -> Worker:
    from pipeline.stages.virtual_exchange import VirtualExchangeStage

    return StageRunner(VirtualExchangeStage(rt.bus, rt.db, rt.config.exchange), rt.bus)


def _notifier(rt: Runtime) -> Worker:
    from pipeline.stages.notifier import Notifier

    c = rt.config
    if not (c.discord_webhook_url or c.notify_webhook_url):
        raise ConfigError("the notifier needs DISCORD_WEBHOOK_URL or NOTIFY_WEBHOOK_URL in the environment or .env")
    return StageRunner(Notifier(discord_url=c.discord_webhook_url, webhook_url=c.notify_webhook_url), rt.bus)


def _trainer(rt: Runtime) -> Worker:
    from pipeline.jobs.training import ScheduledTrainer

    if not rt.config.ml_retrain_minutes:
        raise ConfigError("the trainer stage needs ML_RETRAIN_MINUTES > 0 (minutes between retrainings)")
    return ScheduledTrainer(rt.config, rt.db, rt.registry, every_s=rt.config.ml_retrain_minutes * 60)


def _replay(rt: Runtime) -> Worker:
    from pipeline.sources.replay import ReplaySource, replay_files_from_spec

    if not rt.config.replay_files:
        raise ConfigError("the replay source needs REPLAY_FILES, e.g. BTCUSDT=data/BTCUSDT-1m-2024-11.csv")
    files = replay_files_from_spec(rt.config.replay_files)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"REPLAY_FILES names files that do not exist: {', '.join(missing)}")
    return ReplaySource(rt.bus.producer(), files, speed=rt.config.replay_speed, loop=rt.config.replay_loop)


def _live_feed(stage: str) -> WorkerFactory:
    def make(rt: Runtime) -> Worker:
        c = rt.config
        url = {"binance-rest": "base_url", "binance-ws": "url", "bybit-ws": "url", "alpaca-ws": "url"}[stage]
        kwargs: dict[str, Any] = {url: c.feed_urls[stage]} if stage in c.feed_urls else {}
        if stage == "binance-rest":
            from pipeline.sources.binance import BinanceTickerPoller

            return BinanceTickerPoller(rt.bus.producer(), c.symbols, interval_s=c.binance_poll_s, **kwargs)
        if stage == "binance-ws":
            from pipeline.sources.binance import BinanceStream

            return BinanceStream(rt.bus.producer(), c.symbols, **kwargs)
        if stage == "bybit-ws":
            from pipeline.sources.bybit import BybitStream

            return BybitStream(rt.bus.producer(), c.symbols, **kwargs)
        from pipeline.sources.alpaca import AlpacaStream

        if not (c.alpaca_key and c.alpaca_secret):
            raise ConfigError("alpaca-ws needs ALPACA_API_KEY and ALPACA_API_SECRET in the environment or .env")
        return AlpacaStream(rt.bus.producer(), c.symbols, key=c.alpaca_key, secret=c.alpaca_secret, **kwargs)

    return make


def _exchange_history(rt: Runtime) -> list[Worker]:
    from pipeline.sources.exchange_api import client_for
    from pipeline.sources.trade_history import ExchangeHistorySource

    if not rt.config.exchange_keys:
        raise ConfigError(
            "exchange-history needs BINANCE_API_KEY and BINANCE_API_SECRET, or BYBIT_API_KEY and "
            "BYBIT_API_SECRET, in the environment or .env"
        )
    return [
        ExchangeHistorySource(
            client_for(k.venue, k.api_key, k.api_secret, k.base_url),
            rt.producer,
            user_id=rt.config.user_id,
            symbols=rt.config.symbols,
        )
        for k in rt.config.exchange_keys
    ]


# One factory per name of pipeline.stage_catalog (a unit test keeps them equal).
WORKERS: dict[str, WorkerFactory] = {
    "simulator": lambda rt: SimulatorSource(
        rt.bus,
        MarketSimulator(rt.config.symbols, rt.config.simulator_seed),
        tick_ms=rt.config.simulator_tick_ms,
        history_minutes=rt.config.simulator_history_minutes,
    ),
    "replay": _replay,
    **{name: _live_feed(name) for name in ("binance-rest", "binance-ws", "bybit-ws", "alpaca-ws")},
    "market-store": lambda rt: StageRunner(
        MarketStore(rt.db, tick_retention_ms=rt.config.tick_retention_days * 86_400_000), rt.bus
    ),
    "ml": _ml,
    # Three signals a tick per symbol add up (1.3M rows a day for 5 symbols): the store keeps two days.
    "signal-store": lambda rt: StageRunner(SignalStore(rt.db, retention_ms=2 * 86_400_000), rt.bus),
    "trainer": _trainer,
    "decision": _decision,
    "virtual-exchange": _virtual_exchange,
    "notifier": _notifier,
    "normalizer": lambda rt: StageRunner(Normalizer(rt.db), rt.bus),
    "enricher": lambda rt: StageRunner(Enricher(rt.db), rt.bus),
    "behaviour": lambda rt: StageRunner(BehaviourStage(rt.db, rt.config.behaviour), rt.bus),
    "journal-store": lambda rt: StageRunner(JournalStore(rt.db), rt.bus),
    "api": _api,
    "exchange-history": _exchange_history,
}


@dataclass
class Runtime:
    """A running pipeline. Thread-safe to read; ``stop`` once at shutdown."""

    config: Config
    bus: Bus
    db: Database
    workers: list[Worker] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    _producer: Producer | None = field(default=None, repr=False)
    _registry: Registry | None = field(default=None, repr=False)
    _training: TrainingJob | None = field(default=None, repr=False)
    _backtest: BacktestJob | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopped: bool = field(default=False, repr=False)
    _board: StatusBoard | None = field(default=None, repr=False)

    @property
    def producer(self) -> Producer:
        """The producer that pages and the API publish with (one, shared, thread-safe)."""
        with self._lock:
            if self._producer is None:
                self._producer = self.bus.producer()
            return self._producer

    def api_context(self) -> ApiContext:
        """What the API's routes use of this runtime."""
        from pipeline.api.context import ApiContext
        from pipeline.api.guard import GuardSettings, allowed_hosts
        from pipeline.api.tokens import TokenStore
        from pipeline.journal.importer import MAX_UPLOAD_BYTES

        c = self.config
        tokens = TokenStore(c.data_dir)
        tokens.token_for(c.user_id)  # the install's token exists from the first start on
        guard = GuardSettings(
            hosts=allowed_hosts(c.api_host, c.api_allowed_hosts),
            origins=frozenset(c.api_allowed_origins),
            max_body=c.api_max_body_bytes,
            max_upload=MAX_UPLOAD_BYTES + 64 * 1024,  # the file plus its multipart envelope
        )
        return ApiContext(
            bus=self.bus,
            producer=self.producer,
            db=self.db,
            user_id=c.user_id,
            tokens=tokens,
            guard=guard,
            max_websockets=c.api_max_websockets,
        )

    @property
    def registry(self) -> Registry:
        """The model registry (SQLite rows in the store, files under DATA_DIR/models)."""
        from pipeline.ml.registry import Registry

        with self._lock:
            if self._registry is None:
                self._registry = Registry(self.db, self.config.data_dir / "models")
            return self._registry

    def train(
        self,
        symbols: tuple[str, ...],
        models: tuple[str, ...],
        *,
        source: Source = "store",
        bars: int | None = None,
        path: str | None = None,
    ) -> TrainingJob:
        """Start a training job in the background unless one is running; return the job."""
        from pipeline.jobs.training import TrainingJob

        registry = self.registry
        with self._lock:
            if self._training is not None and self._training.running:
                return self._training
            self._training = TrainingJob(
                self.config, self.db, registry, symbols, models, source=source, bars=bars, path=path
            )
        self._training.start()
        return self._training

    @property
    def training(self) -> TrainingJob | None:
        """The last training job started from a page, if any."""
        return self._training

    def backtest(self, request: BacktestRequest) -> BacktestJob:
        """Start a backtest in the background unless one is running; return the job."""
        from pipeline.jobs.backtests import BacktestJob

        with self._lock:
            if self._backtest is not None and self._backtest.running:
                return self._backtest
            self._backtest = BacktestJob(self.config, self.db, request)
        self._backtest.start()
        return self._backtest

    @property
    def backtesting(self) -> BacktestJob | None:
        """The last backtest started from a page, if any."""
        return self._backtest

    def health(self) -> list[Health]:
        """Return a snapshot of every worker's health."""
        return [w.health.snapshot() for w in self.workers]

    def topics(self) -> list[TopicState]:
        return self.bus.describe_topics()

    def groups(self) -> list[GroupState]:
        return self.bus.describe_groups()

    def stop(self) -> None:
        """Stop workers (sources first, so stages can drain), then close the store and bus.
        Safe to call again (the app also registers it with ``atexit``)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for w in sorted(self.workers, key=lambda w: w.kind != "source"):
            w.stop()
        if self._board is not None:
            self._board.stop()
        if self._producer is not None:
            self._producer.close()  # flushes first
        self.db.close()
        self.bus.close()


def tune_gc() -> None:
    """Collect young objects less often: the stages allocate a few dicts per message, and the
    default (a collection every 700 allocations, scanning everything imported at start) costs
    the journal pipeline about a quarter of its throughput (bench.journal)."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


class _GroupLags:
    """How far stages running in other processes are behind, from their consumer groups: one
    ``describe_groups`` (on Kafka, a request per group on the broker) every 5 s at most, however
    many stage processes ask."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.lock = threading.Lock()
        self.at = -1e9
        self.lags: dict[str, int] = {}

    def __call__(self, group_id: str) -> int | None:
        with self.lock:
            if time.monotonic() - self.at > 5.0:
                self.at = time.monotonic()
                try:
                    self.lags = {g.group_id: g.lag for g in self.bus.describe_groups()}
                except Exception:  # a broker hiccup must not stop the watchers; the next look tries again
                    log.debug("could not describe the consumer groups", exc_info=True)
            return self.lags.get(group_id)


def build_runtime(config: Config, stages: tuple[str, ...] | None = None, *, start: bool = True) -> Runtime:
    """Connect to the bus, create the catalog's topics, open the store and start the stages."""
    names = stages if stages is not None else config.stages
    unknown = [n for n in names if n not in WORKERS]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; known: {', '.join(sorted(WORKERS))}")
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        bus = create_bus(config)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"DATA_DIR={str(config.data_dir)!r} is not usable: {exc}") from exc
    bus.create_topics(CATALOG.values())
    try:
        db = Database(config.data_dir / "desk.db")
    except (OSError, sqlite3.Error) as exc:
        bus.close()
        raise ConfigError(f"DATA_DIR={str(config.data_dir)!r} is not usable: {exc}") from exc
    runtime = Runtime(config, bus, db)
    try:
        lags = _GroupLags(bus)
        for n in names:
            if n in config.stage_processes:
                runtime.workers.append(StageProcess(n, config.data_dir, lag=functools.partial(lags, n)))
                continue
            made = WORKERS[n](runtime)
            runtime.workers.extend(made if isinstance(made, list) else [made])
    except BaseException:
        runtime.stop()
        raise
    if start:
        tune_gc()
        for w in runtime.workers:
            w.start()
        runtime._board = StatusBoard(db, lambda: runtime.workers)
        runtime._board.start()
    log.info("pipeline started on the %s bus with %s", bus.name, ", ".join(names) or "no stages")
    return runtime
