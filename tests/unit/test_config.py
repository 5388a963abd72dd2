from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError


def test_defaults_mean_embedded_bus_under_data() -> None:
    config = load_config({})
    assert config.bus_kind == "embedded" and config.data_dir == Path("data")
    assert "BTCUSDT" in config.symbols
    assert config.stages == (
        "simulator",
        "stock-simulator",
        "market-store",
        "ml",
        "signal-store",
        "decision",
        "virtual-exchange",
        "normalizer",
        "enricher",
        "behaviour",
        "journal-store",
        "paper-journal",
        "excursions",
        "drift-monitor",
        "lag-history",
        "stock-trades-store",
        "stock-bars-store",
        "api",
        "analysis-triggers",
        "technical-analysis",
        "sentiment-analysis",
        "aggregation",
        "analysis-scheduler",
    )
    assert "notifier" not in config.stages  # off unless a webhook is set
    assert (config.risk.stop_loss_pct, config.risk.take_profit_pct) == (2.0, 5.0)  # seed 001's -2 % / +5 %
    assert config.exchange.starting_balance == 10_000.0  # seed 002
    assert config.ml_models == ("random_forest", "svm", "logistic_regression")
    assert (config.ml_buy_pct, config.ml_sell_pct) == (1.5, -1.5)  # seed 001's signal mapping
    assert (config.api_host, config.api_port, config.user_id) == ("127.0.0.1", 8000, "trader")
    assert config.exchange_keys == ()  # exchange history is off unless keys are set


def test_exchange_keys_turn_clients_on_and_never_show_the_secret() -> None:
    config = load_config({"BINANCE_API_KEY": "abcd1234key", "BINANCE_API_SECRET": "topsecretvalue"})
    assert [k.venue for k in config.exchange_keys] == ["binance"]
    assert "topsecretvalue" not in str(config.redacted()) and "topsecretvalue" not in repr(config)
    with pytest.raises(ConfigError, match="BYBIT_API_SECRET"):
        load_config({"BYBIT_API_KEY": "k"})


def test_bootstrap_servers_select_kafka_and_security_passes_through_redacted() -> None:
    config = load_config(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "desk",
            "KAFKA_SASL_PASSWORD": "s3cret",
        }
    )
    assert config.bus_kind == "kafka"
    assert config.kafka_client_config == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "desk",
        "sasl.password": "s3cret",
    }
    shown = config.redacted()
    client_config = shown["kafka_client_config"]
    assert isinstance(client_config, dict) and client_config["sasl.password"] == "***"
    assert "s3cret" not in repr(shown)


def test_market_source_replaces_the_simulator_and_alpaca_keys_stay_hidden() -> None:
    config = load_config(
        {
            "MARKET_SOURCE": "alpaca-ws",
            "ALPACA_API_KEY": "PK123",
            "ALPACA_API_SECRET": "hush-hush",
            "ALPACA_WS_URL": "ws://127.0.0.1:9/x",
        }
    )
    assert config.stages[0] == "alpaca-ws" and "simulator" not in config.stages
    assert config.feed_urls == {"alpaca-ws": "ws://127.0.0.1:9/x"}
    assert "hush-hush" not in repr(config) and "hush-hush" not in str(config.redacted())


