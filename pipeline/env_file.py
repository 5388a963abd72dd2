"""Writing settings into ``.env`` without letting a value become something else.

``.env`` is read by python-dotenv, which splits lines on every line break, drops what follows
`` #`` in an unquoted value and expands ``${NAME}`` even inside single quotes. So a value from the
Settings page with a line break would add a setting of its own (``NOTIFY_WEBHOOK_URL=...``,
``DATA_DIR=...``), and one with ``${DISCORD_WEBHOOK_URL}`` would copy a secret into a setting the
pages show. ``env_line`` refuses line breaks (every one ``str.splitlines`` knows), control
characters, ``$``, quotes and backslashes, naming the setting and the rule but never echoing the
value; other values are written as they are, single-quoted when they hold anything but letters,
digits and ``_ . , : / = @ + % -``. ``merge_env`` replaces the named lines of a file's text and
keeps every other line. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.errors import ConfigError

_KEY = re.compile(r"[A-Z_][A-Z0-9_]*")
_PLAIN = re.compile(r"[A-Za-z0-9_.,:/=@+%-]*")
_LINE = re.compile(r"\s*([A-Z_][A-Z0-9_]*)\s*=")
VALUE_RULE = "a value on one line, without control characters, $, quotes or backslashes"


def env_line(key: str, value: str) -> str:
    """Return ``KEY=value`` as ``.env`` must hold it; raise ``ConfigError`` for a value it cannot."""
    if not _KEY.fullmatch(key):
        raise ConfigError(f"{key[:40]!r} is not a setting name (upper-case letters, digits and _)")
    if value.splitlines() not in ([], [value]) or any(ch < " " or ch == "\x7f" for ch in value):
        raise ConfigError(f"{key} must be {VALUE_RULE}: it has a line break or a control character")
    if any(ch in "$'\"\\" for ch in value):
        raise ConfigError(f"{key} must be {VALUE_RULE}")
    return f"{key}={value}" if _PLAIN.fullmatch(value) else f"{key}='{value}'"


def merge_env(text: str, changes: Mapping[str, str]) -> str:
    """Return ``text`` (a ``.env`` file) with the lines of ``changes`` replaced or added."""
    lines = [env_line(k, v) for k, v in changes.items()]  # every value checked before anything is written
    pending = dict(zip(changes, lines))
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and m.group(1) in pending:
            out.append(pending.pop(m.group(1)))
        else:
            out.append(line)
    out.extend(pending.values())
    return "\n".join(out) + "\n"
