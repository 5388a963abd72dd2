"""The Discord bot's client and commands, on discord.py: slash commands, paging and confirmation buttons.

``DeskBot`` is a ``discord.Client`` whose command tree answers ``/portfolio``, ``/orders``,
``/signals``, ``/journal``, ``/alerts``, ``/health``, ``/chart``, ``/close`` and ``/cancel`` in one
guild. Every command and every button goes through ``bot_access.refusal`` first: a caller who may
not use it gets one line (seen only by them), the attempt is logged with who and where but never
what they typed, and nothing runs. The answers come from ``bot_desk.Desk``, called on a thread pool
so a slow read never holds the gateway's heartbeat; ``bot_replies`` keeps them within Discord's
limits, and a reply of several pages gets ◀ ▶ buttons. ``/close`` and ``/cancel`` first show what
they would do with Confirm and Cancel buttons that only the trader who asked can press; nothing is
published before Confirm, and nothing after 60 s.

Threads: everything here runs on the event loop of the worker that owns the client
(``pipeline.stages.discord_bot``), except the ``Desk`` calls, which run on ``executor``.
The token is given to ``start`` only; ``TokenFilter`` removes it from any log record of discord.py
or the desk, should one ever carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import discord
from discord import app_commands

from pipeline.notify.bot_access import Access, Caller, refusal
from pipeline.notify.bot_desk import Desk, Pending
from pipeline.notify.bot_inputs import STATUSES, BotInputError
from pipeline.notify.bot_replies import Page, Reply, one_line

log = logging.getLogger(__name__)

TRADING = frozenset({"close", "cancel"})
CONFIRM_S = 60.0
PAGER_S = 600.0  # an interaction's token is good for 15 minutes; the pager gives up before
FAILED = "The desk could not answer that just now; the reason is in the desk's log."
NO_MENTIONS = discord.AllowedMentions.none()


@dataclass
class Counters:
    """What the bot has done, for its published status (updated on the event loop only)."""

    answered: int = 0
    refused: int = 0
    failed: int = 0
    published: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def took(self, ms: float) -> None:
        self.latencies_ms.append(ms)
        del self.latencies_ms[:-500]  # the last 500 answers


class TokenFilter(logging.Filter):
    """Replaces the bot's token in a log record's message and traceback with ``***``."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token:
            return True
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "***"), ()
        if record.exc_info and record.exc_info[1] is not None and self.token in str(record.exc_info[1]):
            record.exc_text = logging.Formatter().formatException(record.exc_info).replace(self.token, "***")
            record.exc_info = None
        return True


def install_token_filter(token: str) -> TokenFilter:
    """Attach a ``TokenFilter`` to discord.py's loggers and the desk's (a logger's filter does not
    see its children's records, so each logger gets it)."""
    token_filter = TokenFilter(token)
    names = [n for n in logging.Logger.manager.loggerDict if n == "discord" or n.startswith(("discord.", "pipeline"))]
    for name in {"discord", "pipeline", *names}:
        logging.getLogger(name).addFilter(token_filter)
    return token_filter


def caller_of(interaction: discord.Interaction) -> Caller:
    user = interaction.user
    # The member's role ids as the interaction carried them (no guild cache needed, no intent).
    roles = frozenset(int(r) for r in getattr(user, "_roles", ()))
    return Caller(user.id, roles, interaction.guild_id, interaction.channel_id)


def embed_of(page: Page) -> discord.Embed:
    embed = discord.Embed(title=page.title, description=page.description or None, color=page.color)
    for f in page.fields:
        embed.add_field(name=f.name, value=f.value, inline=f.inline)
    if page.footer:
        embed.set_footer(text=page.footer)
    if page.image:
        embed.set_image(url=f"attachment://{page.image}")
    return embed


