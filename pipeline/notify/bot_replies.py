"""What the Discord bot answers to each command: pages of text built from what the desk stored.

Every builder is pure: it takes plain rows (what the storage doors and the bus return) and gives a
``Reply``: one line, or pages of one embed each. ``fit`` keeps every page inside Discord's limits
(a 256-character title, a 4,096-character description, 25 fields of 256/1,024 characters, a
2,048-character footer, 6,000 characters in all) and ``one_line`` keeps a plain answer inside
2,000 characters, so nothing the desk holds can make Discord refuse an answer. Long lists are cut
into pages of ``PAGE_LINES`` lines; the bot pages through them with buttons.

Amounts are the desk's own (USDT, the journal's currency); times are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pipeline.notify.formatting import AMBER, GREEN, GREY, RED, fmt_price, fmt_qty, fmt_usdt

CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_MAX = 6000
LINE_MAX = 300
PAGE_LINES = 12
BLUE = 0x3498DB


@dataclass(frozen=True)
class Field:
    name: str
    value: str
    inline: bool = True


@dataclass(frozen=True)
class Page:
    """One embed."""

    title: str
    description: str = ""
    fields: tuple[Field, ...] = ()
    color: int = GREY
    footer: str = ""
    image: str | None = None  # the name of an attached image to show

    def size(self) -> int:
        """Characters Discord counts towards its 6,000 per embed."""
        return (
            len(self.title)
            + len(self.description)
            + len(self.footer)
            + sum(len(f.name) + len(f.value) for f in self.fields)
        )


@dataclass(frozen=True)
class Reply:
    """An answer: ``text`` alone (one line), or pages shown one at a time; ``file`` is an attachment."""

    text: str = ""
    pages: tuple[Page, ...] = ()
    ephemeral: bool = False
    file: tuple[str, bytes] | None = field(default=None, repr=False)


def cut(text: str, limit: int) -> str:
    """Return ``text`` within ``limit`` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…" if limit > 0 else ""


def one_line(text: str, *, ephemeral: bool = True) -> Reply:
    """A one-line answer (refusals and bad input are seen only by whoever asked)."""
    return Reply(text=cut(" ".join(text.split()), CONTENT_MAX), ephemeral=ephemeral)


def fit(page: Page) -> Page:
    """Return ``page`` cut to Discord's embed limits."""
    fields = tuple(
        Field(cut(f.name, FIELD_NAME_MAX) or "-", cut(f.value, FIELD_VALUE_MAX) or "-", f.inline)
        for f in page.fields[:FIELDS_MAX]
    )
    fitted = replace(
        page,
        title=cut(page.title, TITLE_MAX),
        description=cut(page.description, DESCRIPTION_MAX),
        fields=fields,
        footer=cut(page.footer, FOOTER_MAX),
    )
    over = fitted.size() - EMBED_MAX
    if over > 0:  # the description gives way first, then the last fields
        fitted = replace(fitted, description=cut(fitted.description, len(fitted.description) - over))
    while fitted.size() > EMBED_MAX and fitted.fields:
        fitted = replace(fitted, fields=fitted.fields[:-1])
    return fitted


def paged(
    title: str,
    lines: Sequence[str],
    *,
    head: Sequence[Field] = (),
    intro: str = "",
    color: int = GREY,
    empty: str = "Nothing to show.",
    footer: str = "",
) -> tuple[Page, ...]:
    """Cut ``lines`` into pages of ``PAGE_LINES``; ``head`` fields and ``intro`` open the first page."""
    lines = [cut(line, LINE_MAX) for line in lines] or [empty]
    chunks = [lines[i : i + PAGE_LINES] for i in range(0, len(lines), PAGE_LINES)]
    pages = []
    for n, chunk in enumerate(chunks, start=1):
        text = "\n".join(chunk)
        if n == 1 and intro:
            text = intro + "\n\n" + text
        numbering = f"Page {n}/{len(chunks)}" if len(chunks) > 1 else ""
        foot = " · ".join(x for x in (cut(footer, FOOTER_MAX - 20), numbering) if x)  # the numbering survives
        pages.append(fit(Page(title, text, tuple(head) if n == 1 else (), color, foot)))
    return tuple(pages)


