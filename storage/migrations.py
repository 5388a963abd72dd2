"""Named schema migrations, applied once each in order and recorded in ``_migrations``.

One list for both stores: SQLite applies the DDL as written; PostgreSQL (storage/postgres.py) gets
it through ``postgres_ddl``, which maps the types mechanically (INTEGER → BIGINT, since times are
milliseconds; REAL → DOUBLE PRECISION; BLOB → BYTEA) and drops ``WITHOUT ROWID``. Column names that
PostgreSQL reserves (``offset``, ``window``) are written double-quoted, which both accept. A data
fix for old SQLite files (005's ``group_concat``) is skipped on PostgreSQL, whose database starts
empty at that migration.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import sqlite_utils

Migration = tuple[str, Callable[[sqlite_utils.Database], None]]


def _m001_market(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE ticks (
        symbol TEXT NOT NULL, timestamp INTEGER NOT NULL, price REAL NOT NULL,
        open_24h REAL, high_24h REAL, low_24h REAL, volume_24h REAL, change_pct_24h REAL,
        tick_volume REAL, PRIMARY KEY (symbol, timestamp)) WITHOUT ROWID""")
    db.execute("""CREATE TABLE bars_1m (
        symbol TEXT NOT NULL, start INTEGER NOT NULL, open REAL NOT NULL, high REAL NOT NULL,
        low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, ticks INTEGER NOT NULL,
        PRIMARY KEY (symbol, start)) WITHOUT ROWID""")


def _m002_journal(db: sqlite_utils.Database) -> None:
    # The normalizer's ledger: every fill once (by fingerprint), the FIFO lots, and the ids of
    # the trade records it has published per (user, symbol), so a rebuild can retract stale ones.
    db.execute("""CREATE TABLE journal_fills (
        fill_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, user_id TEXT NOT NULL, symbol TEXT NOT NULL,
        side TEXT NOT NULL, price REAL NOT NULL, quantity REAL NOT NULL, time INTEGER NOT NULL,
        fee REAL, fee_asset TEXT, fee_quote REAL, exchange_id TEXT, source TEXT NOT NULL,
        format TEXT NOT NULL)""")
    db.execute("CREATE INDEX journal_fills_key ON journal_fills (user_id, symbol, time, seq)")
    db.execute("""CREATE TABLE journal_lots (
        lot_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
        price REAL NOT NULL, quantity REAL NOT NULL, remaining REAL NOT NULL, time INTEGER NOT NULL,
        seq INTEGER NOT NULL, fee_quote_per_unit REAL)""")
    db.execute("CREATE INDEX journal_lots_key ON journal_lots (user_id, symbol, time, seq)")
    # ``fill_id`` is the raw trade a record came from (a lot's opening fill, a round trip's closing
    # fill, a whole trade's own id); ``record`` is the Trade as published, so a redelivered raw trade
    # (outputs lost in a crash before they were flushed) publishes the same records again.
    db.execute("""CREATE TABLE journal_ledger_records (
        trade_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, symbol TEXT NOT NULL, fill_id TEXT NOT NULL,
        record TEXT NOT NULL)""")
    db.execute("CREATE INDEX journal_ledger_records_key ON journal_ledger_records (user_id, symbol)")
    db.execute("CREATE INDEX journal_ledger_records_fill ON journal_ledger_records (fill_id)")
    # The journal itself (written by the journal-store stage from enriched-trades and alerts).
    db.execute("""CREATE TABLE journal_trades (
        trade_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
        kind TEXT NOT NULL, entry_price REAL NOT NULL, exit_price REAL, quantity REAL NOT NULL,
        entry_time INTEGER NOT NULL, exit_time INTEGER, pnl REAL, fees REAL, stop_loss REAL,
        notes TEXT, tags TEXT NOT NULL DEFAULT '[]', setup TEXT, emotion TEXT, lot_id TEXT,
        fill_ids TEXT NOT NULL DEFAULT '[]', source TEXT NOT NULL, context TEXT NOT NULL DEFAULT '{}',
        stored_at INTEGER NOT NULL)""")
    db.execute("CREATE INDEX journal_trades_user_time ON journal_trades (user_id, entry_time)")
    db.execute("CREATE INDEX journal_trades_lot ON journal_trades (lot_id)")
    # The trader's own edits on the Journal page; kept apart so a replay of the topics keeps them.
    db.execute("""CREATE TABLE journal_annotations (
        trade_id TEXT PRIMARY KEY, notes TEXT, tags TEXT, setup TEXT, updated_at INTEGER NOT NULL)""")
    db.execute("""CREATE TABLE journal_alerts (
        alert_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, alert_type TEXT NOT NULL,
        severity TEXT NOT NULL, timestamp INTEGER NOT NULL, trade_ids TEXT NOT NULL,
        message TEXT NOT NULL, details TEXT NOT NULL, stored_at INTEGER NOT NULL)""")
    db.execute("CREATE INDEX journal_alerts_user_time ON journal_alerts (user_id, timestamp)")
    # The behaviour stage's own window of trades (so a restart does not forget recent history).
    db.execute("""CREATE TABLE behaviour_trades (
        trade_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT NOT NULL, symbol TEXT NOT NULL,
        side TEXT NOT NULL, entry_key TEXT NOT NULL, entry_time INTEGER NOT NULL, exit_time INTEGER,
        notional REAL NOT NULL, pnl REAL, pnl_pct REAL)""")
    db.execute("CREATE INDEX behaviour_trades_user_time ON behaviour_trades (user_id, entry_time)")
    db.execute("CREATE INDEX behaviour_trades_user_exit ON behaviour_trades (user_id, exit_time)")
    db.execute("""CREATE TABLE import_mappings (
        name TEXT PRIMARY KEY, header TEXT NOT NULL, mapping TEXT NOT NULL, created_at INTEGER NOT NULL)""")


