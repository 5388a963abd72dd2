"""A SQLite database with one writer thread fed by a queue and readers on their own connections.

``open_database`` is the one way the app, the commands and the benchmarks open the desk's store:
PostgreSQL (storage/postgres.py) when ``database_url`` is set, else ``data_dir/desk.db`` here.
Both have ``dialect``, ``write``, ``reader``, ``query``, ``close`` and ``applied``.

The SQLite writer never checkpoints inside its commits: ``storage.wal_checkpoint`` does it on a
thread of its own, so a write queued behind a commit no longer waits the 20-40 ms SQLite's
checkpoint took there (``checkpoint="writer"`` is the older way, kept for comparison).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import sqlite_utils

from storage.migrations import MIGRATIONS, apply_migrations
from storage.wal_checkpoint import Checkpoint, Checkpointer

if TYPE_CHECKING:
    from storage.postgres import PostgresDatabase

T = TypeVar("T")


class StoreSettings(Protocol):
    """What ``open_database`` reads of the configuration."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def database_url(self) -> str | None: ...


def connect(path: Path) -> sqlite3.Connection:
    """Open a connection in autocommit mode with WAL, ``synchronous=NORMAL`` and a busy timeout.

    The page cache (32 MiB), memory-mapped reads and checkpoints every 8,192 WAL pages (32 MiB)
    instead of SQLite's 1,000 matter for the journal's indexed upserts: the same index pages are
    changed by many batches, and are then read and checkpointed once instead of many times.
    """
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-32768")
    conn.execute("PRAGMA mmap_size=268435456")
    conn.execute("PRAGMA wal_autocheckpoint=8192")
    return conn


class Database:
    """The app's store. ``write`` runs a function on the writer thread inside ``BEGIN IMMEDIATE``
    and returns once it is committed; ``reader()`` gives the calling thread its own connection.

    ``checkpoint``: ``background`` copies the write-ahead log into the file on a thread of its own
    after commits (``storage.wal_checkpoint``); ``writer`` leaves it to SQLite inside the writer's
    commits, which held every write queued behind them for tens of milliseconds."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, path: Path | str, *, checkpoint: Checkpoint = "background") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[tuple[Callable[[sqlite_utils.Database], Any], Future] | None] = queue.Queue()
        self._local = threading.local()
        conn = connect(self.path)
        self.applied = apply_migrations(sqlite_utils.Database(conn), MIGRATIONS)
        self._writer_db = sqlite_utils.Database(conn)
        self._checkpointer: Checkpointer | None = None
        if checkpoint == "background":
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = Checkpointer(self.path, connect, name=f"db-checkpoint:{self.path.name}")
            self._checkpointer.start()
        self._thread = threading.Thread(target=self._run, name=f"db-writer:{self.path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = self._writer_db
        while True:
            item = self._queue.get()
            if item is None:
                break
            fn, fut = item
            try:
                db.conn.execute("BEGIN IMMEDIATE")
                result = fn(db)
                db.conn.execute("COMMIT")
                fut.set_result(result)
            except BaseException as exc:  # noqa: BLE001 - rolled back, and raised in the caller's thread
                if db.conn.in_transaction:
                    db.conn.execute("ROLLBACK")
                fut.set_exception(exc)
            if self._checkpointer is not None:
                self._checkpointer.committed()
        db.conn.close()

    def write(self, fn: Callable[[sqlite_utils.Database], T], timeout: float = 60.0) -> T:
        """Run ``fn(db)`` in one transaction on the writer thread; return when it is durable."""
        fut: Future = Future()
        self._queue.put((fn, fut))
        return fut.result(timeout)

    def reader(self) -> sqlite_utils.Database:
        """Return this thread's read connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite_utils.Database(connect(self.path))
        return db

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Run a read query on this thread's connection."""
        return list(self.reader().query(sql, params))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self._checkpointer is not None:
            self._checkpointer.stop()


def open_database(settings: StoreSettings) -> Database:
    """Open the desk's store: PostgreSQL at ``database_url`` when set, else ``data_dir/desk.db``.

    The PostgreSQL store has the same surface (typed here as ``Database`` for the doors)."""
    if settings.database_url:
        from storage.postgres import PostgresDatabase

        store: PostgresDatabase = PostgresDatabase(settings.database_url)
        return store  # type: ignore[return-value]
    return Database(settings.data_dir / "desk.db")
