"""The daemon's settings, and its presence on its endpoint: the lock (one daemon per endpoint) and
the connection file that clients read.

Light on purpose (no torch): the daemon command takes the lock and writes the connection file,
marked ``starting``, before it loads anything, so a client started a moment later waits for the
model to load instead of saying that no daemon runs.

Portable: the lock is filelock's (``msvcrt`` on Windows, ``fcntl`` elsewhere, chosen when it
runs), the folders are platformdirs' (:mod:`neural_mirage.client.locate`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from neural_mirage import __version__
from neural_mirage.client import protocol as P
from neural_mirage.client.locate import cache_dir, default_endpoint, runtime_dir

CONNECTION_FILE = "daemon.json"


class DaemonStartError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


@dataclass
class DaemonConfig:
    endpoint: str = field(default_factory=default_endpoint)
    runtime_dir: Path = field(default_factory=runtime_dir)
    cache_dir: Path = field(default_factory=cache_dir)
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
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    """What a client must present on loopback TCP (ZeroMQ PLAIN, and the bridge port), where
    every local user and program could connect: only the connection file, readable by this
    user alone, holds it. New at every start."""
    idle_exit: float = 0
    """Seconds without jobs or messages after which the daemon exits (0: never). The plug-ins
    start theirs with it (``install-plugin --idle-exit``); a service's daemon stays."""
    bridge_port: int | None = None
    """The loopback TCP port of the bridge (:mod:`.bridge_port`), once it listens."""
    sandbox_dirs: list[Path] = field(default_factory=list)
    """Plug-in folders of sandboxed editors (Flatpak, Snap) that get a copy of the connection
    file: their sandbox cannot see :attr:`runtime_dir`."""


def take_lock(config: DaemonConfig) -> filelock.BaseFileLock:
    """Lock the endpoint for this process (one daemon per endpoint). The lock goes with the
    process, so a killed daemon leaves none behind."""
    config.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config.runtime_dir, 0o700)
    key = hashlib.sha256(config.endpoint.encode()).hexdigest()[:12]
    lock = filelock.FileLock(config.runtime_dir / f"daemon-{key}.lock", mode=0o600)
    pid_file = config.runtime_dir / f"daemon-{key}.pid"
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        other = _read(pid_file) or "?"
        raise DaemonStartError(f"another neural-mirage daemon (pid {other}) is already "
                               f"serving {config.endpoint}; stop it first "
                               "('neural-mirage service stop' or SHUTDOWN)") from None
    _write_private(pid_file, str(os.getpid()))
    return lock


def connection_info(config: DaemonConfig, starting: bool) -> dict:
    """What the connection file says (docs/protocol.md, "Finding the daemon")."""
    info = {"endpoint": config.endpoint, "protocol": P.PROTOCOL_VERSION,
            "version": __version__, "pid": os.getpid(), "starting": starting}
    if config.endpoint.startswith("tcp://"):
        info["secret"] = config.secret
    if config.bridge_port is not None:
        info["bridge"] = {"host": "127.0.0.1", "port": config.bridge_port,
                          "secret": config.secret}
    return info


def write_connection_file(config: DaemonConfig, starting: bool) -> None:
    """Record the endpoint, pid and secret for clients. ``starting``: the model is still
    loading, so a client waits for this process instead of saying that no daemon runs. Once
    ready, sandboxed plug-ins get their copy."""
    text = json.dumps(connection_info(config, starting))
    _write_private(config.runtime_dir / CONNECTION_FILE, text)
    if not starting:
        for folder in config.sandbox_dirs:
            with contextlib.suppress(OSError):  # an editor removed meanwhile
                _write_private(folder / CONNECTION_FILE, text)


def remove_connection_file(config: DaemonConfig) -> None:
    """Remove this process's connection files (not those of a daemon that replaced it)."""
    for folder in [config.runtime_dir, *config.sandbox_dirs]:
        path = folder / CONNECTION_FILE
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by this user alone (0600 on POSIX; on Windows the folder's
    per-user ACL protects it), replacing the file at once so a reader never sees half."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def configure_logging(log_file: Path | None, verbose: bool = False) -> None:
    from logging.handlers import RotatingFileHandler

    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=1 << 20, backupCount=3))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(message)s", force=True)
