"""Training in the background: a job started from the Signals page (or the CLI) and the optional
scheduled retraining worker. Both train with ``pipeline.ml.train.train_symbol`` and register the
results; the ml stage picks up the new active versions by itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.jobs.base import Job, JobState
from pipeline.runner import Worker

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.ml.registry import ModelRecord, Registry
    from storage.db import Database

log = logging.getLogger(__name__)

Source = Literal["store", "simulator", "file"]
SIMULATOR_BARS = 20_000


def load_bars(
    config: Config,
    db: Database,
    symbol: str,
    source: Source,
    *,
    bars: int | None = None,
    path: str | None = None,
    any_path: bool = False,
) -> tuple[pd.DataFrame, int]:
    """Return the bars to train ``symbol`` on and their interval in ms.

    A file is a name in the candle folder (``CANDLE_DIR``, ``pipeline.candle_files``): what a page
    sends is never trusted. Only the command line passes ``any_path`` to read any file its user names.
    """
    from pipeline.ml import data

    if source == "store":
        frame = data.bars_from_store(db, symbol, limit=bars or config.ml_train_bars)
    elif source == "simulator":
        frame = data.bars_from_simulator(symbol, bars or SIMULATOR_BARS, seed=config.simulator_seed or 0)
    else:
        if not path:
            raise PipelineError("training from a file needs its path")
        if any_path:
            frame = data.bars_from_file(path)
        else:
            from pipeline.candle_files import CandleFolder

            frame = data.bars_from_candles(CandleFolder(config.candle_dir, config.candle_max_bytes).read(path), path)
        if bars:
            frame = frame.tail(bars).reset_index(drop=True)
    interval = int(frame["start"].diff().median()) if len(frame) > 1 else 60_000
    return frame, interval


@dataclass
class TrainingState(JobState):
    """A training job's state: the versions registered so far."""

    trained: list[str] = field(default_factory=list)


class TrainingJob(Job):
    """Trains ``models`` for each of ``symbols``, one symbol after another.

    A symbol that fails (too little data, a bad file) is reported and skipped."""

    name = "ml:training"

    def __init__(
        self,
        config: Config,
        db: Database,
        registry: Registry,
        symbols: tuple[str, ...],
        models: tuple[str, ...],
        *,
        source: Source = "store",
        bars: int | None = None,
        path: str | None = None,
        any_path: bool = False,
    ) -> None:
        super().__init__(TrainingState())
        self.config, self.db, self.registry = config, db, registry
        self.symbols, self.models = symbols, models
        self.source, self.bars, self.path = source, bars, path
        self.any_path = any_path  # True only from the command line: see load_bars
        self.records: list[ModelRecord] = []

    def snapshot(self) -> TrainingState:
        state = super().snapshot()
        assert isinstance(state, TrainingState)
        state.trained = list(state.trained)
        return state

    def work(self) -> str:
        from pipeline.ml.train import train_symbol

        config = self.config
        n = len(self.symbols)
        failed = False
        for i, symbol in enumerate(self.symbols):
            self.progress(i / n, f"{symbol}: loading bars")
            try:
                bars, interval = load_bars(
                    config, self.db, symbol, self.source, bars=self.bars, path=self.path, any_path=self.any_path
                )
                records = train_symbol(
                    self.registry,
                    bars,
                    symbol,
                    self.models,
                    horizon=config.ml_horizon_bars,
                    interval_ms=interval,
                    fee_bps=config.ml_fee_bps,
                    progress=self._progress_of(symbol, i, n),
                )
            except PipelineError as exc:
                self.fail(f"{symbol}: {exc}")
                failed = True
                continue
            except Exception as exc:  # one symbol's failure must not stop the others
                log.exception("training %s failed", symbol)
                self.fail(f"{symbol}: {type(exc).__name__}: {exc}")
                failed = True
                continue
            self.records.extend(records)
            with self._lock:
                assert isinstance(self._state, TrainingState)
                self._state.trained.extend(f"{r.symbol} {r.model} v{r.version}" for r in records)
        return "done with errors" if failed else "done"

    def _progress_of(self, symbol: str, i: int, n: int) -> Callable[[float, str], None]:
        """Report the progress of the ``i``-th of ``n`` symbols as a share of the whole job."""
        return lambda fraction, message: self.progress((i + fraction) / n, f"{symbol}: {message}")


class ScheduledTrainer(Worker):
    """Retrains the configured models for every symbol from the stored bars every ``every_s``."""

    kind = "source"

    def __init__(self, config: Config, db: Database, registry: Registry, every_s: float) -> None:
        super().__init__("trainer")
        self.config, self.db, self.registry = config, db, registry
        self.every_s = every_s

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            job = TrainingJob(self.config, self.db, self.registry, self.config.symbols, self.config.ml_models)
            job.run()
            state = job.snapshot()
            with self.health.lock:
                self.health.produced += len(state.trained)
                self.health.last_activity_at = time.time()
            for error in state.errors:
                self.health.error(error)