def _m003_ml(db: sqlite_utils.Database) -> None:
    # The model registry: one row per trained version; the file itself lives under DATA_DIR/models.
    # ``metrics`` and ``baselines`` are out-of-sample (walk-forward) figures on the same folds;
    # ``report`` holds what the Signals page draws (confusion matrix, calibration, importances).
    db.execute("""CREATE TABLE ml_models (
        symbol TEXT NOT NULL, model TEXT NOT NULL, version INTEGER NOT NULL, active INTEGER NOT NULL,
        created_at INTEGER NOT NULL, path TEXT NOT NULL, interval_ms INTEGER NOT NULL,
        horizon INTEGER NOT NULL, train_start INTEGER NOT NULL, train_end INTEGER NOT NULL,
        n_samples INTEGER NOT NULL, features TEXT NOT NULL, params TEXT NOT NULL DEFAULT '{}',
        metrics TEXT NOT NULL, baselines TEXT NOT NULL, report TEXT NOT NULL DEFAULT '{}',
        load_error TEXT, PRIMARY KEY (symbol, model, version))""")
    db.execute("CREATE INDEX ml_models_active ON ml_models (active, symbol, model)")
    # Signals as published on crypto.ml_signals (written by the signal-store stage).
    db.execute("""CREATE TABLE ml_signals (
        symbol TEXT NOT NULL, model TEXT NOT NULL, timestamp INTEGER NOT NULL, signal TEXT NOT NULL,
        prediction_type TEXT NOT NULL, predicted_value REAL NOT NULL, current_price REAL NOT NULL,
        expected_change_pct REAL NOT NULL, confidence REAL NOT NULL, model_version TEXT,
        features TEXT NOT NULL, PRIMARY KEY (symbol, model, timestamp)) WITHOUT ROWID""")
    db.execute("CREATE INDEX ml_signals_time ON ml_signals (timestamp)")


def _m004_portfolio(db: sqlite_utils.Database) -> None:
    # Each order's last state on crypto.orders as the virtual exchange said it (the topic is the
    # truth; this is what the Portfolio page reads). ``message`` is the whole Order as JSON.
    db.execute("""CREATE TABLE orders (
        order_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, action TEXT NOT NULL, order_type TEXT NOT NULL,
        status TEXT NOT NULL, quantity REAL NOT NULL, price REAL NOT NULL, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, strategy TEXT NOT NULL, model TEXT, fill_price REAL, fill_fee REAL,
        filled_at INTEGER, exit_price REAL, exit_fee REAL, closed_at INTEGER, exit_reason TEXT, pnl REAL,
        reason TEXT, closes TEXT, message TEXT NOT NULL)""")
    db.execute("CREATE INDEX orders_time ON orders (created_at)")
    # The account over time, one point a minute at most (and at every fill or close).
    db.execute("""CREATE TABLE portfolio_equity (
        timestamp INTEGER PRIMARY KEY, cash REAL NOT NULL, equity REAL NOT NULL, exposure REAL NOT NULL,
        fees_paid REAL NOT NULL, realized REAL NOT NULL) WITHOUT ROWID""")
    # The account now: one row, the exchange's snapshot as JSON.
    db.execute("""CREATE TABLE portfolio_state (
        id INTEGER PRIMARY KEY CHECK (id = 1), updated_at INTEGER NOT NULL, snapshot TEXT NOT NULL)""")