def utc_text(ms: float | int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(float(ms) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pct(value: float | None, *, sign: bool = True) -> str:
    return "-" if value is None else f"{value:{'+' if sign else ''}.2f}%"


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None


# --------------------------------------------------------------------------- the paper account


def portfolio_reply(state: Mapping[str, Any] | None, *, exchange_running: bool, starting_balance: float) -> Reply:
    """Cash, equity, return and the open positions with their unrealized P&L."""
    warning = (
        "" if exchange_running else "The virtual-exchange stage is not running: these are the last stored figures."
    )
    if not state or "equity" not in state:
        return Reply(
            pages=paged(
                "Portfolio",
                [],
                intro=warning,
                empty=f"No account stored yet: the virtual exchange starts with {fmt_usdt(starting_balance)}.",
            )
        )
    start = float(state.get("starting_balance") or starting_balance)
    equity = float(state["equity"])
    head = (
        Field("Cash", fmt_usdt(float(state["cash"]))),
        Field("Equity", fmt_usdt(equity)),
        Field("Return", _pct((equity / start - 1.0) * 100.0 if start else None)),
        Field("Realized", fmt_usdt(float(state.get("realized") or 0.0), sign=True)),
        Field("Unrealized", fmt_usdt(float(state.get("unrealized") or 0.0), sign=True)),
        Field("Exposure", _pct(_num(state.get("exposure_pct")), sign=False)),
    )
    lines = [
        f"**{p['symbol']}** {fmt_qty(float(p['quantity']))} @ {fmt_price(float(p['entry_price']))} → "
        f"{fmt_price(float(p['price']))}: {fmt_usdt(float(p['unrealized']), sign=True)} "
        f"({_pct(_num(p.get('unrealized_pct')))}) · `{p['order_id']}`"
        for p in state.get("positions") or []
    ]
    color = GREEN if equity >= start else RED
    footer = f"as of {utc_text(state.get('updated_at'))}"
    return Reply(
        pages=paged("Portfolio", lines, head=head, intro=warning, color=color, empty="No open position.", footer=footer)
    )


def orders_reply(rows: Sequence[Mapping[str, Any]], status: str | None) -> Reply:
    """The latest orders (newest first) with their status, price and P&L."""
    lines = []
    for o in rows:
        price = _num(o.get("fill_price")) or float(o["price"])
        pnl = _num(o.get("pnl"))
        lines.append(
            f"{utc_text(o.get('created_at'))} **{o['status']}** {o['action']} {fmt_qty(float(o['quantity']))} "
            f"{o['symbol']} @ {fmt_price(price)}"
            + (f" · P&L {fmt_usdt(pnl, sign=True)}" if pnl is not None else "")
            + (f" · {o['exit_reason']}" if o.get("exit_reason") else "")
            + f" · `{o['order_id']}`"
        )
    which = f"{status} orders" if status else "Orders"
    return Reply(pages=paged(f"{which} (latest {len(rows)})" if rows else which, lines, color=BLUE, empty="No order."))


# --------------------------------------------------------------------------- models


def best_baseline(baselines: Mapping[str, Any]) -> tuple[str, float] | None:
    """The baseline with the highest out-of-sample direction accuracy, as the Signals page picks it."""
    scored = [
        (name, float(b["accuracy"]))
        for name, b in baselines.items()
        if isinstance(b, Mapping) and _num(b.get("accuracy")) is not None
    ]
    return max(scored, key=lambda x: x[1]) if scored else None


def signals_reply(symbol: str, latest: Sequence[Mapping[str, Any]], models: Sequence[Mapping[str, Any]]) -> Reply:
    """Each model's latest signal and confidence, and its out-of-sample accuracy next to the best
    baseline (``models``: active registry rows with ``metrics`` and ``baselines`` as dicts)."""
    quality = {m["model"]: m for m in models}
    names = sorted({s["model"] for s in latest} | set(quality))
    lines = []
    for name in names:
        signal = next((s for s in latest if s["model"] == name), None)
        text = f"**{name}**: "
        if signal is None:
            text += "no signal yet"
        else:
            text += (
                f"{signal['signal']} at {float(signal['confidence']):.0%} confidence, expected "
                f"{float(signal['expected_change_pct']):+.2f}% ({utc_text(signal['timestamp'])})"
            )
        record = quality.get(name)
        if record is None:
            text += " · not trained"
        else:
            accuracy = _num(record["metrics"].get("accuracy"))
            best = best_baseline(record["baselines"])
            text += f" · out-of-sample accuracy {accuracy:.1%}" if accuracy is not None else " · accuracy -"
            text += f" vs best baseline {best[0]} {best[1]:.1%}" if best else " · no baseline"
            text += f" (v{record['version']})"
        lines.append(text)
    return Reply(
        pages=paged(
            f"Signals · {symbol}",
            lines,
            color=BLUE,
            empty=f"No signal and no trained model for {symbol} yet: train one on the Signals page.",
            footer="accuracy: walk-forward, out of sample; baselines traded the same way",
        )
    )


# --------------------------------------------------------------------------- the journal


def _alert_line(a: Mapping[str, Any]) -> str:
    what = f"**{a.get('severity', '?')}** {a.get('alert_type', '?')}"
    return f"{utc_text(a.get('timestamp'))} {what}: {a.get('message', '')}"


def journal_reply(
    period_label: str, stats: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]], *, user_id: str
) -> Reply:
    """Net P&L, win rate, expectancy and R of the closed trades in a period, and the last alerts."""
    trades = int(stats.get("trades") or 0)
    win_rate, expectancy, avg_r = _num(stats.get("win_rate")), _num(stats.get("expectancy")), _num(stats.get("avg_r"))
    pf = _num(stats.get("profit_factor"))
    head = (
        Field("Net P&L", fmt_usdt(float(stats.get("net_pnl") or 0.0), sign=True)),
        Field("Trades", str(trades)),
        Field("Win rate", f"{win_rate:.1%}" if win_rate is not None else "-"),
        Field("Expectancy", fmt_usdt(expectancy, sign=True) if expectancy is not None else "-"),
        Field(
            "Average R",
            f"{avg_r:+.2f} R ({stats.get('trades_with_stop', 0)} trades with a stop)" if avg_r is not None else "-",
        ),
        Field("Profit factor", f"{pf:.2f}" if pf is not None else "-"),
        Field("Max drawdown", fmt_usdt(float(stats.get("max_drawdown") or 0.0))),
        Field("Fees", fmt_usdt(float(stats.get("fees") or 0.0))),
    )
    lines = [_alert_line(a) for a in alerts]
    color = GREEN if float(stats.get("net_pnl") or 0.0) > 0 else RED if trades else GREY
    return Reply(
        pages=paged(
            f"Journal · {period_label}",
            lines,
            head=head,
            intro="**Last behavioural alerts**" if lines else "",
            color=color,
            empty="No behavioural alert in this period.",
            footer=f"{user_id}'s closed trades",
        )
    )


