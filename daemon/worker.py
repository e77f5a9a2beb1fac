"""A device worker: one thread, one resident model, jobs one after another.

The worker never touches the client socket (ZeroMQ sockets are not thread-safe). It reports
through its own inproc PUSH socket to the daemon's I/O thread, which routes each event to the job's
owner. Results are written to the store *before* they are reported, so none is lost.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import numpy as np
import torch
import zmq

from neural_mirage.client.protocol import CANCELLED as CANCELLED_MSG
from neural_mirage.client.protocol import (
    E_BAD_PARAMS,
    E_OUT_OF_MEMORY,
    E_RENDER_FAILED,
    PROGRESS,
    RESULT,
    SEES,
    ProtocolError,
    error,
    pack,
)
from neural_mirage.engine import (
    MirageVGG,
    ParamError,
    Progress,
    RenderCancelled,
    RenderDiverged,
    RenderResult,
    render,
)
from neural_mirage.engine.head import where_seen
from neural_mirage.engine.render import fit_size, resize
from neural_mirage.engine.seeing import top_of
from neural_mirage.sees_map import class_shares, draw
from neural_mirage.weights import ModelInfo

from . import pixels
from .jobs import CANCELLED, DONE, FAILED, RUNNING, Job, JobQueue
from .results import ResultStore

log = logging.getLogger("neural_mirage.daemon")
EVENTS_ENDPOINT = "inproc://neural-mirage-events"
#: Order in which jobs start, over all workers (reported in RESULT as "started").
_starts = itertools.count(1)


class Worker(threading.Thread):
    def __init__(self, context: zmq.Context, queue: JobQueue, store: ResultStore,
                 model: MirageVGG, info: ModelInfo, device: torch.device,
                 memory_budget: int) -> None:
        super().__init__(name=f"worker-{device}", daemon=True)
        self.context = context
        self.queue = queue
        self.store = store
        self.model = model
        self.info = info
        self.device = device
        self.memory_budget = memory_budget

    def run(self) -> None:
        self._events = self.context.socket(zmq.PUSH)
        self._events.setsockopt(zmq.LINGER, 0)
        self._events.connect(EVENTS_ENDPOINT)
        try:
            while (job := self.queue.get()) is not None:
                if (answer := self._run(job)) is not None:
                    self._send(job, *answer)
        finally:
            self._events.close()

    def _send(self, job: Job, header: dict[str, Any], frames: list[bytes]) -> None:
        # copy=False: a 64 MP result is not copied again on its way to the I/O thread.
        self._events.send_multipart([job.id.encode(), pack(header), *frames], copy=False)

    def _run(self, job: Job) -> tuple[dict[str, Any], list[bytes]] | None:
        """Run a job; the answer to send, or None where the RESULT went out already."""
        if job.cancel.is_set():
            job.state = CANCELLED
            return {"type": CANCELLED_MSG, "job": job.id}, []
        job.state = RUNNING
        job.device = str(self.device)
        started = next(_starts)
        log.info("job %s: %dx%d on %s", job.id, job.meta["width"], job.meta["height"],
                 self.device)

        def on_progress(p: Progress) -> None:
            job.iteration, job.total = p.iteration, p.total
            header = {"type": PROGRESS, "job": job.id, "iteration": p.iteration,
                      "total": p.total, "scale": p.scale, "scales": p.scales,
                      "scale_iteration": p.scale_iteration,
                      "scale_iterations": p.scale_iterations,
                      "width": p.width, "height": p.height, "loss": p.loss,
                      "losses": p.losses, "elapsed": p.elapsed, "eta": p.eta}
            frames = []
            if p.preview is not None:
                rgb = p.preview.permute(1, 2, 0).numpy()
                header["preview"], raw = pixels.preview_frame(rgb, job.preview_size)
                frames.append(raw)
            self._send(job, header, frames)

        def deliver(result: RenderResult, extra: dict[str, Any] | None = None) -> None:
            header, raw = self._result(job, result, alpha, mask)
            header.update(extra or {}, started=started)
            self.store.put(job.id, header, raw, job.key)  # stored first: nothing is lost
            job.state = DONE
            self._send(job, header, [raw])
            log.info("job %s: done in %.1f s, %d iterations", job.id, result.elapsed,
                     result.iterations)

        try:
            rgb, alpha = pixels.decode(job.meta, job.frame.buffer)
            mask = None
            if job.mask_frame is not None:
                mask, _ = pixels.decode(job.mask_meta, job.mask_frame.buffer, "mask")
            see_mask = None
            if job.see_mask_frame is not None:
                plane, _ = pixels.decode(job.see_mask_meta, job.see_mask_frame.buffer, "see_mask")
                height, width = rgb.shape[:2]  # it may come at the output's size, as the mask
                see_mask = torch.from_numpy(pixels.resize_plane(plane, width, height))
            job.frame = job.mask_frame = job.see_mask_frame = None  # converted: not needed now
            # (H, W, 3) memory is NCHW's channels_last: the network reads it without a copy.
            content = torch.from_numpy(rgb).permute(2, 0, 1)
            if job.task == SEES:
                deliver(*self._sees(job, rgb, content))
                return None
            render(self.model, content, job.params, on_progress=on_progress,
                   should_cancel=job.cancel.is_set, memory_budget=self.memory_budget,
                   preview_every=job.preview_every, on_result=deliver, see_mask=see_mask)
            return None
        except RenderCancelled:
            job.state = CANCELLED
            log.info("job %s: cancelled at iteration %d", job.id, job.iteration)
            return {"type": CANCELLED_MSG, "job": job.id}, []
        except ParamError as exc:
            return self._failed(job, E_BAD_PARAMS, str(exc))
        except ProtocolError as exc:  # pixels that do not convert (NaN in a float frame)
            return self._failed(job, exc.code, str(exc))
        except (torch.cuda.OutOfMemoryError, MemoryError):
            return self._failed(job, E_OUT_OF_MEMORY, f"out of memory on {self.device}: try a "
                                "smaller size or fewer L-BFGS history entries")
        except RenderDiverged as exc:
            return self._failed(job, E_RENDER_FAILED, str(exc))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            return self._failed(job, E_RENDER_FAILED, f"the render failed: {exc}")
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _sees(self, job: Job, rgb: Any, content: torch.Tensor) -> tuple[RenderResult,
                                                                          dict[str, Any]]:
        """The map of what the net sees where (task ``sees``), drawn at the output's size (or
        the image's), analysed at ``params.size`` (at most the image's own)."""
        started = time.perf_counter()
        height, width = rgb.shape[:2]
        fitted = fit_size(width, height, min(job.params.size, max(width, height)))
        with torch.no_grad():
            image = resize(content[None].to(self.device), *fitted)[0]
            seen = where_seen(self.model, image)
        if job.output is not None and job.output != (width, height):  # sharp labels there
            rgb = resize(content[None], *job.output)[0].permute(1, 2, 0).numpy()
        caption = "what the net sees where" + ("" if self.info.pretrained else
                                               " (RANDOM weights)")
        picture = draw(rgb, seen, self.model.labels, caption)
        drawn = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)
        result = RenderResult(image=drawn, iterations=0, loss=0.0, losses={},
                              elapsed=time.perf_counter() - started, stopped_early=False,
                              seen_input=top_of(seen.pooled, 5, self.model.labels),
                              seen_result=[])
        shares = [s.to_dict() for s in class_shares(seen, self.model.labels)]
        rows, columns = seen.classes.shape
        return result, {"sees": shares, "grid": {"columns": columns, "rows": rows,
                                                 "width": fitted[0], "height": fitted[1]}}

    def _failed(self, job: Job, code: str, message: str) -> tuple[dict[str, Any], list[bytes]]:
        job.state = FAILED
        log.warning("job %s: %s", job.id, message)
        return error(code, message, job=job.id), []

    def _result(self, job: Job, result: Any, alpha: Any, mask: Any) -> tuple[dict[str, Any],
                                                                             bytes]:
        image = result.image
        if job.output is not None:  # scaled here, so the editor inserts it as it is: no
            image = resize(image.unsqueeze(0), *job.output)[0]  # extra undo step, no overshoot
        rgb = image.permute(1, 2, 0).numpy()
        height, width = rgb.shape[:2]
        alpha = None if alpha is None else pixels.resize_plane(alpha, width, height)
        like = dict(job.meta)
        if mask is not None:
            mask = pixels.resize_plane(mask, width, height)
            alpha = mask if alpha is None else alpha * mask
            if like["channels"] == 3:
                like.update(channels=4, order=like["order"] + "A")
        meta, raw = pixels.encode(rgb, alpha, like)
        header = {
            "type": RESULT, "job": job.id, "number": job.number, "image": meta,
            "iterations": result.iterations,
            "loss": result.loss, "elapsed": result.elapsed, "stopped_early": result.stopped_early,
            "seen_input": [vars(s) for s in result.seen_input],
            "seen_result": [vars(s) for s in result.seen_result],
            "model": self.info.label, "pretrained": self.info.pretrained,
        }
        return header, raw
