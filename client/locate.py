"""Where a running daemon is, and how to start one, on Windows, macOS and Linux, native or in a
sandbox (Flatpak, Snap).

A daemon records its endpoint, pid and (for TCP) its secret in a connection file in the runtime
folder, private to the user. While it still loads its model the file says ``starting``: clients
wait for it then. A sandboxed editor cannot see the host's runtime folder, so the daemon also
writes the file beside the client copy of each sandboxed plug-in (``install-plugin`` records
them); :func:`connection_files` looks in both places.

Standard library only, plus platformdirs, the per-OS folders that pip and virtualenv use:
``install-plugin`` copies it beside this package in every plug-in, as it copies this package.
Nothing here exists on one OS only: the OS is looked up when a function runs, never at import.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:  # the copy install-plugin puts beside this package in an editor's plug-in
    from . import platformdirs as _platformdirs  # type: ignore[attr-defined]
except ImportError:
    import platformdirs as _platformdirs

APP = "neural-mirage"
_HERE = Path(__file__).resolve().parent
#: Windows: a process that is still running reports this exit code.
_STILL_ACTIVE = 259
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_ACCESS_DENIED = 5
#: Windows CreateProcess flags: no console window, not in the editor's console group, and out of
#: the editor's job object, so the daemon outlives the editor (subprocess names them on Windows
#: only, so they are spelled out here).
_DETACHED_PROCESS = 0x00000008
_CREATE_NEW_PROCESS_GROUP = 0x00000200
_CREATE_BREAKAWAY_FROM_JOB = 0x01000000


def is_windows() -> bool:
    return sys.platform == "win32"


def user_dirs(app: str | None = APP) -> Any:
    """platformdirs' per-user folders of ``app`` for the OS this runs on (chosen at each call,
    so that a test can simulate another OS with ``sys.platform`` and its environment)."""
    module = {"win32": "windows", "darwin": "macos"}.get(sys.platform, "unix")
    cls = {"windows": "Windows", "macos": "MacOS", "unix": "Unix"}[module]
    found = importlib.import_module(f"{_platformdirs.__name__}.{module}")
    return getattr(found, cls)(app, appauthor=False)


def sandbox() -> str | None:
    """``flatpak`` or ``snap`` when this process runs in that sandbox: it may not start a
    program of the host, nor see the host's runtime folder."""
    if os.environ.get("FLATPAK_ID") or os.path.exists("/.flatpak-info"):
        return "flatpak"
    if os.environ.get("SNAP_NAME"):
        return "snap"
    return None


def runtime_dir() -> Path:
    """Where the socket, the lock and the connection file live: private to the user (0700).

    ``$NEURAL_MIRAGE_RUNTIME_DIR``, else platformdirs' user runtime folder:
    ``$XDG_RUNTIME_DIR/neural-mirage`` on Linux, ``~/Library/Caches/TemporaryItems/
    neural-mirage`` on macOS, ``%LOCALAPPDATA%\\Temp\\neural-mirage`` on Windows.
    """
    explicit = os.environ.get("NEURAL_MIRAGE_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    with warnings.catch_warnings():  # no XDG_RUNTIME_DIR (ssh, CI): its private fallback will do
        warnings.simplefilter("ignore")
        return Path(user_dirs().user_runtime_dir)


def cache_dir() -> Path:
    """Stored results and the daemon's log: ``$NEURAL_MIRAGE_CACHE_DIR``, else platformdirs'
    user cache folder (``~/.cache/neural-mirage``, ``~/Library/Caches/neural-mirage``,
    ``%LOCALAPPDATA%\\neural-mirage\\Cache``)."""
    explicit = os.environ.get("NEURAL_MIRAGE_CACHE_DIR")
    return Path(explicit) if explicit else Path(user_dirs().user_cache_dir)


def log_file() -> Path:
    """The daemon's log, named in the messages that send a person to it."""
    return cache_dir() / "daemon.log"


def connection_file() -> Path:
    """The JSON file in which a running daemon records its endpoint, protocol and pid."""
    return runtime_dir() / "daemon.json"


def connection_files() -> list[Path]:
    """Where a client looks for the connection file: the runtime folder, then beside this
    package (the copy a daemon writes for a sandboxed plug-in)."""
    return [connection_file(), _HERE / "daemon.json"]


def default_endpoint() -> str:
    """``ipc://`` in the runtime dir on Linux and macOS; loopback TCP on Windows, where the
    daemon then requires the connection file's secret."""
    if is_windows():
        return "tcp://127.0.0.1:5599"
    return f"ipc://{runtime_dir() / 'daemon.sock'}"


def read_connection_file() -> dict[str, Any] | None:
    for path in connection_files():
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("endpoint"), str):
            return data
    return None


