"""Jobs and the bounded FIFO queue that the device workers take them from."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq

from neural_mirage.engine import RenderParams

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
#: Why a job was cancelled (CANCELLED's ``reason``).
REQUEST, CLIENT_GONE, SHUTDOWN = "request", "client_gone", "shutdown"


@dataclass
class Job:
    """One render request, from SUBMIT until its result is stored (or it fails or is cancelled)."""

    owner: bytes
    """ZeroMQ identity of the submitting client: where PROGRESS and RESULT go."""
    client_job: Any
    params: RenderParams
    frame: zmq.Frame
    """The submitted pixels as they came (checked against ``meta``); the worker converts them
    when the job starts, so the I/O thread never spends a pass over every pixel."""
    meta: dict[str, Any]
    """The submitted image's layout; the result comes back in the same layout."""
    mask_frame: zmq.Frame | None = None
    mask_meta: dict[str, Any] | None = None
    see_mask_frame: zmq.Frame | None = None
    """Where to steer (``params.see``), at the result's size like the mask; None: everywhere."""
    see_mask_meta: dict[str, Any] | None = None
    task: str = "render"
    """``render``, or ``sees``: the map of what the net sees where, instead of a render."""
    output: tuple[int, int] | None = None
    """(width, height) the result is scaled to (the editor's area); None: the render's size."""
    detached: bool = False
    key: str | None = None
    """The CURVE public key it was submitted with; None on unencrypted endpoints."""
    preview_every: int = 0
    preview_size: int = 256
    number: int = 0
    """Order of acceptance, over all clients (the queue is FIFO in this order)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = QUEUED
    submitted: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    device: str = ""
    iteration: int = 0
    total: int = 0

    def summary(self) -> dict[str, Any]:
        """What STATUS shows of a job."""
        return {"job": self.id, "state": self.state, "width": self.meta["width"],
                "height": self.meta["height"], "iteration": self.iteration, "total": self.total,
                "device": self.device, "detached": self.detached,
                "waited": round(time.monotonic() - self.submitted, 3)}


class QueueFull(Exception):
    pass


class JobQueue:
    """FIFO with a maximum length; removal of a queued job (cancel) is O(n), n is small."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._jobs: deque[Job] = deque()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, job: Job) -> None:
        """Append. Raises QueueFull past the maximum length."""
        with self._ready:
            if len(self._jobs) >= self.max_length:
                raise QueueFull()
            self._jobs.append(job)
            self._ready.notify()

    def get(self) -> Job | None:
        """Block until a job is there; None once the queue is closed."""
        with self._ready:
            while not self._jobs and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            return self._jobs.popleft()

    def remove(self, job: Job) -> bool:
        with self._ready:
            try:
                self._jobs.remove(job)
            except ValueError:
                return False
            return True

    def snapshot(self) -> list[Job]:
        with self._ready:
            return list(self._jobs)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
