"""The render daemon: one ROUTER socket, an I/O loop that never waits for a render, device workers.

The I/O thread (this module) answers HELLO, STATUS, PING, CANCEL, FETCH and ACK at once, queues
SUBMITs, routes the workers' events to each job's owner, and cancels the jobs of clients whose
connection closed (unless the job was submitted detached): see :mod:`.peers`. A client that is
only busy keeps its jobs. Renders run in :mod:`.worker` threads.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import math
import signal
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psutil
import torch
import zmq
import zmq.utils.monitor
from filelock import BaseFileLock

from neural_mirage import __version__
from neural_mirage.client import protocol as P
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
from neural_mirage.engine.params import schema
from neural_mirage.engine.render import fit_size
from neural_mirage.engine.steering import available_groups
from neural_mirage.weights import ModelInfo, ModelSpec

from . import pixels
from .bridge_port import INPROC_ENDPOINT, BridgePort
from .config import DaemonConfig, DaemonStartError, remove_connection_file, write_connection_file
from .jobs import (
    CANCELLED,
    CLIENT_GONE,
    QUEUED,
    REQUEST,
    RUNNING,
    SHUTDOWN,
    Job,
    JobQueue,
    QueueFull,
)
from .peers import Peers
from .results import ResultStore
from .worker import EVENTS_ENDPOINT, Worker

log = logging.getLogger("neural_mirage.daemon")

#: Clients that want to notice a dead daemon PING about this often (they need not).
HEARTBEAT_INTERVAL = 0.25
#: ZMTP heartbeats on every client connection, sent and answered by libzmq's own I/O threads:
#: a client whose machine vanished without closing its connection is dropped after the timeout.
ZMTP_HEARTBEAT_MS = 1000
ZMTP_TIMEOUT_MS = 5000
#: ESTIMATE's ``quick_size`` is the largest size that renders within this many seconds: the
#: plug-ins' default, a first look that finishes in about a minute or two...
QUICK_SECONDS = 90.0
#: ...but never smaller than this (or the area): below it the fc layers' 224 px view sees too
#: little to be worth a look; a slow device then gets the time question, not a useless result.
QUICK_MIN_SIZE = 256
_FINISHED_MEMORY = 1000
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


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
                 models: list[tuple[torch.device, MirageVGG, ModelInfo]], speed: Speed,
                 lock: BaseFileLock) -> None:
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
        self.finished: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        """State and owner key of the last finished jobs, for CANCEL and FETCH answers."""
        self.peers = Peers()
        self._later: list[tuple[bytes, dict[str, Any]]] = []
        """Job events to send once the current reply is out (CANCEL's reply comes first)."""
        self._undelivered: list[tuple[bytes, list[Any]]] = []
        """Final job messages that met a full pipe (a client busy for long): sent again later."""
        self.started = time.monotonic()
        self.last_active = self.started
        """When the daemon last heard from a client or a worker (see ``idle_exit``)."""
        self._numbers = itertools.count(1)
        self.stopping = False
        self._lock = lock
        """The endpoint's lock (:func:`.config.take_lock`), held from before the model loads."""
        self._authenticator: Any = None
        self.bridge_port: BridgePort | None = None
        self.router = self.context.socket(zmq.ROUTER)
        self.monitor: zmq.Socket | None = None
        self.events = self.context.socket(zmq.PULL)
        self.workers: list[Worker] = []

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        """Bind, write the connection file, start the workers."""
        config = self.config
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # A send to a client whose connection is gone fails (EHOSTUNREACH) instead of vanishing.
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_HEARTBEAT_MS)
        self.router.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_TIMEOUT_MS)
        self.monitor = self.router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        # A frame bigger than the largest legal image is dropped by libzmq before it is buffered.
        self.router.setsockopt(zmq.MAXMSGSIZE, config.max_pixels * 16 + P.MAX_HEADER_BYTES)
        self._configure_security()
        try:
            self.router.bind(config.endpoint)
        except zmq.ZMQError as exc:
            raise DaemonStartError(f"cannot listen on {config.endpoint}: {exc.strerror}. Is "
                                   "another program using it? Choose another with --bind."
                                   ) from exc
        self.router.bind(INPROC_ENDPOINT)
        self.bridge_port = BridgePort(self.context, config.secret)
        self.bridge_port.start()
        config.bridge_port = self.bridge_port.port
        self.events.bind(EVENTS_ENDPOINT)
        for device, model, info in self.models:
            worker = Worker(self.context, self.queue, self.store, model, info, device,
                            self.memory)
            worker.start()
            self.workers.append(worker)
        write_connection_file(config, starting=False)  # ready
        log.info("neural-mirage daemon %s listening on %s (bridge port %d) with %s on %s",
                 __version__, config.endpoint, config.bridge_port, self.info.label,
                 ", ".join(str(d) for d, _, _ in self.models))

    def _configure_security(self) -> None:
        """CURVE with --curve-dir (required off this machine); on loopback TCP, which every
        local user and program can reach, ZeroMQ PLAIN with the connection file's secret; on
        ipc, the socket's folder (0700) is the protection."""
        endpoint = self.config.endpoint
        curve_dir = self.config.curve_dir
        if curve_dir is None and is_loopback(endpoint):
            if endpoint.startswith("tcp://"):
                self._start_authenticator().configure_plain(
                    domain="*", passwords={P.PLAIN_USER: self.config.secret})
                self.router.plain_server = True
            return
        if curve_dir is None:
            raise DaemonStartError(
                f"refusing to listen on {endpoint}: it is reachable from other machines and "
                "nothing would protect it. Use a loopback address (tcp://127.0.0.1:PORT), or "
                "give --curve-dir with server.key_secret and clients/*.key (pyzmq's zmq.auth).")
        import zmq.auth

        secret = curve_dir / "server.key_secret"
        if not secret.is_file():
            raise DaemonStartError(f"no CURVE server key at {secret}")
        public, private = zmq.auth.load_certificate(str(secret))
        self._start_authenticator().configure_curve(domain="*",
                                                     location=str(curve_dir / "clients"))
        self.router.curve_secretkey = private
        self.router.curve_publickey = public
        self.router.curve_server = True

    def _start_authenticator(self) -> Any:
        from zmq.auth.thread import ThreadAuthenticator

        self._authenticator = ThreadAuthenticator(self.context, log=log)
        self._authenticator.start()
        return self._authenticator

    def close(self) -> None:
        """Cancel every job (its owner gets CANCELLED with reason ``shutdown``), then stop."""
        self.queue.close()
        for job in list(self.jobs.values()):
            self._cancel_job(job, SHUTDOWN)
        for worker in self.workers:
            worker.join(timeout=30)
        self._drain(self.events, self._on_event)
        self._flush()
        if self.bridge_port is not None:
            self.bridge_port.close()
        remove_connection_file(self.config)
        if self._authenticator is not None:
            self._authenticator.stop()
        if self.monitor is not None:
            self.router.disable_monitor()
            self.monitor.close(linger=0)
        self.router.close(linger=500)  # the CANCELLED messages above get out
        self.events.close(linger=0)
        self.context.term()
        self._lock.release()
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
        poller.register(self.monitor, zmq.POLLIN)
        while not self.stopping:
            ready = dict(poller.poll(100))
            # Disconnects first: a descriptor in a later message may already be reused.
            if self.monitor in ready:
                self._drain(self.monitor, self._on_disconnect)
            if self.events in ready:
                self._drain(self.events, self._on_event)
            if self.router in ready:
                self._drain(self.router, self._on_message)
            if self._undelivered:
                undelivered, self._undelivered = self._undelivered, []
                for identity, frames in undelivered:
                    self._send_frames(identity, frames, final=True)
            if ready:
                self.last_active = time.monotonic()
            self._exit_when_idle()

    def _exit_when_idle(self) -> None:
        """A daemon that an editor started exits after ``idle_exit`` seconds with no job and no
        message, so it does not hold its memory long after the editor closed. Finished results
        stay stored: the next daemon serves them."""
        idle = self.config.idle_exit
        if idle and not self.jobs and time.monotonic() - self.last_active > idle:
            log.info("idle for %g s: exiting (--idle-exit)", idle)
            self.stopping = True

    @staticmethod
    def _drain(sock: zmq.Socket, handle: Any) -> None:
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            handle(frames)

    def _send(self, identity: bytes, header: dict[str, Any], frames: list[Any] = ()) -> None:
        final = header["type"] in (P.RESULT, P.CANCELLED, P.ERROR) and "rid" not in header
        self._send_frames(identity, [P.pack(header), *frames], final)

    def _send_frames(self, identity: bytes, frames: list[Any], final: bool) -> None:
        try:
            self.router.send_multipart([identity, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # its connection is gone (results stay stored)
                self._client_gone(identity)
            elif exc.errno == zmq.EAGAIN and final:  # a client busy for long: its pipe is full
                self._undelivered.append((identity, frames))
            else:  # a PROGRESS to a client that is not reading: the next one will do
                log.debug("could not send to a client: %s", exc)

    def _flush(self) -> None:
        later, self._later = self._later, []
        for identity, header in later:
            self._send(identity, header)

    # -- client messages ---------------------------------------------------------------------

    def _on_message(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        if len(frames) > 1:
            closed = self.peers.seen(identity, _source_fd(frames[1]))
            if closed is not None:
                self._client_gone(closed)
        rid = None
        try:
            if len(frames) < 2:
                raise P.ProtocolError(P.E_BAD_MESSAGE, "a message needs a header frame")
            rid = P.read_rid(frames[1].buffer)
            header = P.unpack(frames[1].bytes)
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
        self._flush()

    def _hello(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        version = header.get("protocol")
        if version != P.PROTOCOL_VERSION:
            raise P.ProtocolError(P.E_VERSION, f"this daemon speaks protocol "
                                  f"{P.PROTOCOL_VERSION}, the client speaks {version!r}: update "
                                  "the plug-in or the daemon so that both are the same version")
        return {"type": P.WELCOME, "protocol": P.PROTOCOL_VERSION, "version": __version__,
                "devices": [str(d) for d, _, _ in self.models],
                "model": self._model(),
                "limits": {"max_pixels": self.config.max_pixels, "max_memory": self.memory,
                           "max_output_pixels": self.config.max_output_pixels,
                           "max_size": MAX_SIZE,
                           "max_queue": self.config.max_queue,
                           "max_header_bytes": P.MAX_HEADER_BYTES},
                "heartbeat": HEARTBEAT_INTERVAL, "params": RenderParams().to_dict(),
                "schema": schema()}, []

    def _model(self) -> dict[str, Any]:
        info = self.info
        return {"weights": info.weights, "arch": info.arch, "label": info.label,
                "pretrained": info.pretrained, "classes": info.classes}

    def _submit(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        if self.stopping:
            raise P.ProtocolError(P.E_SHUTTING_DOWN, "the daemon is shutting down")
        known = {"type", "rid", "job", "task", "params", "image", "mask", "see_mask", "output",
                 "detach", "preview_every", "preview_size"}
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
        task = header.get("task", P.RENDER)
        if task not in P.TASKS:
            raise P.ProtocolError(P.E_BAD_MESSAGE, f"'task' must be one of {', '.join(P.TASKS)}")
        params = self._params(header)
        needed = 1 + sum(header.get(name) is not None for name in P.MASKS)
        if len(frames) != 2 + needed:
            raise P.ProtocolError(P.E_BAD_IMAGE, f"SUBMIT needs {needed} pixel frame(s) after "
                                  f"the header, got {len(frames) - 2}")
        image = header.get("image")
        pixels.check_frame(image, frames[2].buffer, self.config.max_pixels)
        width, height = image["width"], image["height"]
        output = None
        if header.get("output") is not None:
            output = P.check_size(header["output"], self.config.max_output_pixels, "output")
        # The masks follow the image frame, in P.MASKS order, each of the result's size.
        extra = iter(frames[3:])
        masks = {name: next(extra) for name in P.MASKS if header.get(name) is not None}
        for name, frame in masks.items():
            meta = header[name]
            pixels.check_frame(meta, frame.buffer, self.config.max_output_pixels, name)
            if meta["channels"] != 1 or (meta["width"], meta["height"]) != (output or (width,
                                                                                      height)):
                raise P.ProtocolError(P.E_BAD_IMAGE, f"the {name} must have 1 channel and the "
                                      f"{'output' if output else 'image'}'s width and height")
        if "see_mask" in masks and not params.see:
            raise P.ProtocolError(P.E_BAD_PARAMS, "a steering mask (see_mask) needs classes "
                                  "to steer towards (params.see)")
        if params.init == "image":
            raise P.ProtocolError(P.E_BAD_PARAMS, "init 'image' is not available through the "
                                  "daemon: use 'random' or 'content'")
        if task == P.RENDER:
            self._check_render(width, height, params)
        job = Job(owner=identity, client_job=header.get("job"), params=params,
                  frame=frames[2], meta=image, output=output,
                  mask_frame=masks.get("mask"), mask_meta=header.get("mask"),
                  see_mask_frame=masks.get("see_mask"), see_mask_meta=header.get("see_mask"),
                  task=task, detached=detach,
                  preview_every=preview_every, preview_size=preview_size,
                  number=next(self._numbers), key=_client_key(frames[1]))
        position = len(self.jobs)  # queued or running, accepted before it
        try:
            self.queue.put(job)
        except QueueFull:
            raise P.ProtocolError(P.E_BUSY, f"the queue is full ({self.config.max_queue} jobs); "
                                  "try again when some have finished") from None
        self.jobs[job.id] = job
        log.info("job %s queued at %d (%dx%d%s)", job.id, position, width, height,
                 ", detached" if detach else "")
        return {"type": P.ACCEPTED, "job": job.id, "client_job": job.client_job,
                "position": position}, []

    def _check_render(self, width: int, height: int, params: RenderParams) -> None:
        """Refuse now what the worker would refuse later: too small a result, too much memory."""
        try:
            plan_scales(*fit_size(width, height, params.size), params)
        except ParamError as exc:
            raise P.ProtocolError(P.E_BAD_PARAMS, str(exc)) from None
        try:
            check_memory(width, height, params, self.memory,
                         f"the daemon's {self.models[0][0]}")
        except RenderTooLarge as exc:
            raise P.ProtocolError(P.E_OUT_OF_MEMORY, str(exc)) from None

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
            finished = self.finished.get(job_id)
            if finished is None:
                raise P.ProtocolError(P.E_UNKNOWN_JOB, f"no job {job_id[:40]!r} is queued or "
                                      "running")
            self._check_owner(finished[1], frames, job_id)
            return {"type": P.CANCELLED, "job": job_id, "state": finished[0]}, []
        self._check_owner(job.key, frames, job_id)
        self._cancel_job(job, REQUEST)
        state = CANCELLED if job.state == CANCELLED else "cancelling"
        return {"type": P.CANCELLED, "job": job_id, "state": state}, []

    def _cancel_job(self, job: Job, reason: str) -> None:
        """Stop a job. Its owner gets CANCELLED with ``reason`` once it has stopped: at once
        for a queued job (after the reply to the request being handled), from the worker for a
        running one."""
        if job.cancel.is_set():
            return
        job.cancel_reason = reason
        job.cancel.set()
        if job.state == QUEUED and self.queue.remove(job):
            job.state = CANCELLED
            log.info("job %s cancelled while queued (%s)", job.id, reason)
            self._finish(job)
            self._later.append((job.owner, {"type": P.CANCELLED, "job": job.id,
                                            "reason": reason}))
        else:
            log.info("job %s: cancelling (%s)", job.id, reason)

    def _check_owner(self, owner_key: str | None, frames: list, job_id: str) -> None:
        """Over CURVE a client may touch only the jobs it submitted with its own key."""
        key = _client_key(frames[1])
        if key is not None and owner_key != key:
            raise P.ProtocolError(P.E_FORBIDDEN, f"job {job_id} was submitted with another "
                                  "client key")

    def _status(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        key = _client_key(frames[1])

        def mine(job: Job) -> bool:
            return key is None or job.key == key

        memory: dict[str, Any] = {"rss": _rss_bytes()}
        for device, _, _ in self.models:
            if device.type == "cuda":
                memory[str(device)] = torch.cuda.memory_allocated(device)
        return {"type": P.STATUS_REPLY, "version": __version__,
                "uptime": round(time.monotonic() - self.started, 3),
                "devices": [str(d) for d, _, _ in self.models], "model": self._model(),
                "running": [j.summary() for j in self.jobs.values()
                            if j.state == RUNNING and mine(j)],
                "queue": [j.summary() for j in self.queue.snapshot() if mine(j)],
                "memory": memory, "stored": self.store.stats()}, []

    def _fetch(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        job_id = self._job_id(header)
        stored = self.store.get(job_id)
        if stored is not None:
            result, raw, owner_key = stored
            self._check_owner(owner_key, frames, job_id)
            return result, [raw]
        job = self.jobs.get(job_id)
        state, owner_key = ((job.state, job.key) if job is not None
                            else self.finished.get(job_id, (None, None)))
        if state is None:
            raise P.ProtocolError(P.E_UNKNOWN_JOB, f"no result for job {job_id[:40]!r}: "
                                  "unknown id, or acknowledged, or expired")
        self._check_owner(owner_key, frames, job_id)
        if state in (QUEUED, RUNNING):
            raise P.ProtocolError(P.E_NOT_FINISHED, f"job {job_id} is {state} "
                                  f"({job.iteration}/{job.total} iterations)")
        raise P.ProtocolError(P.E_UNKNOWN_JOB, f"job {job_id} has no stored result: it was "
                              f"{state}, or its result was already acknowledged")

    def _ack(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        job_id = self._job_id(header)
        stored = self.store.get(job_id)
        if stored is not None:
            self._check_owner(stored[2], frames, job_id)
        if not self.store.delete(job_id):
            raise P.ProtocolError(P.E_UNKNOWN_JOB, f"no stored result for job {job_id[:40]!r}")
        return {"type": P.ACKED, "job": job_id}, []

    def _classes(self, identity: bytes, header: dict, frames: list) -> tuple[dict, list]:
        """The model's class names and the steering groups it can use (for class pickers)."""
        labels = self.models[0][1].labels
        groups = {f"@{name}": members for name, members in available_groups(labels).items()}
        return {"type": P.CLASSES_REPLY, "classes": list(labels), "groups": groups,
                "model": self._model()}, []

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
        if header["type"] == P.CANCELLED:
            header["reason"] = job.cancel_reason
        if header["type"] != P.PROGRESS:
            self._finish(job)
        if header["type"] != P.PROGRESS or not job.cancel.is_set():
            self._send(job.owner, header, frames[2:])

    def _finish(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        self.finished[job.id] = (job.state, job.key)
        while len(self.finished) > _FINISHED_MEMORY:
            self.finished.popitem(last=False)

    def _on_disconnect(self, frames: list[zmq.Frame]) -> None:
        event = zmq.utils.monitor.parse_monitor_message([f.bytes for f in frames])
        identity = self.peers.disconnected(int(event["value"]))
        if identity is not None:
            self._client_gone(identity)

    def _client_gone(self, identity: bytes) -> None:
        """The client's connection closed: cancel its jobs, except detached ones."""
        for job in list(self.jobs.values()):
            if job.owner == identity and not job.detached:
                self._cancel_job(job, CLIENT_GONE)
        self._later = [(who, header) for who, header in self._later if who != identity]


def _source_fd(frame: zmq.Frame) -> int | None:
    """The descriptor of the connection a message came in on (None on inproc)."""
    try:
        fd = frame.get(zmq.SRCFD)
    except zmq.ZMQError:
        return None
    return fd if fd >= 0 else None


def _client_key(frame: zmq.Frame) -> str | None:
    """The CURVE public key (Z85) the message was sent with; None on ipc, inproc and PLAIN
    endpoints, where the user who owns the socket (or knows its secret) owns every job."""
    try:
        key = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return key if key and key not in ("anonymous", P.PLAIN_USER) else None


def _is_loopback_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def run_daemon(config: DaemonConfig, spec: ModelSpec, devices: list[str],
               lock: BaseFileLock) -> None:
    """Load one model per device, then serve until stopped. The caller has taken the
    endpoint's ``lock`` and written the connection file as ``starting``."""
    from neural_mirage.engine import keep_freed_memory, pick_device
    from neural_mirage.weights import load_model

    keep_freed_memory()
    try:
        models = []
        for name in devices:
            device = pick_device(name)
            model, info = load_model(spec, device)
            models.append((device, model, info))
        if not models[0][2].pretrained:
            log.warning("serving %s: results show the method, not a real mirage",
                        models[0][2].label)
        speed = measure_speed(models[0][1])
        log.info("%s: %.2f s per iteration at 512x512", models[0][0],
                 speed.iteration_seconds(512 * 512))
    except BaseException:
        remove_connection_file(config)
        lock.release()
        raise
    daemon = Daemon(config, models, speed, lock)
    try:
        daemon.start()
        daemon.serve()
    finally:
        daemon.close()
