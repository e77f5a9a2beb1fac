"""How a plug-in reaches the daemon, with or without pyzmq in the editor's Python; and errors
worded for the editors' dialogs.

Debian's Krita and GIMP have pyzmq and msgpack (python3-zmq, python3-msgpack): the plug-in then
uses :class:`~.zmq_client.Client` directly. Krita's and GIMP's Windows, macOS, AppImage and
Flatpak builds have neither, so the plug-in goes through the bridge (:class:`~.bridge.
BridgeSession`): the daemon's own bridge port when a daemon runs, else a relay run with
neural-mirage's own Python (recorded at install time in ``mirage_config.json``), which a
sandboxed editor may not start. Both give the same small interface:
``hello``, ``classes``, ``estimate``, ``submit``, ``watch``, ``ack``, ``close``.

Standard library only (pyzmq is imported only when present).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .bridge import BridgeSession
from .job import DaemonError, JobCancelled
from .locate import daemon_command, log_file, read_connection_file, sandbox

_HERE = Path(__file__).resolve().parent


class MirageError(DaemonError):
    """What stops a render, worded for the user (message first) with the protocol code."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(code, message)


def plugin_config() -> dict[str, Any]:
    """What ``neural-mirage install-plugin`` recorded: the Python that runs the daemon."""
    try:
        return json.loads((_HERE / "mirage_config.json").read_text())
    except (OSError, ValueError):
        return {}


_COULD_NOT_START = "the daemon could not start: "


def command() -> str:
    """The neural-mirage command to name in messages: the one ``install-plugin`` ran from
    (in its virtual environment, often not on PATH), else the bare name."""
    return plugin_config().get("command") or "neural-mirage"


def friendly(exc: Exception) -> MirageError:
    """Turn a client or bridge error into a message whose first sentence says what to do."""
    if isinstance(exc, MirageError):
        return exc
    if isinstance(exc, JobCancelled) and exc.reason == "shutdown":  # not the artist's cancel
        exc = DaemonError("daemon_stopped", "the render daemon was stopped during the render")
    code = getattr(exc, "code", "error")
    text = str(exc).strip().rstrip(".")
    if code == "no_daemon" and text.startswith(_COULD_NOT_START):
        # The daemon's own one-line error already says what to do (fetch the weights, ...).
        why = text[len(_COULD_NOT_START):].removeprefix("neural-mirage: error: ")
        return MirageError(f"{why}. (The neural-mirage render daemon could not start; its log: "
                           f"{log_file()}.)", code)
    hints = {
        "no_daemon": "Check that neural-mirage is installed and run '" + command() +
                     " install-plugin' again: the plug-in could not reach or start the render "
                     "daemon ({text}). Its log: " + str(log_file()) + ".",
        "timeout": "Try again in a moment; the neural-mirage daemon did not answer: {text}.",
        "version_mismatch": "Install the same version of the plug-in and the daemon: {text}.",
        "unauthorized": "{text}.",
        "out_of_memory": "Choose a smaller render size: the daemon ran out of memory ({text}).",
        "busy": "Try again when some renders have finished: {text}.",
        "cancelled": "Cancelled.",
        "daemon_stopped": "Render again to start a new daemon: {text}. Nothing was rendered, "
                          "and the result of a render that had finished is kept. Its log: "
                          + str(log_file()) + ".",
    }
    return MirageError(hints.get(code, "{text}.").format(text=text), code)


#: One connect (and daemon start) at a time in this process: a dialog's class list and its
#: Render button each start a daemon when none runs, and of two daemons started together one
#: loses the endpoint's lock, and its client would report that instead of the real reason.
_CONNECTING = threading.Lock()
#: Set while the connect that holds :data:`_CONNECTING` starts a daemon, so that one waiting
#: for it can say so (the daemon loads its network for many seconds).
_STARTING = threading.Event()


