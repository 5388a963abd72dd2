"""The walk-forward optimisations' door (``optimise_runs``, ``optimise_trials``).

The optimisation job writes a finished run here in one transaction; the Optimise page and the CLI
read runs back to show them, rebuild their Optuna studies and compare them side by side. A run is
its request, its summary (figures, readings, windows, the chosen parameters) and its stitched
out-of-sample equity, as JSON, plus one row per trial of each study (``window`` numbers the
studies; the final study, if any, has the last number).
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from storage.db import Database
from storage.sql import upsert


def save(db: Database, run: dict[str, Any], trials: list[dict[str, Any]]) -> None:
    """Store ``run`` (run_id, created_at, symbol, model, request, summary, curve) and its ``trials``
    (window, number, value, params, metrics); saving a run again replaces it."""
    row = (
        run["run_id"],
        int(run["created_at"]),
        run["symbol"],
        run["model"],
        json.dumps(run["request"]),
        json.dumps(run["summary"]),
        json.dumps(run["curve"]),
    )
    rows = [
        (
            run["run_id"],
            int(t["window"]),
            int(t["number"]),
            t["value"],
            json.dumps(t["params"]),
            json.dumps(t["metrics"]),
        )
        for t in trials
    ]

    def write(conn: sqlite_utils.Database) -> None:
        conn.execute("DELETE FROM optimise_trials WHERE run_id=?", (run["run_id"],))
        conn.execute(_UPSERT_RUN, row)
        conn.conn.executemany("INSERT INTO optimise_trials VALUES (?,?,?,?,?,?)", rows)

    db.write(write)


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("request", "summary", "curve"):
        if key in out:
            out[key] = json.loads(out[key])
    return out


def runs(db: Database, limit: int = 100) -> list[dict[str, Any]]:
    """The newest runs first, without their curves."""
    rows = db.query(
        "SELECT run_id, created_at, symbol, model, request, summary FROM optimise_runs "
        "ORDER BY created_at DESC, run_id LIMIT ?",
        (limit,),
    )
    return [_parsed(r) for r in rows]


def run(db: Database, run_id: str) -> dict[str, Any] | None:
    """One run with its curve, or None."""
    rows = db.query("SELECT * FROM optimise_runs WHERE run_id=?", (run_id,))
    return _parsed(rows[0]) if rows else None


_UPSERT_RUN = upsert("optimise_runs", "run_id, created_at, symbol, model, request, summary, curve", "run_id")


def trials(db: Database, run_id: str, window: int | None = None) -> list[dict[str, Any]]:
    """A run's trials (of one study with ``window``), in study and trial order."""
    where = "run_id=?"
    args: list[Any] = [run_id]
    if window is not None:
        where += ' AND "window"=?'
        args.append(window)
    rows = db.query(f'SELECT * FROM optimise_trials WHERE {where} ORDER BY "window", number', tuple(args))
    return [{**r, "params": json.loads(r["params"]), "metrics": json.loads(r["metrics"])} for r in rows]


def delete(db: Database, run_id: str) -> None:
    """Forget a run and its trials."""

    def write(conn: sqlite_utils.Database) -> None:
        conn.execute("DELETE FROM optimise_trials WHERE run_id=?", (run_id,))
        conn.execute("DELETE FROM optimise_runs WHERE run_id=?", (run_id,))

    db.write(write)
