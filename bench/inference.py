"""Small timings behind the ML stage and the replay source, side by side in one run:

    python -m bench.inference [--repeat R]

Every figure is the median of R timed repeats (default 5), each after ``gc.collect()``; the lines
also give the fastest and slowest repeat. What is timed:

* ``features_call_us``: one ``FeatureState.features(price)`` call (per tick, per symbol), over
  100,000 calls per repeat on a state warmed with 3,000 simulator bars;
* per seed model, one ``predict`` of 10 rows through the compiled form as the desk runs it
  (``compiled_ms``, 300 calls per repeat; the forest walks as the numba loop, the default) and one
  ``predict_proba`` of the scikit-learn pipeline it was compiled from (``sklearn_ms``, 100 calls
  per repeat); fitting the models is not timed. For the random forest, ``numpy_walk_1_row_ms``
  times the compiled call on 1 row (as a live tick gives) with the trees walked by numpy operations
  (``ForestEvaluator.walk = "numpy"``), and ``numba_walk_ms`` and ``numba_walk_1_row_ms`` the
  calls on 10 rows and 1 row walked as the numba loop;
* ``read_candles`` of a 1,000,000-row Binance kline file (``seconds``); writing the file to a
  temporary folder is not timed.

Prints JSON lines.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from pipeline.candles import read_candles
from pipeline.config import SEED_MODELS
from pipeline.ml.compiled import ForestEvaluator
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset
from pipeline.ml.features import FeatureState
from pipeline.ml.models import fit_predictor


def _write_klines(path: Path, n: int) -> None:
    """Write ``n`` simulator bars as a Binance public-data kline file (no header, ms times)."""
    bars = bars_from_simulator("BTCUSDT", n, seed=2)[["start", "open", "high", "low", "close", "volume"]]
    with path.open("w") as f:
        for start, o, h, low, c, v in bars.itertuples(index=False):
            f.write(f"{start},{o:.2f},{h:.2f},{low:.2f},{c:.2f},{v:.4f},{start + 59_999},0,1,0,0,0\n")


def per_call(fn: Callable[[], object], number: int, repeat: int) -> list[float]:
    """Seconds per call of ``fn``, one figure per repeat of ``number`` calls, each after gc.collect()."""
    out = []
    for _ in range(repeat):
        gc.collect()
        out.append(timeit.timeit(fn, number=number) / number)
    return out


def spread(seconds: list[float], scale: float, digits: int, name: str) -> dict[str, float]:
    return {
        name: round(statistics.median(seconds) * scale, digits),
        f"{name}_min": round(min(seconds) * scale, digits),
        f"{name}_max": round(max(seconds) * scale, digits),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inference", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats of each figure (the median is printed)")
    args = parser.parse_args()
    repeat = max(1, args.repeat)
    bars = bars_from_simulator("BTCUSDT", 3000, seed=1)
    state = FeatureState()
    for b in bars.itertuples():
        state.push(b.close, b.high, b.low, b.volume)
    calls = per_call(lambda: state.features(100.0), 100_000, repeat)
    print(json.dumps({"bench": "inference", "repeat": repeat, **spread(calls, 1e6, 2, "features_call_us")}), flush=True)

    X, y, _ = make_dataset(bars, 15)
    rows = X.to_numpy()[:10]
    for name in SEED_MODELS:
        predictor = fit_predictor(name, X.to_numpy(), y, 15)
        predictor.warm()  # the compiled walk's code loads before anything is timed
        compiled = per_call(functools.partial(predictor.predict, rows), 300, repeat)
        plain = per_call(functools.partial(predictor.pipeline.predict_proba, rows), 100, repeat)
        walks: dict[str, float] = {}
        if isinstance(predictor.compiled, ForestEvaluator):
            one = rows[:1]
            predictor.compiled.walk = "numpy"
            walks.update(
                spread(per_call(functools.partial(predictor.predict, one), 300, repeat), 1e3, 4, "numpy_walk_1_row_ms")
            )
            predictor.compiled.walk = "numba"
            predictor.warm()
            walks.update(
                spread(per_call(functools.partial(predictor.predict, rows), 300, repeat), 1e3, 3, "numba_walk_ms")
            )
            walks.update(
                spread(per_call(functools.partial(predictor.predict, one), 300, repeat), 1e3, 4, "numba_walk_1_row_ms")
            )
        print(
            json.dumps(
                {
                    "bench": "inference",
                    "model": name,
                    "rows": 10,
                    "repeat": repeat,
                    **spread(compiled, 1e3, 3, "compiled_ms"),
                    **spread(plain, 1e3, 3, "sklearn_ms"),
                    **walks,
                }
            ),
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        path = Path(tmp) / "BTCUSDT-1m-2024-01-01.csv"
        _write_klines(path, 1_000_000)
        seconds, rows_read, rejected = [], 0, 0
        for _ in range(repeat):
            gc.collect()
            started = time.perf_counter()
            candles = read_candles(path)
            seconds.append(time.perf_counter() - started)
            rows_read, rejected = len(candles.frame), len(candles.rejected)
            del candles
        print(
            json.dumps(
                {
                    "bench": "inference",
                    "read_candles_rows": rows_read,
                    "rejected": rejected,
                    "repeat": repeat,
                    **spread(seconds, 1.0, 2, "seconds"),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