def open_session(timeout: float = 10.0, on_spawn: Callable[[], None] | None = None,
                 spawn: bool = True) -> Any:
    """Connect, starting a daemon if none answers and this editor may: directly with pyzmq;
    else over the daemon's bridge port; else through a relay process of neural-mirage's own
    Python. A sandboxed editor (Flatpak, Snap) may start no host program: it needs a daemon
    that runs already (a service)."""
    told = False
    while not _CONNECTING.acquire(timeout=0.1):  # another part of the dialog is connecting
        if _STARTING.is_set() and on_spawn is not None and not told:
            on_spawn()
            told = True

    def starting() -> None:
        _STARTING.set()
        if on_spawn is not None and not told:
            on_spawn()

    try:
        return _open(timeout, starting, spawn)
    finally:
        _STARTING.clear()
        _CONNECTING.release()


def _open(timeout: float, on_spawn: Callable[[], None] | None, spawn: bool) -> Any:
    config = plugin_config()
    python, daemon_args = config.get("python"), config.get("daemon_args", [])
    can_spawn = spawn and python is not None and sandbox() is None
    # For tests and troubleshooting: "1" never uses pyzmq, "relay" only the relay process.
    forced = os.environ.get("NEURAL_MIRAGE_BRIDGE", "")
    try:
        if forced not in ("1", "relay") and sandbox() is None:  # a sandbox: the bridge port
            try:
                from .zmq_client import Client
            except ImportError:  # no pyzmq or msgpack in this Python
                pass
            else:
                return Client.connect(timeout=timeout, spawn=can_spawn,
                                      spawn_command=python and daemon_command(
                                          *daemon_args, python=python), on_spawn=on_spawn)
        bridge = (read_connection_file() or {}).get("bridge")
        if isinstance(bridge, dict) and forced != "relay":
            try:
                return BridgeSession.over_tcp(bridge["host"], int(bridge["port"]),
                                              str(bridge["secret"]), timeout)
            except DaemonError as exc:
                if exc.code != "no_daemon":
                    raise
                # A file left by a daemon that was killed: as if there were none.
        if can_spawn:
            return BridgeSession.spawn(python, daemon_args, timeout, on_spawn, spawn)
        raise MirageError(_cannot_start(python), "no_daemon")
    except Exception as exc:
        raise friendly(exc) from exc


def starting_text() -> str:
    """What a dialog says while the daemon it started loads: that it runs in the background,
    and for how long it stays when unused (``install-plugin --idle-exit``)."""
    args = plugin_config().get("daemon_args", [])
    idle = float(args[args.index("--idle-exit") + 1]) if "--idle-exit" in args else 0
    stays = (f"it stops by itself after {idle / 60:g} minutes without a render" if idle
             else "it keeps running in the background")
    return f"Starting the neural-mirage daemon (loading the network; {stays})..."


def _cannot_start(python: str | None) -> str:
    where, cli = sandbox(), command()
    if where is not None:
        return (f"Start neural-mirage's render daemon outside the editor first, with "
                f"'{cli} service enable' (at every login) or '{cli} daemon': this editor runs "
                f"in a {where.capitalize()} sandbox, which may not start it")
    if python is None:
        return (f"Reinstall the plug-in with '{cli} install-plugin': this Python has no pyzmq, "
                "and the plug-in does not know where neural-mirage is installed")
    return f"Start the render daemon with '{cli} daemon': no daemon is running"


class ClassList:
    """The served model's class names and groups, fetched in the background for a class picker.

    Fetching starts the daemon when none runs, so opening a dialog also warms the daemon up for
    the render; the dialog stays responsive meanwhile and polls :attr:`ready`.
    """

    def __init__(self) -> None:
        self.classes: list[str] = []
        self.groups: dict[str, list[str]] = {}
        self.error: MirageError | None = None
        self.ready = False
        threading.Thread(target=self._fetch, daemon=True).start()

    def _fetch(self) -> None:
        try:
            session = open_session()
            try:
                reply = session.classes()
            finally:
                session.close()
            self.groups = dict(reply.get("groups", {}))
            self.classes = list(reply["classes"])
        except Exception as exc:
            self.error = friendly(exc)
        self.ready = True

    def hint(self) -> str:
        """What an empty class picker shows: that names are loading, how many there are, or
        that no daemon answered (names can still be typed; the daemon checks them)."""
        if not self.ready:
            return "loading class names..."
        if self.error is not None:
            return "no daemon answered: type names, e.g. church"
        return f"church, lakeside:0.5 ({len(self.classes)} classes)"
