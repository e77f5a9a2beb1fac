"""Time to a finished image: the default schedule against plain single-scale L-BFGS, same run.

Run:  .venv/bin/python benchmarks/time_to_result.py [--size 512] [--iterations 1000]

Baseline: the engine at one scale, no early stop, ``--iterations`` L-BFGS iterations (what
neural-style does with its default 1000). Default: the engine's default schedule (coarse-to-fine
scales chosen from the size, 500 iterations at the final size, early stop). Both render the bundled
example with the same parameters otherwise; the loss compared is the loss at the final size, which
both evaluate with the same targets.

Printed: the baseline's wall time and final loss, and when the default schedule first reached that
loss at the final size (it is stopped there), as a ratio of the baseline's time; if it never does,
its own final loss and time. Seeded random weights (no pretrained weights here): the loss landscape
of trained weights differs, so read the ratios as this schedule on this model.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neural_mirage.engine import (
    Progress,
    RenderCancelled,
    RenderParams,
    keep_freed_memory,
    plan_scales,
    render,
)
from neural_mirage.engine.render import fit_size
from neural_mirage.weights import ModelSpec, load_model

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "village.png"


def trace(model: torch.nn.Module, content: torch.Tensor, params: RenderParams,
          stop_at: float = 0.0) -> list[tuple[float, float]]:
    """(seconds since start, loss) after every iteration at the final size, until the loss is
    at most ``stop_at``."""
    points: list[tuple[float, float]] = []
    started = time.perf_counter()

    def on_progress(p: Progress) -> None:
        if p.scale == p.scales and p.loss is not None:
            points.append((time.perf_counter() - started, p.loss))

    with contextlib.suppress(RenderCancelled):  # stopped on reaching stop_at
        render(model, content, params, on_progress=on_progress, see_top=0,
               should_cancel=lambda: bool(points) and points[-1][1] <= stop_at)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()
    keep_freed_memory()
    model, info = load_model(ModelSpec("random"))
    pixels = np.asarray(Image.open(EXAMPLE).convert("RGB"), np.float32) / 255
    content = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    base = trace(model, content, RenderParams(size=args.size, iterations=args.iterations,
                                              scales=1, early_stop=0.0))
    t_base, l_base = base[-1]
    default = RenderParams(size=args.size)
    ours = trace(model, content, default, stop_at=l_base)
    t_ours, l_ours = ours[-1]
    print(f"model: {info.label}; size {args.size}; example {EXAMPLE.name}")
    print(f"baseline: 1 scale x {args.iterations} L-BFGS iterations, {t_base:.1f} s, final loss "
          f"{l_base:.4g}")
    scales = plan_scales(*fit_size(content.shape[2], content.shape[1], args.size), default)
    what = (f"default schedule ({len(scales)} scales, {default.iterations} iterations at the "
            "final size, early stop)")
    if l_ours <= l_base:
        print(f"{what}: reached that loss after {t_ours:.1f} s ({len(ours)} iterations at the "
              f"final size): {t_ours / t_base:.2f}x the baseline's time (target <= 0.25)")
    else:
        print(f"{what}: stopped at loss {l_ours:.4g}, {100 * (l_ours / l_base - 1):.1f} % above "
              f"the baseline's, after {t_ours:.1f} s ({t_ours / t_base:.2f}x)")

if __name__ == "__main__":
    main()
