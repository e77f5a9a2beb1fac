"""Peak memory (RSS) of an in-process L-BFGS render, the way the CLI runs it.

Run:  .venv/bin/python benchmarks/memory_peak.py [--size 1024] [--iterations 25]

Renders a square image of ``--size`` px at one scale with the engine's defaults (automatic L-BFGS
history, glibc settings of :func:`keep_freed_memory`) for enough iterations to fill the history,
then prints the process's peak resident set size (target: <= 4 GB at 1024 px on the CPU).
Seeded random weights: memory does not depend on the values.
"""

from __future__ import annotations

import argparse
import resource

import torch

from neural_mirage.engine import RenderParams, keep_freed_memory, render
from neural_mirage.engine.render import Scale, lbfgs_history_size
from neural_mirage.install.weights import ModelSpec, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=25)
    args = parser.parse_args()
    keep_freed_memory()
    model, info = load_model(ModelSpec("random"))
    content = torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    params = RenderParams(size=args.size, iterations=args.iterations, scales=1, early_stop=0.0)
    history = lbfgs_history_size(params, Scale(args.size, args.size, args.iterations))
    result = render(model, content, params, see_top=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(f"{info.label}; {args.size}x{args.size}, {result.iterations} L-BFGS iterations, "
          f"history {history}: peak RSS {peak / 1e9:.2f} GB (target <= 4 GB), "
          f"{result.elapsed / result.iterations:.1f} s per iteration")


if __name__ == "__main__":
    main()
