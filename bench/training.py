"""Training time per symbol and model: walk-forward evaluation (5 folds), the final fit and the
registration, on N simulator bars.

    python -m bench.training [--bars 100000] [--models random_forest svm ...] [--horizon 15]

Prints one JSON line per model: ``seconds`` (wall clock), ``progress_updates`` (how often the
progress callback fired, which is what the Train button's progress bar shows) and the
out-of-sample accuracy next to the base rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from pipeline.config import ML_MODEL_NAMES
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.registry import Registry
from pipeline.ml.train import train_symbol
from storage.db import Database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--models", nargs="+", default=list(ML_MODEL_NAMES), choices=ML_MODEL_NAMES)
    parser.add_argument("--horizon", type=int, default=15)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    bars = bars_from_simulator("BTCUSDT", args.bars, seed=1)
    print(
        json.dumps(
            {
                "bench": "training",
                "step": "simulate",
                "bars": args.bars,
                "seconds": round(time.perf_counter() - started, 3),
            }
        ),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        db = Database(Path(tmp) / "desk.db")
        registry = Registry(db, Path(tmp) / "models")
        for model in args.models:
            updates = 0

            def progress(_fraction: float, _message: str) -> None:
                nonlocal updates
                updates += 1

            t0 = time.perf_counter()
            (record,) = train_symbol(registry, bars, "BTCUSDT", (model,), horizon=args.horizon, progress=progress)
            print(
                json.dumps(
                    {
                        "bench": "training",
                        "model": model,
                        "bars": args.bars,
                        "horizon": args.horizon,
                        "seconds": round(time.perf_counter() - t0, 2),
                        "progress_updates": updates,
                        "accuracy": record.metrics.get("accuracy"),
                        "base_rate_up": record.metrics.get("base_rate_up"),
                    }
                ),
                flush=True,
            )
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
