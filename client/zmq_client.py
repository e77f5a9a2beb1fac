"""A small client for the render daemon: pyzmq, msgpack and the standard library only.

It runs in an editor's Python (3.10 to 3.13) as well as in scripts. Every wait has a timeout, so
it never hangs when the daemon is absent or killed; sockets use LINGER=0 so closing never blocks.

    with Client.connect(spawn=True) as client:
        result = client.render(pixels, image_meta(w, h), {"size": 512},
                               on_progress=lambda p, preview: print(p["iteration"]))
        client.ack(result.job)
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from . import protocol as P
from .job import DaemonError, JobCancelled, Result
from .locate import (
    alive,
    connection_file,
    daemon_gone,
    read_connection_file,
    secret_for,
    spawn_daemon,
    starting_daemon,
)

ProgressCallback = Callable[[dict, "bytes | None"], None]
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class Client:
    """One DEALER connection to the daemon. Not thread-safe: use it from one thread."""

    def __init__(self, endpoint: str | None = None, timeout: float = 10.0,
                 server_key: bytes | None = None,
                 client_keys: tuple[bytes, bytes] | None = None, secret: str | None = None,
                 context: zmq.Context | None = None) -> None:
        """``server_key`` (Z85): use CURVE, with ``client_keys`` (public, secret; Z85) as this
        client's identity, or a fresh pair when None (a daemon accepts only listed keys).
        ``secret``: what a loopback TCP daemon requires (ZeroMQ PLAIN); by default read from
        its connection file. ``context``: share a context (the daemon's own bridge uses
        inproc); it is then not terminated on close."""
        if endpoint is None:
            info = read_connection_file()
            if info is None:
                raise DaemonError(P.E_NO_DAEMON, "no neural-mirage daemon is running (no "
                                  f"connection file at {connection_file()}); start one with "
                                  "'neural-mirage daemon'")
            endpoint = info["endpoint"]
        self.endpoint = endpoint
        self.timeout = timeout
        self.heartbeat = 0.25
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._handshakes: zmq.Socket | None = None
        if server_key is not None:
            public, secret_key = client_keys or zmq.curve_keypair()
            self._socket.curve_serverkey = server_key
            self._socket.curve_publickey = public
            self._socket.curve_secretkey = secret_key
        elif endpoint.startswith("tcp://"):
            secret = secret or secret_for(endpoint)
            if secret is not None:
                self._socket.plain_username = P.PLAIN_USER.encode()
                self._socket.plain_password = secret.encode()
            # A refused handshake is silent on a DEALER: watch for it, to say why.
            self._handshakes = self._socket.get_monitor_socket(_HANDSHAKE_FAILED)
        self._socket.connect(endpoint)
        self._pending: deque[tuple[dict, list[bytes]]] = deque()
        self._rids = itertools.count(1)
        self.welcome: dict[str, Any] = {}

    @classmethod
    def connect(cls, endpoint: str | None = None, timeout: float = 10.0, spawn: bool = False,
                spawn_command: Sequence[str] | None = None, spawn_timeout: float = 120.0,
                on_spawn: Callable[[], None] | None = None) -> Client:
        """Connect and say HELLO; with ``spawn``, start a daemon when none answers.

        ``spawn_command`` defaults to :func:`~.locate.daemon_command`; an editor passes the
        daemon's own Python there. ``on_spawn`` is called when a daemon is started, so
        the caller can say so. A daemon that is still loading its model (its connection file
        says ``starting``) is waited for, up to ``spawn_timeout``, spawn or not.
        """
        if starting_daemon() is not None:
            return cls._connect_when_started(endpoint, timeout, spawn_timeout)
        client = None
        try:
            client = cls(endpoint, timeout=timeout if not spawn else min(timeout, 3.0))
            client.hello()
            client.timeout = timeout
            return client
        except DaemonError as exc:
            if client is not None:
                client.close()
            if exc.code not in (P.E_NO_DAEMON, P.E_TIMEOUT):
                raise
            if starting_daemon() is not None:
                return cls._connect_when_started(endpoint, timeout, spawn_timeout)
            if not spawn:
                raise
        if on_spawn is not None:
            on_spawn()
        with tempfile.TemporaryFile() as errors:
            try:
                process = spawn_daemon(spawn_command, errors)
            except OSError as exc:
                raise DaemonError(P.E_NO_DAEMON, f"could not start the daemon: {exc}") from exc

            def failed() -> str | None:
                if process.poll() is None:
                    return None
                errors.seek(0)
                lines = errors.read().decode(errors="replace").strip().splitlines()
                return lines[-1] if lines else f"exit code {process.returncode}"

            return cls._await(endpoint, timeout, spawn_timeout, failed)

    @classmethod
    def _connect_when_started(cls, endpoint: str | None, timeout: float, wait: float) -> Client:
        """Wait for the daemon whose model is loading, as for one we started ourselves."""
        pid = starting_daemon()
        return cls._await(endpoint, timeout, wait, lambda: None if pid and alive(pid) else
                          "the daemon that was starting has exited (its log: "
                          "~/.cache/neural-mirage/daemon.log)")

    @classmethod
    def _await(cls, endpoint: str | None, timeout: float, wait: float,
               failed: Callable[[], str | None]) -> Client:
        """Connect to a daemon that is starting, within ``wait`` seconds; ``failed`` says why
        it never will (its process ended)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # Another client may have started a daemon at the same moment (a dialog's class
            # list and its Render button): ours then exits, and we wait for theirs.
            why = None if starting_daemon() is not None else failed()
            info = read_connection_file()
            if endpoint is not None or (info is not None and not info.get("starting")):
                client = cls(endpoint, timeout=1.0)
                try:
                    client.hello()
                    client.timeout = timeout
                    return client
                except DaemonError:
                    client.close()
            if why is not None:
                raise DaemonError(P.E_NO_DAEMON, f"the daemon could not start: {why}")
            time.sleep(0.2)
        raise DaemonError(P.E_TIMEOUT, f"the daemon did not answer within {wait:g} s of "
                          "being started")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handshakes is not None:
            self._socket.disable_monitor()
            self._handshakes.close(linger=0)
        self._socket.close(linger=0)
        if self._own_context:
            self._context.term()

    def _unreachable(self, why: str) -> DaemonError:
        """The error for a daemon that did not answer: a refused handshake, if there was
        one, says what to do; else ``why``."""
        if self._handshakes is not None and self._handshakes.poll(0):
            return DaemonError(P.E_UNAUTHORIZED, f"the daemon at {self.endpoint} refused this "
                               "client: over TCP it takes only clients that present the secret "
                               "in its connection file, which only the user who started it can "
                               f"read ({connection_file()}). Connect as that user and let the "
                               "client read the file (give no secret of your own)")
        return DaemonError(P.E_TIMEOUT, why)

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, header: dict[str, Any], frames: Sequence[bytes] = ()) -> None:
        # A DEALER with no connection (no daemon there, or one that refused our CURVE key)
        # would block in send for ever, also right after a poll said it could send (the
        # connection can drop in between): never block, wait as for a reply, no longer.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._socket.send_multipart([P.pack(header), *frames], zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._unreachable(f"could not reach the daemon at {self.endpoint} "
                                            f"within {self.timeout:g} s: is it running, and "
                                            "does it accept this client's key?") from None
                self._socket.poll(int(min(left, 0.1) * 1000), zmq.POLLOUT)

    def _receive(self, timeout: float, pending: bool = True) -> tuple[dict, list[bytes]] | None:
        if pending and self._pending:
            return self._pending.popleft()
        if not self._socket.poll(max(0, int(timeout * 1000))):
            return None
        frames = self._socket.recv_multipart()
        return P.unpack(frames[0]), frames[1:]

    def request(self, header: dict[str, Any], frames: Sequence[bytes] = (),
                timeout: float | None = None) -> tuple[dict, list[bytes]]:
        """Send a request and return its reply; other messages are kept for :meth:`wait`."""
        rid = next(self._rids)
        self._send({**header, "rid": rid}, frames)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        held: list[tuple[dict, list[bytes]]] = []
        try:
            while (left := deadline - time.monotonic()) > 0:
                message = self._receive(left, pending=False)
                if message is None:
                    break
                reply, reply_frames = message
                if reply.get("rid") != rid:
                    if reply.get("rid") is None:  # a job event: keep it for wait()
                        held.append(message)
                    continue
                if reply["type"] == P.ERROR:
                    raise DaemonError(reply.get("code", "error"), reply.get("message", ""),
                                      reply.get("job"))
                return reply, reply_frames
        finally:
            self._pending.extend(held)
        raise self._unreachable(f"the daemon at {self.endpoint} did not answer "
                                f"{header['type']} within {limit:g} s: is it running?")

    # -- requests ----------------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        self.welcome, _ = self.request({"type": P.HELLO, "protocol": P.PROTOCOL_VERSION,
                                        "client": f"python-client/{sys.version_info[:2]}"})
        self.heartbeat = float(self.welcome.get("heartbeat", self.heartbeat))
        return self.welcome

    def submit(self, pixels: bytes | memoryview, image: dict[str, Any],
               params: dict[str, Any] | None = None,
               mask: bytes | None = None, detach: bool = False, preview_every: int = 0,
               preview_size: int = 256, client_job: Any = None,
               output: tuple[int, int] | None = None, see_mask: bytes | None = None,
               task: str = P.RENDER) -> dict[str, Any]:
        """Queue a render; returns ACCEPTED (``job`` is the daemon's id, ``position``).

        ``output`` (width, height): the daemon scales the result to this size (an editor's area,
        when it sent the pixels scaled down); the masks are then of that size too. ``see_mask``
        (one byte a pixel): steer only there. ``task`` ``sees``: the result
        is the map of what the net sees where, not a render.
        """
        header: dict[str, Any] = {"type": P.SUBMIT, "params": params or {}, "image": image,
                                  "detach": detach, "preview_every": preview_every,
                                  "preview_size": preview_size, "job": client_job,
                                  "task": task}
        width, height = output or (image["width"], image["height"])
        if output is not None:
            header["output"] = {"width": width, "height": height}
        frames = [pixels]
        if mask is not None:
            header["mask"] = P.image_meta(width, height, 1, "u8", "A")
            frames.append(mask)
        if see_mask is not None:
            header["see_mask"] = P.image_meta(width, height, 1, "u8", "A")
            frames.append(see_mask)
        reply, _ = self.request(header, frames)
        return reply

    def estimate(self, params: dict[str, Any], width: int, height: int) -> dict[str, Any]:
        """ESTIMATE_REPLY for an area of ``width`` x ``height``: ``seconds`` at
        ``params["size"]``, and ``quick_size``, the size that takes about a minute or two."""
        return self.request({"type": P.ESTIMATE, "params": params, "width": width,
                             "height": height})[0]

    def watch(self, job: str, on_progress: ProgressCallback | None = None) -> JobWatch:
        """A :class:`JobWatch` for ``job``: poll it from an event loop (a Qt timer, say)."""
        return JobWatch(self, job, on_progress)

    def wait(self, job: str, on_progress: ProgressCallback | None = None,
             should_cancel: Callable[[], bool] | None = None) -> Result:
        """Wait for a job's RESULT, sending heartbeats; raises on ERROR, cancel or silence."""
        watch = self.watch(job, on_progress)
        while True:
            if should_cancel is not None and should_cancel():
                watch.cancel()
            result = watch.poll(self.heartbeat)
            if result is not None:
                return result

    def render(self, pixels: bytes | memoryview, image: dict[str, Any],
               params: dict[str, Any] | None = None,
               on_progress: ProgressCallback | None = None,
               should_cancel: Callable[[], bool] | None = None, **submit: Any) -> Result:
        """Submit and wait. The caller ACKs the result once it has safely used it."""
        accepted = self.submit(pixels, image, params, **submit)
        return self.wait(accepted["job"], on_progress, should_cancel)

    def cancel(self, job: str) -> dict[str, Any]:
        return self.request({"type": P.CANCEL, "job": job})[0]

    def status(self) -> dict[str, Any]:
        return self.request({"type": P.STATUS})[0]

    def fetch(self, job: str) -> Result:
        header, frames = self.request({"type": P.FETCH, "job": job})
        return Result(header, frames[0])

    def ack(self, job: str) -> None:
        """Tell the daemon the result is safe here, so it may delete its copy."""
        self.request({"type": P.ACK, "job": job})

    def classes(self) -> dict[str, Any]:
        """The model's class names (``classes``, in fc8's order) and steering ``groups``."""
        return self.request({"type": P.CLASSES})[0]

    def ping(self) -> float:
        started = time.monotonic()
        self.request({"type": P.PING})
        return time.monotonic() - started

    def shutdown(self) -> None:
        self.request({"type": P.SHUTDOWN})


