"""The low-latency path (seed 004's Redis pub/sub leg): every trade a stock source accepts goes
to a fan-out that hands it to live subscribers (``WS /ws/stocks``, the Stocks page's ticker)
without waiting on the bus or a database.

Two implementations keep one contract (``base.TradeFanout``; ``tests/contract/test_fanout_contract.py``
runs it on both): ``InProcessFanout`` (the default) and ``RedisFanout`` (``REDIS_URL`` set), which
lets several server processes share the trades. ``create_fanout`` picks one from the settings.
"""

from __future__ import annotations

from pipeline.fanout.base import FanoutStats, Subscription, TradeFanout
from pipeline.fanout.memory import InProcessFanout

__all__ = ["FanoutStats", "InProcessFanout", "Subscription", "TradeFanout", "create_fanout"]


def create_fanout(redis_url: str | None, channel: str) -> TradeFanout:
    """Return the Redis fan-out on ``channel`` when ``redis_url`` is set, else the in-process one."""
    if redis_url:
        from pipeline.fanout.redis import RedisFanout

        return RedisFanout(redis_url, channel)
    return InProcessFanout()
