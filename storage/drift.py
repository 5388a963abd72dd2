"""The drift alarm's door (``ml_drift``): one row per check of an active model, written by the
``drift-monitor`` worker; the Signals page reads the latest of each model and a model's history."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from storage.db import Database
from storage.sql import upsert

COLUMNS = [
    "symbol",
    "model",
    "version",
    "computed_at",
    "window_start",
    "window_end",
    "rows",
    "periods",
    "hit_rate",
    "wf_accuracy",
    "hit_lo",
    "hit_hi",
    "profit_pct",
    "wf_profit_pct",
    "profit_lo",
    "profit_hi",
    "state",
    "message",
]
KEEP_MS = 7 * 86_400_000


def store(conn: sqlite3.Connection, checks: Sequence[Mapping[str, Any]], computed_at: int) -> None:
    """Write checks (``DriftCheck.to_dict()``) made at ``computed_at`` and forget those over a week old."""
    conn.executemany(
        upsert("ml_drift", COLUMNS, "symbol, model, computed_at"),
        [tuple({**c, "computed_at": computed_at}[k] for k in COLUMNS) for c in checks],
    )
    conn.execute("DELETE FROM ml_drift WHERE computed_at < ?", (computed_at - KEEP_MS,))


def latest(db: Database) -> pd.DataFrame:
    """Return the newest check of every (symbol, model)."""
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join('d.' + c for c in COLUMNS)} FROM ml_drift d JOIN (SELECT symbol, model, "
            "max(computed_at) AS at FROM ml_drift GROUP BY symbol, model) l ON d.symbol=l.symbol AND "
            "d.model=l.model AND d.computed_at=l.at ORDER BY d.symbol, d.model"
        )
        .fetchall()
    )
    return pd.DataFrame(rows, columns=COLUMNS)


def history(db: Database, symbol: str, model: str, since_ms: int = 0) -> pd.DataFrame:
    """Return a model's checks since ``since_ms``, oldest first, with ``time`` (UTC) of each window's end."""
    rows = (
        db.reader()
        .conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM ml_drift WHERE symbol=? AND model=? AND computed_at>=? "
            "ORDER BY computed_at",
            (symbol, model, since_ms),
        )
        .fetchall()
    )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["time"] = pd.to_datetime(frame["window_end"], unit="ms", utc=True)
    return frame
