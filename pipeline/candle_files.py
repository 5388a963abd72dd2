"""Candle files a page may read: regular files inside the candle folder (``CANDLE_DIR``), or an upload
saved there. The command line reads any file its user names; a page never does.

The contract, for whatever path or name a page sends:

* the name is resolved (``..``, symlinks, absolute paths) and must land inside the folder;
* the file must be a regular file (no device, FIFO or directory) no larger than the cap, and is read
  through one descriptor with at most cap + 1 bytes, so ``/dev/zero`` or a file growing under the
  reader costs nothing;
* a missing file, a directory, a device and a path outside the folder all get the same error, so the
  field tells nothing about what exists elsewhere;
* no error quotes the file's content (``CandleFileError.safe``): only its name, sizes and rules.

Cost: one ``realpath`` and one ``fstat`` per read, then the read itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from pipeline.candles import CandleFile, CandleFileError, parse_candles

UPLOADS = "uploads"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class CandleFolder:
    """The folder pages read candle files from. Thread-safe (it keeps no state but its settings)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def _unavailable(self, name: str) -> CandleFileError:
        shown = name if len(name) <= 120 else name[:120] + "..."
        return CandleFileError(
            f"no candle file {shown!r} in the candle folder (CANDLE_DIR): pick one of its files or upload one"
        )

    def names(self) -> list[str]:
        """The regular files of the folder and its uploads, as names ``read`` takes, sorted."""
        found: list[str] = []
        for folder in (self.root, self.root / UPLOADS):
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                found.append(entry.name if folder == self.root else f"{UPLOADS}/{entry.name}")
        return found

    def resolve(self, name: str) -> Path:
        """Return the real path of ``name`` inside the folder; raise the one ``CandleFileError``
        for anything else (missing, outside, a NUL in the name)."""
        if not name or "\x00" in name:
            raise self._unavailable(name)
        root = Path(os.path.realpath(self.root))
        real = Path(os.path.realpath(root / name))
        if real == root or not real.is_relative_to(root):
            raise self._unavailable(name)
        return real

    def read_bytes(self, name: str) -> bytes:
        """Return the bytes of the regular file ``name`` in the folder, at most ``max_bytes``."""
        path = self.resolve(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            raise self._unavailable(name) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self._unavailable(name)
            if info.st_size > self.max_bytes:
                raise CandleFileError(self._too_big(name, info.st_size))
            chunks: list[bytes] = []
            left = self.max_bytes + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if len(data) > self.max_bytes:
            raise CandleFileError(self._too_big(name, len(data)))
        return data

    def _too_big(self, name: str, size: int) -> str:
        return f"{Path(name).name}: {size:,} bytes is more than the limit of {self.max_bytes:,} (CANDLE_MAX_MB)"

    def read(self, name: str) -> CandleFile:
        """Read and check the candle file ``name``; errors carry no file content."""
        data = self.read_bytes(name)
        try:
            return parse_candles(data, Path(name).name)
        except CandleFileError as exc:
            raise CandleFileError(exc.safe) from None

    def save_upload(self, filename: str, data: bytes) -> str:
        """Check an uploaded candle file by its content and save it under ``uploads/``; return the
        name ``read`` takes. The same content is saved once (its digest is in the name)."""
        if len(data) > self.max_bytes:
            raise CandleFileError(self._too_big(filename, len(data)))
        stem = _SAFE_NAME.sub("-", Path(filename).stem).strip("-.")[:60] or "candles"
        try:
            parse_candles(data, stem)
        except CandleFileError as exc:
            raise CandleFileError(exc.safe) from None
        name = f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}.csv"
        folder = self.root / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        if not target.exists():
            temporary = folder / f".{name}.part"
            temporary.write_bytes(data)
            os.replace(temporary, target)
        return f"{UPLOADS}/{name}"
