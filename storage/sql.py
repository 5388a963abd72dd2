"""SQL text that SQLite (3.24+) and PostgreSQL both accept, built in one place for the doors.

``upsert`` writes ``INSERT ... ON CONFLICT (key) DO UPDATE SET c = excluded.c`` for every column
not in the key (``DO NOTHING`` when every column is the key): the portable form of SQLite's
``INSERT OR REPLACE``, and cheaper on SQLite too, since the row is updated in place instead of
deleted and inserted again. ``insert_new`` is the portable ``INSERT OR IGNORE``. Cost: string
building once per statement (the doors keep the result in a module constant).
"""

from __future__ import annotations


def _names(columns: str | tuple[str, ...] | list[str]) -> list[str]:
    return [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)


def upsert(table: str, columns: str | tuple[str, ...] | list[str], key: str | tuple[str, ...] | list[str]) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)`` that replaces the row with the same ``key``."""
    cols, keys = _names(columns), _names(key)
    missing = [k for k in keys if k not in cols]
    if missing:
        raise ValueError(f"upsert into {table}: key column(s) {missing} are not among the columns {cols}")
    rest = [c for c in cols if c not in keys]
    action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest) if rest else "DO NOTHING"
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT ({', '.join(keys)}) {action}"
    )


def insert_new(table: str, columns: str | tuple[str, ...] | list[str]) -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)`` that keeps a row already there (any unique key)."""
    cols = _names(columns)
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) ON CONFLICT DO NOTHING"
