"""Trade history of any exchange ccxt supports, through its unified ``fetch_my_trades``.

``CcxtClient`` is a ``TradeHistoryClient`` (see ``exchange_api``) for the exchanges the desk has no
client of its own for (Kraken, OKX, KuCoin, Coinbase, Bitfinex, MEXC... every id in
``ccxt.exchanges``). It asks with read-only keys and:

* pages with ccxt's own pagination where ccxt's ``fetch_my_trades`` of that exchange has one
  (``paginate``: by cursor, by time or by id, as ccxt knows each exchange: Bybit, OKX, KuCoin,
  Coinbase...), else by walking back from the window's end with ``until`` until a page brings
  nothing new (Kraken, Bitfinex, MEXC: ccxt's generic walk never ends on Kraken, whose end time is
  inclusive), inside time windows no longer than the exchange accepts
  (``WINDOW_MS``: Bybit 7 days, Binance 24 hours), from ``since_ms`` up to now;
* honours rate limits (ccxt's ``enableRateLimit`` spaces the requests; a ``RateLimitExceeded`` or
  a network error is retried with exponential backoff, then raised as ``TransientError``);
* refuses rejected keys and signatures with a ``ConfigError`` whose text never holds the secret.

``fetch`` returns ccxt's unified trade dicts (``id, timestamp, symbol, side, price, amount, fee,
info``), oldest first, each once; ``pipeline.journal.payloads.parse_ccxt_trade`` reads them. The
history source (``trade_history``) keeps the since-time per symbol and resumes from the ledger
after a restart. Calls block the source's thread; ccxt loads the exchange's markets once.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import ConfigError, TransientError
from pipeline.journal.fills import normalize_symbol
from pipeline.journal.payloads import CCXT

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
# The longest span between a start and an end time each exchange accepts for its trade history.
WINDOW_MS: dict[str, int] = {"bybit": 7 * DAY_MS, "binance": DAY_MS, "kucoin": 7 * DAY_MS, "okx": 90 * DAY_MS}
PAGINATION_CALLS = 1000  # ccxt's own cap on pages per call (its default, 10, would stop short)


def _override(urls: Any, base_url: str) -> Any:
    """Every API URL of a ccxt exchange pointed at ``base_url`` (a testnet, a proxy, a local server)."""
    if isinstance(urls, dict):
        return {k: _override(v, base_url) for k, v in urls.items()}
    return base_url.rstrip("/")


def _paginates_itself(cls: type) -> bool:
    """Whether ccxt's ``fetch_my_trades`` of an exchange class handles ``paginate`` itself (ccxt
    generates each exchange's code; the ones that paginate read the ``paginate`` option there)."""
    try:
        return "paginate" in inspect.getsource(cls.fetch_my_trades)  # type: ignore[attr-defined]
    except (OSError, TypeError):  # no source shipped: the generic walk works for every exchange
        return False


