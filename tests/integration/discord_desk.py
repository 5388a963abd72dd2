"""Shared by the Discord bot's tests: a desk with the bot against the local Discord, known states
written through the storage doors, and the checks every answer must pass (Discord's limits).

Not a test module: the tests import it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from pipeline.config import load_config
from pipeline.runner import Worker
from pipeline.wiring import Runtime, build_runtime
from storage import journal, market, models, orders, signals, status
from tests.fakes.discord_gateway import FakeDiscord, Seen

TOKEN = "MTIzNDU2Nzg5MDEy.Gx-test.do-not-log-this-secret-token"
GUILD, CHANNEL, OTHER_CHANNEL = 7001, 7002, 7003
READER, TRADER, TRADER_BY_ROLE, STRANGER = 7101, 7102, 7103, 7199
TRADER_ROLE = 7201


@dataclass
class BotDesk:
    runtime: Runtime
    fake: FakeDiscord

    @property
    def db(self) -> Any:
        return self.runtime.db

    def worker(self, name: str = "discord-bot") -> Worker:
        return next(w for w in self.runtime.workers if w.name == name)

    def ask(self, name: str, options: dict[str, Any] | None = None, *, user: int = READER, **kwargs: Any) -> Seen:
        """Send ``/name`` as ``user`` in the bot's channel; return its answer, checked against Discord's limits."""
        kwargs.setdefault("channel_id", CHANNEL)
        interaction = self.fake.command(name, options, user_id=user, **kwargs)
        seen = self.fake.reply_to(interaction)
        within_limits(seen)
        return seen


def settings(data_dir: Path, fake: FakeDiscord, stages: str, **extra: str) -> dict[str, str]:
    return {
        "DATA_DIR": str(data_dir),
        "STAGES": stages,
        "SYMBOLS": "BTCUSDT,ETHUSDT",
        "DISCORD_BOT_TOKEN": TOKEN,
        "DISCORD_GUILD_ID": str(GUILD),
        "DISCORD_CHANNEL_IDS": str(CHANNEL),
        "DISCORD_USER_IDS": str(READER),
        "DISCORD_TRADER_IDS": f"{TRADER},{TRADER_ROLE}",
        "DISCORD_API_URL": fake.api_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        **extra,
    }


@contextmanager
def bot_desk(data_dir: Path, stages: str = "discord-bot", **extra: str) -> Iterator[BotDesk]:
    """A desk running ``stages`` (the bot among them) against a local Discord of its own."""
    with FakeDiscord(TOKEN, GUILD) as fake:
        runtime = build_runtime(load_config(settings(data_dir, fake, stages, **extra)))
        try:
            fake.wait_connected()
            yield BotDesk(runtime, fake)
        finally:
            runtime.stop()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- Discord's limits, checked on the wire


def within_limits(seen: Seen) -> None:
    body = seen.payload.get("data", seen.payload) if seen.kind == "callback" else seen.payload
    body = body or {}
    assert len(body.get("content") or "") <= 2000
    embeds = body.get("embeds") or []
    assert len(embeds) <= 10
    for embed in embeds:
        fields = embed.get("fields") or []
        assert len(embed.get("title") or "") <= 256 and len(embed.get("description") or "") <= 4096
        assert len(fields) <= 25
        assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for f in fields)
        assert len((embed.get("footer") or {}).get("text") or "") <= 2048
        total = (
            len(embed.get("title") or "")
            + len(embed.get("description") or "")
            + len((embed.get("footer") or {}).get("text") or "")
            + sum(len(f["name"]) + len(f["value"]) for f in fields)
        )
        assert total <= 6000
    assert (body.get("allowed_mentions") or {"parse": []}).get("parse") == []  # nobody is ever pinged


def text_of(seen: Seen) -> str:
    """Everything a trader reads in an answer: content, titles, descriptions, fields and footers."""
    body = seen.payload.get("data", seen.payload) if seen.kind == "callback" else seen.payload
    body = body or {}
    parts = [body.get("content") or ""]
    for embed in body.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields") or []]
        parts.append((embed.get("footer") or {}).get("text") or "")
    return "\n".join(p for p in parts if p)


def buttons(seen: Seen) -> dict[str, bool]:
    """custom_id -> disabled, of the buttons an answer shows."""
    return {
        c["custom_id"]: bool(c.get("disabled"))
        for row in seen.message.get("components") or []
        for c in row.get("components") or []
    }


def is_one_private_line(seen: Seen) -> bool:
    data = seen.payload.get("data") or {}
    return (
        seen.callback_type == 4
        and bool(data.get("flags", 0) & 64)
        and not data.get("embeds")
        and "\n" not in (data.get("content") or "")
    )


# -- known states, through the storage doors


def png_of(png: bytes) -> tuple[PngImagePlugin.PngImageFile, dict[str, str]]:
    """The decoded PNG and its text chunks (a chart states its window in ``Description``)."""
    image = Image.open(io.BytesIO(png))
    assert isinstance(image, PngImagePlugin.PngImageFile)
    return image, dict(image.text)


def bot_details(db: Any) -> dict[str, Any]:
    """What the bot last published about itself (empty before it did)."""
    row = status.stage(db, "discord-bot")
    return row.details if row is not None else {}


def write_snapshot(db: Any, snapshot: dict[str, Any], now_ms: int) -> None:
    db.write(lambda d: orders.store(d.conn, [], equity=None, snapshot_json=json.dumps(snapshot), now_ms=now_ms))


def order_row(order_id: str, *, status: str, created_at: int, pnl: float | None = None) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(orders.ORDER_COLUMNS)
    values.update(
        order_id=order_id,
        symbol="BTCUSDT",
        action="BUY",
        order_type="MARKET",
        status=status,
        quantity=0.01,
        price=60_000.0,
        created_at=created_at,
        updated_at=created_at,
        strategy="test",
        model="random_forest",
        pnl=pnl,
        exit_reason="take_profit" if status == "CLOSED" else None,
    )
    return (*(values[c] for c in orders.ORDER_COLUMNS), "{}")


def write_orders(db: Any, rows: list[tuple[Any, ...]]) -> None:
    """Store order rows, keeping the account's snapshot as it was (the door writes both)."""
    state = orders.portfolio_state(db) or {}
    state.pop("updated_at", None)
    db.write(lambda d: orders.store(d.conn, rows, equity=None, snapshot_json=json.dumps(state), now_ms=1))


