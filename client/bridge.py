"""The client interface for editors whose Python has no pyzmq: a relay process does the ZeroMQ.

The plug-in starts ``python -m neural_mirage.client.relay`` with neural-mirage's own Python
(recorded at install time) and talks to it over its stdin and stdout; or, where it may start no
host program (a Flatpak or Snap editor), it connects to the bridge port that the daemon itself
serves on loopback TCP with the same framing (named, with its secret, in the connection file).
Each message is a 4-byte
big-endian length, a JSON header whose ``frames`` lists the lengths of the raw frames that follow,
then those frames (:func:`write_message`, :func:`read_message`; docs/protocol.md, "The bridge").
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from .job import DaemonError, JobCancelled, Result

_LENGTH = struct.Struct(">I")
ProgressCallback = Callable[[dict, "bytes | None"], None]


def read_message(stream: BinaryIO) -> tuple[dict[str, Any], list[bytes]] | None:
    """One framed message, or None at the end of the stream."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    header = json.loads(stream.read(_LENGTH.unpack(head)[0]))
    frames = [stream.read(int(n)) for n in header.pop("frames", [])]
    return header, frames


def write_message(stream: BinaryIO, header: dict[str, Any], frames: list[bytes] = ()) -> None:
    data = json.dumps({**header, "frames": [len(f) for f in frames]}).encode()
    stream.write(_LENGTH.pack(len(data)) + data)
    for frame in frames:
        stream.write(frame)
    stream.flush()


class BridgeSession:
    """The client interface (``hello``, ``classes``, ``estimate``, ``submit``, ``watch``,
    ``ack``, ``close``), relayed by a process that has pyzmq: the relay process this session
    starts (:meth:`spawn`), or the daemon's own bridge port (:meth:`over_tcp`), for an editor
    that may start no host program (Flatpak, Snap)."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO, close: Callable[[], None],
                 connect: dict[str, Any], timeout: float,
                 on_spawn: Callable[[], None] | None = None,
                 ended: tuple[str, str] = ("no_daemon", "the bridge process ended")) -> None:
        """``ended``: the error code and message when the stream ends (the relay process
        exited, or the daemon serving the bridge port stopped)."""
        self._reader, self._writer, self._close = reader, writer, close
        self._ended = ended
        self._events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.timeout = timeout
        self._on_spawn = on_spawn
        try:
            self.welcome, _ = self._call({"op": "connect", "timeout": timeout, **connect},
                                         wait=180.0)
        except DaemonError:
            self.close()
            raise

    @classmethod
    def spawn(cls, python: str, daemon_args: list[str], timeout: float,
              on_spawn: Callable[[], None] | None, spawn: bool) -> BridgeSession:
        """Start ``python -m neural_mirage.client.relay`` (neural-mirage's own Python, which
        may start a daemon) and talk to it over its stdin and stdout."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        try:
            process = subprocess.Popen(
                [python, "-m", "neural_mirage.client.relay"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        except OSError as exc:
            raise DaemonError("no_daemon", f"could not start {python}: {exc}") from exc

        def close() -> None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()

        return cls(process.stdout, process.stdin, close,
                   {"spawn": spawn, "daemon_args": daemon_args}, timeout, on_spawn)

    @classmethod
    def over_tcp(cls, host: str, port: int, secret: str, timeout: float) -> BridgeSession:
        """Connect to the bridge port of a running daemon (its connection file names the port
        and the secret): only the standard library's sockets are needed."""
        try:
            sock = socket.create_connection((host, port), timeout=min(timeout, 3.0))
        except OSError as exc:
            raise DaemonError("no_daemon", f"no daemon answers at {host}:{port} ({exc})"
                              ) from exc
        sock.settimeout(None)  # the reader thread waits for events as long as they take
        reader, writer = sock.makefile("rb"), sock.makefile("wb")

        def close() -> None:
            # Shut down first: it wakes the reader thread, which holds the reader's lock.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            for item in (writer, reader):
                with contextlib.suppress(OSError):
                    item.close()
            sock.close()

        return cls(reader, writer, close, {"secret": secret}, timeout,
                   ended=("daemon_stopped", "the render daemon stopped (it closed its bridge "
                                            "port's connection)"))

    def _read(self) -> None:
        try:
            while (message := read_message(self._reader)) is not None:
                self._events.put(message)
        except (OSError, ValueError):  # the connection or the process went away
            pass
        finally:
            code, message = self._ended
            self._events.put(({"type": "ERROR", "code": code, "message": message}, []))

    def _send(self, header: dict[str, Any], frames: list[bytes] = ()) -> None:
        try:
            write_message(self._writer, header, list(frames))
        except OSError as exc:
            raise DaemonError("no_daemon", f"the bridge process is gone: {exc}") from exc

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
                raise DaemonError(reply.get("code", "error"), reply.get("message", ""))
            return reply, reply_frames
        raise DaemonError("timeout", "the bridge did not answer")

    def hello(self) -> dict[str, Any]:
        return self.welcome

    def submit(self, pixels: bytes, image: dict[str, Any], params: dict[str, Any],
               mask: bytes | None = None, preview_every: int = 0,
               preview_size: int = 256, output: tuple[int, int] | None = None,
               see_mask: bytes | None = None, task: str = "render") -> dict[str, Any]:
        frames = [pixels] + [m for m in (mask, see_mask) if m is not None]
        reply, _ = self._call({"op": "submit", "image": image, "params": params,
                               "mask": mask is not None, "see_mask": see_mask is not None,
                               "task": task, "preview_every": preview_every,
                               "preview_size": preview_size, "output": output}, frames)
        return reply

    def estimate(self, params: dict[str, Any], width: int, height: int) -> dict[str, Any]:
        return self._call({"op": "estimate", "params": params, "width": width,
                           "height": height})[0]

    def watch(self, job: str, on_progress: ProgressCallback | None = None) -> BridgeWatch:
        return BridgeWatch(self, job, on_progress)

    def ack(self, job: str) -> None:
        self._call({"op": "ack", "job": job})

    def classes(self) -> dict[str, Any]:
        return self._call({"op": "classes"})[0]

    def close(self) -> None:
        self._close()


class BridgeWatch:
    """The contract of :class:`~.zmq_client.JobWatch`: ``poll`` returns the Result, or None for
    now, or raises :class:`~.job.JobCancelled` or :class:`~.job.DaemonError`."""

    def __init__(self, session: BridgeSession, job: str,
                 on_progress: ProgressCallback | None) -> None:
        self.session = session
        self.job = job
        self.on_progress = on_progress

    def cancel(self) -> None:
        self.session._send({"op": "cancel", "job": self.job})

    def poll(self, timeout: float = 0.0) -> Result | None:
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
                return Result(header, frames[0])
            elif kind == "CANCELLED":
                raise JobCancelled(self.job, header.get("reason", "request"))
            elif kind == "ERROR":
                raise DaemonError(header.get("code", "error"), header.get("message", ""),
                                  self.job)