class DeskBot(discord.Client):
    """The bot. ``executor`` runs the desk's blocking reads; ``on_ready_change`` hears connects and drops."""

    def __init__(
        self,
        desk: Desk,
        access: Access,
        executor: Executor,
        *,
        on_ready_change: Callable[[bool], None] | None = None,
    ) -> None:
        discord.VoiceClient.warn_nacl = False  # the bot never joins a voice channel: no warning at start
        discord.VoiceClient.warn_dave = False
        # GUILDS alone: slash commands and buttons need no privileged intent, nor message content.
        super().__init__(intents=discord.Intents(guilds=True), allowed_mentions=NO_MENTIONS)
        self.desk, self.access, self.executor = desk, access, executor
        self.counters = Counters()
        self._on_ready_change = on_ready_change
        self.tree = DeskTree(self)
        add_commands(self.tree, self, discord.Object(id=access.guild_id))

    async def setup_hook(self) -> None:
        await self.tree.sync(guild=discord.Object(id=self.access.guild_id))
        log.info("discord-bot: commands registered in guild %s", self.access.guild_id)

    async def on_connect(self) -> None:  # READY received: commands are answered from now on
        log.info("discord-bot: connected as %s", self.user)
        if self._on_ready_change:
            self._on_ready_change(True)

    async def on_resumed(self) -> None:
        if self._on_ready_change:
            self._on_ready_change(True)

    async def on_disconnect(self) -> None:
        if self._on_ready_change:
            self._on_ready_change(False)

    # -- answering

    def refuse(self, interaction: discord.Interaction, what: str, *, trading: bool) -> str | None:
        """Return the refusal for ``interaction`` (and log the attempt without its content), or None."""
        why = refusal(self.access, caller_of(interaction), trading=trading)
        if why is not None:
            self.counters.refused += 1
            log.warning(
                "discord-bot: refused %s from user %s in guild %s, channel %s: %s",
                what,
                interaction.user.id,
                interaction.guild_id,
                interaction.channel_id,
                why,
            )
        return why

    async def run_desk(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def reply(self, interaction: discord.Interaction, fn: Callable[..., Reply], *args: Any) -> None:
        """Answer ``interaction`` with what ``fn(*args)`` says of the desk."""
        started = time.monotonic()
        try:
            answer = await self.run_desk(fn, *args)
        except BotInputError as exc:
            answer = one_line(str(exc))
        except Exception:
            log.exception("discord-bot: /%s failed", _name(interaction))
            self.counters.failed += 1
            answer = one_line(FAILED)
        await self.send(interaction, answer)
        self.counters.answered += 1
        self.counters.took((time.monotonic() - started) * 1000)

    async def send(self, interaction: discord.Interaction, answer: Reply, view: discord.ui.View | None = None) -> None:
        kwargs: dict[str, Any] = {"ephemeral": answer.ephemeral, "allowed_mentions": NO_MENTIONS}
        if answer.text:
            kwargs["content"] = answer.text
        if answer.pages:
            kwargs["embed"] = embed_of(answer.pages[0])
        if answer.file is not None:
            kwargs["file"] = discord.File(io.BytesIO(answer.file[1]), filename=answer.file[0])
        if view is None and len(answer.pages) > 1:
            view = Pager(self, answer.pages, interaction)
        if view is not None:
            kwargs["view"] = view
        await interaction.response.send_message(**kwargs)

    async def ask(self, interaction: discord.Interaction, fn: Callable[..., tuple[Reply, Pending]], arg: str) -> None:
        """Show what a trading command would do, with Confirm and Cancel buttons."""
        started = time.monotonic()
        try:
            prompt, pending = await self.run_desk(fn, arg)
        except BotInputError as exc:
            await self.send(interaction, one_line(str(exc)))
        except Exception:
            log.exception("discord-bot: /%s failed", _name(interaction))
            self.counters.failed += 1
            await self.send(interaction, one_line(FAILED))
        else:
            await self.send(interaction, prompt, Confirm(self, pending, interaction))
        self.counters.answered += 1
        self.counters.took((time.monotonic() - started) * 1000)


class DeskTree(app_commands.CommandTree):
    """The command tree, with the access check in front of every command."""

    def __init__(self, bot: DeskBot) -> None:
        super().__init__(bot)
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        name = _name(interaction)
        why = self.bot.refuse(interaction, f"/{name}", trading=name in TRADING)
        if why is None:
            return True
        if interaction.type is discord.InteractionType.autocomplete:
            await interaction.response.autocomplete([])
        else:
            await interaction.response.send_message(why, ephemeral=True, allowed_mentions=NO_MENTIONS)
        return False

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        log.warning("discord-bot: %s: %s", type(error).__name__, error)
        if not interaction.response.is_done():
            await interaction.response.send_message(
                "That command is not known here, or its options could not be read.",
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )


def add_commands(tree: DeskTree, bot: DeskBot, guild: discord.abc.Snowflake) -> None:
    """Register the commands on ``tree`` for ``guild``."""
    desk = bot.desk
    status_choices = [app_commands.Choice(name=s.title(), value=s) for s in (*STATUSES, "all")]

    async def symbols(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        known = await bot.run_desk(desk.known_symbols)
        return [app_commands.Choice(name=s, value=s) for s in known if current.upper() in s][:25]

    @tree.command(
        name="portfolio", description="Cash, equity, return and open positions of the paper account", guild=guild
    )
    async def portfolio(interaction: discord.Interaction) -> None:
        await bot.reply(interaction, desk.portfolio)

    @tree.command(name="orders", description="The latest orders and their statuses", guild=guild)
    @app_commands.describe(status="only orders in this status")
    @app_commands.choices(status=status_choices)
    async def orders(interaction: discord.Interaction, status: str | None = None) -> None:
        await bot.reply(interaction, desk.orders, status)

    @tree.command(name="signals", description="Each model's latest signal and its out-of-sample accuracy", guild=guild)
    @app_commands.describe(symbol="a symbol such as BTCUSDT")
    @app_commands.autocomplete(symbol=symbols)
    async def signals(interaction: discord.Interaction, symbol: str) -> None:
        await bot.reply(interaction, desk.signals, symbol)

    @tree.command(name="journal", description="Net P&L, win rate, expectancy and R, and the last alerts", guild=guild)
    @app_commands.describe(period="today, week, month, ytd, all, 7d, 2025-01-31 or 2025-01-01..2025-01-31")
    async def journal(interaction: discord.Interaction, period: str | None = None) -> None:
        await bot.reply(interaction, desk.journal, period)

    @tree.command(name="alerts", description="The latest stock and behavioural alerts", guild=guild)
    async def alerts(interaction: discord.Interaction) -> None:
        await bot.reply(interaction, desk.alerts)

    @tree.command(name="health", description="The desk's workers, their lag and the dead letters", guild=guild)
    async def health(interaction: discord.Interaction) -> None:
        await bot.reply(interaction, desk.health)

    @tree.command(name="chart", description="A candlestick chart from the stored bars", guild=guild)
    @app_commands.describe(symbol="a symbol such as BTCUSDT", window="90m, 4h, 1d... up to 7d (4h if left out)")
    @app_commands.autocomplete(symbol=symbols)
    async def chart(interaction: discord.Interaction, symbol: str, window: str | None = None) -> None:
        await bot.reply(interaction, desk.chart, symbol, window)

    @tree.command(name="close", description="Close a position at the market (asks to confirm)", guild=guild)
    @app_commands.describe(symbol="the symbol whose position to close")
    @app_commands.autocomplete(symbol=symbols)
    async def close(interaction: discord.Interaction, symbol: str) -> None:
        await bot.ask(interaction, desk.close_prompt, symbol)

    @tree.command(name="cancel", description="Cancel a pending order (asks to confirm)", guild=guild)
    @app_commands.describe(order_id="the pending order's id")
    async def cancel(interaction: discord.Interaction, order_id: str) -> None:
        await bot.ask(interaction, desk.cancel_prompt, order_id)


class Pager(discord.ui.View):
    """◀ ▶ buttons that show one page of a long answer at a time."""

    def __init__(self, bot: DeskBot, pages: tuple[Page, ...], origin: discord.Interaction) -> None:
        super().__init__(timeout=PAGER_S)
        self.bot, self.pages, self.origin, self.at = bot, pages, origin, 0
        self._sync()

    def _sync(self) -> None:
        self.previous.disabled = self.at == 0
        self.next.disabled = self.at == len(self.pages) - 1

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        why = self.bot.refuse(interaction, "a page button", trading=False)
        if why is not None:
            await interaction.response.send_message(why, ephemeral=True, allowed_mentions=NO_MENTIONS)
        return why is None

    async def _show(self, interaction: discord.Interaction, step: int) -> None:
        self.at = min(max(self.at + step, 0), len(self.pages) - 1)
        self._sync()
        await interaction.response.edit_message(embed=embed_of(self.pages[self.at]), view=self)

    @discord.ui.button(label="◀", style=discord.ButtonStyle.secondary, custom_id="page:previous")
    async def previous(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._show(interaction, -1)

    @discord.ui.button(label="▶", style=discord.ButtonStyle.secondary, custom_id="page:next")
    async def next(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await self._show(interaction, +1)

    async def on_timeout(self) -> None:
        with contextlib.suppress(discord.HTTPException):  # the message is gone or the token expired
            await self.origin.edit_original_response(view=None)


class Confirm(discord.ui.View):
    """Confirm and Cancel buttons for a trading command; only the trader who asked may press them."""

    def __init__(self, bot: DeskBot, pending: Pending, origin: discord.Interaction) -> None:
        super().__init__(timeout=CONFIRM_S)
        self.bot, self.pending, self.origin = bot, pending, origin
        self.asker = origin.user.id

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        why = self.bot.refuse(interaction, f"the {self.pending.kind} confirmation", trading=True)
        if why is None and interaction.user.id != self.asker:
            why = "Only the trader who asked can confirm this."
            self.bot.counters.refused += 1
            log.warning(
                "discord-bot: refused a %s confirmation from user %s: not the asker",
                self.pending.kind,
                interaction.user.id,
            )
        if why is not None:
            await interaction.response.send_message(why, ephemeral=True, allowed_mentions=NO_MENTIONS)
        return why is None

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.danger, custom_id="trade:confirm")
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        act = self.bot.desk.confirm_close if self.pending.kind == "close" else self.bot.desk.confirm_cancel
        try:
            sent, outcome = await self.bot.run_desk(act, self.pending)
            self.bot.counters.published += sent
        except Exception as exc:
            log.exception("discord-bot: the %s of %s was not sent", self.pending.kind, self.pending.target)
            outcome = f"Not sent: {exc}"
        log.info(
            "discord-bot: user %s confirmed the %s of %s", interaction.user.id, self.pending.kind, self.pending.target
        )
        await interaction.response.edit_message(content=outcome, embed=None, view=None)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id="trade:dismiss")
    async def dismiss(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Not sent.", embed=None, view=None)

    async def on_timeout(self) -> None:
        with contextlib.suppress(discord.HTTPException):
            await self.origin.edit_original_response(
                content=f"Not sent: no confirmation within {self.timeout or 0:g} s.", embed=None, view=None
            )


def _name(interaction: discord.Interaction) -> str:
    data: Any = interaction.data or {}
    return str(data.get("name", "?"))
