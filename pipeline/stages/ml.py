"""ml: ``crypto.market_data`` -> ``crypto.ml_signals``, one signal per tick and active model.

Each symbol's ticks are folded into bars of the models' interval. A tick's features are those of
the bar being formed as if it closed at the tick's price, from closed bars only: what the model
saw in training for that bar's close. Warm-up bars come from the store's ``bars_1m`` (written by
market-store from the same topic). The active version of each model and symbol is loaded from the
registry and checked for a newer one every ``reload_s``; a file that fails to load leaves the
previous version active (in the registry too) and records the error on the version that failed.

Rows are predicted in one call per model per batch, every symbol's rows together
(``pipeline.ml.stacked``): a burst of one tick per symbol costs one compiled loop per model, not
one call per model and symbol. A signal keeps its tick's time, and
signals of replayed ticks are published as replays too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from pipeline.bus.base import Latency, OffsetReset, Record
from pipeline.messages import KeptJSON, MarketData, Message, MLSignal, trusted
from pipeline.ml.features import SEED_FEATURES, WARMUP_BARS, FeatureState
from pipeline.ml.registry import ModelLoadError, ModelRecord, Registry
from pipeline.ml.stacked import Separate, Stack
from pipeline.runner import FEED_HEADER, REPLAY, REPLAY_HEADERS, Output, Stage
from pipeline.topics import MARKET_DATA
from pipeline.trading.risk import confidence_level
from storage import market
from storage.db import Database

log = logging.getLogger(__name__)

# How often a symbol still warming up asks the store again for its history.
WARM_RETRY_S = 2.0
# Out-of-sample figures copied into every signal's metadata.
METADATA_METRICS = ("accuracy", "precision_up", "recall_up", "r2", "mae_pct", "profit_pct", "samples")


def signal_of(expected_change_pct: float, buy_pct: float, sell_pct: float) -> str:
    """Map an expected change to seed 001's signal: BUY above ``buy_pct``, SELL below ``sell_pct``."""
    if expected_change_pct > buy_pct:
        return "BUY"
    if expected_change_pct < sell_pct:
        return "SELL"
    return "HOLD"


@dataclass
class _Bar:
    start: int
    high: float
    low: float
    close: float
    volume: float


class _SymbolState:
    """Bars and features of one symbol; used by the stage's thread only."""

    def __init__(self) -> None:
        self.features = FeatureState()
        self.bar: _Bar | None = None
        self.last_closed = -1  # start of the last bar pushed into ``features``
        self.warmed_at = -math.inf  # when the store was last asked for warm-up bars (monotonic)

    def push(self, bar: _Bar) -> None:
        if bar.start > self.last_closed:
            self.features.push(bar.close, bar.high, bar.low, bar.volume)
            self.last_closed = bar.start


@dataclass
class _Loaded:
    record: ModelRecord
    predictor: Any
    metadata: dict[str, Any]
    # ``metadata`` with each confidence level, built and encoded once: every signal of the model
    # shares one (``KeptJSON``: a signal is encoded with its bytes).
    by_level: dict[str, KeptJSON] = field(init=False)
    model: str = field(init=False)  # the record's and the predictor's, looked up once, not per signal
    prediction_type: str = field(init=False)

    def __post_init__(self) -> None:
        self.model = self.record.model
        self.prediction_type = self.predictor.prediction_type
        self.by_level = {level: KeptJSON(self.metadata, confidence_level=level) for level in ("low", "medium", "high")}


# One model's loaded versions taking the same feature columns: the columns, their stack, and each
# symbol's place in the stack with its loaded version.
_Group = tuple[tuple[str, ...], Stack | Separate, dict[str, tuple[int, _Loaded]]]


