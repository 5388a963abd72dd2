"""Configuration, loaded and validated once from the environment into a frozen object."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from pipeline import config_values as v
from pipeline.analysis.settings import AnalysisSettings, analysis_from_env
from pipeline.errors import ConfigError
from pipeline.journal.behaviour_settings import BehaviourRules, rules_from_env
from pipeline.journal.excursions import RiskDefaults
from pipeline.messages.stocks import STOCK_SYMBOL
from pipeline.stage_catalog import DEFAULT_PIPELINE, KNOWN_STAGES, MARKET_SOURCES, STOCK_SOURCES
from pipeline.trading.exchange import ExchangeSettings
from pipeline.trading.risk import SIZINGS, RiskSettings

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
DEFAULT_STOCK_SYMBOLS = ("AAPL", "MSFT", "GOOGL")  # seed 004's SUBSCRIBED_SYMBOLS
DEFAULT_STAGES = ("simulator", "stock-simulator", *DEFAULT_PIPELINE)
# Model names (pipeline.ml.models builds them; kept here so loading the config needs no scikit-learn).
ML_MODEL_NAMES = ("random_forest", "svm", "logistic_regression", "linear_regression", "knn", "kmeans")
SEED_MODELS = ("random_forest", "svm", "logistic_regression")
# Seed 001's mapping (BUY above +1.5 %) is out of reach of a classifier's expected change over 15
# one-minute bars of the simulator's random walk (it stays within +-0.1 %), so signals on the
# simulator's bars use these when the trader set no threshold, and the paper account trades from the
# first start (docs/ml.md, "First start"). ml_buy_pct/ml_sell_pct keep seed 001's for everything else.
SIMULATOR_BUY_PCT, SIMULATOR_SELL_PCT = 0.02, -0.02
# Likewise the decision stage's confidence levels: on the simulator's random walk a model is rightly
# unsure (under 0.6 nearly always), so the paper account would wait for an order that may not come for
# hours. On the simulator alone, while the trader set neither level, a signal at 0.55 acts alone.
SIMULATOR_CONFIDENCE = 0.55
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password"})

# Environment variable -> librdkafka setting, passed through to every Kafka client.
KAFKA_SECURITY_ENV = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "KAFKA_SSL_KEY_PASSWORD": "ssl.key.password",
}


@dataclass(frozen=True)
class ExchangeKeys:
    """Read-only API keys of one exchange account; they turn its trade-history sync on."""

    venue: str
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    base_url: str | None = None
    # "desk": the desk's own Binance/Bybit client; "ccxt": any other exchange, through ccxt.
    via: str = "desk"
    password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        masked = self.api_key[:4] + "…" if len(self.api_key) > 4 else "…"
        return f"ExchangeKeys(venue={self.venue!r}, api_key={masked!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class Config:
    """Everything the pipeline needs to start; built by ``load_config`` and passed down."""

    data_dir: Path = Path("data")
    kafka_bootstrap_servers: str | None = None
    kafka_client_config: dict[str, str] = field(default_factory=dict, repr=False)  # may hold a password
    kafka_replication_factor: int = 1
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    stages: tuple[str, ...] = DEFAULT_STAGES
    # Stages (of ``stages``) run as processes of their own instead of threads (pipeline.processes).
    stage_processes: tuple[str, ...] = ()
    # Other processes write the embedded bus too (STAGE_PROCESSES, or stages started by hand).
    bus_shared: bool = False
    # How long a silent member of an embedded-bus group keeps its partitions (a killed process's).
    embedded_session_timeout_ms: int = 30_000
    # The interpreter's thread switch interval in a desk process (``pipeline.wiring.tune_switching``).
    switch_interval_ms: float = 0.5
    # How long the behaviour stage gathers a batch after its first record while busy
    # (``StageRunner.fill_wait_s`` with ``fill_when_busy``).
    behaviour_batch_wait_ms: int = 20
    simulator_seed: int | None = None
    simulator_tick_ms: int = 1000
    simulator_history_minutes: int = 180
    # The journal's owner on this desk (trades API calls may name other users).
    user_id: str = "trader"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The API's gate (pipeline.api.guard): extra Host names, allowed browser origins, caps.
    api_allowed_hosts: tuple[str, ...] = ()
    api_allowed_origins: tuple[str, ...] = ()
    api_max_body_bytes: int = 1024 * 1024
    api_max_websockets: int = 64
    behaviour: BehaviourRules = field(default_factory=BehaviourRules)
    # Imports: the zone of files whose times are local, and the currency of symbols naming none.
    import_timezone: str = "UTC"
    account_currency: str = "USD"
    # Exchange accounts whose trade history is synced (off unless keys are set).
    exchange_keys: tuple[ExchangeKeys, ...] = ()
    # Market data: which sources feed crypto.market_data, and their settings.
    market_sources: tuple[str, ...] = ("simulator",)
    replay_files: str = ""
    replay_speed: float = 60.0
    replay_loop: bool = False
    binance_poll_s: int = 60
    # Endpoints of the live feeds; None means the exchange's production address.
    feed_urls: dict[str, str] = field(default_factory=dict)
    alpaca_key: str | None = field(default=None, repr=False)
    alpaca_secret: str | None = field(default=None, repr=False)
    tick_retention_days: int = 7
    # Models and signals (seed 001's mapping: BUY above +1.5 %, SELL below -1.5 %).
    ml_models: tuple[str, ...] = SEED_MODELS
    ml_horizon_bars: int = 15
    ml_buy_pct: float = 1.5
    ml_sell_pct: float = -1.5
    ml_thresholds_set: bool = False  # the trader set ML_BUY_THRESHOLD_PCT or ML_SELL_THRESHOLD_PCT
    ml_fee_bps: float = 10.0
    ml_train_bars: int = 100_000
    ml_retrain_minutes: int = 0
    # Paper trading: the decision stage's models and risk rules, the virtual exchange's terms.
    decision_model: str = "random_forest"
    decision_confirm_models: tuple[str, ...] = ()
    risk: RiskSettings = field(default_factory=RiskSettings)
    decision_confidence_set: bool = False  # the trader set DECISION_HIGH_CONFIDENCE or _MEDIUM_
    exchange: ExchangeSettings = field(default_factory=ExchangeSettings)
    # Candle files pages may read (the CLI reads any file): a folder, and a size cap per file.
    candle_dir: Path = Path("data/candles")
    candle_max_bytes: int = 512 * 1024 * 1024
    # Journal review: the risk of a trade without a stop (R), the pre-trade check's cooldown, and
    # where missing 1-minute bars come from (none, or Binance's public klines).
    journal_risk: RiskDefaults = field(default_factory=RiskDefaults)
    pretrade_cooldown_min: int = 0
    bars_backfill_url: str | None = None
    # The drift alarm's window and band, and the first start's training of the default models.
    drift_window_min: int = 360
    drift_z: float = 1.96
    drift_min_periods: int = 10
    first_run_training: bool = True
    # Notifications (the notifier stage runs when either is set); the URLs hold secrets.
    discord_webhook_url: str | None = field(default=None, repr=False)
    notify_webhook_url: str | None = field(default=None, repr=False)
    # Stocks (seed 004): the symbols, the source, the stores' batches, the low-latency fan-out.
    stock_symbols: tuple[str, ...] = DEFAULT_STOCK_SYMBOLS
    stock_sources: tuple[str, ...] = ("stock-simulator",)
    alpaca_stock_feed: str = "iex"
    stock_replay_files: str = ""
    stock_backfill_days: int = 3
    batch_size: int = 100
    batch_max_wait_ms: int = 500
    redis_url: str | None = field(default=None, repr=False)
    database_url: str | None = field(default=None, repr=False)  # PostgreSQL; the SQLite file when unset
    redis_channel: str = "stock:trades:pubsub"
    # The Discord bot (the discord-bot stage runs when the token is set): where it answers, and whom.
    discord_bot_token: str | None = field(default=None, repr=False)
    discord_guild_id: int | None = None
    discord_channel_ids: tuple[int, ...] = ()
    discord_user_ids: tuple[int, ...] = ()
    discord_trader_ids: tuple[int, ...] = ()
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    # Stock analysis (seed 003): news feeds, triggers, the optional LLM (its key is a secret), alerts.
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    # Operations: how fast dead letters go back to their source topics (messages a second).
    redrive_rate: float = 2000.0

    @property
    def bus_kind(self) -> str:
        return "kafka" if self.kafka_bootstrap_servers else "embedded"

    def signal_pcts(self, simulated: bool) -> tuple[float, float]:
        """The (BUY above, SELL below) expected-change % for bars that are (or are not) the simulator's."""
        if simulated and not self.ml_thresholds_set:
            return SIMULATOR_BUY_PCT, SIMULATOR_SELL_PCT
        return self.ml_buy_pct, self.ml_sell_pct

    @property
    def live_signal_pcts(self) -> tuple[float, float]:
        """The live ml stage's mapping: the simulator's when it is the only market source."""
        return self.signal_pcts(self.market_sources == ("simulator",))

    @property
    def live_risk(self) -> RiskSettings:
        """The live decision stage's rules: ``risk``, with both confidence levels at
        ``SIMULATOR_CONFIDENCE`` when the simulator is the only market source and the trader set
        neither level."""
        if self.market_sources == ("simulator",) and not self.decision_confidence_set:
            return replace(self.risk, high_confidence=SIMULATOR_CONFIDENCE, medium_confidence=SIMULATOR_CONFIDENCE)
        return self.risk

    def redacted(self) -> dict[str, object]:
        """Return the settings for display, with secrets replaced by ``***``."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kafka_client_config":
                value = {k: ("***" if k in SECRET_KEYS else v) for k, v in value.items()}
            elif f.name == "exchange_keys":
                value = [repr(k) for k in value]  # masks the key and never shows the secret
            elif f.name in (
                "alpaca_key",
                "alpaca_secret",
                "discord_webhook_url",
                "notify_webhook_url",
                "redis_url",
                "database_url",
                "discord_bot_token",
            ):
                value = "***" if value else None
            elif f.name == "analysis":
                value = {**vars(value), "llm_api_key": "***" if value.llm_api_key else None}
            elif f.name in ("behaviour", "risk", "exchange", "journal_risk"):
                value = vars(value) if hasattr(value, "__dict__") else repr(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


FEED_URL_ENV = {
    "BINANCE_REST_URL": "binance-rest",
    "BINANCE_WS_URL": "binance-ws",
    "BYBIT_WS_URL": "bybit-ws",
    "ALPACA_WS_URL": "alpaca-ws",
    "BYBIT_PRIVATE_WS_URL": "bybit-private",
    "ALPACA_STOCK_WS_URL": "alpaca-stocks",
    "ALPACA_DATA_URL": "alpaca-data",
}


def load_config(env: Mapping[str, str]) -> Config:
    """Build the configuration from environment-style settings; raise ``ConfigError`` on bad ones."""
    symbols = tuple(s.strip().upper() for s in env.get("SYMBOLS", ",".join(DEFAULT_SYMBOLS)).split(",") if s.strip())
    bad = [s for s in symbols if not re.fullmatch(r"[A-Z]{3,6}USDT", s)]
    if bad or not symbols:
        raise ConfigError(f"SYMBOLS has {bad or 'nothing'}: each must match ^[A-Z]{{3,6}}USDT$")
    sources = v.names(env, "MARKET_SOURCE", ("simulator",), MARKET_SOURCES)
    discord, webhook = env.get("DISCORD_WEBHOOK_URL") or None, env.get("NOTIFY_WEBHOOK_URL") or None
    for name, url in (("DISCORD_WEBHOOK_URL", discord), ("NOTIFY_WEBHOOK_URL", webhook)):
        if url and not re.match(r"https?://[^/\s]+", url):
            raise ConfigError(f"{name} must be an http(s) URL")  # the URL itself is a secret: not shown
    notifier = ("notifier",) if discord or webhook else ()
    stock_sources = _stock_sources(env)
    bot_token = (env.get("DISCORD_BOT_TOKEN") or "").strip() or None
    bot = ("discord-bot",) if bot_token else ()
    analysis = analysis_from_env(env)
    news = ("news-collector",) if analysis.news_feeds else ()
    scheduler = ("analysis-scheduler",) if analysis.schedule else ()
    default_stages = (*sources, *stock_sources, *DEFAULT_PIPELINE, *news, *scheduler, *notifier, *bot)
    stages = tuple(s.strip() for s in env.get("STAGES", ",".join(default_stages)).split(",") if s.strip())
    unknown = [s for s in stages if s not in KNOWN_STAGES]
    if unknown:
        raise ConfigError(f"STAGES has unknown {unknown}; known: {', '.join(sorted(KNOWN_STAGES))}")
    stage_processes = tuple(s.strip() for s in env.get("STAGE_PROCESSES", "").split(",") if s.strip())
    outside = [s for s in stage_processes if s not in stages]
    if outside:
        raise ConfigError(f"STAGE_PROCESSES has {outside}, which STAGES does not run; STAGES: {', '.join(stages)}")
    seed = env.get("SIMULATOR_SEED")
    data_dir = Path(env.get("DATA_DIR") or "data")
    return Config(
        data_dir=data_dir,
        candle_dir=Path(env.get("CANDLE_DIR") or data_dir / "candles"),
        candle_max_bytes=v.integer(env, "CANDLE_MAX_MB", 512, 1) * 1024 * 1024,
        kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        kafka_client_config={kafka: env[var] for var, kafka in KAFKA_SECURITY_ENV.items() if env.get(var)},
        kafka_replication_factor=v.integer(env, "KAFKA_REPLICATION_FACTOR", 1, 1),
        symbols=symbols,
        stages=stages,
        stage_processes=stage_processes,
        embedded_session_timeout_ms=v.integer(env, "EMBEDDED_SESSION_TIMEOUT_MS", 30_000, 1000),
        switch_interval_ms=v.number(env, "SWITCH_INTERVAL_MS", 0.5, 0.05, 100.0),
        behaviour_batch_wait_ms=v.integer(env, "ALERTS_BATCH_WAIT_MS", 20, 0),
        bus_shared=bool(stage_processes) or env.get("EMBEDDED_BUS_SHARED", "").lower() in ("1", "true", "yes"),
        simulator_seed=v.integer(env, "SIMULATOR_SEED", 0, 0) if seed else None,
        simulator_tick_ms=v.integer(env, "SIMULATOR_TICK_MS", 1000, 10),
        simulator_history_minutes=v.integer(env, "SIMULATOR_HISTORY_MINUTES", 180, 0),
        user_id=v.user_id(env.get("USER_ID") or "trader"),
        api_host=env.get("API_HOST") or "127.0.0.1",
        api_port=v.integer(env, "API_PORT", 8000, 0),
        api_allowed_hosts=v.listed(env, "API_ALLOWED_HOSTS"),
        api_allowed_origins=v.listed(env, "API_ALLOWED_ORIGINS"),
        api_max_body_bytes=v.integer(env, "API_MAX_BODY_KB", 1024, 1) * 1024,
        api_max_websockets=v.integer(env, "API_MAX_WEBSOCKETS", 64, 1),
        behaviour=rules_from_env(env),
        import_timezone=v.timezone(env.get("IMPORT_TIMEZONE") or "UTC"),
        account_currency=v.currency(env.get("ACCOUNT_CURRENCY") or "USD"),
        exchange_keys=exchange_keys_from_env(env),
        market_sources=sources,
        replay_files=env.get("REPLAY_FILES", ""),
        replay_speed=v.number(env, "REPLAY_SPEED", 60.0, 0.0),
        replay_loop=env.get("REPLAY_LOOP", "").lower() in ("1", "true", "yes"),
        binance_poll_s=v.integer(env, "BINANCE_POLL_SECONDS", 60, 1),
        feed_urls={stage: env[var] for var, stage in FEED_URL_ENV.items() if env.get(var)},
        alpaca_key=env.get("ALPACA_API_KEY") or None,
        alpaca_secret=env.get("ALPACA_API_SECRET") or None,
        tick_retention_days=v.integer(env, "TICK_RETENTION_DAYS", 7, 1),
        ml_models=v.names(env, "ML_MODELS", SEED_MODELS, ML_MODEL_NAMES),
        ml_horizon_bars=v.integer(env, "ML_HORIZON_BARS", 15, 1),
        ml_buy_pct=v.number(env, "ML_BUY_THRESHOLD_PCT", 1.5, 0.0),
        ml_sell_pct=v.number(env, "ML_SELL_THRESHOLD_PCT", -1.5, None, 0.0),
        ml_thresholds_set=bool(env.get("ML_BUY_THRESHOLD_PCT") or env.get("ML_SELL_THRESHOLD_PCT")),
        decision_confidence_set=bool(env.get("DECISION_HIGH_CONFIDENCE") or env.get("DECISION_MEDIUM_CONFIDENCE")),
        ml_fee_bps=v.number(env, "ML_FEE_BPS", 10.0, 0.0, 1000.0),
        ml_train_bars=v.integer(env, "ML_TRAIN_BARS", 100_000, 300),
        ml_retrain_minutes=v.integer(env, "ML_RETRAIN_MINUTES", 0, 0),
        decision_model=v.names(env, "DECISION_MODEL", ("random_forest",), ML_MODEL_NAMES)[0],
        decision_confirm_models=v.names(env, "DECISION_CONFIRM_MODELS", ("none",), ("none", *ML_MODEL_NAMES))
        if env.get("DECISION_CONFIRM_MODELS") not in (None, "", "none")
        else (),
        risk=_risk(env),
        exchange=ExchangeSettings(
            starting_balance=v.number(env, "STARTING_BALANCE_USDT", 10_000.0, 1.0),
            fee_bps=v.number(env, "EXCHANGE_FEE_BPS", 10.0, 0.0, 1000.0),
            slippage_bps=v.number(env, "EXCHANGE_SLIPPAGE_BPS", 5.0, 0.0, 1000.0),
            limit_ttl_ms=v.integer(env, "LIMIT_ORDER_TTL_MINUTES", 60, 1) * 60_000,
        ),
        journal_risk=RiskDefaults(
            default_pct=v.number(env, "JOURNAL_DEFAULT_RISK_PCT", 1.0, 0.001, 100.0),
            per_setup=v.setup_risk(env.get("JOURNAL_SETUP_RISK_PCT", "")),
        ),
        pretrade_cooldown_min=v.integer(env, "PRETRADE_COOLDOWN_MINUTES", 0, 0),
        bars_backfill_url=v.backfill_url(env.get("BARS_BACKFILL", "")),
        drift_window_min=v.integer(env, "DRIFT_WINDOW_MINUTES", 360, 30),
        drift_z=v.number(env, "DRIFT_Z", 1.96, 0.5, 10.0),
        drift_min_periods=v.integer(env, "DRIFT_MIN_PERIODS", 10, 2),
        first_run_training=env.get("FIRST_RUN_TRAINING", "on").lower() not in ("0", "off", "false", "no"),
        discord_webhook_url=discord,
        notify_webhook_url=webhook,
        stock_symbols=_stock_symbols(env),
        stock_sources=stock_sources,
        alpaca_stock_feed=v.choice(env, "ALPACA_STOCK_FEED", "iex", ("iex", "sip")),
        stock_replay_files=env.get("STOCK_REPLAY_FILES", ""),
        stock_backfill_days=v.integer(env, "STOCK_BACKFILL_DAYS", 3, 0),
        batch_size=v.integer(env, "BATCH_SIZE", 100, 1),
        batch_max_wait_ms=v.integer(env, "BATCH_MAX_WAIT_MS", 500, 0),
        redis_url=v.redis_url(env.get("REDIS_URL") or None),
        database_url=v.database_url(env.get("DATABASE_URL") or None),
        redis_channel=env.get("REDIS_CHANNEL_TRADES") or "stock:trades:pubsub",
        discord_bot_token=bot_token,
        discord_guild_id=(v.discord_ids(env, "DISCORD_GUILD_ID") or (None,))[0],
        discord_channel_ids=v.discord_ids(env, "DISCORD_CHANNEL_IDS"),
        discord_user_ids=v.discord_ids(env, "DISCORD_USER_IDS"),
        discord_trader_ids=v.discord_ids(env, "DISCORD_TRADER_IDS"),
        discord_api_url=env.get("DISCORD_API_URL") or None,
        discord_gateway_url=env.get("DISCORD_GATEWAY_URL") or None,
        analysis=analysis,
        redrive_rate=v.number(env, "REDRIVE_RATE", 2000.0, 1.0),
    )


def _stock_symbols(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("SUBSCRIBED_SYMBOLS", ",".join(DEFAULT_STOCK_SYMBOLS))
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    bad = [s for s in symbols if not re.fullmatch(STOCK_SYMBOL, s)]
    if bad or not symbols:
        raise ConfigError(f"SUBSCRIBED_SYMBOLS has {bad or 'nothing'}: each must match {STOCK_SYMBOL}")
    return symbols


def _stock_sources(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("STOCK_SOURCE", "stock-simulator").strip()
    if raw in ("", "none"):
        return ()
    return v.names(env, "STOCK_SOURCE", ("stock-simulator",), (*STOCK_SOURCES, "none"))


def _risk(env: Mapping[str, str]) -> RiskSettings:
    sizing = env.get("POSITION_SIZING") or "fixed_fraction"
    if sizing not in SIZINGS:
        raise ConfigError(f"POSITION_SIZING={sizing!r} must be one of {', '.join(SIZINGS)}")
    return RiskSettings(
        stop_loss_pct=v.number(env, "STOP_LOSS_PCT", 2.0, 0.01, 99.0),
        take_profit_pct=v.number(env, "TAKE_PROFIT_PCT", 5.0, 0.01, 10_000.0),
        trailing_stop_pct=v.number(env, "TRAILING_STOP_PCT", 0.0, 0.0, 99.0),
        sizing=sizing,  # type: ignore[arg-type]
        position_pct=v.number(env, "POSITION_PCT", 10.0, 0.01, 100.0),
        risk_pct=v.number(env, "RISK_PER_TRADE_PCT", 1.0, 0.01, 100.0),
        max_symbol_exposure_pct=v.number(env, "MAX_SYMBOL_EXPOSURE_PCT", 25.0, 0.01, 100.0),
        max_total_exposure_pct=v.number(env, "MAX_TOTAL_EXPOSURE_PCT", 100.0, 0.01, 100.0),
        min_order_usdt=v.number(env, "MIN_ORDER_USDT", 10.0, 0.0),
        high_confidence=v.number(env, "DECISION_HIGH_CONFIDENCE", 0.8, 0.0, 1.0),
        medium_confidence=v.number(env, "DECISION_MEDIUM_CONFIDENCE", 0.6, 0.0, 1.0),
    )


def exchange_keys_from_env(env: Mapping[str, str]) -> tuple[ExchangeKeys, ...]:
    """Return the keys of each exchange whose key and secret are both set (none by default).

    ``BINANCE_API_KEY``/``BINANCE_API_SECRET`` and ``BYBIT_API_KEY``/``BYBIT_API_SECRET`` turn
    them on; ``BINANCE_BASE_URL``/``BYBIT_BASE_URL`` point them elsewhere (a testnet, a fake).
    ``CCXT_EXCHANGES`` names other exchanges by their ccxt id (``kraken,okx``), each with
    ``<ID>_API_KEY``, ``<ID>_API_SECRET`` and optionally ``<ID>_API_PASSWORD`` and ``<ID>_BASE_URL``.
    A key without its secret (or the reverse) is a ``ConfigError``.
    """
    keys: list[ExchangeKeys] = []
    others = tuple(v.strip().lower() for v in env.get("CCXT_EXCHANGES", "").split(",") if v.strip())
    for venue in ("binance", "bybit", *others):
        prefix = re.sub(r"[^A-Z0-9]", "_", venue.upper())
        via = "ccxt" if venue in others else "desk"
        if via == "ccxt" and not re.fullmatch(r"[a-z0-9_]{2,40}", venue):
            raise ConfigError(f"CCXT_EXCHANGES has {venue!r}: a ccxt exchange id like kraken or okx")
        key = env.get(f"{prefix}_API_KEY", "").strip()
        secret = env.get(f"{prefix}_API_SECRET", "").strip()
        if not key and not secret:
            continue
        if not key or not secret:
            missing = f"{prefix}_API_SECRET" if key else f"{prefix}_API_KEY"
            raise ConfigError(f"{prefix}_API_KEY and {prefix}_API_SECRET go together; {missing} is not set")
        if via == "ccxt" and venue in ("binance", "bybit"):
            continue  # the desk's own clients sync these two
        keys.append(
            ExchangeKeys(
                venue,
                key,
                secret,
                env.get(f"{prefix}_BASE_URL", "").strip() or None,
                via,
                env.get(f"{prefix}_API_PASSWORD", "").strip() or None,
            )
        )
    return tuple(keys)
