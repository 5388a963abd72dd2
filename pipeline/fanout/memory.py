"""The in-process fan-out (the default): ``publish`` hands the trade straight to this process's
subscribers on the publishing thread. Cost: one dict store and one buffer append per interested
subscriber; nothing crosses a process, so a stage run as a process of its own (``STAGE_PROCESSES``)
needs ``REDIS_URL`` for its trades to reach the app's page and API."""

from __future__ import annotations

from pipeline.fanout.base import Trade, TradeFanout


class InProcessFanout(TradeFanout):
    """Subscribers in this process only."""

    kind = "in-process"

    def publish(self, trade: Trade) -> None:
        self.published += 1
        self._dispatch(trade)