def secret_for(endpoint: str) -> str | None:
    """The secret a TCP daemon on ``endpoint`` requires, from its connection file."""
    info = read_connection_file()
    if info is None or info.get("endpoint") != endpoint:
        return None
    secret = info.get("secret")
    return secret if isinstance(secret, str) else None


def daemon_gone(endpoint: str) -> bool:
    """Whether the daemon that served ``endpoint`` is known to have exited: its connection
    file names a process that no longer runs. Without such a file (another machine, another
    runtime folder) or in a sandbox (whose processes are not the host's) nothing says so."""
    info = read_connection_file()
    if info is None or info.get("endpoint") != endpoint:
        return False
    pid = info.get("pid")
    return sandbox() is None and isinstance(pid, int) and not alive(pid)


def starting_daemon() -> int | None:
    """The pid of a daemon that is loading its model (its connection file says so), if alive."""
    info = read_connection_file()
    if info is None or not info.get("starting") or not isinstance(info.get("pid"), int):
        return None
    return info["pid"] if alive(info["pid"]) else None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs, without disturbing it. On Windows ``os.kill(pid, 0)``
    would end it (any signal but the two console events is TerminateProcess there), so the
    Windows API is asked instead."""
    if is_windows():
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _kernel32() -> Any:
    import ctypes

    return ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]


def _alive_windows(pid: int) -> bool:
    import ctypes

    kernel32 = _kernel32()
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:  # no such process, or one we may not query (which exists)
        return ctypes.get_last_error() == _ERROR_ACCESS_DENIED
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def daemon_command(*args: str, python: str | None = None) -> list[str]:
    """The command line that runs the daemon with ``args``, in ``python`` (default: this one;
    an editor passes the Python neural-mirage is installed in). On Windows the windowless
    ``pythonw.exe`` beside it, when there is one."""
    python = python or sys.executable
    if is_windows():
        windowless = Path(python).with_name("pythonw.exe")
        if Path(python).name.lower() == "python.exe" and windowless.exists():
            python = str(windowless)
    return [python, "-m", "neural_mirage.cli", "daemon", *args]


def detached() -> list[dict[str, Any]]:
    """Popen options that detach a daemon from the editor that starts it, best first: its own
    session on POSIX; on Windows no console, its own process group, and out of the editor's
    job (which an editor may forbid: then without that)."""
    if is_windows():
        flags = _DETACHED_PROCESS | _CREATE_NEW_PROCESS_GROUP
        return [{"creationflags": flags | _CREATE_BREAKAWAY_FROM_JOB, "close_fds": True},
                {"creationflags": flags, "close_fds": True}]
    return [{"start_new_session": True}]


def spawn_daemon(command: Sequence[str] | None = None, errors: Any = None) -> subprocess.Popen:
    """Start a daemon detached from this process (:func:`detached`). ``errors`` (a file)
    receives its stderr, so a failed start can say why."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def start(options: dict[str, Any]) -> subprocess.Popen:
        return subprocess.Popen(list(command or daemon_command()), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=errors if errors is not None else subprocess.DEVNULL,
                                env=env, **options)

    *better, fallback = detached()
    for options in better:
        with contextlib.suppress(PermissionError):  # Windows: the job allows no breakaway
            return start(options)
    return start(fallback)
