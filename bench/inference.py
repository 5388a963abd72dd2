"""Small timings behind the ML stage and the replay source, side by side in one run:

    python -m bench.inference

* ``features_call_us``: one ``FeatureState.features(price)`` call (per tick, per symbol);
* per seed model, one ``predict`` of 10 rows through the compiled numpy form and through the
  scikit-learn pipeline it was compiled from (``compiled_ms``, ``sklearn_ms``);
* ``read_candles`` on a 1,000,000-row Binance kline file written to a temporary folder.

Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import timeit
import time
from pathlib import Path

from pipeline.config import SEED_MODELS
from pipeline.ml.data import bars_from_simulator
from pipeline.ml.evaluate import make_dataset
from pipeline.ml.features import FeatureState
from pipeline.ml.models import fit_predictor
from pipeline.candles import read_candles


def _write_klines(path: Path, n: int) -> None:
    """Write ``n`` simulator bars as a Binance public-data kline file (no header, ms times)."""
    bars = bars_from_simulator("BTCUSDT", n, seed=2)[["start", "open", "high", "low", "close", "volume"]]
    with path.open("w") as f:
        for start, o, h, low, c, v in bars.itertuples(index=False):
            f.write(f"{start},{o:.2f},{h:.2f},{low:.2f},{c:.2f},{v:.4f},{start + 59_999},0,1,0,0,0\n")


def main() -> int:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    bars = bars_from_simulator("BTCUSDT", 3000, seed=1)
    state = FeatureState()
    for b in bars.itertuples():
        state.push(b.close, b.high, b.low, b.volume)
    n = 100_000
    seconds = timeit.timeit(lambda: state.features(100.0), number=n)
    print(json.dumps({"bench": "inference", "features_call_us": round(seconds / n * 1e6, 2)}), flush=True)

    X, y, _ = make_dataset(bars, 15)
    rows = X.to_numpy()[:10]
    for name in SEED_MODELS:
        predictor = fit_predictor(name, X.to_numpy(), y, 15)
        compiled = timeit.timeit(lambda: predictor.predict(rows), number=300) / 300
        plain = timeit.timeit(lambda: predictor.pipeline.predict_proba(rows), number=100) / 100
        print(json.dumps({"bench": "inference", "model": name, "rows": 10, "compiled_ms": round(compiled * 1e3, 3),
                          "sklearn_ms": round(plain * 1e3, 3)}), flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        path = Path(tmp) / "BTCUSDT-1m-2024-01-01.csv"
        _write_klines(path, 1_000_000)
        started = time.perf_counter()
        candles = read_candles(path)
        print(json.dumps({"bench": "inference", "read_candles_rows": len(candles.frame),
                          "rejected": len(candles.rejected), "seconds": round(time.perf_counter() - started, 2)}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
