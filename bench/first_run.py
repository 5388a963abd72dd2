"""A fresh desk's first start, timed: from building the runtime on an empty ``DATA_DIR`` with the
default settings (simulator, every default stage) to the first paper order, without touching a page.

    python -m bench.first_run [--timeout 900] [--seed N] [--env NAME=VALUE ...]

Timed, from the call that builds the runtime (what ``make run``'s first page view does) with the wall
clock: the first-run training's end (``training_s``), the first stored signal (``first_signal_s``),
the first paper order placed (``first_order_s``: the decision stage's PENDING, as the virtual
exchange stored it) and its fill (``first_fill_s``). Prints one JSON line per milestone as it
happens and a summary; a milestone not reached within ``--timeout`` is null. The API stage is left
out (it would bind port 8000); everything else runs as ``make run`` runs it, on the embedded bus.
``--env`` adds settings (for example other signal thresholds) to measure what they change.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from pipeline.config import load_config
from pipeline.stage_catalog import DEFAULT_PIPELINE
from pipeline.wiring import build_runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.first_run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the first fill")
    parser.add_argument("--seed", type=int, default=None, help="SIMULATOR_SEED (default: unset, as make run)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting to add")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-first-run-") as tmp:
        env = {
            "DATA_DIR": str(Path(tmp) / "data"),
            "STAGES": ",".join(["simulator", *[s for s in DEFAULT_PIPELINE if s != "api"]]),
        }
        if args.seed is not None:
            env["SIMULATOR_SEED"] = str(args.seed)
        env.update(item.split("=", 1) for item in args.env if "=" in item)
        started = time.perf_counter()
        runtime = build_runtime(load_config(env))
        names = ("training_s", "first_signal_s", "first_order_s", "first_fill_s")
        marks: dict[str, float | None] = dict.fromkeys(names)
        try:
            conn = runtime.db.reader().conn
            while time.perf_counter() - started < args.timeout and marks["first_fill_s"] is None:
                elapsed = round(time.perf_counter() - started, 1)
                job = runtime.training
                found = {
                    "training_s": job is not None and not job.running,
                    "first_signal_s": conn.execute("SELECT 1 FROM ml_signals LIMIT 1").fetchone() is not None,
                    "first_order_s": conn.execute("SELECT 1 FROM orders LIMIT 1").fetchone() is not None,
                    "first_fill_s": conn.execute("SELECT 1 FROM orders WHERE filled_at IS NOT NULL LIMIT 1").fetchone()
                    is not None,
                }
                for name, reached in found.items():
                    if reached and marks[name] is None:
                        marks[name] = elapsed
                        print(json.dumps({"bench": "first_run", "milestone": name, "seconds": elapsed}), flush=True)
                time.sleep(1.0)
            state = runtime.training.snapshot() if runtime.training is not None else None
            skipped = {}
            for row in conn.execute("SELECT name, details FROM stage_status WHERE name='decision'"):
                skipped = json.loads(row[1]).get("skipped", {})
            print(
                json.dumps(
                    {
                        "bench": "first_run",
                        **marks,
                        "timeout_s": args.timeout,
                        "trained": state.trained if state else [],
                        "training_errors": state.errors if state else [],
                        "decision_skipped": skipped,
                        "buy_pct": runtime.config.live_signal_pcts[0],
                        "sell_pct": runtime.config.live_signal_pcts[1],
                    }
                ),
                flush=True,
            )
        finally:
            runtime.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