def _m005_fill_records(db: sqlite_utils.Database) -> None:
    # The lots and round trips a fill made (each as published, one per line) move onto the fill's
    # own row: one appended row per fill instead of a second table with three indexes to keep up.
    # journal_ledger_records keeps whole trades only.
    db.execute("ALTER TABLE journal_fills ADD COLUMN records TEXT NOT NULL DEFAULT ''")
    if getattr(db, "dialect", "sqlite") != "sqlite":
        return  # a new PostgreSQL database has no old rows to move (and no group_concat or rowid)
    db.execute("""UPDATE journal_fills SET records = coalesce((SELECT group_concat(record, char(10)) FROM (
        SELECT record FROM journal_ledger_records r WHERE r.fill_id = journal_fills.fill_id
        AND (r.trade_id LIKE 'lot-%' OR r.trade_id LIKE 'rt-%') ORDER BY r.rowid)), '')""")
    db.execute("DELETE FROM journal_ledger_records WHERE trade_id LIKE 'lot-%' OR trade_id LIKE 'rt-%'")


def _m006_stage_status(db: sqlite_utils.Database) -> None:
    # What each worker of each process says about itself, rewritten every second: pages read this
    # instead of a stage's live objects, so they are right whether a stage is a thread or a process.
    db.execute("""CREATE TABLE stage_status (
        name TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, kind TEXT NOT NULL, running INTEGER NOT NULL,
        processed INTEGER NOT NULL, produced INTEGER NOT NULL, dead_lettered INTEGER NOT NULL,
        errors INTEGER NOT NULL, last_error TEXT, lag INTEGER NOT NULL, started_at REAL, last_activity_at REAL,
        details TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (name, host, pid))""")


def _m007_stocks(db: sqlite_utils.Database) -> None:
    # Stock trades as published on stock_trades_raw: each once, by (symbol, timestamp, trade_id).
    db.execute("""CREATE TABLE stock_trades (
        symbol TEXT NOT NULL, timestamp INTEGER NOT NULL, trade_id INTEGER NOT NULL, price REAL NOT NULL,
        size REAL NOT NULL, exchange TEXT, conditions TEXT NOT NULL, tape TEXT, collected_at INTEGER NOT NULL,
        PRIMARY KEY (symbol, timestamp, trade_id)) WITHOUT ROWID""")
    # Stock bars: the feed's 1Min (and 1Day) bars from stock_prices_raw (derived = 0), and the 5Min,
    # 1Hour and 1Day bars resampled from the 1Min ones (derived = 1; a feed's own daily bar wins).
    db.execute("""CREATE TABLE stock_bars (
        symbol TEXT NOT NULL, timeframe TEXT NOT NULL, start INTEGER NOT NULL, open REAL NOT NULL,
        high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, trade_count INTEGER,
        vwap REAL, derived INTEGER NOT NULL, PRIMARY KEY (symbol, timeframe, start)) WITHOUT ROWID""")