def test_ml_model_names_match_the_models_module() -> None:
    from pipeline.config import ML_MODEL_NAMES, SEED_MODELS
    from pipeline.ml import models

    assert ML_MODEL_NAMES == models.MODEL_NAMES and SEED_MODELS == models.SEED_MODELS


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MARKET_SOURCE": "coinbase"}, "MARKET_SOURCE has ['coinbase']"),
        ({"ML_MODELS": "random_forest,deep_net"}, "ML_MODELS has ['deep_net']"),
        ({"ML_BUY_THRESHOLD_PCT": "-1"}, "ML_BUY_THRESHOLD_PCT=-1 must be a number >= 0.0"),
        ({"ML_SELL_THRESHOLD_PCT": "lots"}, "ML_SELL_THRESHOLD_PCT='lots' is not a number"),
        ({"REPLAY_SPEED": "-2"}, "REPLAY_SPEED=-2 must be a number >= 0.0"),
        ({"SYMBOLS": "btc"}, "SYMBOLS"),
        ({"SIMULATOR_TICK_MS": "fast"}, "SIMULATOR_TICK_MS='fast' is not a whole number"),
        ({"SIMULATOR_TICK_MS": "1"}, "SIMULATOR_TICK_MS=1 must be >= 10"),
        ({"STAGES": "simulator,nope"}, "unknown ['nope']"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(env: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_webhook_turns_the_notifier_on_and_is_never_shown() -> None:
    url = "https://discord.com/api/webhooks/123/secret-token"
    config = load_config({"DISCORD_WEBHOOK_URL": url})
    assert config.stages[-1] == "notifier"
    assert "secret-token" not in str(config.redacted()) and "secret-token" not in repr(config)
    with pytest.raises(ConfigError, match="NOTIFY_WEBHOOK_URL must be an http") as err:
        load_config({"NOTIFY_WEBHOOK_URL": "ftp://example.com/token-xyz"})
    assert "token-xyz" not in str(err.value)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STOP_LOSS_PCT": "0"}, "STOP_LOSS_PCT"),
        ({"POSITION_PCT": "150"}, "POSITION_PCT"),
        ({"POSITION_SIZING": "martingale"}, "POSITION_SIZING"),
        ({"DECISION_MODEL": "oracle"}, "DECISION_MODEL"),
        ({"DECISION_CONFIRM_MODELS": "svm,oracle"}, "DECISION_CONFIRM_MODELS"),
        ({"EXCHANGE_FEE_BPS": "-1"}, "EXCHANGE_FEE_BPS"),
        ({"STARTING_BALANCE_USDT": "abc"}, "STARTING_BALANCE_USDT"),
    ],
)
def test_bad_risk_and_exchange_settings_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(env)


def test_risk_settings_come_from_the_environment() -> None:
    config = load_config(
        {
            "POSITION_SIZING": "fixed_risk",
            "RISK_PER_TRADE_PCT": "0.5",
            "TRAILING_STOP_PCT": "1.5",
            "DECISION_CONFIRM_MODELS": "svm, logistic_regression",
            "EXCHANGE_SLIPPAGE_BPS": "2",
        }
    )
    assert (config.risk.sizing, config.risk.risk_pct, config.risk.trailing_stop_pct) == ("fixed_risk", 0.5, 1.5)
    assert config.decision_confirm_models == ("svm", "logistic_regression")
    assert config.exchange.slippage_bps == 2.0


def test_stock_settings_default_to_seed_004s_and_refuse_bad_values() -> None:
    config = load_config({})
    assert config.stock_symbols == ("AAPL", "MSFT", "GOOGL") and config.batch_size == 100
    assert config.redis_url is None and config.redis_channel == "stock:trades:pubsub"
    assert config.alpaca_stock_feed == "iex" and config.stock_sources == ("stock-simulator",)
    assert "stock-simulator" not in load_config({"STOCK_SOURCE": "none"}).stages
    assert load_config({"STOCK_SOURCE": "alpaca-stocks"}).stages[1] == "alpaca-stocks"
    with pytest.raises(ConfigError, match="SUBSCRIBED_SYMBOLS"):
        load_config({"SUBSCRIBED_SYMBOLS": "AAPL,bad symbol"})
    with pytest.raises(ConfigError, match="ALPACA_STOCK_FEED"):
        load_config({"ALPACA_STOCK_FEED": "otc"})
    with pytest.raises(ConfigError, match="BATCH_SIZE"):
        load_config({"BATCH_SIZE": "0"})
    secret = load_config({"REDIS_URL": "redis://:pa55word@localhost:6379/0"})
    assert "pa55word" not in str(secret.redacted()) and "pa55word" not in repr(secret)
    with pytest.raises(ConfigError, match="REDIS_URL must start") as err:
        load_config({"REDIS_URL": "http://:pa55word@x"})
    assert "pa55word" not in str(err.value)


def test_the_simulators_signal_mapping_applies_to_the_simulators_bars_alone() -> None:
    # docs/ml.md, "First start": seed 001's +-1.5 % is out of reach on the simulator's random walk
    config = load_config({})
    assert config.live_signal_pcts == (0.02, -0.02)  # the live ml stage on the simulator alone
    assert config.signal_pcts(True) == (0.02, -0.02)  # a backtest of the simulator's history
    assert config.signal_pcts(False) == (1.5, -1.5)  # a backtest of stored bars or a candle file
    for source in ("binance-ws", "simulator,binance-ws", "replay"):
        real = load_config({"MARKET_SOURCE": source, "REPLAY_FILES": "BTCUSDT=x.csv"})
        assert real.live_signal_pcts == (1.5, -1.5), source  # any real feed keeps seed 001's
        assert real.signal_pcts(True) == (0.02, -0.02)
    for env in ({"ML_BUY_THRESHOLD_PCT": "1"}, {"ML_SELL_THRESHOLD_PCT": "-1"}):
        mine = load_config(env)  # one threshold the trader set: the trader's mapping, on the simulator too
        assert mine.ml_thresholds_set
        assert mine.live_signal_pcts == mine.signal_pcts(True) == (mine.ml_buy_pct, mine.ml_sell_pct)
        assert mine.live_signal_pcts in ((1.0, -1.5), (1.5, -1.0))


