"""Every worker the desk can run, by name: what it does, and whether it runs by default.

This is the one list of names. ``STAGES`` and ``STAGE_PROCESSES`` are checked against it,
``MARKET_SOURCE`` picks among its market sources, and the wiring has one factory per name (a
unit test keeps the two equal). Market sources publish ``crypto.market_data``; ``MARKET_SOURCE``
chooses which run, the simulator by default. Stock sources publish ``stock_trades_raw`` and
``stock_prices_raw``; ``STOCK_SOURCE`` chooses which run, the stock simulator by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["market-source", "stock-source", "source", "stage"]


@dataclass(frozen=True)
class StageInfo:
    """One worker: its name (as in ``STAGES``), its role, whether it runs by default, what it does."""

    name: str
    role: Role
    default: bool
    does: str


CATALOG: tuple[StageInfo, ...] = (
    StageInfo("simulator", "market-source", True, "a GARCH(1,1) random-walk market for every symbol"),
    StageInfo("replay", "market-source", False, "candle files replayed at a chosen speed (REPLAY_FILES)"),
    StageInfo("binance-rest", "market-source", False, "Binance 24 h ticker polling"),
    StageInfo("binance-ws", "market-source", False, "Binance trade, kline and mini-ticker streams"),
    StageInfo("bybit-ws", "market-source", False, "Bybit v5 public spot stream"),
    StageInfo("alpaca-ws", "market-source", False, "Alpaca crypto stream (ALPACA_API_KEY/SECRET)"),
    StageInfo("stock-simulator", "stock-source", True, "stock trades and 1-minute bars, only while the NYSE is open"),
    StageInfo(
        "alpaca-stocks", "stock-source", False, "Alpaca stock stream with a REST backfill (ALPACA_API_KEY/SECRET)"
    ),
    StageInfo("stock-replay", "stock-source", False, "stock bar files replayed at a chosen speed (STOCK_REPLAY_FILES)"),
    StageInfo("market-store", "stage", True, "ticks and 1-minute bars into SQLite"),
    StageInfo("ml", "stage", True, "one signal per tick and active model"),
    StageInfo("signal-store", "stage", True, "the last two days of signals into SQLite"),
    StageInfo("trainer", "source", False, "retrains the models every ML_RETRAIN_MINUTES"),
    StageInfo("decision", "stage", True, "the backtrader strategy: signals into paper orders"),
    StageInfo("virtual-exchange", "stage", True, "fills paper orders; the account into SQLite"),
    StageInfo("notifier", "stage", False, "orders and high alerts to Discord or a webhook (on when one is set)"),
    StageInfo("normalizer", "stage", True, "raw trades into the FIFO ledger's trades, lots and round trips"),
    StageInfo("enricher", "stage", True, "the market context of every journal record"),
    StageInfo("behaviour", "stage", True, "behavioural alerts over the journal"),
    StageInfo("journal-store", "stage", True, "the journal and its alerts into SQLite"),
    StageInfo("paper-journal", "stage", True, "the paper exchange's closed positions into raw-trades (paper:<model>)"),
    StageInfo("excursions", "source", True, "MFE, MAE and R of every closed trade from the bars"),
    StageInfo("drift-monitor", "source", True, "each active model's live hit rate and profit against its band"),
    StageInfo(
        "lag-history", "source", True, "every consumer group's lag per partition, kept for a day, for the lag chart"
    ),
    StageInfo("stock-trades-store", "stage", True, "stock trades into SQLite in batches (BATCH_SIZE)"),
    StageInfo("stock-bars-store", "stage", True, "stock bars into SQLite, resampled to 5Min, 1Hour and 1Day"),
    StageInfo("api", "source", True, "the HTTP API (API_HOST:API_PORT)"),
    StageInfo("exchange-history", "source", False, "exchange trade history into raw-trades (API keys)"),
    StageInfo("binance-user-stream", "source", False, "live own fills from Binance's user data stream (API keys)"),
    StageInfo(
        "bybit-execution-stream", "source", False, "live own fills from Bybit's private execution topic (API keys)"
    ),
    StageInfo("discord-bot", "source", False, "the Discord bot's slash commands (on when DISCORD_BOT_TOKEN is set)"),
    StageInfo("news-collector", "source", False, "RSS/Atom news into stock_news_raw (on when NEWS_FEEDS is set)"),
    StageInfo("analysis-scheduler", "source", False, "scheduled analysis triggers (on unless ANALYSIS_SCHEDULE=off)"),
    StageInfo("analysis-triggers", "stage", True, "stores news; bars and news into debounced analysis triggers"),
    StageInfo("technical-analysis", "stage", True, "technical results: moving averages, RSI, MACD, Bollinger, volume"),
    StageInfo("sentiment-analysis", "stage", True, "sentiment results of the news: a lexicon, and an LLM when set"),
    StageInfo("aggregation", "stage", True, "technical and sentiment results into scores and alerts"),
)

KNOWN_STAGES = frozenset(s.name for s in CATALOG)
MARKET_SOURCES = tuple(s.name for s in CATALOG if s.role == "market-source")
# Stock sources publish stock_trades_raw and stock_prices_raw; STOCK_SOURCE picks which run.
STOCK_SOURCES = tuple(s.name for s in CATALOG if s.role == "stock-source")
# What runs besides the market and stock sources when STAGES is not set.
DEFAULT_PIPELINE = tuple(s.name for s in CATALOG if s.default and s.role not in ("market-source", "stock-source"))
