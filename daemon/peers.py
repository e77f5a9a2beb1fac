"""Which client connection each routing id came in on, so a closed connection is a gone client.

A ZeroMQ socket monitor reports a closed connection (DISCONNECTED) by its file descriptor only;
every message's ``SRCFD`` says which descriptor it arrived on. Together they tell a client that is
gone (its process ended or closed its socket: the kernel closes the connection at once) from one
that is merely busy (encoding an image, stopped in a debugger), which still holds its connection,
and whose libzmq I/O thread still answers the ZMTP heartbeats on its own.
"""

from __future__ import annotations

from collections import Counter


class Peers:
    """Maps connection file descriptors to the routing id that last sent on them."""

    def __init__(self) -> None:
        self._by_fd: dict[int, bytes] = {}
        self._stale: Counter[int] = Counter()

    def seen(self, identity: bytes, fd: int | None) -> bytes | None:
        """Record that ``identity`` sent on ``fd``. Returns the routing id that held ``fd``
        before, if another: its connection has closed (the kernel reuses only free descriptors),
        and the DISCONNECTED event still on its way for ``fd`` is about that one, not this."""
        if fd is None:  # inproc: no descriptor
            return None
        previous = self._by_fd.get(fd)
        self._by_fd[fd] = identity
        if previous is not None and previous != identity:
            self._stale[fd] += 1
            return previous
        return None

    def disconnected(self, fd: int) -> bytes | None:
        """The routing id whose connection ``fd`` closed, or None (it never sent anything, or
        :meth:`seen` already reported it)."""
        if self._stale[fd]:
            self._stale[fd] -= 1
            return None
        return self._by_fd.pop(fd, None)
