"""Finished results on disk, kept until the client acknowledges them.

A result is written before RESULT is sent, so an editor that crashed, a client that went away or a
daemon that was restarted loses nothing: the result can be fetched by its job id. Files go when the
client sends ACK, or when they are older than ``max_age`` or the store is over ``max_bytes``
(oldest first).
"""

from __future__ import annotations

import os
import re
import struct
import time
from pathlib import Path
from typing import Any

from neural_mirage.client.protocol import pack, unpack

_ID = re.compile(r"^[0-9a-f]{32}$")
_LENGTH = struct.Struct("<I")
_OWNER = "owner_key"  # kept next to the RESULT header on disk, never sent


class ResultStore:
    def __init__(self, folder: Path, max_bytes: int = 2 << 30,
                 max_age: float = 7 * 24 * 3600) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_age = max_age
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, job_id: str) -> Path | None:
        return self.folder / f"{job_id}.result" if _ID.match(job_id) else None

    def put(self, job_id: str, header: dict[str, Any], pixels: bytes,
            owner_key: str | None = None) -> None:
        """Store a RESULT and its pixels; ``owner_key`` (a CURVE key) may fetch it later."""
        path = self._path(job_id)
        if path is None:
            raise ValueError(f"bad job id {job_id!r}")
        head = pack({**header, _OWNER: owner_key})
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(_LENGTH.pack(len(head)))
            f.write(head)
            f.write(pixels)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        self.prune()

    def get(self, job_id: str) -> tuple[dict[str, Any], bytes, str | None] | None:
        """The RESULT header, its pixels and the key of the client that may fetch it."""
        path = self._path(job_id)
        if path is None or not path.is_file():
            return None
        data = path.read_bytes()
        (length,) = _LENGTH.unpack_from(data)
        header = unpack(data[4:4 + length])
        return header, data[4 + length:], header.pop(_OWNER, None)

    def delete(self, job_id: str) -> bool:
        path = self._path(job_id)
        if path is None or not path.is_file():
            return False
        path.unlink(missing_ok=True)
        return True

    def stats(self) -> dict[str, int]:
        files = list(self.folder.glob("*.result"))
        return {"results": len(files), "bytes": sum(f.stat().st_size for f in files)}

    def prune(self) -> None:
        now = time.time()
        files = sorted(self.folder.glob("*.result"), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        for f in files:
            if now - f.stat().st_mtime > self.max_age or total > self.max_bytes:
                total -= f.stat().st_size
                f.unlink(missing_ok=True)
        for tmp in self.folder.glob("*.tmp"):
            if now - tmp.stat().st_mtime > 3600:
                tmp.unlink(missing_ok=True)
