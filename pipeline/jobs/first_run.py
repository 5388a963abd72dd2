"""The desk's first start: on a fresh ``DATA_DIR`` (no model registered yet) with the simulator, the
ml stage and the decision stage running, the default models are trained in the background on the
simulator's own history, so signals flow within a minute and the paper account can trade with no
clicks. The Signals page shows its progress as any training's; the Market page's first-run panel
says what is happening.

The decision model (and the models that may confirm it) are trained for every symbol first, then
the other models: the paper account can trade as soon as the first phase is done. The first models
are quick ones, on ``FIRST_RUN_BARS`` bars (about two days of minutes): trained in seconds, and on a
random walk more often confident enough for the paper account to trade (how often depends on the
history drawn: docs/ml.md, "First start"; a first order within minutes is not guaranteed). Trades are
the desk working, not an edge; their out-of-sample figures next to the baselines say so, and the
Signals page trains on more history or on real candles. Turn it off with ``FIRST_RUN_TRAINING=off``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from pipeline.jobs.training import TrainingJob

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.ml.registry import Registry
    from storage.db import Database

FIRST_RUN = "ml:first-run"
FIRST_RUN_BARS = 3_000


def wanted(config: Config, stages: Collection[str], registry: Callable[[], Registry]) -> bool:
    """Whether this start is a first start that should train the default models. ``registry`` is
    asked for only when the stages could trade (loading it imports scikit-learn)."""
    return config.first_run_training and {"simulator", "ml", "decision"} <= set(stages) and not registry().records()


class FirstRunTraining(TrainingJob):
    """Trains ``config.ml_models`` for every symbol on ``bars`` of simulator history: the decision
    model and its confirming models first, then the rest."""

    name = FIRST_RUN

    def __init__(self, config: Config, db: Database, registry: Registry, *, bars: int = FIRST_RUN_BARS) -> None:
        super().__init__(config, db, registry, config.symbols, config.ml_models, source="simulator", bars=bars)
        trading = {config.decision_model, *config.decision_confirm_models}
        self.phases = [
            p
            for p in (
                tuple(m for m in config.ml_models if m in trading),
                tuple(m for m in config.ml_models if m not in trading),
            )
            if p
        ]
        self._span = (0.0, 1.0)

    def progress(self, fraction: float, message: str) -> None:
        start, share = self._span
        super().progress(start + share * fraction, f"first start: {message}")

    def work(self) -> str:
        total = sum(len(p) for p in self.phases) or 1
        done, outcomes = 0, []
        for models in self.phases:
            self.models = models
            self._span = (done / total, len(models) / total)
            outcomes.append(super().work())
            done += len(models)
        self.models = tuple(m for p in self.phases for m in p)
        return "done with errors" if "done with errors" in outcomes else "done"
