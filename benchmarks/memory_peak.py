"""Peak memory (RSS) of in-process L-BFGS renders, plain, with checkpointed conv blocks and block
by block, against the engine's estimate.

Run:  .venv/bin/python benchmarks/memory_peak.py [--sizes 1024x1024,2048x2048,4096x3072]
          [--modes plain,checkpoint,blocks] [--budget 2.5G] [--iterations 3]

Each size and mode runs in a fresh process, so the peak is its own: the plain pass; the conv
blocks checkpointed (what the engine does when a scale would not fit its memory budget plainly);
and block by block within ``--budget`` (what it does when even that would not fit; the block side
is the largest that fits the budget). One scale, the engine's defaults (automatic L-BFGS history,
glibc settings of :func:`keep_freed_memory`). It prints the process's resident memory before the
render (torch and the model), the peak during it, the rise per pixel, the engine's estimate of the
rise, and the time per iteration, with each mode's ratio to the plain pass (same run). A run whose
estimate exceeds the memory available now is reported and skipped. Seeded random weights: memory
does not depend on the values.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import time

import torch

from neural_mirage.cli import byte_size
from neural_mirage.engine import RenderParams, keep_freed_memory, render
from neural_mirage.engine.device import available_memory
from neural_mirage.engine.render import Scale, mode_memory, scale_memory, scale_mode
from neural_mirage.weights import ModelSpec, load_model


def memory_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, in bytes."""
    with open("/proc/self/status") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f
                if line.startswith(("VmRSS", "VmHWM"))}


def budget_for(mode: str, params: RenderParams, scale: Scale, budget: int) -> int | None:
    """The memory budget that makes :func:`render` run ``scale`` in ``mode``."""
    if mode == "plain":
        return None
    if mode == "checkpoint":
        return scale_memory(params, scale, checkpoint=True)
    return budget


def one(width: int, height: int, iterations: int, mode: str, budget: int) -> dict[str, float]:
    """Runs in a child process: one render, its memory and speed."""
    keep_freed_memory()
    model, _ = load_model(ModelSpec("random"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak so far (model loading) no longer counts
    before = memory_status()["VmRSS"]
    content = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    params = RenderParams(size=max(width, height), iterations=iterations, scales=1,
                          early_stop=0.0)
    stamps: list[float] = []
    memory = budget_for(mode, params, Scale(width, height, iterations), budget)
    render(model, content, params, see_top=0, memory_budget=memory,
           on_progress=lambda p: stamps.append(time.perf_counter()))
    peak = memory_status()["VmHWM"]
    steps = [b - a for a, b in itertools.pairwise(stamps[1:])]  # the first one warms up
    return {"before": before, "peak": peak, "seconds": min(steps, default=math.nan)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024x1024,2048x2048,4096x3072")
    parser.add_argument("--modes", default="plain,checkpoint,blocks")
    parser.add_argument("--budget", type=byte_size, default=byte_size("2.5G"),
                        help="memory budget of the block-by-block runs")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        width, height = (int(v) for v in args.child[0].split("x"))
        print(json.dumps(one(width, height, args.iterations, args.child[1],
                             int(args.child[2]))))
        return
    print("seeded random weights (memory does not depend on the values); RSS of one render")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        params = RenderParams(size=max(width, height), iterations=args.iterations, scales=1)
        scale = Scale(width, height, args.iterations)
        runs = {}
        for mode in args.modes.split(","):
            memory = budget_for(mode, params, scale, args.budget)
            kind, side = scale_mode(params, scale, memory)
            estimate = mode_memory(params, scale, (kind, side))
            label = f"blocks of {side} px" if kind == "blocks" else kind
            if estimate > available_memory(torch.device("cpu")):
                print(f"{size} {label}: estimated {estimate / 1e9:.1f} GB, more than is "
                      "available here: skipped", flush=True)
                continue
            out = subprocess.run([sys.executable, __file__, "--child", size, mode,
                                  str(args.budget), "--iterations", str(args.iterations)],
                                 capture_output=True, text=True, check=True)
            run = runs[mode] = json.loads(out.stdout)
            pixels = width * height
            ratio = (f", {run['seconds'] / runs['plain']['seconds']:.2f}x the plain pass's time"
                     if "plain" in runs and mode != "plain" else "")
            print(f"{size} {label}: {run['before'] / 1e9:.2f} GB before, peak "
                  f"{run['peak'] / 1e9:.2f} GB, rise {(run['peak'] - run['before']) / pixels:.0f}"
                  f" B/px (estimate {estimate / pixels:.0f} B/px), {run['seconds']:.2f} s per "
                  f"iteration{ratio}", flush=True)


if __name__ == "__main__":
    main()
