"""Candlestick images for the Discord bot, drawn with matplotlib from the stored 1-minute bars.

``render`` takes the bars of a window (oldest first), groups them into candles of 1, 5, 15, 30 or
60 minutes so that a window never draws more than ``MAX_CANDLES`` of them, and returns the PNG
with what it drew: the interval, the number of candles, the first and the last candle's start.
The same facts are written into the PNG's ``Description`` text chunk, so whoever has only the
image can check the window it shows. A candle's open is its first bar's open, its close its last
bar's close, its high and low the extremes, its volume the sum: a missing minute is a shorter
candle, never an invented one.

Cost: about 0.1-0.2 s for 300 candles at 1000x560 pixels (matplotlib's Agg backend, no display,
no pyplot state, so threads may render at once). Importing matplotlib takes about a second, so
the bot calls ``warm_up`` once at start.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

MINUTE_MS = 60_000
DAY_MS = 86_400_000
MAX_CANDLES = 300
INTERVALS_MIN = (1, 5, 15, 30, 60)
UP, DOWN = "#26a69a", "#ef5350"
BACKGROUND, GRID, TEXT = "#131722", "#2a2e39", "#d1d4dc"

Bar = tuple[int, float, float, float, float, float]  # start ms, open, high, low, close, volume


@dataclass(frozen=True)
class Chart:
    """A rendered chart and what it shows."""

    png: bytes
    symbol: str
    window_label: str
    interval_min: int
    candles: int
    first_ms: int
    last_ms: int
    width: int
    height: int

    def describe(self) -> str:
        return (
            f"symbol={self.symbol} window={self.window_label} interval={self.interval_min}m "
            f"candles={self.candles} first={self.first_ms} last={self.last_ms}"
        )


def interval_for(window_ms: int) -> int:
    """The smallest candle interval (minutes) that draws ``window_ms`` in at most ``MAX_CANDLES``."""
    for minutes in INTERVALS_MIN:
        if window_ms / (minutes * MINUTE_MS) <= MAX_CANDLES:
            return minutes
    return INTERVALS_MIN[-1]


def candles(bars: Sequence[Bar], interval_min: int) -> list[Bar]:
    """Group 1-minute ``bars`` (oldest first) into candles of ``interval_min`` minutes."""
    step = interval_min * MINUTE_MS
    out: list[Bar] = []
    for start, o, h, low, c, v in bars:
        bucket = start - start % step
        if out and out[-1][0] == bucket:
            s, o0, h0, l0, _, v0 = out[-1]
            out[-1] = (s, o0, max(h0, h), min(l0, low), c, v0 + v)
        else:
            out.append((bucket, o, h, low, c, v))
    return out


def warm_up() -> None:
    """Import matplotlib's Agg backend now, so the first chart a trader asks for is not slow."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401


def render(
    symbol: str, bars: Sequence[Bar], *, window_ms: int, window_label: str, width: int = 1000, height: int = 560
) -> Chart:
    """Draw ``bars`` (1-minute, oldest first, at least one) as candles with volume below."""
    if not bars:
        raise ValueError(f"no bars of {symbol} to draw")
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    interval = interval_for(window_ms)
    drawn = candles(bars, interval)
    x = [c[0] / DAY_MS for c in drawn]  # matplotlib's dates: days since 1970-01-01
    colors = [UP if c[4] >= c[1] else DOWN for c in drawn]
    width_days = interval * MINUTE_MS / DAY_MS * 0.7

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=BACKGROUND)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=(4, 1), hspace=0.04, left=0.07, right=0.98, top=0.92, bottom=0.1)
    price = fig.add_subplot(grid[0])
    volume = fig.add_subplot(grid[1], sharex=price)
    for ax in (price, volume):
        ax.set_facecolor(BACKGROUND)
        ax.grid(color=GRID, linewidth=0.6)
        ax.tick_params(colors=TEXT, labelsize=8)
        for spine in ax.spines.values():
            spine.set_color(GRID)
    price.vlines(x, [c[3] for c in drawn], [c[2] for c in drawn], colors=colors, linewidth=0.8)
    # One collection of rectangles per axes: a patch per candle costs matplotlib ten times as much.
    half = width_days / 2
    bodies = []
    for xi, c in zip(x, drawn):
        low, high = min(c[1], c[4]), max(c[1], c[4])
        high = max(high, low + (c[2] - c[3]) * 0.02 or low + abs(low) * 1e-6)  # a doji is a thin line
        bodies.append(((xi - half, low), (xi - half, high), (xi + half, high), (xi + half, low)))
    price.add_collection(PolyCollection(bodies, facecolors=colors, linewidths=0))
    volume.add_collection(
        PolyCollection(
            [((xi - half, 0), (xi - half, c[5]), (xi + half, c[5]), (xi + half, 0)) for xi, c in zip(x, drawn)],
            facecolors=colors,
            linewidths=0,
        )
    )
    volume.set_ylim(0, max(c[5] for c in drawn) * 1.05 or 1.0)
    price.tick_params(labelbottom=False)
    volume.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M" if interval >= 15 else "%H:%M"))
    price.set_xlim(x[0] - width_days, x[-1] + width_days)
    first, last = drawn[0][0], drawn[-1][0]
    title = (
        f"{symbol} · last {window_label} · {interval}m candles · "
        f"{_utc(first)} – {_utc(last + interval * MINUTE_MS)} UTC · last {drawn[-1][4]:,.6g}"
    )
    fig.suptitle(title, color=TEXT, fontsize=10, x=0.07, ha="left")
    chart = Chart(b"", symbol, window_label, interval, len(drawn), first, last, width, height)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor=BACKGROUND, metadata={"Title": title, "Description": chart.describe()})
    return Chart(buffer.getvalue(), symbol, window_label, interval, len(drawn), first, last, width, height)


def _utc(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
