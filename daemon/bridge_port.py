"""The bridge port: the bridge's framing (docs/protocol.md, "The bridge") served by the daemon
itself on a loopback TCP port, for editors that can neither import pyzmq nor start a program of
the host (Krita and GIMP as Flatpaks or Snaps; Windows and macOS builds too, when a daemon runs).
Such a plug-in needs only the standard library's sockets.

Every local user and program can connect to a loopback port, so the first request must be
``connect`` with the secret from the connection file (readable by this user alone); anything
else is answered with ERROR ``unauthorized`` and the connection is closed. Each connection is
relayed (:func:`neural_mirage.client.relay.relay`) to the daemon's ROUTER over inproc, in a
thread of its own: to the daemon it is one more client.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
from typing import BinaryIO

import zmq

from neural_mirage.client import protocol as P
from neural_mirage.client.bridge import read_message, write_message
from neural_mirage.client.relay import emitter, relay
from neural_mirage.client.zmq_client import Client

log = logging.getLogger("neural_mirage.daemon")

#: The daemon's ROUTER also listens here, for the bridge port's relays.
INPROC_ENDPOINT = "inproc://neural-mirage-bridge"
REFUSED = ("this daemon's bridge port takes only clients that send, in their first request "
           "('connect'), the secret from its connection file, which only the user who started "
           "the daemon can read: connect as that user, and read 'bridge.secret' from the file")


class BridgePort:
    """Listens on 127.0.0.1 (a free port, :attr:`port`) until :meth:`close`."""

    def __init__(self, context: zmq.Context, secret: str, timeout: float = 10.0) -> None:
        self.context = context
        self.secret = secret
        self.timeout = timeout
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self._open: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        threading.Thread(target=self._accept, name="bridge-port", daemon=True).start()

    def close(self) -> None:
        """Stop listening and end every connection, waiting for its relay to close its
        socket: the daemon's ZeroMQ context cannot end while one is open."""
        self.server.close()
        with self._lock:
            self._closed = True
            open_now = dict(self._open)
        for connection, thread in open_now.items():
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # the relay reads the end of its stream
            thread.join(timeout=10)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed
                return
            thread = threading.Thread(target=self._serve, args=(connection,), name="bridge",
                                      daemon=True)
            with self._lock:
                if self._closed:
                    connection.close()
                    return
                self._open[connection] = thread
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            with connection, connection.makefile("rb") as reader, \
                    connection.makefile("wb") as writer:
                self._relay(reader, writer)
        finally:
            with self._lock:
                self._open.pop(connection, None)

    def _relay(self, reader: BinaryIO, writer: BinaryIO) -> None:
        """Check the first request's secret, then relay until the plug-in's stream ends."""
        try:
            first = read_message(reader)
        except (OSError, ValueError):
            return
        if first is None:
            return
        header = first[0]
        if header.get("op") != "connect" or not hmac.compare_digest(
                str(header.get("secret", "")).encode(), self.secret.encode()):
            log.warning("bridge port: refused a client without the secret")
            with contextlib.suppress(OSError):
                write_message(writer, P.error(P.E_UNAUTHORIZED, REFUSED))
            return
        client = Client(INPROC_ENDPOINT, timeout=self.timeout, context=self.context)
        try:
            emit = emitter(writer)
            emit(dict(client.hello()))
            relay(reader, emit, client)
        except OSError:  # the plug-in went away while we wrote to it
            pass
        finally:
            client.close()
