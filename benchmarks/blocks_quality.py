"""The block-by-block render against the direct one, from the same seed, at a size where both fit.

Run:  .venv/bin/python benchmarks/blocks_quality.py [--size 1024] [--iterations 12]
          [--budget 1.5G] [--out blocks-vs-direct.png]

It renders the bundled example twice with the same parameters and seed (two scales; the final
scale ``--iterations`` long, no early stop): directly, and with a memory budget under which the
final scale runs block by block. Both results are then scored by the same whole-image loss (the
direct objective of the final scale), and printed with their ratio and wall times; the two images
are written side by side (direct left, blocks right) for a person to look at. Seeded random
weights, labelled as such: the comparison is of the two computations, not of the art.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from neural_mirage.cli import byte_size
from neural_mirage.engine import RenderParams, keep_freed_memory, render
from neural_mirage.engine.render import Scale, _Objective, fit_size, scale_mode
from neural_mirage.images import Picture, read_image, write_image
from neural_mirage.weights import ModelSpec, load_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--budget", type=byte_size, default=byte_size("1.5G"))
    parser.add_argument("--out", default="blocks-vs-direct.png")
    args = parser.parse_args()
    keep_freed_memory()
    model, _ = load_model(ModelSpec("random"))
    photo = read_image(ROOT / "examples" / "village.png")
    content = torch.from_numpy(np.ascontiguousarray(photo.rgb)).permute(2, 0, 1)
    params = RenderParams(size=args.size, iterations=args.iterations, scales=2, early_stop=0.0)
    width, height = fit_size(content.shape[-1], content.shape[-2], args.size)
    mode = scale_mode(params, Scale(width, height, args.iterations), args.budget)
    print(f"bundled example at {width}x{height}, 2 scales, seed {params.seed}, seeded random "
          f"weights (NOT pretrained); final scale under a {args.budget / 1e9:.1f} GB budget: "
          f"{mode[0]} of {mode[1]} px", flush=True)
    results = {}
    for label, budget in (("direct", None), ("blocks", args.budget)):
        started = time.perf_counter()
        results[label] = render(model, content, params, see_top=0, memory_budget=budget)
        print(f"{label}: {time.perf_counter() - started:.0f} s", flush=True)
    scaled = torch.nn.functional.interpolate(content[None], size=(height, width),
                                             mode="bicubic", antialias=True).clamp(0, 1)
    objective = _Objective(model, params, scaled, [scaled], [1.0], checkpoint=False)
    with torch.no_grad():
        losses = {label: objective(r.image[None])[0].item() for label, r in results.items()}
    print(f"whole-image loss: direct {losses['direct']:.5g}, blocks {losses['blocks']:.5g} "
          f"({losses['blocks'] / losses['direct'] - 1:+.1%}; target within 10 %)")
    difference = (results["blocks"].image - results["direct"].image).abs()
    print(f"pixel difference: mean {difference.mean():.4f}, max {difference.max():.4f}")
    side_by_side = torch.cat([results["direct"].image, torch.ones(3, height, 16),
                              results["blocks"].image], dim=2)
    write_image(args.out, Picture(side_by_side.permute(1, 2, 0).numpy()))
    print(f"wrote {args.out} (direct left, blocks right)")


if __name__ == "__main__":
    main()
