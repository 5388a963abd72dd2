"""The one runtime per process: the bus, the store and the workers that run, and what pages ask of it.

``Runtime`` is what the app (through ``runtime.get_runtime``) and ``python -m pipeline run`` hold.
Its methods are called from page threads; workers run on their own threads.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.bus.base import Bus, GroupState, Producer, TopicState
from pipeline.config import Config
from pipeline.runner import Worker
from pipeline.status_board import StatusBoard
from pipeline.worker_health import Health
from storage.db import Database

if TYPE_CHECKING:
    from pipeline.api.context import ApiContext
    from pipeline.fanout import TradeFanout
    from pipeline.jobs.backtests import BacktestJob, BacktestRequest
    from pipeline.jobs.optimise import OptimiseJob, OptimiseRequest
    from pipeline.jobs.training import Source, TrainingJob
    from pipeline.ml.registry import Registry

log = logging.getLogger(__name__)

WorkerFactory = Callable[["Runtime"], "Worker | list[Worker]"]


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
    _optimise: OptimiseJob | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopped: bool = field(default=False, repr=False)
    _board: StatusBoard | None = field(default=None, repr=False)
    _fanout: TradeFanout | None = field(default=None, repr=False)

    @property
    def fanout(self) -> TradeFanout:
        """The low-latency path of stock trades (in process, or Redis with ``REDIS_URL``): one, shared."""
        from pipeline.fanout import create_fanout

        with self._lock:
            if self._fanout is None:
                self._fanout = create_fanout(self.config.redis_url, self.config.redis_channel)
            return self._fanout

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
            fanout=self.fanout,
            stock_symbols=c.stock_symbols,
            behaviour=self.config.behaviour,
            pretrade_cooldown_min=self.config.pretrade_cooldown_min,
            models=self.config.ml_models,
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

    def train_first_run(self) -> TrainingJob:
        """Start the first start's training of the default models (``pipeline.jobs.first_run``)."""
        from pipeline.jobs.first_run import FirstRunTraining

        registry = self.registry
        with self._lock:
            if self._training is not None and self._training.running:
                return self._training
            self._training = FirstRunTraining(self.config, self.db, registry)
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

    def optimise(self, request: OptimiseRequest) -> OptimiseJob:
        """Start a walk-forward optimisation in the background unless one is running; return the job."""
        from pipeline.jobs.optimise import OptimiseJob

        with self._lock:
            if self._optimise is not None and self._optimise.running:
                return self._optimise
            self._optimise = OptimiseJob(self.config, self.db, request)
        self._optimise.start()
        return self._optimise

    @property
    def optimising(self) -> OptimiseJob | None:
        """The last optimisation started from a page, if any."""
        return self._optimise

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
        if self._fanout is not None:
            self._fanout.close()
        self.db.close()
        self.bus.close()


def tune_gc() -> None:
    """Collect young objects less often: the stages allocate a few dicts per message, and the
    default (a collection every 700 allocations, scanning everything imported at start) costs
    the journal pipeline about a quarter of its throughput (bench.journal)."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def tune_switching(interval_ms: float) -> None:
    """Let a thread waiting for the interpreter's lock take it after ``interval_ms`` of another's
    Python work (``SWITCH_INTERVAL_MS``; Python's own is 5 ms). A stage woken by a commit, or by its
    store's writer, waits for the lock after every SQLite call; with 5 ms every one of those waits
    could last up to 5 ms while behaviour's rules ran, which added up along the journal's path
    (bench.journal --compare: p99 at 1,000 trades/s about 5 ms lower at 0.5 ms, same CPU)."""
    sys.setswitchinterval(interval_ms / 1000)


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