class CcxtClient:
    """One account of one ccxt exchange; used from one thread at a time."""

    format = CCXT

    def __init__(
        self,
        exchange_id: str,
        api_key: str,
        api_secret: str,
        *,
        password: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        options: dict[str, Any] | None = None,
        rate_limit_ms: float | None = None,
    ) -> None:
        import ccxt  # loads only when an exchange sync is configured

        if exchange_id not in ccxt.exchanges:
            raise ConfigError(f"{exchange_id!r} is not an exchange ccxt knows (ccxt.exchanges: kraken, okx...)")
        if not api_key or not api_secret:
            raise ConfigError(f"{exchange_id}: an API key and secret are both required")
        self._ccxt = ccxt
        self.venue = exchange_id
        config: dict[str, Any] = {
            "apiKey": api_key,
            "secret": api_secret,
            "enableRateLimit": True,
            "timeout": int(timeout_s * 1000),
            "options": options or {},
        }
        if password:
            config["password"] = password
        self.exchange = getattr(ccxt, exchange_id)(config)
        if base_url:
            self.exchange.urls["api"] = _override(self.exchange.urls["api"], base_url)
        if rate_limit_ms is not None:  # a local server or a proxy with limits of its own
            self.exchange.rateLimit = rate_limit_ms
        self._secrets = [s for s in (api_secret, password, api_key) if s]
        self.max_attempts, self.backoff_s, self.sleep, self.clock = max(1, max_attempts), backoff_s, sleep, clock
        self.window_ms = WINDOW_MS.get(exchange_id)
        # Whether ccxt's fetch_my_trades of this exchange paginates itself (else its generic walk).
        self.own_pagination = _paginates_itself(type(self.exchange))

    def __repr__(self) -> str:
        return f"CcxtClient({self.venue!r})"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())[:300]

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        ccxt = self._ccxt
        last = ""
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except ccxt.AuthenticationError as exc:
                raise ConfigError(f"{self.venue} rejected the API credentials: {self._scrub(str(exc))}") from None
            except ccxt.PermissionDenied as exc:
                raise ConfigError(f"{self.venue} refused {what}: {self._scrub(str(exc))}") from None
            except (ccxt.RateLimitExceeded, ccxt.NetworkError, ccxt.ExchangeNotAvailable) as exc:
                last = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            except ccxt.BadSymbol as exc:
                raise ConfigError(f"{self.venue} does not list {what}: {self._scrub(str(exc))}") from None
            except ccxt.ExchangeError as exc:
                if "signature" in str(exc).lower():  # ccxt leaves some (Kraken's) unmapped: a wrong secret
                    raise ConfigError(f"{self.venue} rejected the API signature: {self._scrub(str(exc))}") from None
                raise TransientError(f"{self.venue} {what}: {type(exc).__name__}: {self._scrub(str(exc))}") from None
            if attempt + 1 < self.max_attempts:
                delay = self.backoff_s * 2**attempt
                log.warning("%s %s failed (%s); retry %d in %.1f s", self.venue, what, last, attempt + 1, delay)
                self.sleep(delay)
        raise TransientError(f"{self.venue} {what}: {last} (gave up after {self.max_attempts} attempts)")

    def market_symbol(self, symbol: str) -> str:
        """ccxt's unified symbol (``BTC/USDT``) of a desk symbol (``BTCUSDT``)."""
        if self.exchange.markets is None:
            self._call("the market list", self.exchange.load_markets)
        wanted = normalize_symbol(symbol)
        for unified, market in (self.exchange.markets or {}).items():
            if normalize_symbol(str(market.get("id", ""))) == wanted or normalize_symbol(unified) == wanted:
                return str(unified)
        raise ConfigError(f"{self.venue} lists no market {symbol}")

    def fetch(self, symbol: str, since_ms: int | None) -> list[dict[str, Any]]:
        """Return the unified trades of ``symbol`` from ``since_ms`` on (the exchange's default span
        when None), oldest first, each once."""
        unified = self.market_symbol(symbol)
        now_ms = int(self.clock() * 1000)
        windows: list[tuple[int | None, int | None]] = [(since_ms, None)]
        if since_ms is not None and self.window_ms:
            windows = []
            start = since_ms
            while start <= now_ms:
                end = min(start + self.window_ms - 1, now_ms)
                windows.append((start, end))
                start = end + 1
        seen: dict[str, dict[str, Any]] = {}
        for first, until in windows:
            trades = self._call(f"fetch_my_trades {unified}", lambda s=first, u=until: self._window(unified, s, u))  # type: ignore[misc]
            for t in trades:
                if since_ms is None or int(t.get("timestamp") or 0) >= since_ms:
                    seen.setdefault(_trade_key(t), t)
        return sorted(seen.values(), key=lambda t: int(t.get("timestamp") or 0))

    def _window(self, unified: str, since: int | None, until: int | None) -> list[dict[str, Any]]:
        if self.own_pagination:
            params: dict[str, Any] = {"paginate": True, "paginationCalls": PAGINATION_CALLS}
            if until is not None:
                params["until"] = until
            return list(self.exchange.fetch_my_trades(unified, since, None, params))
        return self._walk_back(unified, since, until)

    def _walk_back(self, unified: str, since: int | None, until: int | None) -> list[dict[str, Any]]:
        """Newest page first, each next page ending just before the oldest trade seen, until a page
        brings nothing new or reaches ``since``. ccxt's own generic walk stops only on an empty page,
        and an exchange whose end time is inclusive in whole seconds (Kraken) re-sends the oldest
        trade forever; stopping on "nothing new" ends it after one extra call."""
        seen: dict[str, dict[str, Any]] = {}
        end = until
        for _ in range(PAGINATION_CALLS):
            page = self.exchange.fetch_my_trades(unified, None, None, {} if end is None else {"until": end})
            new = [t for t in page if _trade_key(t) not in seen]
            if not new:
                break
            for t in new:
                seen[_trade_key(t)] = t
            oldest = min(int(t.get("timestamp") or 0) for t in page)
            if since is not None and oldest <= since:
                break
            end = oldest - 1
        return list(seen.values())


def _trade_key(t: dict[str, Any]) -> str:
    """A unified trade's identity: its id, else what it is made of."""
    return str(t.get("id") or (t.get("timestamp"), t.get("price"), t.get("amount"), t.get("side")))
