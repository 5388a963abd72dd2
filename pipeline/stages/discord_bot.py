"""discord-bot: the desk's Discord bot as a worker, on an event loop of its own thread.

It runs ``pipeline.notify.discord_bot.DeskBot`` until stopped. discord.py resumes the gateway
session itself when Discord drops the connection or asks for a reconnect; when the client gives up
(the REST API unreachable at login, a gateway closed for good) the worker starts a new client
after a backoff of 1 s doubling to 60 s. A token Discord refuses stops the worker with one line in
its health (it would be refused again). The stock-alert tail (``AlertTail``) runs beside it.

What it publishes about itself (``status``): whether it is connected, how often it reconnected,
commands answered and refused, orders published, and the p50/p99 of its last 500 answers (from
the command reaching the bot to its reply sent). The token never appears there, nor in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import discord

from pipeline.notify import chart
from pipeline.notify.bot_access import Access
from pipeline.notify.bot_desk import AlertTail, Desk
from pipeline.notify.discord_bot import DeskBot, install_token_filter
from pipeline.runner import Worker

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 60.0


def point_at(api_url: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST calls and gateway connections elsewhere (a proxy; the tests' fake)."""
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    if api_url:
        Route.BASE = api_url.rstrip("/")
    if gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class DiscordBotWorker(Worker):
    """Runs the bot (kind "source": it publishes the orders traders confirm)."""

    kind = "source"

    def __init__(
        self,
        token: str,
        access: Access,
        desk: Desk,
        alerts: AlertTail | None,
        *,
        api_url: str | None = None,
        gateway_url: str | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        super().__init__("discord-bot")
        self._token = token
        self.access, self.desk, self.alerts = access, desk, alerts
        self.api_url, self.gateway_url = api_url, gateway_url
        self.backoff_s = backoff_s
        self.connected = threading.Event()
        self.connects = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._bot: DeskBot | None = None
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="discord-bot-desk")
        install_token_filter(token)

    def status(self) -> dict[str, Any]:
        bot = self._bot
        counters = bot.counters if bot is not None else None
        latencies = sorted(counters.latencies_ms) if counters else []
        return {
            "connected": self.connected.is_set(),
            "reconnects": max(self.connects - 1, 0),
            "guild": str(self.access.guild_id),
            "answered": counters.answered if counters else 0,
            "refused": counters.refused if counters else 0,
            "failed": counters.failed if counters else 0,
            "orders_published": counters.published if counters else 0,
            "reply_ms_p50": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "reply_ms_p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
            if latencies
            else None,
            "stock_alerts_read": self.alerts.read if self.alerts else 0,
        }

    def _ready_change(self, ready: bool) -> None:
        if ready:
            if not self.connected.is_set():
                self.connects += 1
            self.connected.set()
        else:
            self.connected.clear()

    def _run(self) -> None:
        point_at(self.api_url, self.gateway_url)
        chart.warm_up()
        if self.alerts is not None:
            self.alerts.start()
        try:
            asyncio.run(self._main())
        finally:
            if self.alerts is not None:
                self.alerts.stop()
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = self.backoff_s
        while not self._stop.is_set():
            bot = DeskBot(self.desk, self.access, self._executor, on_ready_change=self._ready_change)
            self._bot = bot
            try:
                await bot.start(self._token)
            except discord.LoginFailure:
                self.health.error("Discord refused the bot token (DISCORD_BOT_TOKEN); the bot stopped")
                log.error("discord-bot: Discord refused the bot token (DISCORD_BOT_TOKEN); the bot stopped")
                return
            except Exception as exc:
                text = str(exc).replace(self._token, "***") if self._token else str(exc)
                self.health.error(f"{type(exc).__name__}: {text}")
                log.warning(
                    "discord-bot: the client stopped (%s: %s); starting again in %.0f s",
                    type(exc).__name__,
                    text,
                    delay,
                    exc_info=True,
                )
            finally:
                self.connected.clear()
                if not bot.is_closed():
                    await bot.close()
            if self._stop.is_set():
                return
            with contextlib.suppress(TimeoutError):  # the backoff, cut short by stop()
                await asyncio.wait_for(self._wake.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        loop, bot, wake = self._loop, self._bot, self._wake
        if loop is not None and not loop.is_closed():
            try:
                if wake is not None:
                    loop.call_soon_threadsafe(wake.set)
                if bot is not None:
                    asyncio.run_coroutine_threadsafe(bot.close(), loop)
            except RuntimeError:
                pass  # the loop closed meanwhile
        super().stop(timeout)
