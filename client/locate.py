"""Where a running daemon is, and how to start one. Standard library only.

A daemon records its endpoint and pid in a connection file in the runtime folder (private to the
user). While it still loads its model the file says ``starting``: clients wait for it then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def runtime_dir() -> Path:
    """Where the socket and the connection file live: private to the user (mode 0700).

    ``$NEURAL_MIRAGE_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/neural-mirage``, else a per-user
    folder in the temp dir.
    """
    explicit = os.environ.get("NEURAL_MIRAGE_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "neural-mirage"
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"neural-mirage-{user}"


def connection_file() -> Path:
    """The JSON file in which a running daemon records its endpoint, protocol and pid."""
    return runtime_dir() / "daemon.json"


def default_endpoint() -> str:
    """``ipc://`` in the runtime dir on Linux and macOS; loopback TCP on Windows."""
    if os.name == "nt":
        return "tcp://127.0.0.1:5599"
    return f"ipc://{runtime_dir() / 'daemon.sock'}"


def read_connection_file() -> dict[str, Any] | None:
    try:
        with open(connection_file()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("endpoint"), str) else None


def starting_daemon() -> int | None:
    """The pid of a daemon that is loading its model (its connection file says so), if alive."""
    info = read_connection_file()
    if info is None or not info.get("starting") or not isinstance(info.get("pid"), int):
        return None
    return info["pid"] if alive(info["pid"]) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def daemon_command(*args: str, python: str | None = None) -> list[str]:
    """The command line that runs the daemon with ``args``, in ``python`` (default: this one;
    an editor passes the Python neural-mirage is installed in)."""
    return [python or sys.executable, "-m", "neural_mirage.cli", "daemon", *args]


def spawn_daemon(command: Sequence[str] | None = None, errors: Any = None) -> subprocess.Popen:
    """Start a daemon in its own session, detached from this process's terminal and signals.

    ``errors`` (a file) receives its stderr, so a failed start can say why.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen(list(command or daemon_command()), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=errors if errors is not None else subprocess.DEVNULL, env=env,
                            start_new_session=True)
