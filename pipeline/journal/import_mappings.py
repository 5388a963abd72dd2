"""The trader's saved column mappings for files the importer does not know: saved by name, found
again for a file with the same header (case and spaces ignored). Stored through ``storage.journal``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from storage import journal
from storage.db import Database


def _header_key(header: list[str]) -> list[str]:
    return [" ".join(str(h).lstrip("\ufeff").split()).lower() for h in header]


def save_mapping(db: Database, name: str, header: list[str], mapping: Mapping[str, str]) -> None:
    """Save (or replace) a named column mapping for files with ``header``."""
    if not name.strip():
        raise ValueError("a mapping needs a name")
    journal.save_mapping(db, name.strip(), list(header), dict(mapping), int(time.time() * 1000))


def list_mappings(db: Database) -> list[dict[str, Any]]:
    """Return the saved mappings: name, header (list), mapping (dict), created_at (ms), by name."""
    return journal.mappings(db)


def find_mapping(db: Database, header: list[str]) -> dict[str, Any] | None:
    """Return the newest saved mapping made for this header (case and spaces ignored), or None."""
    wanted = _header_key(header)
    found = [m for m in list_mappings(db) if _header_key(m["header"]) == wanted]
    return max(found, key=lambda m: m["created_at"]) if found else None
