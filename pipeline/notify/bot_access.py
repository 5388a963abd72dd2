"""Who may ask the Discord bot, and who may trade through it.

The bot answers only in one guild, in the listed channels, to the listed users or roles; trading
commands (``/close``, ``/cancel`` and their confirmation buttons) need a user or role id from
the trader list. Anyone else gets a one-line reason and nothing changes. Ids are Discord
snowflakes; a user id and a role id never collide, so each list may hold both. A trader may also
use every read command. The check is pure: the caller logs the refusal (without what was typed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Access:
    """The settings: the guild, its channels, the readers and the traders (user or role ids)."""

    guild_id: int
    channel_ids: frozenset[int]
    user_ids: frozenset[int]
    trader_ids: frozenset[int]


@dataclass(frozen=True)
class Caller:
    """Who asked, and where: ``guild_id`` None is a direct message."""

    user_id: int
    role_ids: frozenset[int]
    guild_id: int | None
    channel_id: int | None

    @property
    def ids(self) -> frozenset[int]:
        return self.role_ids | {self.user_id}


def refusal(access: Access, caller: Caller, *, trading: bool) -> str | None:
    """Return why ``caller`` may not use a command (one line), or None when they may."""
    if caller.guild_id is None:
        return "This bot answers only in its server's channels, not in direct messages."
    if caller.guild_id != access.guild_id:
        return "This bot does not answer in this server."
    if caller.channel_id not in access.channel_ids:
        return "This bot does not answer in this channel; ask in one of its channels."
    if trading:
        if caller.ids & access.trader_ids:
            return None
        return "Only traders may close positions or cancel orders (DISCORD_TRADER_IDS)."
    if caller.ids & (access.user_ids | access.trader_ids):
        return None
    return "You are not on this bot's list of users (DISCORD_USER_IDS)."


def ids_of(values: Iterable[str]) -> frozenset[int]:
    """Return snowflakes from text (the settings' comma-separated lists); raise ``ValueError``
    naming the first value that is not a positive whole number."""
    out: set[int] = set()
    for value in values:
        text = value.strip()
        if not text:
            continue
        if not text.isdigit() or int(text) <= 0:
            raise ValueError(f"{text!r} is not a Discord id (a positive whole number)")
        out.add(int(text))
    return frozenset(out)
