"""The crypto desk's workers: market sources, the market and signal stores, ML, training and paper trading."""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConfigError
from pipeline.runner import StageRunner, Worker
from pipeline.wiring.runtime import Runtime, WorkerFactory


def _simulator(rt: Runtime) -> Worker:
    from pipeline.sources.simulator import MarketSimulator, SimulatorSource

    c = rt.config
    return SimulatorSource(
        rt.bus,
        MarketSimulator(c.symbols, c.simulator_seed),
        tick_ms=c.simulator_tick_ms,
        history_minutes=c.simulator_history_minutes,
    )


def _market_store(rt: Runtime) -> Worker:
    from pipeline.stages.market_store import MarketStore

    return StageRunner(MarketStore(rt.db, tick_retention_ms=rt.config.tick_retention_days * 86_400_000), rt.bus)


def _signal_store(rt: Runtime) -> Worker:
    from pipeline.stages.signal_store import SignalStore

    # Three signals a tick per symbol add up (1.3M rows a day for 5 symbols): the store keeps two days.
    return StageRunner(SignalStore(rt.db, retention_ms=2 * 86_400_000), rt.bus)


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

            return BinanceTickerPoller(rt.bus.producer("low"), c.symbols, interval_s=c.binance_poll_s, **kwargs)
        if stage == "binance-ws":
            from pipeline.sources.binance import BinanceStream

            return BinanceStream(rt.bus.producer("low"), c.symbols, **kwargs)
        if stage == "bybit-ws":
            from pipeline.sources.bybit import BybitStream

            return BybitStream(rt.bus.producer("low"), c.symbols, **kwargs)
        from pipeline.sources.alpaca import AlpacaStream

        if not (c.alpaca_key and c.alpaca_secret):
            raise ConfigError("alpaca-ws needs ALPACA_API_KEY and ALPACA_API_SECRET in the environment or .env")
        return AlpacaStream(rt.bus.producer("low"), c.symbols, key=c.alpaca_key, secret=c.alpaca_secret, **kwargs)

    return make


def _ml(rt: Runtime) -> Worker:
    from pipeline.stages.ml import MLStage  # scikit-learn loads only when models are wanted

    buy_pct, sell_pct = rt.config.live_signal_pcts
    return StageRunner(
        MLStage(rt.db, rt.registry, models=rt.config.ml_models, buy_pct=buy_pct, sell_pct=sell_pct),
        rt.bus,
    )


def _trainer(rt: Runtime) -> Worker:
    from pipeline.jobs.training import ScheduledTrainer

    if not rt.config.ml_retrain_minutes:
        raise ConfigError("the trainer stage needs ML_RETRAIN_MINUTES > 0 (minutes between retrainings)")
    return ScheduledTrainer(rt.config, rt.db, rt.registry, every_s=rt.config.ml_retrain_minutes * 60)


def _decision(rt: Runtime) -> Worker:
    from pipeline.stages.decision import DecisionStage  # backtrader loads only when trading

    c = rt.config
    return StageRunner(
        DecisionStage(
            rt.bus,
            model=c.decision_model,
            confirm_models=c.decision_confirm_models,
            risk=c.live_risk,
            exchange=c.exchange,
        ),
        rt.bus,
    )


def _virtual_exchange(rt: Runtime) -> Worker:
    from pipeline.stages.virtual_exchange import VirtualExchangeStage

    return StageRunner(VirtualExchangeStage(rt.bus, rt.db, rt.config.exchange), rt.bus)


FACTORIES: dict[str, WorkerFactory] = {
    "simulator": _simulator,
    "replay": _replay,
    **{name: _live_feed(name) for name in ("binance-rest", "binance-ws", "bybit-ws", "alpaca-ws")},
    "market-store": _market_store,
    "ml": _ml,
    "signal-store": _signal_store,
    "trainer": _trainer,
    "decision": _decision,
    "virtual-exchange": _virtual_exchange,
}
