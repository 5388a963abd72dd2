"""The stock desk's workers: its sources and its two stores."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.runner import StageRunner, Worker
from pipeline.wiring.runtime import Runtime, WorkerFactory


def _stock_simulator(rt: Runtime) -> Worker:
    from pipeline.sources.stock_simulator import StockSimulatorSource
    from pipeline.stocks.hours import market_hours

    c = rt.config
    return StockSimulatorSource(
        rt.bus,
        rt.fanout,
        c.stock_symbols,
        market_hours(),
        seed=c.simulator_seed,
        tick_ms=c.simulator_tick_ms,
        history_minutes=c.simulator_history_minutes,
    )


def _alpaca_stocks(rt: Runtime) -> Worker:
    from pipeline.sources.alpaca_rest import AlpacaBars, Feed
    from pipeline.sources.alpaca_stocks import AlpacaStockStream
    from pipeline.stocks.hours import market_hours

    c = rt.config
    if not (c.alpaca_key and c.alpaca_secret):
        raise ConfigError("alpaca-stocks needs ALPACA_API_KEY and ALPACA_API_SECRET in the environment or .env")
    feed: Feed = "sip" if c.alpaca_stock_feed == "sip" else "iex"
    rest = (
        AlpacaBars(c.alpaca_key, c.alpaca_secret, feed=feed, url=c.feed_urls.get("alpaca-data"))
        if c.stock_backfill_days
        else None
    )
    return AlpacaStockStream(
        rt.bus.producer("low"),
        rt.fanout,
        c.stock_symbols,
        market_hours(),
        key=c.alpaca_key,
        secret=c.alpaca_secret,
        feed=feed,
        url=c.feed_urls.get("alpaca-stocks"),
        rest=rest,
        backfill_days=c.stock_backfill_days,
    )


def _stock_replay(rt: Runtime) -> Worker:
    from pipeline.sources.replay import replay_files_from_spec
    from pipeline.sources.stock_replay import StockReplaySource

    spec = rt.config.stock_replay_files
    if not spec:
        raise ConfigError("the stock replay needs STOCK_REPLAY_FILES, e.g. AAPL=data/AAPL-daily.csv")
    files = replay_files_from_spec(spec, symbol_rule="stock")
    return StockReplaySource(rt.bus.producer(), rt.fanout, files, speed=rt.config.replay_speed)


def _stock_store(stage: str) -> WorkerFactory:
    def make(rt: Runtime) -> Worker:
        from pipeline.stages.stock_store import StockBarsStore, StockTradesStore

        c = rt.config
        store = StockTradesStore(rt.db) if stage == "stock-trades-store" else StockBarsStore(rt.db)
        return StageRunner(store, rt.bus, max_batch=c.batch_size, fill_wait_s=c.batch_max_wait_ms / 1000)

    return make


FACTORIES: dict[str, WorkerFactory] = {
    "stock-simulator": _stock_simulator,
    "alpaca-stocks": _alpaca_stocks,
    "stock-replay": _stock_replay,
    "stock-trades-store": _stock_store("stock-trades-store"),
    "stock-bars-store": _stock_store("stock-bars-store"),
}
