"""How a plug-in reaches the daemon, with or without pyzmq in the editor's Python; and errors
worded for the editors' dialogs.

Debian's Krita and GIMP have pyzmq and msgpack (python3-zmq, python3-msgpack): the plug-in then
uses :class:`~.zmq_client.Client` directly. Krita's Windows and AppImage builds have neither, so
the plug-in goes through the relay (:class:`~.bridge.BridgeSession`), run with neural-mirage's own
Python (recorded at install time in ``mirage_config.json``). Both give the same small interface:
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
from .job import DaemonError
from .locate import daemon_command

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


_LOG = "~/.cache/neural-mirage/daemon.log"
_COULD_NOT_START = "the daemon could not start: "


def friendly(exc: Exception) -> MirageError:
    """Turn a client or bridge error into a message whose first sentence says what to do."""
    if isinstance(exc, MirageError):
        return exc
    code = getattr(exc, "code", "error")
    text = str(exc).strip().rstrip(".")
    if code == "no_daemon" and text.startswith(_COULD_NOT_START):
        # The daemon's own one-line error already says what to do (fetch the weights, ...).
        why = text[len(_COULD_NOT_START):].removeprefix("neural-mirage: error: ")
        return MirageError(f"{why}. (The neural-mirage render daemon could not start; its log: "
                           f"{_LOG}.)", code)
    hints = {
        "no_daemon": "Check that neural-mirage is installed and run 'neural-mirage "
                     "install-plugin' again: the plug-in could not reach or start the render "
                     "daemon ({text}). Its log: " + _LOG + ".",
        "timeout": "Try again in a moment; the neural-mirage daemon did not answer: {text}.",
        "version_mismatch": "Install the same version of the plug-in and the daemon: {text}.",
        "out_of_memory": "Choose a smaller render size: the daemon ran out of memory ({text}).",
        "busy": "Try again when some renders have finished: {text}.",
        "cancelled": "Cancelled.",
    }
    return MirageError(hints.get(code, "{text}.").format(text=text), code)


def open_session(timeout: float = 10.0, on_spawn: Callable[[], None] | None = None,
                 spawn: bool = True) -> Any:
    """Connect (starting a daemon if none answers), directly or through the bridge."""
    config = plugin_config()
    python, daemon_args = config.get("python"), config.get("daemon_args", [])
    try:
        if os.environ.get("NEURAL_MIRAGE_BRIDGE") != "1":
            try:
                from .zmq_client import Client
            except ImportError:  # no pyzmq or msgpack in this Python
                pass
            else:
                return Client.connect(timeout=timeout, spawn=spawn and python is not None,
                                      spawn_command=python and daemon_command(
                                          *daemon_args, python=python), on_spawn=on_spawn)
        if not python:
            raise MirageError("this Python has no pyzmq, and the plug-in does not know where "
                              "neural-mirage is installed: reinstall it with 'neural-mirage "
                              "install-plugin'", "no_daemon")
        return BridgeSession(python, daemon_args, timeout, on_spawn, spawn)
    except Exception as exc:
        raise friendly(exc) from exc


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
