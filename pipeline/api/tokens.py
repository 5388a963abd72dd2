"""The API's bearer tokens: one per user, generated on first use, kept under ``DATA_DIR`` for the owner only.

``DATA_DIR/api-tokens.json`` maps each user id to a token of 256 random bits (``secrets``). The
desk's own user gets one when the API first starts; ``python -m pipeline token [--user NAME]``
prints (and if needed creates) one. The file is written whole to a temporary file opened with mode
0600 and renamed over the old one; a file found readable by others is narrowed to 0600 on read.
A token is looked up by comparing digests in constant time; the file is read again only when its
modification time changes, so a check costs one ``stat``. Thread-safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import threading
from pathlib import Path

import orjson

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

TOKEN_FILE = "api-tokens.json"
USER_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
USER_ID_RULE = "1-64 letters, digits or _ . @ -"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    """The tokens of one desk (a file under ``DATA_DIR``)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / TOKEN_FILE
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._tokens: dict[str, str] = {}
        self._digests: list[tuple[bytes, str]] = []

    def _load(self) -> None:
        """Read the file again if it changed (call with the lock held)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._mtime, self._tokens, self._digests = None, {}, []
            return
        if info.st_mtime_ns == self._mtime:
            return
        if info.st_mode & 0o077:
            log.warning("%s was readable by others; narrowed to the owner only", self.path)
            with contextlib.suppress(OSError):
                os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        try:
            users = orjson.loads(self.path.read_bytes()).get("users", {})
        except (OSError, orjson.JSONDecodeError, AttributeError) as exc:
            raise ConfigError(f"{self.path} is not a readable token file ({type(exc).__name__})") from None
        self._tokens = {u: t for u, t in users.items() if isinstance(u, str) and isinstance(t, str) and t}
        self._digests = [(_digest(t), u) for u, t in self._tokens.items()]
        self._mtime = info.st_mtime_ns

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{TOKEN_FILE}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps({"users": self._tokens}, option=orjson.OPT_INDENT_2))
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._mtime = None  # read back on next use

    def token_for(self, user_id: str) -> str:
        """Return ``user_id``'s token, creating it on first use."""
        if not USER_ID.fullmatch(user_id):
            raise ConfigError(f"user id {user_id[:80]!r} must be {USER_ID_RULE}")
        with self._lock:
            self._load()
            token = self._tokens.get(user_id)
            if token is None:
                token = secrets.token_urlsafe(32)
                self._tokens[user_id] = token
                self._save()
                self._load()
            return token

    def user_of(self, token: str) -> str | None:
        """Return the user a token acts for, or None; constant time in the token's content."""
        wanted = _digest(token)
        with self._lock:
            self._load()
            found = None
            for digest, user in self._digests:
                if hmac.compare_digest(digest, wanted):
                    found = user
            return found
