"""The desk's store in PostgreSQL (``DATABASE_URL``), with the surface ``storage.db.Database`` has.

The doors in ``storage/`` write one SQL that SQLite and PostgreSQL both accept (``?`` and
``:name`` placeholders, ``INSERT ... ON CONFLICT``); this module is the one place that turns their
placeholders into psycopg's (``%s``, ``%(name)s``; a literal ``%`` becomes ``%%``), outside quoted
strings, once per distinct statement (cached). No other rewriting happens at run time.

* ``write(fn)`` runs ``fn(db)`` in one transaction on a pooled connection and returns once it is
  committed. Unlike SQLite's one writer, writes of several stages (threads here, or processes and
  hosts) run at once under PostgreSQL's READ COMMITTED: each stage owns its tables' keys (one
  partition's keys go to one consumer), and every door's write is an idempotent upsert keyed by
  the message's id, so a redelivery on another host changes nothing.
* ``executemany`` of an ``INSERT ... VALUES (?, ...)`` (plain, ``ON CONFLICT DO NOTHING``, or an
  upsert with a column list) of 50 rows or more goes through COPY (see ``_Copied``): a plain
  insert straight into its table, an upsert through a temporary table and one ``INSERT ...
  SELECT ... ON CONFLICT``. Rows apply in order, as they would one by one. Anything else (UPDATE,
  DELETE, small batches) is psycopg's pipelined ``executemany``: one round trip per batch.
* ``reader()`` / ``query()`` take a pooled connection for one statement (autocommit) and return its
  rows materialised, so any thread may call them and no connection is held between calls.
* Types as SQLite gives them: ``numeric`` (what ``sum``/``avg`` of integers give) loads as float and
  ``boolean`` (what a comparison gives) as 0/1; the schema itself has no numeric or boolean column.
* Migrations are ``storage.migrations.MIGRATIONS``, the same list SQLite applies; DDL is mapped to
  PostgreSQL's types mechanically (``storage.migrations.postgres_ddl``) and applied under an
  advisory lock, so two hosts starting at once apply each migration once.

Cost: one pooled connection per concurrent statement (pool of ``max_size``); a write is one
transaction plus one round trip per ``execute`` and one per ``executemany`` batch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg.types.numeric import FloatLoader
from psycopg_pool import ConnectionPool

from storage.migrations import MIGRATIONS, Migration, postgres_ddl

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]
MIGRATION_LOCK = 22_000_001  # pg_advisory_xact_lock key: one host applies migrations at a time

_CACHE: dict[str, str] = {}


def to_pg(sql: str) -> str:
    """Turn SQLite-style placeholders into psycopg's: ``?`` → ``%s``, ``:name`` → ``%(name)s``,
    ``%`` → ``%%``; text inside quotes keeps its ``?`` and ``:`` (and a ``::`` cast is kept)."""
    out = _CACHE.get(sql)
    if out is not None:
        return out
    parts: list[str] = []
    i, n = 0, len(sql)
    quote: str | None = None
    while i < n:
        c = sql[i]
        if c == "%":
            parts.append("%%")
        elif quote is not None:
            parts.append(c)
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
            parts.append(c)
        elif c == "?":
            parts.append("%s")
        elif c == ":" and i + 1 < n and sql[i + 1] == ":":
            parts.append("::")
            i += 1
        elif c == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_") and (i == 0 or sql[i - 1] != ":"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            parts.append(f"%({sql[i + 1 : j]})s")
            i = j
            continue
        else:
            parts.append(c)
        i += 1
    out = "".join(parts)
    if len(_CACHE) < 4096:
        _CACHE[sql] = out
    return out


class _IntBoolLoader(Loader):
    """Booleans as SQLite gives them: 1 or 0."""

    def load(self, data: Any) -> int:
        return 1 if bytes(data) in (b"t", b"\x01") else 0


def _configure(conn: psycopg.Connection) -> None:
    conn.add_notice_handler(lambda _notice: None)  # "relation already exists, skipping" and the like
    conn.adapters.register_loader("numeric", FloatLoader)
    conn.adapters.register_loader("bool", _IntBoolLoader)


class Rows:
    """A finished statement's rows, read like a ``sqlite3.Cursor``: iterate, ``fetchone``, ``fetchall``."""

    def __init__(self, rows: list[Any], rowcount: int, description: Any = None) -> None:
        self._rows = rows
        self._at = 0
        self.rowcount = rowcount
        self.description = description

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rest = self._rows[self._at :]
        self._at = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _run(conn: psycopg.Connection, sql: str, params: Params) -> Rows:
    cur = conn.execute(to_pg(sql), params if isinstance(params, Mapping) else tuple(params))
    rows = cur.fetchall() if cur.description is not None else []
    return Rows(rows, cur.rowcount, cur.description)