def _m008_analysis(db: sqlite_utils.Database) -> None:
    # Seed 003's news, one row per (item, symbol); ``sentiment`` is the item's score once the
    # sentiment stage has scored it (``sentiment_detail``: model, confidence, language, reason).
    db.execute("""CREATE TABLE stock_news (
        news_id TEXT NOT NULL, symbol TEXT NOT NULL, title TEXT NOT NULL, content TEXT NOT NULL,
        source TEXT NOT NULL, source_url TEXT NOT NULL, published_at TEXT NOT NULL, published_ms INTEGER NOT NULL,
        collected_at TEXT NOT NULL, category TEXT NOT NULL, tags TEXT NOT NULL, stored_at INTEGER NOT NULL,
        sentiment REAL, sentiment_confidence REAL, sentiment_model TEXT, sentiment_detail TEXT,
        PRIMARY KEY (news_id, symbol)) WITHOUT ROWID""")
    db.execute("CREATE INDEX stock_news_symbol_time ON stock_news (symbol, published_ms)")
    # Technical and sentiment results as published on analysis_results.
    db.execute("""CREATE TABLE analysis_results (
        result_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, analysis_type TEXT NOT NULL, timestamp INTEGER NOT NULL,
        score REAL NOT NULL, confidence REAL NOT NULL, details TEXT NOT NULL, metadata TEXT NOT NULL)""")
    db.execute("CREATE INDEX analysis_results_symbol ON analysis_results (symbol, analysis_type, timestamp)")
    # The aggregate of each symbol over time (one row per result that changed it).
    db.execute("""CREATE TABLE analysis_aggregates (
        symbol TEXT NOT NULL, timestamp INTEGER NOT NULL, result_id TEXT NOT NULL, final_score REAL NOT NULL,
        recommendation TEXT NOT NULL, target_price REAL, technical REAL, sentiment REAL, confidence REAL NOT NULL,
        PRIMARY KEY (symbol, timestamp, result_id)) WITHOUT ROWID""")
    # Alerts as published on alerts, with the result that caused each (a redelivered result
    # publishes its alerts again instead of making new ones).
    db.execute("""CREATE TABLE stock_alerts (
        alert_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, alert_type TEXT NOT NULL, priority TEXT NOT NULL,
        timestamp INTEGER NOT NULL, message TEXT NOT NULL, data TEXT NOT NULL, cause TEXT NOT NULL)""")
    db.execute("CREATE INDEX stock_alerts_time ON stock_alerts (timestamp)")
    db.execute("CREATE INDEX stock_alerts_cause ON stock_alerts (cause)")
    # What the aggregation last alerted per symbol (its hysteresis).
    db.execute("""CREATE TABLE alert_state (
        symbol TEXT PRIMARY KEY, signal TEXT NOT NULL, risk INTEGER NOT NULL, updated_at INTEGER NOT NULL)""")


def _m009_optimise_runs(db: sqlite_utils.Database) -> None:
    # Walk-forward optimisations (storage/optimise.py): one row per run with its request, figures and
    # out-of-sample equity as JSON, and one row per trial of each of its studies.
    db.execute("""CREATE TABLE optimise_runs (
        run_id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, symbol TEXT NOT NULL, model TEXT NOT NULL,
        request TEXT NOT NULL, summary TEXT NOT NULL, curve TEXT NOT NULL)""")
    db.execute("CREATE INDEX optimise_runs_time ON optimise_runs (created_at)")
    db.execute("""CREATE TABLE optimise_trials (
        run_id TEXT NOT NULL, "window" INTEGER NOT NULL, number INTEGER NOT NULL, value REAL, params TEXT NOT NULL,
        metrics TEXT NOT NULL, PRIMARY KEY (run_id, "window", number)) WITHOUT ROWID""")


def _m010_review(db: sqlite_utils.Database) -> None:
    # Each closed trade's excursions and R, computed from the bars by the ``excursions`` worker.
    # ``sig`` is what they were computed from (the trade's prices, times, stop, setup and the risk
    # defaults); ``bars_until`` the symbol's newest bar then, so a trade without bars is tried again
    # once newer bars arrive.
    db.execute("""CREATE TABLE trade_excursions (
        trade_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, symbol TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,
        bars INTEGER NOT NULL, risk_per_unit REAL, risk_source TEXT, r REAL, mfe REAL, mae REAL, mfe_pct REAL,
        mae_pct REAL, mfe_r REAL, mae_r REAL, best_exit_price REAL, best_exit_time INTEGER, worst_price REAL,
        worst_time INTEGER, captured_pct REAL, sig TEXT NOT NULL, bars_until INTEGER, computed_at INTEGER NOT NULL)""")
    db.execute("CREATE INDEX trade_excursions_user ON trade_excursions (user_id)")
    # The drift alarm: each active model's live hit rate and profit after fees over a rolling window,
    # against its walk-forward figures with a band, one row per check (the Signals page draws them).
    db.execute("""CREATE TABLE ml_drift (
        symbol TEXT NOT NULL, model TEXT NOT NULL, version INTEGER NOT NULL, computed_at INTEGER NOT NULL,
        window_start INTEGER NOT NULL, window_end INTEGER NOT NULL, rows INTEGER NOT NULL, periods INTEGER NOT NULL,
        hit_rate REAL, wf_accuracy REAL, hit_lo REAL, hit_hi REAL, profit_pct REAL, wf_profit_pct REAL,
        profit_lo REAL, profit_hi REAL, state TEXT NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY (symbol, model, computed_at))""")