def write_signal(db: Any, symbol: str, model: str, ts: int, signal: str, confidence: float, change: float) -> None:
    row = (symbol, model, ts, signal, "return", change, 60_000.0, change, confidence, f"{symbol}/{model}/v1", "{}")
    db.write(lambda d: signals.store(d.conn, [row]))


def write_model(db: Any, symbol: str, model: str, accuracy: float, baselines: dict[str, Any]) -> None:
    row = (
        symbol,
        model,
        1,
        0,
        1,
        f"/nowhere/{symbol}/{model}/v1.joblib",
        60_000,
        15,
        0,
        1,
        1000,
        "[]",
        "{}",
        json.dumps({"accuracy": accuracy}),
        json.dumps(baselines),
        "{}",
    )

    def insert(d: Any) -> None:
        models.insert(d.conn, row)
        models.activate(d.conn, symbol, model, 1)

    db.write(insert)


def trade_row(
    trade_id: str, *, pnl: float, exit_time: int, stop: float | None, user: str = "trader"
) -> tuple[Any, ...]:
    entry = 100.0
    return (
        trade_id,
        user,
        "BTCUSDT",
        "BUY",
        "trade",
        entry,
        entry + pnl,
        1.0,
        exit_time - 3_600_000,
        exit_time,
        pnl,
        0.0,
        stop,
        None,
        "[]",
        None,
        None,
        None,
        "[]",
        "manual",
        "{}",
        exit_time,
    )


def alert_row(alert_id: str, ts: int, message: str, *, user: str = "trader") -> tuple[Any, ...]:
    return (alert_id, user, "revenge_trading", "high", ts, "[]", message, "{}", ts)


def write_journal(db: Any, trades: list[tuple[Any, ...]], alerts: list[tuple[Any, ...]]) -> None:
    db.write(lambda d: journal.store(d.conn, trades=trades, void_trades=[], alerts=alerts, void_alerts=[]))


def write_minute_bars(db: Any, symbol: str, first_ms: int, minutes: int) -> None:
    ticks = []
    price = 3000.0
    for i in range(minutes):
        for second, step in ((0, 0.0), (20, 1.5), (40, -1.0)):
            ticks.append(
                (symbol, first_ms + i * 60_000 + second * 1000, price + step, None, None, None, None, None, 1.0)
            )
        price += 0.5 if i % 4 else -1.2
    db.write(lambda d: market.store_ticks(d.conn, ticks))
