"""The relay for editors without pyzmq: ``python -m neural_mirage.client.relay``, or the daemon's
own bridge port (:mod:`neural_mirage.daemon.bridge_port`).

The plug-in (:class:`~.bridge.BridgeSession`) writes requests and reads events framed as
:mod:`.bridge` says, over this process's stdin and stdout or over a loopback TCP connection.
The first request is ``connect``; then ``submit``, ``cancel``, ``ack``, ``classes``,
``estimate``. The replies and job events are the daemon's own messages (WELCOME, ACCEPTED,
PROGRESS, RESULT, CANCELLED, ERROR, ...), plus SPAWNING when a daemon is being started. When the
plug-in's stream ends (the editor or plug-in died), running jobs are cancelled and the relay
ends (and its connection closes, which cancels them too).
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from .bridge import read_message, write_message
from .job import DaemonError, JobCancelled
from .locate import daemon_command
from .zmq_client import Client, JobWatch

Emit = Callable[..., None]


def _error(exc: Exception) -> dict[str, Any]:
    return {"type": "ERROR", "code": getattr(exc, "code", "error"), "message": str(exc)}


def emitter(stream: BinaryIO) -> Emit:
    """Send a daemon message to the plug-in: as the daemon sent it, less its ``rid``."""
    def emit(header: dict[str, Any], frames: list[bytes] = ()) -> None:
        header.pop("rid", None)
        write_message(stream, header, list(frames))
    return emit


def relay(requests_in: BinaryIO, emit: Emit, client: Client) -> None:
    """Serve a connected plug-in until its stream ends: its requests to ``client``, the
    daemon's replies and its jobs' events back."""
    requests: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            while (message := read_message(requests_in)) is not None:
                requests.put(message)
        except (OSError, ValueError):  # a connection reset, or a garbled message
            pass
        requests.put(None)

    threading.Thread(target=read, daemon=True).start()
    watches: dict[str, JobWatch] = {}
    while True:
        try:
            message = requests.get(timeout=0.02 if watches else 0.25)
        except queue.Empty:
            message = ()
        if message is None:  # the plug-in is gone
            for watch in watches.values():
                watch.cancel()
            return
        if message:
            header, frames = message
            try:
                _handle(client, header, frames, watches, emit)
            except (DaemonError, ValueError, KeyError) as exc:
                emit(_error(exc))
        for job, watch in list(watches.items()):
            try:
                result = watch.poll(0)
            except JobCancelled as exc:
                emit({"type": "CANCELLED", "job": job, "reason": exc.reason})
                del watches[job]
            except DaemonError as exc:
                emit({**_error(exc), "job": job})
                del watches[job]
            else:
                if result is not None:
                    emit(result.header, [result.pixels])
                    del watches[job]


def _handle(client: Client, header: dict[str, Any], frames: list[bytes],
            watches: dict[str, JobWatch], emit: Emit) -> None:
    op = header.get("op")
    if op == "submit":
        extra = iter(frames[1:])
        mask = next(extra) if header.get("mask") else None
        see_mask = next(extra) if header.get("see_mask") else None
        output = header.get("output")
        accepted = client.submit(frames[0], header["image"], header["params"], mask=mask,
                                 preview_every=int(header.get("preview_every", 0)),
                                 preview_size=int(header.get("preview_size", 256)),
                                 output=tuple(output) if output else None,
                                 see_mask=see_mask, task=header.get("task", "render"))
        watches[accepted["job"]] = client.watch(
            accepted["job"], lambda p, preview: emit(p, [preview] if preview else []))
        emit(accepted)
    elif op == "cancel":
        watch = watches.get(header["job"])
        if watch is not None:
            watch.cancel()
    elif op == "ack":
        client.ack(header["job"])
        emit({"type": "ACKED", "job": header["job"]})
    elif op == "classes":
        emit(client.classes())
    elif op == "estimate":
        emit(client.estimate(header["params"], header["width"], header["height"]))
    else:
        raise ValueError(f"unknown bridge request {op!r}")


def main() -> None:
    """The relay process: connect (starting a daemon if asked), then relay stdin/stdout."""
    stdin, emit = sys.stdin.buffer, emitter(sys.stdout.buffer)
    first = read_message(stdin)
    if first is None:
        return
    header = first[0]
    try:
        if header.get("op") != "connect":
            raise ValueError("connect first")
        client = Client.connect(timeout=float(header.get("timeout", 10)),
                                spawn=bool(header.get("spawn", True)),
                                spawn_command=daemon_command(*header.get("daemon_args", [])),
                                on_spawn=lambda: emit({"type": "SPAWNING"}))
    except (DaemonError, ValueError) as exc:
        emit(_error(exc))
        return
    try:
        emit(dict(client.welcome))
        relay(stdin, emit, client)
    finally:
        client.close()


if __name__ == "__main__":
    main()