def _m011_operations(db: sqlite_utils.Database) -> None:
    # Dead letters sent back to their source topic (storage/redrive.py): each once, by the coordinates
    # it had there (the dead-letter topic's own for a frame that never was a message there).
    db.execute("""CREATE TABLE redrive_log (
        topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
        dlq_topic TEXT NOT NULL, dlq_partition INTEGER NOT NULL, dlq_offset INTEGER NOT NULL,
        state TEXT NOT NULL, edited INTEGER NOT NULL, claimed_at INTEGER NOT NULL, published_at INTEGER,
        PRIMARY KEY (topic, partition, "offset")) WITHOUT ROWID""")
    # The stages' retries and their batch latencies (a histogram) beside their counters (storage/status.py).
    db.execute("ALTER TABLE stage_status ADD COLUMN retried INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE stage_status ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}'")


def _m012_lag_samples(db: sqlite_utils.Database) -> None:
    # Consumer-group lag per partition over time (storage/lag_history.py): tier 0 every sample of
    # the last hour, tier 1 the last sample of each minute of the last day. Plain SQL, as in PostgreSQL.
    db.execute("""CREATE TABLE lag_samples (
        group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, tier INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL, lag BIGINT NOT NULL,
        PRIMARY KEY (group_id, topic, partition, tier, at))""")
    db.execute("CREATE INDEX lag_samples_age ON lag_samples (tier, at)")


def _m013_fill_seq(db: sqlite_utils.Database) -> None:
    # The last fill's number by index, in both stores (PostgreSQL has no rowid to order by).
    db.execute("CREATE INDEX IF NOT EXISTS journal_fills_seq ON journal_fills (seq)")


def _m014_behaviour_day_counts(db: sqlite_utils.Database) -> None:
    # Entries (records not of kind round_trip) per user and quarter hour, kept by the behaviour
    # stage's store beside behaviour_trades: counting a day's entries then reads at most 96 rows
    # instead of every entry of the day (storage/behaviour.py).
    db.execute("""CREATE TABLE behaviour_day_counts (
        user_id TEXT NOT NULL, bucket INTEGER NOT NULL, entries INTEGER NOT NULL,
        PRIMARY KEY (user_id, bucket))""")
    db.execute("""INSERT INTO behaviour_day_counts SELECT user_id, entry_time / 900000, count(*)
        FROM behaviour_trades WHERE kind != 'round_trip' GROUP BY 1, 2""")


MIGRATIONS: list[Migration] = [
    ("001_market_ticks_and_bars", _m001_market),
    ("002_journal", _m002_journal),
    ("003_ml", _m003_ml),
    ("004_portfolio", _m004_portfolio),
    ("005_fill_records", _m005_fill_records),
    ("006_stage_status", _m006_stage_status),
    ("007_stocks", _m007_stocks),
    ("008_analysis", _m008_analysis),
    ("009_optimise_runs", _m009_optimise_runs),
    ("010_trade_excursions_and_drift", _m010_review),
    ("011_operations", _m011_operations),
    ("012_lag_samples", _m012_lag_samples),
    ("013_fill_seq", _m013_fill_seq),
    ("014_behaviour_day_counts", _m014_behaviour_day_counts),
]

_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}
_TYPE_WORD = re.compile(r"\b(INTEGER|REAL|BLOB)\b")


def postgres_ddl(sql: str) -> str:
    """A CREATE/ALTER TABLE statement with PostgreSQL's types; any other statement unchanged."""
    head = sql.lstrip()[:12].upper()
    if not head.startswith(("CREATE TABLE", "ALTER TABLE")):
        return sql
    return _TYPE_WORD.sub(lambda m: _TYPES[m.group(1)], sql).replace(") WITHOUT ROWID", ")")


def apply_migrations(db: sqlite_utils.Database, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied now."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at INTEGER)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for name, fn in migrations:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, int(time.time() * 1000)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
