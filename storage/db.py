"""A SQLite database with one writer connection, taken in turn, and readers on their own connections.

A write runs on the calling thread while it holds the writer's lock (``writer="caller"``): a stage's
batch no longer hands its transaction to a writer thread and waits to be handed the result back,
two turns at the interpreter's lock per write that a busy desk pays in latency (``bench.journal
--compare``: ``before`` runs the older way, ``writer="thread"``, one writer thread fed by a queue).

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
Writer = Literal["caller", "thread"]


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
    """The app's store. ``write`` runs a function inside ``BEGIN IMMEDIATE`` on the one writer
    connection and returns once it is committed; ``reader()`` gives the calling thread its own
    connection.

    ``writer``: ``caller`` runs the write on the calling thread, holding the writer's lock (writes
    of several threads take turns; none waits for another thread to run it); ``thread`` hands it
    to a writer thread of the store's own through a queue, the older way, kept for comparison.
    ``checkpoint``: ``background`` copies the write-ahead log into the file on a thread of its own
    after commits (``storage.wal_checkpoint``); ``writer`` leaves it to SQLite inside the writer's
    commits, which held every write queued behind them for tens of milliseconds."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, path: Path | str, *, checkpoint: Checkpoint = "background", writer: Writer = "caller") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = connect(self.path)
        self.applied = apply_migrations(sqlite_utils.Database(conn), MIGRATIONS)
        self._writer_db = sqlite_utils.Database(conn)
        self._lock = threading.Lock()  # held by the write running on the writer connection
        self._closed = False
        self._checkpointer: Checkpointer | None = None
        if checkpoint == "background":
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = Checkpointer(self.path, connect, name=f"db-checkpoint:{self.path.name}")
            self._checkpointer.start()
        self._queue: queue.Queue[tuple[Callable[[sqlite_utils.Database], Any], Future] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if writer == "thread":
            self._thread = threading.Thread(target=self._run, name=f"db-writer:{self.path.name}", daemon=True)
            self._thread.start()

    def _transaction(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """``fn`` in one transaction on the writer connection (its lock held, or on its thread)."""
        db = self._writer_db
        try:
            db.conn.execute("BEGIN IMMEDIATE")
            result = fn(db)
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        finally:
            if self._checkpointer is not None:
                self._checkpointer.committed()
        return result

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            fn, fut = item
            try:
                fut.set_result(self._transaction(fn))
            except BaseException as exc:  # noqa: BLE001 - rolled back, and raised in the caller's thread
                fut.set_exception(exc)
        self._writer_db.conn.close()

    def write(self, fn: Callable[[sqlite_utils.Database], T], timeout: float = 60.0) -> T:
        """Run ``fn(db)`` in one transaction on the writer connection; return when it is durable.
        ``TimeoutError`` after ``timeout`` seconds: with ``caller``, the writer was not free and
        ``fn`` never ran; with ``thread``, ``fn`` may still run later, on the writer thread."""
        if self._thread is not None:
            fut: Future = Future()
            self._queue.put((fn, fut))
            return fut.result(timeout)
        if not self._lock.acquire(timeout=timeout):
            raise TimeoutError(f"the store's writer was busy for {timeout:g} s; nothing was written")
        try:
            if self._closed:
                raise RuntimeError(f"the store {self.path.name} is closed")
            return self._transaction(fn)
        finally:
            self._lock.release()

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
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        else:
            with self._lock:  # after the write under way
                if not self._closed:
                    self._closed = True
                    self._writer_db.conn.close()
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
