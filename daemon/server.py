"""The render daemon: one ROUTER socket, an I/O loop that never waits for a render, device workers.

The I/O thread (this module) answers HELLO, STATUS, PING, CANCEL, FETCH and ACK at once, queues
SUBMITs, routes the workers' events to each job's owner, and cancels the jobs of clients that stop
sending heartbeats (unless the job was submitted detached). Renders run in :mod:`.worker` threads.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import itertools
import json
import logging
import math
import os
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import torch
import zmq

from neural_mirage import __version__
from neural_mirage.engine import MAX_SIZE, MirageVGG, ParamError, RenderParams, plan_scales
from neural_mirage.engine.device import available_memory
from neural_mirage.engine.estimate import (
    RenderTooLarge,
    Speed,
    check_memory,
    largest_size,
    measure_speed,
    peak_bytes,
    render_seconds,
    size_in_memory,
    size_within,
)
from neural_mirage.engine.render import fit_size
from neural_mirage.engine.steering import available_groups
from neural_mirage.install.weights import ModelInfo, ModelSpec

from . import pixels
from . import protocol as P
from .jobs import CANCELLED, QUEUED, RUNNING, Job, JobQueue, QueueFull
from .results import ResultStore
from .worker import EVENTS_ENDPOINT, Worker

log = logging.getLogger("neural_mirage.daemon")

#: Clients are told to PING this often while they wait for a job.
HEARTBEAT_INTERVAL = 0.25
#: ESTIMATE's ``quick_size`` is the largest size that renders within this many seconds: the
#: plug-ins' default, a first look that finishes in about a minute or two...
QUICK_SECONDS = 90.0
#: ...but never smaller than this (or the area): below it the fc layers' 224 px view sees too
#: little to be worth a look; a slow device then gets the time question, not a useless result.
QUICK_MIN_SIZE = 256
_FINISHED_MEMORY = 1000
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class DaemonStartError(RuntimeError):
    """The daemon cannot start; the message says why and what to do."""


@dataclass
class DaemonConfig:
    endpoint: str = field(default_factory=P.default_endpoint)
    runtime_dir: Path = field(default_factory=P.runtime_dir)
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    max_queue: int = 32
    max_pixels: int = 8192 * 8192
    """Largest image a SUBMIT may send (what is rendered from)."""
    max_output_pixels: int = 8192 * 8192
    """Largest ``output`` size: the result scaled to the editor's area (a camera photo's)."""
    max_memory: int | None = None
    """Bytes a render may need (estimated before it starts); None: the devices' free memory
    when the daemon starts."""
    client_timeout: float = 1.0
    """A non-detached job is cancelled when its client has been silent this long."""
    curve_dir: Path | None = None
    """Folder with server.key_secret and clients/*.key: CURVE for non-loopback endpoints."""
    write_connection_file: bool = True


def default_cache_dir() -> Path:
    explicit = os.environ.get("NEURAL_MIRAGE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "neural-mirage"


def is_loopback(endpoint: str) -> bool:
    """True for ipc:// and inproc://, and for tcp:// on a loopback address."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    host = urlsplit(endpoint).hostname or ""
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Daemon:
    """Owns the socket, the queue, the workers and the result store."""

    def __init__(self, config: DaemonConfig,
                 models: list[tuple[torch.device, MirageVGG, ModelInfo]], speed: Speed) -> None:
        self.config = config
        self.models = models
        self.speed = speed
        """The first device's measured speed, for ESTIMATE."""
        self.memory = config.max_memory or min(available_memory(d) for d, _, _ in models)
        """What a render may need: larger ones are refused before they start."""
        self.info = models[0][2]
        self.context = zmq.Context()
        self.queue = JobQueue(config.max_queue)
        self.store = ResultStore(config.cache_dir / "results")
        self.jobs: dict[str, Job] = {}
        self.finished: OrderedDict[str, str] = OrderedDict()
        self.last_seen: dict[bytes, float] = {}
        self.started = time.monotonic()
        self._numbers = itertools.count(1)
        self.stopping = False
        self._lock_fd: int | None = None
        self._authenticator: Any = None
        self.router = self.context.socket(zmq.ROUTER)
        self.events = self.context.socket(zmq.PULL)
        self.workers: list[Worker] = []

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Take the lock, bind, write the connection file, start the workers."""
        config = self.config
        config.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(config.runtime_dir, 0o700)
        self._take_lock()
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # A frame bigger than the largest legal image is dropped by libzmq before it is buffered.
        self.router.setsockopt(zmq.MAXMSGSIZE, config.max_pixels * 16 + P.MAX_HEADER_BYTES)
        self._configure_security()
        try:
            self.router.bind(config.endpoint)
        except zmq.ZMQError as exc:
            raise DaemonStartError(f"cannot listen on {config.endpoint}: {exc.strerror}. Is "
                                   "another program using it? Choose another with --bind."
                                   ) from exc
        self.events.bind(EVENTS_ENDPOINT)
        for device, model, info in self.models:
            worker = Worker(self.context, self.queue, self.store, model, info, device,
                            self.memory)
            worker.start()
            self.workers.append(worker)
        if config.write_connection_file:
            self._write_connection_file()
        log.info("neural-mirage daemon %s listening on %s with %s on %s", __version__,
                 config.endpoint, self.info.label, ", ".join(str(d) for d, _, _ in self.models))

    def _take_lock(self) -> None:
        key = hashlib.sha256(self.config.endpoint.encode()).hexdigest()[:12]
        path = self.config.runtime_dir / f"daemon-{key}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = path.read_text().strip() or "?"
            raise DaemonStartError(f"another neural-mirage daemon (pid {other}) is already "
                                   f"serving {self.config.endpoint}; stop it first "
                                   "('neural-mirage service stop' or SHUTDOWN)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _configure_security(self) -> None:
        endpoint = self.config.endpoint
        if is_loopback(endpoint):
            return
        curve_dir = self.config.curve_dir
        if curve_dir is None:
            raise DaemonStartError(
                f"refusing to listen on {endpoint}: it is reachable from other machines and "
                "nothing would protect it. Use a loopback address (tcp://127.0.0.1:PORT), or "
                "give --curve-dir with server.key_secret and clients/*.key (pyzmq's zmq.auth).")
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        secret = curve_dir / "server.key_secret"
        if not secret.is_file():
            raise DaemonStartError(f"no CURVE server key at {secret}")
        public, private = zmq.auth.load_certificate(str(secret))
        self._authenticator = ThreadAuthenticator(self.context)
        self._authenticator.start()
        self._authenticator.configure_curve(domain="*", location=str(curve_dir / "clients"))
        self.router.curve_secretkey = private
        self.router.curve_publickey = public
        self.router.curve_server = True

    def _write_connection_file(self) -> None:
        path = self.config.runtime_dir / "daemon.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"endpoint": self.config.endpoint, "protocol": P.PROTOCOL_VERSION,
                       "version": __version__, "pid": os.getpid()}, f)
        tmp.replace(path)
        self._connection_file = path

    def close(self) -> None:
        self.queue.close()
        for job in self.jobs.values():
            job.cancel.set()
        for worker in self.workers:
            worker.join(timeout=30)
        path = getattr(self, "_connection_file", None)
        if path is not None:
            try:
                if json.loads(path.read_text()).get("pid") == os.getpid():
                    path.unlink()
            except (OSError, ValueError):
                pass
        if self._authenticator is not None:
            self._authenticator.stop()
        self.router.close(linger=0)
        self.events.close(linger=0)
        self.context.term()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        log.info("daemon stopped")

    # -- the loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until SHUTDOWN, SIGTERM or SIGINT."""
        def stop(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.events, zmq.POLLIN)
        while not self.stopping:
            ready = dict(poller.poll(100))
            if self.events in ready:
                self._drain(self.events, self._on_event)
            if self.router in ready:
                self._drain(self.router, self._on_message)
            self._reap_silent_clients()

    @staticmethod
    def _drain(sock: zmq.Socket, handle: Any) -> None:
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            handle(frames)

    def _send(self, identity: bytes, header: dict[str, Any], frames: list[Any] = ()) -> None:
        try:
            self.router.send_multipart([identity, P.pack(header), *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # a vanished or slow peer; results stay in the store
            log.debug("could not send %s: %s", header.get("type"), exc)

    # -- client messages ---------------------------------------------------------------------

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        self.last_seen[identity] = time.monotonic()
        rid = None
        try:
            if len(frames) < 2:
                raise P.ProtocolError(P.E_BAD_MESSAGE, "a message needs a header frame")
            header = P.unpack(frames[1].bytes)
            rid = header.get("rid")
            if rid is not None and (not isinstance(rid, int | str) or isinstance(rid, bool)):
                rid = None
                raise P.ProtocolError(P.E_BAD_MESSAGE, "'rid' must be a number or a string")
            handler = self._handlers.get(header["type"])
            if handler is None:
                raise P.ProtocolError(P.E_UNKNOWN_TYPE, f"unknown message type "
                                      f"{header['type'][:40]!r}; known: {', '.join(P.REQUESTS)}")
            reply, reply_frames = handler(self, identity, header, frames)
        except P.ProtocolError as exc:
            reply, reply_frames = P.error(exc.code, str(exc)), []
        except Exception as exc:  # a bug must not take the daemon down
            log.exception("error while handling a message")
            reply, reply_frames = P.error(P.E_BAD_MESSAGE, f"the daemon could not handle this "
                                          f"message: {exc}"), []
        if reply is not None:
            if rid is not None:
                reply["rid"] = rid
            self._send(identity, reply, reply_frames)

    def _hello(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        version = header.get("protocol")
        if version != P.PROTOCOL_VERSION:
            raise P.ProtocolError(P.E_VERSION, f"this daemon speaks protocol "
                                  f"{P.PROTOCOL_VERSION}, the client speaks {version!r}: update "
                                  "the plug-in or the daemon so that both are the same version")
        return {"type": P.WELCOME, "protocol": P.PROTOCOL_VERSION, "version": __version__,
                "devices": [str(d) for d, _, _ in self.models],
                "model": {"weights": self.info.weights, "arch": self.info.arch,
                          "label": self.info.label, "pretrained": self.info.pretrained,
                          "classes": self.info.classes},
                "limits": {"max_pixels": self.config.max_pixels, "max_memory": self.memory,
                           "max_output_pixels": self.config.max_output_pixels,
                           "max_size": MAX_SIZE,
                           "max_queue": self.config.max_queue,
                           "max_header_bytes": P.MAX_HEADER_BYTES},
                "heartbeat": HEARTBEAT_INTERVAL, "client_timeout": self.config.client_timeout,
                "params": RenderParams().to_dict()}, []

    def _submit(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        if self.stopping:
            raise P.ProtocolError(P.E_SHUTTING_DOWN, "the daemon is shutting down")
        known = {"type", "rid", "job", "params", "image", "mask", "output", "detach",
                 "preview_every", "preview_size"}
        unknown = sorted(str(k)[:40] for k in header if k not in known)
        if unknown:
            raise P.ProtocolError(P.E_BAD_MESSAGE, f"unknown SUBMIT field(s): "
                                  f"{', '.join(unknown)}")
        detach = header.get("detach", False)
        preview_every = header.get("preview_every", 0)
        preview_size = header.get("preview_size", 256)
        if not isinstance(detach, bool):
            raise P.ProtocolError(P.E_BAD_MESSAGE, "'detach' must be true or false")
        for name, value, low, high in (("preview_every", preview_every, 0, 100_000),
                                       ("preview_size", preview_size, 16, 4096)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise P.ProtocolError(P.E_BAD_MESSAGE, f"'{name}' must be a whole number "
                                      f"from {low} to {high}")
        params = self._params(header)
        has_mask = header.get("mask") is not None
        if len(frames) != 3 + has_mask:
            raise P.ProtocolError(P.E_BAD_IMAGE, f"SUBMIT needs {1 + has_mask} pixel frame(s) "
                                  f"after the header, got {len(frames) - 2}")
        image = header.get("image")
        pixels.check_frame(image, frames[2].buffer, self.config.max_pixels)
        width, height = image["width"], image["height"]
        output = None
        if header.get("output") is not None:
            output = P.check_size(header["output"], self.config.max_output_pixels, "output")
        mask = header.get("mask")
        if has_mask:
            pixels.check_frame(mask, frames[3].buffer, self.config.max_output_pixels, "mask")
            if mask["channels"] != 1 or (mask["width"], mask["height"]) != (output or (
                    width, height)):
                raise P.ProtocolError(P.E_BAD_IMAGE, "the mask must have 1 channel and the "
                                      f"{'output' if output else 'image'}'s width and height")
        if params.init == "image":
            raise P.ProtocolError(P.E_BAD_PARAMS, "init 'image' is not available through the "
                                  "daemon: use 'random' or 'content'")
        try:  # refuse now what the worker would refuse later (e.g. too small a result)
            plan_scales(*fit_size(width, height, params.size), params)
        except ParamError as exc:
            raise P.ProtocolError(P.E_BAD_PARAMS, str(exc)) from None
        try:
            check_memory(width, height, params, self.memory,
                         f"the daemon's {self.models[0][0]}")
        except RenderTooLarge as exc:
            raise P.ProtocolError(P.E_OUT_OF_MEMORY, str(exc)) from None
        job = Job(owner=identity, client_job=header.get("job"), params=params,
                  frame=frames[2], meta=image, output=output,
                  mask_frame=frames[3] if has_mask else None,
                  mask_meta=mask if has_mask else None, detached=detach,
                  preview_every=preview_every, preview_size=preview_size,
                  number=next(self._numbers))
        try:
            position = self.queue.put(job)
        except QueueFull:
            raise P.ProtocolError(P.E_BUSY, f"the queue is full ({self.config.max_queue} jobs); "
                                  "try again when some have finished") from None
        self.jobs[job.id] = job
        log.info("job %s queued at %d (%dx%d%s)", job.id, position, width, height,
                 ", detached" if detach else "")
        return {"type": P.ACCEPTED, "job": job.id, "client_job": job.client_job,
                "position": position}, []

    def _params(self, header: dict) -> RenderParams:
        """The request's render parameters, checked against the served model."""
        try:
            params = RenderParams.from_dict(header.get("params") or {})
            model = self.models[0][1]
            params.check_model(model.layer_names, model.labels)
        except (ParamError, TypeError) as exc:
            raise P.ProtocolError(P.E_BAD_PARAMS, str(exc)) from None
        return params

    def _estimate(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        """How long a render of a ``width`` x ``height`` area takes here, and the size that
        takes about :data:`QUICK_SECONDS` (the plug-ins' default)."""
        params = self._params(header)
        width, height = P.check_size(header, self.config.max_output_pixels, "area")
        try:
            seconds = render_seconds(width, height, params, self.speed)
            scales = plan_scales(*fit_size(width, height, params.size), params)
            largest = size_in_memory(width, height, params, self.memory)
            in_time = size_within(width, height, params, self.speed, QUICK_SECONDS)
            sendable = largest_size(  # a quick look is sent at its own size
                width, height, params, MAX_SIZE, lambda trial: math.prod(
                    fit_size(width, height, trial.size)) <= self.config.max_pixels)
            quick = min(largest, sendable,
                        max(in_time, min(QUICK_MIN_SIZE, max(width, height))))
            quick_seconds = render_seconds(width, height, replace(params, size=quick),
                                           self.speed)
        except ParamError as exc:
            raise P.ProtocolError(P.E_BAD_PARAMS, str(exc)) from None
        return {"type": P.ESTIMATE_REPLY, "size": params.size, "seconds": round(seconds, 1),
                "render": [scales[-1].width, scales[-1].height],
                "iterations": sum(s.iterations for s in scales),
                "memory": peak_bytes(width, height, params, self.memory),
                "max_memory": self.memory,
                "largest_size": largest,
                "quick_size": quick, "quick_seconds": round(quick_seconds, 1),
                "device": str(self.models[0][0])}, []

    def _job_id(self, header: dict) -> str:
        job_id = header.get("job")
        if not isinstance(job_id, str):
            raise P.ProtocolError(P.E_BAD_MESSAGE, "'job' must be a job id string")
        return job_id

    def _cancel(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        job_id = self._job_id(header)
        job = self.jobs.get(job_id)
        if job is None:
            state = self.finished.get(job_id)
            if state is None:
                raise P.ProtocolError(P.E_UNKNOWN_JOB, f"no job {job_id[:40]!r} is queued or "
                                      "running")
            return {"type": P.CANCELLED, "job": job_id, "state": state}, []
        self._cancel_job(job, "cancelled by a client")
        state = CANCELLED if job.state == CANCELLED else "cancelling"
        return {"type": P.CANCELLED, "job": job_id, "state": state}, []

    def _cancel_job(self, job: Job, why: str) -> None:
        job.cancel.set()
        if job.state == QUEUED and self.queue.remove(job):
            job.state = CANCELLED
            log.info("job %s: %s while queued", job.id, why)
            self._finish(job.id, CANCELLED)
            self._send(job.owner, {"type": P.CANCELLED, "job": job.id})
        else:
            log.info("job %s: %s", job.id, why)

    def _status(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        memory: dict[str, Any] = {"rss": _rss_bytes()}
        for device, _, _ in self.models:
            if device.type == "cuda":
                memory[str(device)] = torch.cuda.memory_allocated(device)
        return {"type": P.STATUS_REPLY, "version": __version__,
                "uptime": round(time.monotonic() - self.started, 3),
                "devices": [str(d) for d, _, _ in self.models],
                "model": self.info.label, "pretrained": self.info.pretrained,
                "running": [j.summary() for j in self.jobs.values() if j.state == RUNNING],
                "queue": [j.summary() for j in self.queue.snapshot()],
                "memory": memory, "stored": self.store.stats()}, []

    def _fetch(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        job_id = self._job_id(header)
        stored = self.store.get(job_id)
        if stored is not None:
            result, raw = stored
            return result, [raw]
        job = self.jobs.get(job_id)
        if job is not None and job.state in (QUEUED, RUNNING):
            raise P.ProtocolError(P.E_NOT_FINISHED, f"job {job_id} is {job.state} "
                                  f"({job.iteration}/{job.total} iterations)")
        state = job.state if job is not None else self.finished.get(job_id)
        if state is not None:
            raise P.ProtocolError(P.E_UNKNOWN_JOB, f"job {job_id} has no stored result: it "
                                  f"was {state}, or its result was already acknowledged")
        raise P.ProtocolError(P.E_UNKNOWN_JOB, f"no result for job {job_id[:40]!r}: unknown "
                              "id, or acknowledged, or expired")

    def _ack(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        job_id = self._job_id(header)
        if not self.store.delete(job_id):
            raise P.ProtocolError(P.E_UNKNOWN_JOB, f"no stored result for job {job_id[:40]!r}")
        return {"type": P.ACKED, "job": job_id}, []

    def _classes(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        """The model's class names and the steering groups it can use (for class pickers)."""
        labels = self.models[0][1].labels
        return {"type": P.CLASSES_REPLY, "classes": list(labels),
                "groups": available_groups(labels), "model": self.info.label}, []

    def _ping(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        return {"type": P.PONG}, []

    def _shutdown(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        peer = frames[1].get("Peer-Address") if hasattr(frames[1], "get") else ""
        local = is_loopback(self.config.endpoint) or _is_loopback_address(peer)
        if not local:
            raise P.ProtocolError(P.E_FORBIDDEN, "SHUTDOWN is accepted only from this machine")
        log.info("SHUTDOWN received")
        self.stopping = True
        return {"type": P.BYE}, []

    _handlers: ClassVar[dict[str, Any]] = {
        P.HELLO: _hello, P.SUBMIT: _submit, P.CANCEL: _cancel, P.STATUS: _status,
        P.FETCH: _fetch, P.ACK: _ack, P.PING: _ping, P.CLASSES: _classes,
        P.ESTIMATE: _estimate, P.SHUTDOWN: _shutdown}

    # -- worker events and liveness ----------------------------------------------------------

    def _on_event(self, frames: list[zmq.Frame]) -> None:
        job = self.jobs.get(frames[0].bytes.decode())
        if job is None:
            return
        header = P.unpack(frames[1].bytes)
        if header["type"] != P.PROGRESS:
            self._finish(job.id, job.state)
        if header["type"] != P.PROGRESS or not job.cancel.is_set():
            self._send(job.owner, header, frames[2:])

    def _finish(self, job_id: str, state: str) -> None:
        self.jobs.pop(job_id, None)
        self.finished[job_id] = state
        while len(self.finished) > _FINISHED_MEMORY:
            self.finished.popitem(last=False)

    def _reap_silent_clients(self) -> None:
        now = time.monotonic()
        timeout = self.config.client_timeout
        for job in list(self.jobs.values()):
            if job.detached or job.cancel.is_set():
                continue
            if now - self.last_seen.get(job.owner, job.submitted) > timeout:
                self._cancel_job(job, f"its client sent nothing for {timeout:g} s (gone?)")
        owners = {job.owner for job in self.jobs.values()}
        for identity, seen in list(self.last_seen.items()):
            if now - seen > 60 and identity not in owners:
                del self.last_seen[identity]


def _is_loopback_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def configure_logging(log_file: Path | None, verbose: bool = False) -> None:
    from logging.handlers import RotatingFileHandler

    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=1 << 20, backupCount=3))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(message)s", force=True)


def run_daemon(config: DaemonConfig, spec: ModelSpec, devices: list[str]) -> None:
    """Load one model per device, then serve until stopped."""
    from neural_mirage.engine import keep_freed_memory, pick_device
    from neural_mirage.install.weights import load_model

    keep_freed_memory()
    models = []
    for name in devices:
        device = pick_device(name)
        model, info = load_model(spec, device)
        models.append((device, model, info))
    if not models[0][2].pretrained:
        log.warning("serving %s: results show the method, not a real mirage", models[0][2].label)
    speed = measure_speed(models[0][1])
    log.info("%s: %.2f s per iteration at 512x512", models[0][0],
             speed.iteration_seconds(512 * 512))
    daemon = Daemon(config, models, speed)
    try:
        daemon.start()
        daemon.serve()
    finally:
        daemon.close()
