"""The baselines every model is judged against: what each says at a row, from the past only.

Rows are consecutive bars, as ``make_dataset`` gives them: row ``i`` is the close of bar ``i``, its
target ``y[i] = ln(close[i + h] / close[i])`` is ``h`` bars in the future. A baseline's call at row
``i`` may use the targets that have come true by then, ``y[:i - h + 1]``, and the features of rows
up to ``i``; nothing later (a test changes the future and checks that no call moves).

* ``persistence``: up when the last completed ``h``-bar return was up, ``y[i - h] > 0``
  (= ``close[i] > close[i - h]``); no call (flat) in the first ``h`` rows.
* ``always_up``: up at every row.
* ``ma_crossover``: up when the 7-bar average is above the 25-bar one at row ``i``.
* ``buy_and_hold``: long at every row; it trades as ``always_up`` does and has no direction metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.ml.features import FEATURES

BASELINES: tuple[str, ...] = ("persistence", "always_up", "ma_crossover", "buy_and_hold")


def _column(X: pd.DataFrame | np.ndarray, name: str) -> np.ndarray:
    if isinstance(X, pd.DataFrame):
        return X[name].to_numpy(dtype=float)
    return np.asarray(X, dtype=float)[:, FEATURES.index(name)]


def baseline_calls(X: pd.DataFrame | np.ndarray, y: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    """Return, per baseline, whether it says "up" (be long for the next ``horizon`` bars) at each row."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    persistence = np.zeros(n, dtype=bool)
    persistence[horizon:] = y[: n - horizon] > 0 if n > horizon else False
    # the features are price over average: p/ma_7 < p/ma_25 <=> ma_7 > ma_25
    ma_up = _column(X, "ma_7_gap") < _column(X, "ma_25_gap")
    return {
        "persistence": persistence,
        "always_up": np.ones(n, dtype=bool),
        "ma_crossover": ma_up,
        "buy_and_hold": np.ones(n, dtype=bool),
    }