class JobWatch:
    """Follows one job without blocking: call :meth:`poll` often (at least every heartbeat).

    ``poll`` sends the heartbeat, hands PROGRESS to ``on_progress``, returns the Result when it
    comes, and raises :class:`JobCancelled` or :class:`DaemonError` (also when the daemon has sent
    nothing, not even PONG, for the client's timeout).
    """

    def __init__(self, client: Client, job: str,
                 on_progress: ProgressCallback | None = None) -> None:
        self.client = client
        self.job = job
        self.on_progress = on_progress
        self.last_heard = time.monotonic()
        self.last_ping = 0.0
        self.cancel_sent = False

    def cancel(self) -> None:
        """Ask for a cancel; :meth:`poll` raises JobCancelled once the worker has stopped."""
        if not self.cancel_sent:
            # With a rid, the immediate reply is skipped; the job's own CANCELLED event comes
            # once the worker has really stopped.
            self.client._send({"type": P.CANCEL, "job": self.job, "rid": next(self.client._rids)})
            self.cancel_sent = True

    def poll(self, timeout: float = 0.0) -> Result | None:
        client = self.client
        held: list[tuple[dict, list[bytes]]] = []
        try:
            return self._poll(timeout, held)
        finally:  # other jobs' events stay queued for their own watches
            client._pending = deque(held + list(client._pending))

    def _poll(self, timeout: float, held: list[tuple[dict, list[bytes]]]) -> Result | None:
        client = self.client
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now - self.last_ping >= client.heartbeat:
                client._send({"type": P.PING})
                self.last_ping = now
            message = client._receive(max(0.0, min(deadline - now, client.heartbeat)))
            if message is None:
                if time.monotonic() - self.last_heard > client.timeout:
                    if daemon_gone(client.endpoint):
                        raise DaemonError(P.E_DAEMON_STOPPED, "the render daemon stopped "
                                          "during the render (it was killed, or it crashed)",
                                          self.job)
                    raise DaemonError(P.E_TIMEOUT, f"the daemon stopped answering for "
                                      f"{client.timeout:g} s. If it finishes, fetch the result "
                                      f"later: 'neural-mirage fetch {self.job} OUTPUT'",
                                      self.job)
                if time.monotonic() >= deadline:
                    return None
                continue
            header, frames = message
            if header.get("rid") is not None or header.get("job") is None:
                self.last_heard = time.monotonic()  # PONG, or a late reply: the daemon lives
                continue
            if header.get("job") != self.job:
                held.append(message)  # another job's event, for that job's own watch
                continue
            self.last_heard = time.monotonic()
            kind = header["type"]
            if kind == P.PROGRESS and self.on_progress is not None:
                self.on_progress(header, frames[0] if frames else None)
            elif kind == P.RESULT:
                return Result(header, frames[0])
            elif kind == P.CANCELLED:
                raise JobCancelled(self.job, header.get("reason", "request"))
            elif kind == P.ERROR:
                raise DaemonError(header.get("code", "error"), header.get("message", ""),
                                  self.job)