_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>\w+)\s*(?:\((?P<cols>[^)]*)\))?\s*VALUES\s*\((?P<marks>[?,\s]*)\)\s*(?P<rest>.*)$",
    re.DOTALL | re.IGNORECASE,
)
_TARGET = re.compile(r"^ON\s+CONFLICT\s*\((?P<key>[^)]*)\)\s*DO\s+UPDATE", re.IGNORECASE)
_SETS = re.compile(r"^\s*SET\s+([^()]*?)\s*$", re.IGNORECASE | re.DOTALL)  # a SET list and nothing after
COPY_FROM = 50  # rows: a smaller batch goes as psycopg's pipelined executemany


class _Copied:
    """``INSERT INTO t [(cols)] VALUES (?, ...) [ON CONFLICT ...]`` for many rows, through COPY.

    A plain INSERT copies straight into ``t``. With ``ON CONFLICT`` the rows are copied into a
    temporary table shaped like ``t`` (one per connection, emptied at commit) and moved with one
    ``INSERT INTO t ... SELECT ... ON CONFLICT ...``. Rows end as one statement per row would
    leave them: for ``DO UPDATE`` that sets every other column from ``excluded`` (``replaces``),
    a key's last row in the batch is the one sent; for any other ``DO UPDATE``, a key seen again
    starts the next run (and a batch that would need more than ``MAX_RUNS`` goes row by row)."""

    MAX_RUNS = 3

    def __init__(
        self, table: str, cols: list[str] | None, rest: str, key: list[int] | None, replaces: bool = False
    ) -> None:
        self.table, self.rest, self.key, self.replaces = table, to_pg(rest), key, replaces
        names = ", ".join(f'"{c}"' for c in cols) if cols else None
        self.copy_into = f"COPY {table}" + (f" ({names})" if names else "") + " FROM STDIN"
        self.scratch = f"_copy_{table}"
        self.copy_scratch = f"COPY {self.scratch}" + (f" ({names})" if names else "") + " FROM STDIN"
        listed = names or "*"
        self.move = f"INSERT INTO {table} " + (f"({names}) " if names else "") + f"SELECT {listed} FROM {self.scratch} "
        self.move += self.rest
        self.create = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.scratch} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )

    def runs(self, batch: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]] | None:
        """The batch as runs without a repeated key, or None when that takes more than ``MAX_RUNS``."""
        if self.key is None:
            return [batch]
        key = self.key
        if self.replaces:
            last: dict[tuple[Any, ...], tuple[Any, ...]] = {}
            for row in batch:
                k = tuple(row[i] for i in key)
                last.pop(k, None)
                last[k] = row
            return [list(last.values())]
        runs: list[list[tuple[Any, ...]]] = [[]]
        seen: set[tuple[Any, ...]] = set()
        for row in batch:
            k = tuple(row[i] for i in key)
            if k in seen:
                if len(runs) == self.MAX_RUNS:
                    return None
                runs.append([])
                seen = set()
            runs[-1].append(row)
            seen.add(k)
        return runs

    def run(self, conn: psycopg.Connection, runs: list[list[tuple[Any, ...]]]) -> int:
        with conn.cursor() as cur:
            if not self.rest:
                with cur.copy(self.copy_into) as copy:
                    for row in runs[0]:
                        copy.write_row(row)
                return len(runs[0])
            # Every time: a temporary table made in a transaction that rolled back is gone.
            cur.execute(self.create)
            count = 0
            for i, run in enumerate(runs):
                if i:
                    cur.execute(f"DELETE FROM {self.scratch}")
                with cur.copy(self.copy_scratch) as copy:
                    for row in run:
                        copy.write_row(row)
                cur.execute(self.move)
                count += max(cur.rowcount, 0)
            cur.execute(f"DELETE FROM {self.scratch}")
            return count


_COPIED: dict[str, _Copied | None] = {}


def _copied(sql: str) -> _Copied | None:
    """How to send ``sql``'s rows through COPY, or None (an UPDATE, DELETE, or an upsert whose key
    columns cannot be placed: those go row by row in one pipelined executemany)."""
    if sql in _COPIED:
        return _COPIED[sql]
    found: _Copied | None = None
    m = _INSERT.match(sql)
    if m and ":" not in m.group("marks"):
        width = m.group("marks").count("?")
        cols = [c.strip().strip('"') for c in m.group("cols").split(",")] if m.group("cols") else None
        rest = m.group("rest").strip()
        target = _TARGET.match(rest)
        if cols is not None and len(cols) != width:
            found = None
        elif not rest or (rest.upper().startswith("ON CONFLICT") and "DO UPDATE" not in rest.upper()):
            found = _Copied(m.group("table"), cols, rest, None)  # plain insert, or DO NOTHING
        elif target is not None and cols is not None:
            keys = [c.strip().strip('"') for c in target.group("key").split(",")]
            if all(k in cols for k in keys):
                sets = _SETS.match(rest[target.end() :])
                pairs = [p.strip().replace('"', "").split("=") for p in sets.group(1).split(",")] if sets else []
                assigned = {p[0].strip() for p in pairs if len(p) == 2 and p[1].strip() == f"excluded.{p[0].strip()}"}
                replaces = len(assigned) == len(pairs) and assigned == set(cols) - set(keys)
                found = _Copied(m.group("table"), cols, rest, [cols.index(k) for k in keys], replaces)
    if len(_COPIED) < 1024:
        _COPIED[sql] = found
    return found


