"""The daemon's settings, and its presence on its endpoint: the lock (one daemon per endpoint) and
the connection file that clients read.

Light on purpose (no torch): the daemon command takes the lock and writes the connection file,
marked ``starting``, before it loads anything, so a client started a moment later waits for the
model to load instead of saying that no daemon runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from neural_mirage import __version__
from neural_mirage.client import protocol as P
from neural_mirage.client.locate import default_endpoint, runtime_dir


class DaemonStartError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


@dataclass
class DaemonConfig:
    endpoint: str = field(default_factory=default_endpoint)
    runtime_dir: Path = field(default_factory=runtime_dir)
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    max_queue: int = 32
    max_pixels: int = 8192 * 8192
    """Largest image a SUBMIT may send (what is rendered from)."""
    max_output_pixels: int = 8192 * 8192
    """Largest ``output`` size: the result scaled to the editor's area (a camera photo's)."""
    max_memory: int | None = None
    """Bytes a render may need (estimated before it starts); None: the devices' free memory
    when the daemon starts."""
    curve_dir: Path | None = None
    """Folder with server.key_secret and clients/*.key: CURVE, required for non-loopback
    endpoints and used on any endpoint when given. Over CURVE each client sees only the jobs
    submitted with its own key."""


def default_cache_dir() -> Path:
    explicit = os.environ.get("NEURAL_MIRAGE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "neural-mirage"


def take_lock(config: DaemonConfig) -> int:
    """Lock the endpoint for this process (one daemon per endpoint); returns the lock's fd."""
    config.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config.runtime_dir, 0o700)
    key = hashlib.sha256(config.endpoint.encode()).hexdigest()[:12]
    path = config.runtime_dir / f"daemon-{key}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = path.read_text().strip() or "?"
        raise DaemonStartError(f"another neural-mirage daemon (pid {other}) is already "
                               f"serving {config.endpoint}; stop it first "
                               "('neural-mirage service stop' or SHUTDOWN)") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def write_connection_file(config: DaemonConfig, starting: bool) -> None:
    """Record the endpoint and pid for clients. ``starting``: the model is still loading, so a
    client waits for this process instead of saying that no daemon runs."""
    path = config.runtime_dir / "daemon.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"endpoint": config.endpoint, "protocol": P.PROTOCOL_VERSION,
                   "version": __version__, "pid": os.getpid(), "starting": starting}, f)
    tmp.replace(path)


def remove_connection_file(config: DaemonConfig) -> None:
    path = config.runtime_dir / "daemon.json"
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def configure_logging(log_file: Path | None, verbose: bool = False) -> None:
    from logging.handlers import RotatingFileHandler

    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=1 << 20, backupCount=3))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(message)s", force=True)
