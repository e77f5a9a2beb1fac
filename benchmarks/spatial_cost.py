"""The spatial fc mode's cost per L-BFGS iteration against the pooled mode's, in the same run.

Run:  .venv/bin/python benchmarks/spatial_cost.py [--size 1024] [--iterations 4] [--repeat 2]

The bundled example at ``--size`` (longest side), one scale, the default layers (fc7 content and
five style layers), seeded random weights (the cost does not depend on the values). Each mode
(``fc_spatial`` 0: pooled, 1: spatial, 0.5: both) renders in turn, ``--repeat`` rounds
interleaved so that a machine that speeds up or slows down affects all alike; the time per
iteration is read from the progress callback between the first and the last iteration (targets
and start-up left out). Target: spatial <= 1.5x pooled at 1024 px. The fc6 convolution reads
every 7x7 window of pool5: (w/32 - 6) x (h/32 - 6) windows of 25,088 inputs each, about a fifth
of a 1024 px forward pass of the conv layers.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

from neural_mirage.convert import to_tensor
from neural_mirage.engine import RenderParams, render
from neural_mirage.images import read_image
from neural_mirage.weights import ModelSpec, load_model

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "village.png"
MODES = {"pooled": 0.0, "spatial": 1.0, "both": 0.5}


def seconds_per_iteration(model, photo, size: int, iterations: int, fc_spatial: float) -> float:
    marks: list[float] = []
    params = RenderParams(size=size, iterations=iterations, scales=1, early_stop=0.0,
                          fc_spatial=fc_spatial)
    render(model, photo, params, see_top=0,
           on_progress=lambda p: marks.append(p.elapsed) if p.iteration else None)
    return (marks[-1] - marks[0]) / (len(marks) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model, info = load_model(ModelSpec("random"))
    photo = to_tensor(read_image(EXAMPLE))
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.repeat):
        for mode, value in MODES.items():
            times[mode].append(seconds_per_iteration(model, photo, args.size, args.iterations,
                                                     value))
    pooled = statistics.median(times["pooled"])
    print(f"fc content cost per iteration at {args.size} px, {info.label}, "
          f"{torch.get_num_threads()} CPU threads, median of {args.repeat}")
    for mode, values in times.items():
        ratio = statistics.median(values) / pooled
        target = "   target <= 1.5x" if mode == "spatial" else ""
        print(f"  {mode:8s} {statistics.median(values):7.2f} s   {ratio:5.2f}x pooled{target}")


if __name__ == "__main__":
    main()