class MLStage(Stage):
    """Runs on its runner's thread; ``registry`` reads and writes through the store."""

    name: ClassVar[str] = "ml"
    latency: ClassVar[Latency] = "low"  # on the path from a tick to its order
    inputs: ClassVar[tuple[str, ...]] = (MARKET_DATA,)
    # Signals are about now: a fresh group starts at the topic's end and warms up from the store.
    offset_reset: ClassVar[OffsetReset] = "latest"
    # Every symbol's rows of a model in one compiled call (``Stack``), or one call per symbol and
    # model (``Separate``, as before stacks: ``bench.signals --predict both`` compares them).
    stacked: ClassVar[bool] = True
    commit_async: ClassVar[bool] = True  # see Stage.commit_async
    commit_on_delivery: ClassVar[bool] = True  # see Stage.commit_on_delivery; docs/delivery.md#latency

    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        models: Sequence[str],
        buy_pct: float = 1.5,
        sell_pct: float = -1.5,
        interval_ms: int = 60_000,
        reload_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.registry = registry
        self.models = tuple(models)
        self.buy_pct, self.sell_pct = buy_pct, sell_pct
        self.interval_ms = interval_ms
        self.reload_s = reload_s
        self.clock = clock
        self.states: dict[str, _SymbolState] = {}
        self.loaded: dict[tuple[str, str], _Loaded] = {}
        self.skipped: dict[str, int] = {"warming up": 0, "out of order": 0, "no model": 0}
        self.load_errors: list[str] = []
        self._reloaded_at = -math.inf
        self._stacked: dict[str, list[_Group]] | None = None

    def status(self) -> dict[str, Any]:
        """Ticks that made no signal, by reason, and the last model files that failed to load."""
        return {"skipped": dict(self.skipped), "load_errors": list(self.load_errors[-3:])}

    # -- models ---------------------------------------------------------------------------------

    def reload(self) -> None:
        """Load the registry's active versions that differ from the loaded ones.

        Runs on the stage's thread between batches every ``reload_s``: it first reads only which
        versions are active, and reads the records (their metrics and reports) only when one
        changed; reading all 150 records of a live desk each time held one burst in a hundred ~8 ms."""
        self._reloaded_at = self.clock()
        active = self.registry.active_versions()
        loaded = self.loaded
        if all(
            (current := loaded.get(key)) is not None and current.record.version == version
            for key, version in active.items()
            if key[1] in self.models
        ):
            return
        for record in self.registry.records(active_only=True):
            key = (record.symbol, record.model)
            if record.model not in self.models:
                continue
            current = self.loaded.get(key)
            if current is not None and current.record.version == record.version:
                continue
            try:
                predictor = self.registry.load(record)
            except ModelLoadError as exc:
                self._load_failed(record, current, str(exc))
                continue
            predictor.warm()  # the compiled walk's code loads here, not on the next tick
            self.loaded[key] = _Loaded(record, predictor, _metadata(record))
            self._stacked = None
            log.info("ml: %s %s v%d active", record.symbol, record.model, record.version)

    def _load_failed(self, record: ModelRecord, current: _Loaded | None, error: str) -> None:
        kept = f"v{current.record.version} stays active" if current else "no version of it is active"
        note = f"{record.symbol} {record.model} v{record.version} failed to load ({error}); {kept}"
        log.warning("ml: %s", note)
        self.load_errors.append(note)
        self.registry.set_load_error(record.symbol, record.model, record.version, error)
        if current is not None:
            self.registry.activate(record.symbol, record.model, current.record.version)

    # -- ticks ----------------------------------------------------------------------------------

    def prepare_record(self, message: Message, record: Record) -> Any:
        return message, record.header(FEED_HEADER) == REPLAY

    def _state(self, symbol: str, bar_start: int) -> _SymbolState:
        state = self.states.get(symbol)
        if state is None:
            state = self.states[symbol] = _SymbolState()
            self._warm(symbol, state, bar_start)
        return state

    def _warm(self, symbol: str, state: _SymbolState, before: int) -> None:
        """Push the store's bars of ``symbol`` that closed before ``before`` and after what we have."""
        state.warmed_at = self.clock()
        for row in market.before(self.db, symbol, before, after_ms=state.last_closed, limit=WARMUP_BARS + 5):
            state.push(_Bar(*row))

    def _features(self, tick: MarketData) -> dict[str, float] | None:
        start = tick.timestamp - tick.timestamp % self.interval_ms
        state = self._state(tick.symbol, start)
        bar = state.bar
        if bar is None or start > bar.start:
            if bar is not None:
                state.push(bar)
            bar = state.bar = _Bar(start, tick.price, tick.price, tick.price, 0.0)
        elif start < bar.start:
            self.skipped["out of order"] += 1
            return None
        if not state.features.ready and self.clock() - state.warmed_at > WARM_RETRY_S:
            self._warm(tick.symbol, state, start)  # market-store may have stored the history since
        bar.high, bar.low, bar.close = max(bar.high, tick.price), min(bar.low, tick.price), tick.price
        bar.volume += tick.tick_volume or 0.0
        features = state.features.features(tick.price)
        if features is None:
            self.skipped["warming up"] += 1
        return features

    def _stacks(self) -> dict[str, list[_Group]]:
        """Per model: its loaded versions grouped by feature columns, each group one ``Stack`` and
        each symbol's place in it; rebuilt after a reload changed what is loaded."""
        if self._stacked is None:
            by_model: dict[str, dict[tuple[str, ...], list[tuple[str, _Loaded]]]] = {}
            for (symbol, model), loaded in self.loaded.items():
                names = tuple(loaded.record.features)
                by_model.setdefault(model, {}).setdefault(names, []).append((symbol, loaded))
            self._stacked = {}
            for model, groups in by_model.items():
                for names, members in groups.items():
                    predictors = [loaded.predictor for _, loaded in members]
                    stack = Stack(predictors) if self.stacked else Separate(predictors)
                    stack.warm()  # the compiled code loads here, not on the next tick
                    places = {symbol: (i, loaded) for i, (symbol, loaded) in enumerate(members)}
                    self._stacked.setdefault(model, []).append((names, stack, places))
        return self._stacked

    def process_batch(self, messages: list[Any]) -> list[Output]:
        if self.clock() - self._reloaded_at >= self.reload_s:
            self.reload()
        ticks: list[tuple[MarketData, bool, dict[str, float]]] = []
        for tick, replay in messages:
            features = self._features(tick)
            if features is not None:
                ticks.append((tick, replay, features))
        # Per tick, every model's signal in the models' order; each model's rows of every symbol in
        # one call of its stack.
        per_tick: list[list[Output]] = [[] for _ in ticks]
        stacks = self._stacks()
        matrices: dict[tuple[str, ...], np.ndarray] = {}  # models sharing features share the rows
        shown: dict[tuple[int, tuple[str, ...]], KeptJSON] = {}  # a tick's features as signals carry them
        for model in self.models:
            for names, stack, places in stacks.get(model, ()):
                rows: list[int] = []
                which: list[int] = []
                members: list[_Loaded] = []
                for i, (tick, _, _) in enumerate(ticks):
                    place = places.get(tick.symbol)
                    if place is not None:
                        rows.append(i)
                        which.append(place[0])
                        members.append(place[1])
                if not rows:
                    continue
                X = matrices.get(names)
                if X is None:
                    X = matrices[names] = np.array([[f[n] for n in names] for _, _, f in ticks], dtype=float)
                expected, confidence = stack.predict(X[rows], np.array(which, dtype=np.int64))
                for i, loaded, r, c in zip(rows, members, expected.tolist(), confidence.tolist()):
                    tick, replay, features = ticks[i]
                    carried = shown.get((i, names))
                    if carried is None:
                        wanted = (*SEED_FEATURES, *names)
                        carried = shown[(i, names)] = KeptJSON({k: features[k] for k in wanted if k in features})
                    signal = self._signal(tick, carried, loaded, r, c)
                    per_tick[i].append((signal, REPLAY_HEADERS) if replay else signal)
        self.skipped["no model"] += sum(1 for signals in per_tick if not signals)
        # Published in the ticks' order, every model's signal of a tick together: the decision stage
        # gathers a tick's signals as they come, takes a later tick's signal as the end of the group,
        # and sizes from prices of every symbol as of that tick.
        return [s for signals in per_tick for s in signals]

    def _signal(
        self, tick: MarketData, features: KeptJSON, loaded: _Loaded, expected: float, confidence: float
    ) -> MLSignal:
        """``features``: what the signal carries (the seed's and the model's), shared by the signals of one tick."""
        change = math.expm1(expected) * 100
        confidence = min(1.0, max(0.0, confidence))
        price = tick.price
        return trusted(
            MLSignal,
            symbol=tick.symbol,
            timestamp=tick.timestamp,
            model=loaded.model,
            prediction_type=loaded.prediction_type,
            predicted_value=price * math.exp(expected),
            current_price=price,
            expected_change_pct=change,
            confidence=confidence,
            signal=signal_of(change, self.buy_pct, self.sell_pct),
            features=features,
            metadata=loaded.by_level[confidence_level(confidence)],
        )


def _metadata(record: ModelRecord) -> dict[str, Any]:
    """What every signal of ``record`` says about the model: version and out-of-sample quality."""
    metrics = {k: record.metrics.get(k) for k in METADATA_METRICS}
    baselines = {
        name: {"accuracy": b.get("accuracy"), "profit_pct": b.get("profit_pct")} for name, b in record.baselines.items()
    }
    return {
        "model_version": str(record.version),
        "horizon_bars": record.horizon,
        "interval_ms": record.interval_ms,
        "trained_until": record.train_end,
        "out_of_sample": metrics,
        "baselines": baselines,
    }
