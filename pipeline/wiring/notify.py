"""The workers that talk to the trader: the webhook notifier and the Discord bot."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.runner import StageRunner, Worker
from pipeline.wiring.runtime import Runtime, WorkerFactory


def _notifier(rt: Runtime) -> Worker:
    from pipeline.stages.notifier import Notifier

    c = rt.config
    if not (c.discord_webhook_url or c.notify_webhook_url):
        raise ConfigError("the notifier needs DISCORD_WEBHOOK_URL or NOTIFY_WEBHOOK_URL in the environment or .env")
    return StageRunner(Notifier(discord_url=c.discord_webhook_url, webhook_url=c.notify_webhook_url), rt.bus)


def _discord_bot(rt: Runtime) -> Worker:
    from pipeline.notify.bot_access import Access  # discord.py and matplotlib load only for the bot
    from pipeline.notify.bot_desk import AlertTail, Desk
    from pipeline.stages.discord_bot import DiscordBotWorker

    c = rt.config
    missing = [
        name
        for name, value in (
            ("DISCORD_BOT_TOKEN", c.discord_bot_token),
            ("DISCORD_GUILD_ID", c.discord_guild_id),
            ("DISCORD_CHANNEL_IDS", c.discord_channel_ids),
            ("DISCORD_USER_IDS or DISCORD_TRADER_IDS", c.discord_user_ids or c.discord_trader_ids),
        )
        if not value
    ]
    if missing or c.discord_bot_token is None or c.discord_guild_id is None:
        raise ConfigError(f"the discord-bot needs {', '.join(missing)} in the environment or .env (docs/discord.md)")
    access = Access(
        c.discord_guild_id,
        frozenset(c.discord_channel_ids),
        frozenset(c.discord_user_ids),
        frozenset(c.discord_trader_ids),
    )
    alerts = AlertTail(rt.bus)
    desk = Desk(
        rt.db,
        rt.bus,
        rt.producer,
        symbols=c.symbols,
        user_id=c.user_id,
        starting_balance=c.exchange.starting_balance,
        alerts=alerts,
    )
    return DiscordBotWorker(
        c.discord_bot_token, access, desk, alerts, api_url=c.discord_api_url, gateway_url=c.discord_gateway_url
    )


FACTORIES: dict[str, WorkerFactory] = {
    "notifier": _notifier,
    "discord-bot": _discord_bot,
}
