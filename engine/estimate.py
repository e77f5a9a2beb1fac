"""How long a render will take on a device, and how much memory it needs, before it starts.

An artist picks a render size without knowing what it costs: on a 2-core CPU a 512 px render takes
minutes and a 4000 px one days, on a GPU seconds. The daemon measures its device once
(:func:`measure_speed`) and answers from it how long a size takes and which size fits a time
budget, so the plug-ins can offer a working size by default and warn before a long render.

The model: an iteration at ``p`` pixels takes ``overhead + per_pixel * p`` seconds (the conv
layers dominate and scale with the pixels; the fc layers and the optimiser's bookkeeping add a
little per iteration); a render is the sum over its planned scales. Early stops make real renders
shorter, so the estimate is an upper bound in the common case.

Memory is estimated the same way, so a render that would not fit is refused before it starts
with the largest size that fits, instead of failing (or swapping) halfway.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .params import MAX_SIZE, RenderParams
from .render import Progress, fit_size, mode_memory, plan_scales, render, scale_mode
from .vgg import MIN_SIDE, MirageVGG

#: The two sizes (square) timed by :func:`measure_speed`: small, so the daemon starts quickly,
#: and far enough apart to separate the per-pixel cost from the per-iteration one.
_PROBE_SIDES = (64, 160)
_PROBE_ITERATIONS = 4


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

        probe = replace(params, size=side, scales=1, see={}, iterations=_PROBE_ITERATIONS,
                        early_stop=0.0)
        render(model, image, probe, on_progress=record, see_top=0)
        # stamps[0] is iteration 0 (before the first step); the first step warms caches up.
        # The fastest step is the device's speed: other programs only ever slow one down.
        seconds.append(min(b - a for a, b in itertools.pairwise(stamps[1:])))
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


def peak_bytes(width: int, height: int, params: RenderParams, budget: int | None = None) -> int:
    """Estimated working memory of a render at ``params.size`` (beyond the resident model): its
    largest scale's, run as :func:`render` runs it within ``budget`` (plain, checkpointed or
    block by block)."""
    return max(mode_memory(params, s, scale_mode(params, s, budget))
               for s in plan_scales(*fit_size(width, height, params.size), params))


class RenderTooLarge(ValueError):
    """A render whose estimated memory exceeds the budget; the message names the largest size
    that fits."""


def check_memory(width: int, height: int, params: RenderParams, budget: int,
                 where: str) -> None:
    """Refuse before starting a render that would not fit in ``budget`` bytes on ``where`` (a
    device's name)."""
    need = peak_bytes(width, height, params, budget)
    if need <= budget:
        return
    largest = size_in_memory(width, height, params, budget)
    fits = peak_bytes(width, height, replace(params, size=largest), budget)
    advice = (f"Choose a size of at most {largest} px (the largest that fits)" if fits <= budget
              else "Free some memory (even the smallest size does not fit)")
    raise RenderTooLarge(f"{advice}: a render at {params.size} px needs about "
                         f"{need / 1e9:.1f} GB of memory and {where} has {budget / 1e9:.1f} GB "
                         f"for it.")


def size_in_memory(width: int, height: int, params: RenderParams, budget: int) -> int:
    """The largest render size whose estimated memory stays within ``budget`` bytes."""
    return largest_size(width, height, params, MAX_SIZE,
                        lambda trial: peak_bytes(width, height, trial, budget) <= budget)


def size_within(width: int, height: int, params: RenderParams, speed: Speed,
                budget: float) -> int:
    """The largest render size (longest side, at most the picture's own) whose estimate stays
    within ``budget`` seconds."""
    return largest_size(width, height, params, max(width, height),
                        lambda trial: render_seconds(width, height, trial, speed) <= budget)


def largest_size(width: int, height: int, params: RenderParams, longest: int,
                 fits: Callable[[RenderParams], bool]) -> int:
    """The largest size up to ``longest`` for which ``fits(params with that size)``; never
    below what VGG can take (32 px on the shortest side). ``fits`` must grow false with size."""
    def trial(size: int) -> bool:
        return fits(replace(params, size=size))

    longest = min(longest, MAX_SIZE)
    low = min(longest, math.ceil(MIN_SIDE * max(width, height) / min(width, height)))
    if trial(longest):
        return longest
    high = longest  # invariant: high does not fit; low fits or is the smallest allowed
    while high - low > 1:
        middle = (low + high) // 2
        if trial(middle):
            low = middle
        else:
            high = middle
    return low