def _many(conn: psycopg.Connection, sql: str, batch: list[Params]) -> Rows:
    """Run ``sql`` for every row of ``batch``: through COPY where ``_copied`` allows and the batch
    has ``COPY_FROM`` rows or more, else psycopg's executemany (pipelined: one round trip)."""
    copied = _copied(sql) if len(batch) >= COPY_FROM and not isinstance(batch[0], Mapping) else None
    runs = copied.runs([tuple(r) for r in batch]) if copied is not None else None
    if copied is not None and runs is not None:
        return Rows([], copied.run(conn, runs))
    with conn.cursor() as cur:
        cur.executemany(to_pg(sql), [r if isinstance(r, Mapping) else tuple(r) for r in batch])
        return Rows([], cur.rowcount)


class PgConnection:
    """What doors and stages use of a ``sqlite3.Connection`` (``execute``, ``executemany``) and of a
    ``sqlite_utils.Database`` (``conn``, ``execute``, ``query``), over one psycopg connection, or over
    the pool (one pooled connection per statement) when ``conn`` is None."""

    dialect: Literal["postgres"] = "postgres"

    def __init__(self, pool: ConnectionPool, conn: psycopg.Connection | None = None) -> None:
        self._pool = pool
        self._conn = conn

    @property
    def conn(self) -> PgConnection:
        return self

    @property
    def in_transaction(self) -> bool:
        return self._conn is not None

    def execute(self, sql: str, params: Params = ()) -> Rows:
        if self._conn is not None:
            return _run(self._conn, sql, params)
        with self._pool.connection() as conn:
            return _run(conn, sql, params)

    def executemany(self, sql: str, rows: Iterator[Params] | Sequence[Params]) -> Rows:
        batch = list(rows)
        if not batch:
            return Rows([], 0)
        if self._conn is not None:
            return _many(self._conn, sql, batch)
        with self._pool.connection() as conn:
            return _many(conn, sql, batch)

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        pg = to_pg(sql)
        args = params if isinstance(params, Mapping) else tuple(params)
        if self._conn is not None:
            with self._conn.cursor(row_factory=dict_row) as cur:
                return iter(cur.execute(pg, args).fetchall())
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return iter(cur.execute(pg, args).fetchall())


def apply_migrations(pool: ConnectionPool, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction, under an advisory lock."""
    applied: list[str] = []
    with pool.connection() as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at BIGINT)")
        for name, fn in migrations:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                if conn.execute("SELECT 1 FROM _migrations WHERE name = %s", (name,)).fetchone():
                    continue
                fn(_DdlConnection(pool, conn))  # type: ignore[arg-type]
                conn.execute("INSERT INTO _migrations VALUES (%s, %s)", (name, int(time.time() * 1000)))
            applied.append(name)
    return applied


class _DdlConnection(PgConnection):
    """A migration's connection: CREATE/ALTER TABLE statements get PostgreSQL's types."""

    def execute(self, sql: str, params: Params = ()) -> Rows:
        return super().execute(postgres_ddl(sql), params)


class PostgresDatabase:
    """The app's store in PostgreSQL; see the module docstring for the contract."""

    dialect: Literal["postgres"] = "postgres"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8) -> None:
        self.url = url
        try:  # once by hand first: a refused or failed connection is one clear error at once
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise psycopg.OperationalError(
                f"cannot connect to the PostgreSQL store at {self}: {self._hide(exc)}"
            ) from None
        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, configure=_configure, open=False, name="desk-store"
        )
        try:
            self._pool.open(wait=True, timeout=10.0)
        except psycopg.Error as exc:
            self._pool.close()
            raise psycopg.OperationalError(
                f"cannot connect to the PostgreSQL store at {self}: {self._hide(exc)}"
            ) from None
        self._reader = PgConnection(self._pool)
        self.applied = apply_migrations(self._pool, MIGRATIONS)

    def __str__(self) -> str:
        """The URL without its password (the only way this object names itself)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.Error:
            return "postgresql://(a URL that does not parse)"
        where = f"{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return f"postgresql://{info.get('user', '')}@{where}"

    def _hide(self, exc: BaseException) -> str:
        """The error's first line, with the URL's password (if the driver echoed it) masked."""
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        try:
            password = psycopg.conninfo.conninfo_to_dict(self.url).get("password")
        except psycopg.Error:
            password = urlsplit(self.url).password
        return text.replace(str(password), "***") if password else text

    __repr__ = __str__

    def write(self, fn: Callable[[Any], T], timeout: float = 60.0) -> T:
        """Run ``fn(db)`` in one transaction; return when it is committed (rolled back on error)."""
        with self._pool.connection(timeout=timeout) as conn, conn.transaction():
            return fn(PgConnection(self._pool, conn))

    def reader(self) -> PgConnection:
        """A reader for any thread: each statement on a pooled connection of its own."""
        return self._reader

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Run a read query; rows as dicts."""
        return list(self._reader.query(sql, params))

    def close(self) -> None:
        self._pool.close()
