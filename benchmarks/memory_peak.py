"""Peak memory (RSS) of in-process L-BFGS renders, plain and with checkpointed conv blocks,
against the engine's estimate.

Run:  .venv/bin/python benchmarks/memory_peak.py [--sizes 512,1024] [--iterations 6]

Each size runs twice, each time in a fresh process so the peak is its own: the plain pass, then
with the conv blocks checkpointed (what the engine does when a scale would not fit its memory
budget). One scale, the engine's defaults (automatic L-BFGS history, glibc settings of
:func:`keep_freed_memory`). It prints the process's resident memory before the render (torch and
the model), the peak during it, the rise per pixel, the engine's estimate of that rise, and the
time per iteration of the checkpointed pass as a ratio of the plain one (same run). A size whose
estimate exceeds the memory available now is reported and skipped. Seeded random weights:
memory does not depend on the values.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time

import torch

from neural_mirage.engine import RenderParams, keep_freed_memory, render
from neural_mirage.engine.device import available_memory
from neural_mirage.engine.estimate import peak_bytes
from neural_mirage.install.weights import ModelSpec, load_model


def memory_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, in bytes."""
    with open("/proc/self/status") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f
                if line.startswith(("VmRSS", "VmHWM"))}


def one(size: int, iterations: int, checkpoint: bool) -> dict[str, float]:
    """Runs in a child process: one render, its memory and speed."""
    keep_freed_memory()
    model, _ = load_model(ModelSpec("random"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak so far (model loading) no longer counts
    before = memory_status()["VmRSS"]
    content = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
    params = RenderParams(size=size, iterations=iterations, scales=1, early_stop=0.0)
    stamps: list[float] = []
    render(model, content, params, see_top=0, memory_budget=1 if checkpoint else None,
           on_progress=lambda p: stamps.append(time.perf_counter()))
    peak = memory_status()["VmHWM"]
    return {"before": before, "peak": peak,
            "seconds": min(b - a for a, b in itertools.pairwise(stamps[1:]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(int(args.child[0]), args.iterations, args.child[1] == "1")))
        return
    print("seeded random weights (memory does not depend on the values); RSS of one render")
    for size in map(int, args.sizes.split(",")):
        params = RenderParams(size=size, iterations=args.iterations, scales=1)
        runs = {}
        for checkpoint in (False, True):
            estimate = peak_bytes(size, size, params, budget=1 if checkpoint else None)
            if estimate > available_memory(torch.device("cpu")):
                print(f"{size}x{size} {'checkpointed' if checkpoint else 'plain'}: estimated "
                      f"{estimate / 1e9:.1f} GB, more than is available here: skipped")
                continue
            out = subprocess.run([sys.executable, __file__, "--child", str(size),
                                  str(int(checkpoint)), "--iterations", str(args.iterations)],
                                 capture_output=True, text=True, check=True)
            run = runs[checkpoint] = json.loads(out.stdout)
            rise = run["peak"] - run["before"]
            print(f"{size}x{size} {'checkpointed' if checkpoint else 'plain':>12}: "
                  f"{run['before'] / 1e9:.2f} GB before, peak {run['peak'] / 1e9:.2f} GB, "
                  f"rise {rise / size**2:.0f} B/px (estimate {estimate / size**2:.0f} B/px), "
                  f"{run['seconds']:.2f} s per iteration")
        if len(runs) == 2:
            print(f"{size}x{size}: checkpointed peak {runs[True]['peak'] / runs[False]['peak']:.2f}"
                  f"x, time per iteration {runs[True]['seconds'] / runs[False]['seconds']:.2f}x "
                  "the plain pass")


if __name__ == "__main__":
    main()
