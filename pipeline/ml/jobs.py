"""Training in the background: a job started from the Signals page (or the CLI) and the optional
scheduled retraining worker. Both train with ``pipeline.ml.train.train_symbol`` and register the
results; the ml stage picks up the new active versions by itself.

A ``TrainingJob`` runs on its own thread; pages read ``snapshot()`` from theirs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.runner import Worker

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.ml.registry import ModelRecord, Registry
    from pipeline.wiring import Runtime
    from storage.db import Database

log = logging.getLogger(__name__)

Source = Literal["store", "simulator", "file"]
SIMULATOR_BARS = 20_000


def load_bars(config: Config, db: Database, symbol: str, source: Source, *, bars: int | None = None,
              path: str | None = None) -> tuple[pd.DataFrame, int]:
    """Return the bars to train ``symbol`` on and their interval in ms."""
    from pipeline.ml import data

    if source == "store":
        frame = data.bars_from_store(db, symbol, limit=bars or config.ml_train_bars)
    elif source == "simulator":
        frame = data.bars_from_simulator(symbol, bars or SIMULATOR_BARS, seed=config.simulator_seed or 0)
    else:
        if not path:
            raise PipelineError("training from a file needs its path")
        frame = data.bars_from_file(path)
        if bars:
            frame = frame.tail(bars).reset_index(drop=True)
    interval = int(frame["start"].diff().median()) if len(frame) > 1 else 60_000
    return frame, interval


@dataclass
class JobState:
    """What a page shows of a training job."""

    running: bool = False
    progress: float = 0.0
    message: str = "waiting"
    trained: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None


class TrainingJob:
    """Trains ``models`` for each of ``symbols`` on its own thread, one symbol after another."""

    def __init__(self, config: Config, db: Database, registry: Registry, symbols: tuple[str, ...],
                 models: tuple[str, ...], *, source: Source = "store", bars: int | None = None,
                 path: str | None = None) -> None:
        self.config, self.db, self.registry = config, db, registry
        self.symbols, self.models = symbols, models
        self.source, self.bars, self.path = source, bars, path
        self.records: list[ModelRecord] = []
        self._state = JobState()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.run, name="ml:training", daemon=True)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._state.running

    def snapshot(self) -> JobState:
        with self._lock:
            s = self._state
            return JobState(s.running, s.progress, s.message, list(s.trained), list(s.errors), s.started_at,
                            s.finished_at)

    def start(self) -> None:
        with self._lock:
            self._state.running, self._state.started_at = True, time.time()
        self._thread.start()

    def _set(self, progress: float, message: str) -> None:
        with self._lock:
            self._state.progress, self._state.message = min(1.0, max(0.0, progress)), message

    def run(self) -> None:
        """Train every symbol; a symbol that fails (too little data, a bad file) is reported and skipped."""
        from pipeline.ml.train import train_symbol

        with self._lock:
            self._state.running = True
            self._state.started_at = self._state.started_at or time.time()
        config = self.config
        n = len(self.symbols)
        try:
            for i, symbol in enumerate(self.symbols):
                self._set(i / n, f"{symbol}: loading bars")
                try:
                    bars, interval = load_bars(config, self.db, symbol, self.source, bars=self.bars,
                                                path=self.path)
                    records = train_symbol(
                        self.registry, bars, symbol, self.models, horizon=config.ml_horizon_bars,
                        interval_ms=interval, fee_bps=config.ml_fee_bps,
                        progress=lambda f, m, i=i, s=symbol: self._set((i + f) / n, f"{s}: {m}"))
                except PipelineError as exc:
                    with self._lock:
                        self._state.errors.append(f"{symbol}: {exc}")
                    continue
                except Exception as exc:  # a job must end and say why, whatever happened
                    log.exception("training %s failed", symbol)
                    with self._lock:
                        self._state.errors.append(f"{symbol}: {type(exc).__name__}: {exc}")
                    continue
                self.records.extend(records)
                with self._lock:
                    self._state.trained.extend(f"{r.symbol} {r.model} v{r.version}" for r in records)
        finally:
            with self._lock:
                self._state.running, self._state.finished_at = False, time.time()
                self._state.progress = 1.0
                self._state.message = "done" if not self._state.errors else "done with errors"


class ScheduledTrainer(Worker):
    """Retrains the configured models for every symbol from the stored bars every ``every_s``."""

    kind = "source"

    def __init__(self, runtime: Runtime, every_s: float) -> None:
        super().__init__("trainer")
        self.runtime = runtime
        self.every_s = every_s

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            rt = self.runtime
            job = TrainingJob(rt.config, rt.db, rt.registry, rt.config.symbols, rt.config.ml_models)
            job.run()
            state = job.snapshot()
            with self.health.lock:
                self.health.produced += len(state.trained)
                self.health.last_activity_at = time.time()
            for error in state.errors:
                self.health.error(error)
