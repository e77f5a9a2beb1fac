"""The relay for editors without pyzmq: ``python -m neural_mirage.client.relay``.

The plug-in (:class:`~.bridge.BridgeSession`) writes requests to our stdin and reads events from
our stdout, framed as :mod:`.bridge` says. Requests (``op``): ``connect``, ``submit``,
``cancel``, ``ack``, ``classes``, ``estimate``; the replies and job events are the daemon's own
messages (WELCOME, ACCEPTED, PROGRESS, RESULT, CANCELLED, ERROR, ...), plus SPAWNING when a
daemon is being started. When stdin closes (the editor or plug-in died), running jobs are
cancelled and the relay exits (and its connection closes, which cancels them too).
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

from .bridge import read_message, write_message
from .job import DaemonError, JobCancelled
from .locate import daemon_command
from .zmq_client import Client, JobWatch


def _error(exc: Exception) -> dict[str, Any]:
    return {"type": "ERROR", "code": getattr(exc, "code", "error"), "message": str(exc)}


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    requests: queue.Queue = queue.Queue()

    def read() -> None:
        while (message := read_message(stdin)) is not None:
            requests.put(message)
        requests.put(None)

    threading.Thread(target=read, daemon=True).start()
    client: Client | None = None
    watches: dict[str, JobWatch] = {}

    def emit(header: dict[str, Any], frames: list[bytes] = ()) -> None:
        header.pop("rid", None)
        write_message(stdout, header, list(frames))

    try:
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
                    client = _handle(client, header, frames, watches, emit)
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
    finally:
        if client is not None:
            client.close()


def _handle(client: Client | None, header: dict[str, Any], frames: list[bytes],
            watches: dict[str, JobWatch], emit: Any) -> Client | None:
    op = header.get("op")
    if op == "connect":
        command = daemon_command(*header.get("daemon_args", []))
        client = Client.connect(timeout=float(header.get("timeout", 10)),
                                spawn=bool(header.get("spawn", True)), spawn_command=command,
                                on_spawn=lambda: emit({"type": "SPAWNING"}))
        emit(dict(client.welcome))
        return client
    if client is None:
        raise ValueError("connect first")
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
    return client


if __name__ == "__main__":
    main()
