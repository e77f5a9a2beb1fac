"""How a plug-in reaches the daemon, with or without pyzmq in the editor's Python.

Debian's Krita and GIMP have pyzmq and msgpack (python3-zmq, python3-msgpack): the plug-in then
uses the vendored client directly. Krita's Windows and AppImage builds have neither, so the plug-in
starts a **bridge**: ``python -m neural_mirage.daemon.bridge`` run with neural-mirage's own Python
(recorded at install time in ``mirage_config.json``). The bridge speaks the daemon protocol and
relays it over its stdin/stdout as JSON headers plus raw frames, which needs only the standard
library here. Both give the same small interface: ``hello``, ``classes``, ``estimate``,
``submit``, ``watch``, ``ack``, ``close``.

Standard library only (pyzmq is imported only when present).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_LENGTH = struct.Struct(">I")


class MirageError(Exception):
    """Anything that stops a render, with a message for the user and the protocol code."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class Cancelled(MirageError):
    def __init__(self) -> None:
        super().__init__("cancelled", "cancelled")


def plugin_config() -> dict[str, Any]:
    """What ``neural-mirage install-plugin`` recorded: the Python that runs the daemon."""
    try:
        return json.loads((_HERE / "mirage_config.json").read_text())
    except (OSError, ValueError):
        return {}


def daemon_command(config: dict[str, Any]) -> list[str] | None:
    python = config.get("python")
    if not python:
        return None
    return [python, "-m", "neural_mirage.cli", "daemon", *config.get("daemon_args", [])]


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
    try:
        if os.environ.get("NEURAL_MIRAGE_BRIDGE") != "1":
            try:
                from .client import Client
            except ImportError:  # no pyzmq or msgpack in this Python
                pass
            else:
                return Client.connect(timeout=timeout, spawn=spawn and daemon_command(config)
                                      is not None, spawn_command=daemon_command(config),
                                      on_spawn=on_spawn)
        return BridgeSession(config, timeout, on_spawn, spawn)
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


class BridgeSession:
    """The client interface, relayed by a bridge process that has pyzmq."""

    def __init__(self, config: dict[str, Any], timeout: float,
                 on_spawn: Callable[[], None] | None, spawn: bool) -> None:
        python = config.get("python")
        if not python:
            raise MirageError("this Python has no pyzmq, and the plug-in does not know where "
                              "neural-mirage is installed: reinstall it with 'neural-mirage "
                              "install-plugin'", "no_daemon")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        try:
            self._process = subprocess.Popen(
                [python, "-m", "neural_mirage.daemon.bridge"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        except OSError as exc:
            raise MirageError(f"could not start {python}: {exc}", "no_daemon") from exc
        self._events: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.timeout = timeout
        self._on_spawn = on_spawn
        reply, _ = self._call({"op": "connect", "timeout": timeout, "spawn": spawn,
                               "daemon_args": config.get("daemon_args", [])}, wait=180.0)
        self.welcome = reply

    def _read(self) -> None:
        stream = self._process.stdout
        try:
            while True:
                head = stream.read(4)
                if len(head) < 4:
                    break
                header = json.loads(stream.read(_LENGTH.unpack(head)[0]))
                frames = [stream.read(n) for n in header.pop("frames", [])]
                self._events.put((header, frames))
        finally:
            self._events.put(({"type": "ERROR", "code": "no_daemon",
                               "message": "the bridge process ended"}, []))

    def _send(self, header: dict[str, Any], frames: list[bytes] = ()) -> None:
        data = json.dumps({**header, "frames": [len(f) for f in frames]}).encode()
        try:
            self._process.stdin.write(_LENGTH.pack(len(data)) + data)
            for frame in frames:
                self._process.stdin.write(frame)
            self._process.stdin.flush()
        except OSError as exc:
            raise MirageError(f"the bridge process is gone: {exc}", "no_daemon") from exc

    def _call(self, header: dict[str, Any], frames: list[bytes] = (),
              wait: float | None = None) -> tuple[dict, list[bytes]]:
        self._send(header, frames)
        deadline = time.monotonic() + (wait or self.timeout + 5)
        while time.monotonic() < deadline:
            try:
                reply, reply_frames = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            if reply.get("type") == "SPAWNING":
                if self._on_spawn is not None:
                    self._on_spawn()
                continue
            if reply.get("type") == "ERROR":
                raise friendly(MirageError(reply.get("message", ""), reply.get("code", "error")))
            return reply, reply_frames
        raise MirageError("the bridge did not answer", "timeout")

    def hello(self) -> dict[str, Any]:
        return self.welcome

    def submit(self, pixels: bytes, image: dict[str, Any], params: dict[str, Any],
               mask: bytes | None = None, preview_every: int = 0,
               preview_size: int = 256, output: tuple[int, int] | None = None
               ) -> dict[str, Any]:
        frames = [pixels] + ([mask] if mask is not None else [])
        reply, _ = self._call({"op": "submit", "image": image, "params": params,
                               "mask": mask is not None, "preview_every": preview_every,
                               "preview_size": preview_size, "output": output}, frames)
        return reply

    def estimate(self, params: dict[str, Any], width: int, height: int) -> dict[str, Any]:
        return self._call({"op": "estimate", "params": params, "width": width,
                           "height": height})[0]

    def watch(self, job: str, on_progress: Callable[[dict, bytes | None], None] | None = None
              ) -> BridgeWatch:
        return BridgeWatch(self, job, on_progress)

    def ack(self, job: str) -> None:
        self._call({"op": "ack", "job": job})

    def classes(self) -> dict[str, Any]:
        return self._call({"op": "classes"})[0]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()


class BridgeWatch:
    """Same contract as the client's JobWatch: poll() returns the result, or raises."""

    def __init__(self, session: BridgeSession, job: str,
                 on_progress: Callable[[dict, bytes | None], None] | None) -> None:
        self.session = session
        self.job = job
        self.on_progress = on_progress

    def cancel(self) -> None:
        self.session._send({"op": "cancel", "job": self.job})

    def poll(self, timeout: float = 0.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                header, frames = self.session._events.get(
                    timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            kind = header.get("type")
            if kind == "PROGRESS" and self.on_progress is not None:
                self.on_progress(header, frames[0] if frames else None)
            elif kind == "RESULT":
                return _BridgeResult(header, frames[0])
            elif kind == "CANCELLED":
                raise Cancelled()
            elif kind == "ERROR":
                raise friendly(MirageError(header.get("message", ""), header.get("code", "")))


class _BridgeResult:
    def __init__(self, header: dict[str, Any], pixels: bytes) -> None:
        self.header = header
        self.pixels = pixels
        self.job = header["job"]
        self.image = header["image"]
