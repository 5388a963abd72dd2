"""Statistics in R over closed trades (pure pandas): expectancy, the R distribution, breakdowns by
setup, tag, hour and weekday, and the MFE/MAE scatter's rows.

Every function takes closed trades with an ``r`` column (``pipeline.journal.excursions.with_r``: net
P&L over the risk from the trade's stop or its setup's default) and, for the scatter, the
excursions' ``status, mfe_r, mae_r`` columns. A trade whose excursions could not be measured (no
bars) is left out of the scatter and counted apart, never drawn at zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.journal import analytics

R_BREAKDOWN_COLUMNS = ["key", "trades", "total_r", "win_rate", "expectancy_r"]


def _num(value: Any) -> float | None:
    return analytics._num(value)


def r_summary(closed: pd.DataFrame) -> dict[str, Any]:
    """Return ``trades``, ``expectancy_r`` (mean R), ``median_r``, ``total_r``, ``win_rate``,
    ``avg_win_r``, ``avg_loss_r`` and how many trades took their risk from a stop (``from_stop``)."""
    r = pd.to_numeric(closed["r"]).astype(float).dropna() if len(closed) else pd.Series(dtype=float)
    wins, losses = r[r > 0], r[r < 0]
    sources = closed["risk_source"] if "risk_source" in closed else pd.Series(dtype=object)
    return {
        "trades": len(r),
        "expectancy_r": _num(r.mean()) if len(r) else None,
        "median_r": _num(r.median()) if len(r) else None,
        "total_r": float(r.sum()),
        "win_rate": len(wins) / len(r) if len(r) else None,
        "avg_win_r": _num(wins.mean()) if len(wins) else None,
        "avg_loss_r": _num(losses.mean()) if len(losses) else None,
        "from_stop": int((sources == "stop").sum()),
    }


def r_histogram(closed: pd.DataFrame, width: float = 0.5) -> pd.DataFrame:
    """Return ``lo, hi, trades``: how many trades ended in each R bin of ``width`` (lo <= R < hi)."""
    r = pd.to_numeric(closed["r"]).astype(float).dropna().to_numpy() if len(closed) else np.zeros(0)
    if not len(r):
        return pd.DataFrame(
            {"lo": pd.Series(dtype=float), "hi": pd.Series(dtype=float), "trades": pd.Series(dtype="int64")}
        )
    first = np.floor(r.min() / width) * width
    last = np.floor(r.max() / width) * width + width
    edges = np.arange(first, last + width / 2, width)
    counts, _ = np.histogram(r, bins=edges)
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "trades": counts.astype("int64")})


def r_breakdown(closed: pd.DataFrame, by: analytics.BreakdownBy) -> pd.DataFrame:
    """Return ``key, trades, total_r, win_rate, expectancy_r`` per group, grouped as
    ``analytics.breakdown`` groups (a trade with several tags counts in each; hours and weekdays of
    the entry, UTC); a trade wins when its R is above 0."""
    rated = closed[pd.to_numeric(closed["r"]).notna()] if len(closed) else closed
    table = analytics.breakdown(rated.assign(pnl=pd.to_numeric(rated["r"]).astype(float), fees=0.0), by)
    table = table.rename(columns={"net_pnl": "total_r", "expectancy": "expectancy_r"})
    if by not in ("weekday", "hour"):
        table = table.sort_values(["expectancy_r", "key"], ascending=[False, True], kind="stable")
    return table[R_BREAKDOWN_COLUMNS].reset_index(drop=True)


def scatter_rows(closed: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Return the trades the MFE/MAE scatter can draw (``status`` ok) and how many it cannot."""
    if closed.empty or "status" not in closed:
        return closed.iloc[0:0], len(closed)
    ok = closed["status"] == "ok"
    return closed[ok], int((~ok).sum())
