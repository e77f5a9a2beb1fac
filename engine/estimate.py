"""How long a render will take on a device, before it starts.

An artist picks a render size without knowing what it costs: on a 2-core CPU a 512 px render takes
minutes and a 4000 px one days, on a GPU seconds. The daemon measures its device once
(:func:`measure_speed`) and answers from it how long a size takes and which size fits a time
budget, so the plug-ins can offer a working size by default and warn before a long render.

The model: an iteration at ``p`` pixels takes ``overhead + per_pixel * p`` seconds (the conv
layers dominate and scale with the pixels; the fc layers and the optimiser's bookkeeping add a
little per iteration); a render is the sum over its planned scales. Early stops make real renders
shorter, so the estimate is an upper bound in the common case.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .params import MAX_SIZE, RenderParams
from .render import Progress, fit_size, plan_scales, render
from .vgg import MIN_SIDE, MirageVGG

#: The two sizes (square) timed by :func:`measure_speed`: small, so the daemon starts quickly,
#: and far enough apart to separate the per-pixel cost from the per-iteration one.
_PROBE_SIDES = (64, 160)
_PROBE_ITERATIONS = 3


@dataclass(frozen=True)
class Speed:
    """Seconds per iteration on one device: ``overhead + per_pixel * pixels``."""

    overhead: float
    per_pixel: float

    def iteration_seconds(self, pixels: int) -> float:
        return self.overhead + self.per_pixel * pixels


def measure_speed(model: MirageVGG, params: RenderParams | None = None) -> Speed:
    """Time a few iterations of a real render at two small sizes (about 1 s on a 2-core CPU)."""
    params = params or RenderParams()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for side in _PROBE_SIDES:
        image = torch.rand(3, side, side, generator=generator).to(device)
        stamps: list[float] = []

        def record(progress: Progress, stamps: list[float] = stamps) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())

        probe = RenderParams(**{**params.to_dict(), "size": side, "scales": 1, "see": {},
                                "iterations": _PROBE_ITERATIONS, "early_stop": 0.0,
                                "preview_every": 0})
        render(model, image, probe, on_progress=record, see_top=0)
        # stamps[0] is iteration 0 (before the first step); the first step warms caches up.
        seconds.append((stamps[-1] - stamps[1]) / (len(stamps) - 2))
    small, large = (side * side for side in _PROBE_SIDES)
    per_pixel = max(0.0, (seconds[1] - seconds[0]) / (large - small))
    overhead = max(0.0, seconds[0] - per_pixel * small)
    return Speed(overhead, per_pixel or seconds[1] / large)


def render_seconds(width: int, height: int, params: RenderParams, speed: Speed) -> float:
    """Estimated seconds to render a ``width`` x ``height`` picture at ``params.size``.

    Besides its iterations, each scale computes its targets, and the end classifies the input
    and the result: about one iteration's time each.
    """
    scales = plan_scales(*fit_size(width, height, params.size), params)
    final = speed.iteration_seconds(scales[-1].width * scales[-1].height)
    return final + sum((s.iterations + 1) * speed.iteration_seconds(s.width * s.height)
                       for s in scales)


def size_within(width: int, height: int, params: RenderParams, speed: Speed,
                budget: float) -> int:
    """The largest render size (longest side, at most the picture's own) whose estimate stays
    within ``budget`` seconds; never below what VGG can take (32 px on the shortest side)."""
    def fits(size: int) -> bool:
        trial = RenderParams(**{**params.to_dict(), "size": size})
        return render_seconds(width, height, trial, speed) <= budget

    longest = min(max(width, height), MAX_SIZE)
    low = min(longest, math.ceil(MIN_SIDE * max(width, height) / min(width, height)))
    if fits(longest):
        return longest
    high = longest  # invariant: high does not fit; low fits or is the smallest allowed
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low