def test_the_simulators_confidence_levels_apply_to_the_live_decision_stage_on_the_simulator_alone() -> None:
    # docs/ml.md, "First start": on a random walk a model is rarely 0.6 sure, so the paper account waits
    config = load_config({})
    assert (config.risk.high_confidence, config.risk.medium_confidence) == (0.8, 0.6)  # seed 001's, kept
    live = config.live_risk
    assert (live.high_confidence, live.medium_confidence) == (0.55, 0.55)
    assert live.stop_loss_pct == config.risk.stop_loss_pct  # nothing else changes
    for source in ("binance-ws", "simulator,binance-ws", "replay"):
        real = load_config({"MARKET_SOURCE": source, "REPLAY_FILES": "BTCUSDT=x.csv"})
        assert real.live_risk == real.risk, source
    for env in ({"DECISION_HIGH_CONFIDENCE": "0.9"}, {"DECISION_MEDIUM_CONFIDENCE": "0.7"}):
        mine = load_config(env)  # a level the trader set: the trader's levels, on the simulator too
        assert mine.decision_confidence_set and mine.live_risk == mine.risk


def test_the_switch_interval_is_read_with_its_bounds_and_set_when_the_desk_starts(tmp_path: Path) -> None:
    """``SWITCH_INTERVAL_MS`` (0.5 by default, Python's own being 5) is what ``build_runtime`` gives the
    interpreter when it starts the stages; a value outside 0.05-100 is refused, naming the setting."""
    import sys

    from pipeline.wiring import build_runtime

    assert load_config({}).switch_interval_ms == 0.5
    assert load_config({"SWITCH_INTERVAL_MS": "2"}).switch_interval_ms == 2.0
    for bad in ("0", "500", "fast"):
        with pytest.raises(ConfigError, match="SWITCH_INTERVAL_MS"):
            load_config({"SWITCH_INTERVAL_MS": bad})
    before = sys.getswitchinterval()
    config = load_config({"DATA_DIR": str(tmp_path), "STAGES": "journal-store", "SWITCH_INTERVAL_MS": "0.7"})
    runtime = build_runtime(config)
    try:
        assert sys.getswitchinterval() == pytest.approx(0.0007)
    finally:
        runtime.stop()
        sys.setswitchinterval(before)


def test_the_behaviour_stage_gathers_its_batches_for_the_configured_wait(tmp_path: Path) -> None:
    """``ALERTS_BATCH_WAIT_MS`` (20 by default) is how long the desk's behaviour runner gathers a
    batch after its first record (``StageRunner.fill_wait_s``); 0 handles each poll at once, and the
    journal's other stages never wait."""
    from pipeline.runner import StageRunner
    from pipeline.wiring import build_runtime

    assert load_config({}).behaviour_batch_wait_ms == 20
    for bad in ("-1", "soon"):
        with pytest.raises(ConfigError, match="ALERTS_BATCH_WAIT_MS"):
            load_config({"ALERTS_BATCH_WAIT_MS": bad})
    for env, wanted in (({}, 0.02), ({"ALERTS_BATCH_WAIT_MS": "0"}, 0.0)):
        stages = "normalizer,enricher,behaviour,journal-store"
        config = load_config({"DATA_DIR": str(tmp_path), "STAGES": stages, **env})
        runtime = build_runtime(config, start=False)
        try:
            waits = {w.name: w.fill_wait_s for w in runtime.workers if isinstance(w, StageRunner)}
            busy = {w.name for w in runtime.workers if isinstance(w, StageRunner) and w.fill_when_busy}
        finally:
            runtime.stop()
        assert waits == {"normalizer": 0.0, "enricher": 0.0, "behaviour": wanted, "journal-store": 0.0}
        assert busy == {"behaviour"}  # and only while trades keep coming: a lone one goes at once