def alerts_reply(
    stock: Sequence[Mapping[str, Any]], behavioural: Sequence[Mapping[str, Any]], *, stock_note: str
) -> Reply:
    """The latest stock alerts (seed 003's ``alerts`` topic) and behavioural alerts, newest first."""
    lines = [
        f"{a.get('timestamp', '-')} **{a.get('priority', '?')}** {a.get('alert_type', '?')} "
        f"{a.get('symbol', '?')}: {a.get('message', '')}"
        for a in stock
    ]
    lines = (["**Stock alerts**", *lines] if lines else [f"**Stock alerts**: none ({stock_note})"]) + (
        ["**Behavioural alerts**", *(_alert_line(a) for a in behavioural)]
        if behavioural
        else ["**Behavioural alerts**: none"]
    )
    return Reply(pages=paged("Alerts", lines, color=AMBER))


# --------------------------------------------------------------------------- health


def health_reply(stages: Sequence[Any], dead_letters: Mapping[str, int]) -> Reply:
    """Every worker that published its status: running or not, lag, dead letters, last error;
    and the messages waiting in each dead-letter topic."""
    lines = []
    for s in stages:
        mark = "🟢" if s.running else "🔴"
        text = f"{mark} **{s.name}** ({s.kind}) lag {s.lag:,} · dead letters {s.dead_lettered:,} · errors {s.errors:,}"
        if s.last_error:
            text += f" · last error: {cut(' '.join(str(s.last_error).split()), 120)}"
        lines.append(text)
    waiting = {t: n for t, n in dead_letters.items() if n}
    total = sum(waiting.values())
    head = (
        Field("Workers running", f"{sum(1 for s in stages if s.running)}/{len(stages)}"),
        Field("Total lag", f"{sum(s.lag for s in stages):,}"),
        Field("Dead letters", f"{total:,}"),
    )
    intro = (
        "Dead-letter topics: " + ", ".join(f"{t} {n:,}" for t, n in sorted(waiting.items()))
        if waiting
        else "No dead letter waiting."
    )
    broken = any(not s.running for s in stages) or total
    return Reply(
        pages=paged(
            "Health",
            lines,
            head=head,
            intro=intro,
            color=RED if broken else GREEN,
            empty="No worker has published its status in the last 15 s: is the desk running?",
        )
    )


# --------------------------------------------------------------------------- trading


def close_prompt(symbol: str, positions: Sequence[Mapping[str, Any]]) -> Reply:
    """Ask to confirm closing every open position of ``symbol`` at the market."""
    lines = [
        f"SELL {fmt_qty(float(p['quantity']))} {symbol} (entry {fmt_price(float(p['entry_price']))}, last "
        f"{fmt_price(float(p['price']))}, {fmt_usdt(float(p['unrealized']), sign=True)}) · `{p['order_id']}`"
        for p in positions
    ]
    return Reply(
        pages=paged(
            f"Close {symbol} at the market?",
            lines,
            intro="The virtual exchange fills the close at the next tick. Confirm within 60 s.",
            color=RED,
        ),
        ephemeral=True,
    )


def cancel_prompt(order: Mapping[str, Any]) -> Reply:
    """Ask to confirm cancelling a pending order."""
    line = (
        f"{order['action']} {fmt_qty(float(order['quantity']))} {order['symbol']} @ {fmt_price(float(order['price']))} "
        f"({order['order_type']}, {order.get('strategy', '?')}) · `{order['order_id']}`"
    )
    return Reply(
        pages=paged(
            f"Cancel {order['order_id']}?",
            [line],
            intro="The virtual exchange cancels it if it is still pending when the request arrives. "
            "Confirm within 60 s.",
            color=AMBER,
        ),
        ephemeral=True,
    )
