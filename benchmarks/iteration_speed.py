"""Time per optimisation iteration: the engine against a plain baseline, in the same process.

Run:  .venv/bin/python benchmarks/iteration_speed.py [--sizes 224,512,1024] [--iterations 5]

The baseline is the textbook way (kept here only): torchvision's VGG19 in eager fp32 and NCHW,
with the adaptive max pooling before fc6, Gatys' losses (MSE content, Gram MSE style) and
``torch.optim.LBFGS``, as neural-style-pt does it. The engine is :func:`neural_mirage.engine.render`
with the same layers (fc7 content, relu1_1..relu5_1 style). Both use seeded random weights: speed
does not depend on the values. The baseline runs first, before the engine switches glibc's
allocator settings (:func:`keep_freed_memory`, process-wide).

Printed: ms per iteration (median), the ratio engine/baseline, GFLOP per iteration (counted by
torch's FlopCounterMode) and the share of this CPU's fp32 peak, where the peak is *measured* as the
best rate of a large channels_last 3x3 convolution (oneDNN) in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import vgg19

from neural_mirage.engine import RenderParams, keep_freed_memory, random_state_dict, render
from neural_mirage.weights import ModelSpec, load_model

STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class Baseline(nn.Module):
    """neural-style-pt's structure: a Sequential walk, losses read at named ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        net = vgg19()
        net.load_state_dict(random_state_dict(0))
        self.features = net.features.eval().requires_grad_(False)
        self.classifier = net.classifier[:4].eval().requires_grad_(False)  # fc6, relu, drop, fc7
        self.pool = nn.AdaptiveMaxPool2d((7, 7))
        names, block, conv = [], 1, 1
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                names.append(f"conv{block}_{conv}")
            elif isinstance(layer, nn.ReLU):
                layer.inplace = False
                names.append(f"relu{block}_{conv}")
                conv += 1
            else:
                names.append(f"pool{block}")
                block, conv = block + 1, 1
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        out = {}
        for name, layer in zip(self.names, self.features, strict=True):
            x = layer(x)
            out[name] = x
        fc7 = self.classifier(torch.flatten(self.pool(x), 1))
        return out, fc7


def gram(f: torch.Tensor) -> torch.Tensor:
    _, c, h, w = f.shape
    m = f.view(c, h * w)
    return m @ m.t() / (c * h * w)


def time_baseline(width: int, height: int, iterations: int,
                  device: torch.device | None = None) -> float:
    """Median seconds per iteration of the textbook loop (see the module's docstring)."""
    device = device or torch.device("cpu")
    model = Baseline().to(device)
    content = torch.rand(1, 3, height, width, device=device)
    with torch.no_grad():
        feats, fc7_target = model(content)
        grams = {n: gram(feats[n]) for n in STYLE}
    image = torch.randn(1, 3, height, width, device=device).mul(0.001).requires_grad_()
    optimizer = torch.optim.LBFGS([image], max_iter=1, history_size=100)
    times = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        feats, fc7 = model(image)
        loss = 5 * F.mse_loss(fc7, fc7_target)
        for n in STYLE:
            loss = loss + 100 * F.mse_loss(gram(feats[n]), grams[n])
        loss.backward()
        return loss

    for _ in range(iterations + 1):
        start = time.perf_counter()
        optimizer.step(closure)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def time_engine(size: int, iterations: int) -> float:
    model, _ = load_model(ModelSpec("random"))
    stamps: list[float] = []
    params = RenderParams(size=size, iterations=iterations + 1, scales=1, early_stop=0.0)
    render(model, torch.rand(3, size, size), params, see_top=0,
           on_progress=lambda p: stamps.append(time.perf_counter()))
    return statistics.median(b - a for a, b in itertools.pairwise(stamps[1:]))


def flops_per_iteration(size: int) -> float:
    model, _ = load_model(ModelSpec("random"))
    image = torch.rand(1, 3, size, size, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        feats = model.features(image, ["fc7", *STYLE])
        loss = feats["fc7"].sum() + sum(gram(feats[n]).sum() for n in STYLE)
        loss.backward()
    return counter.get_total_flops()


def measured_peak() -> float:
    conv = nn.Conv2d(256, 256, 3, padding=1).eval().requires_grad_(False)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.rand(1, 256, 128, 128).contiguous(memory_format=torch.channels_last)
    best = 0.0
    with torch.no_grad():
        for _ in range(8):
            start = time.perf_counter()
            conv(x)
            best = max(best, 2 * 256 * 256 * 9 * 128 * 128 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,512,1024")
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    baseline = {s: time_baseline(s, s, args.iterations) for s in sizes}
    keep_freed_memory()
    engine = {s: time_engine(s, args.iterations) for s in sizes}
    peak = measured_peak()
    print(f"fc7 content + 5 style layers, L-BFGS, fp32, {torch.get_num_threads()} threads; "
          f"measured peak {peak / 1e9:.0f} GFLOP/s (3x3 conv, channels_last)")
    print(f"{'size':>6} {'baseline ms':>12} {'engine ms':>10} {'ratio':>6} {'GFLOP':>7} "
          f"{'GFLOP/s':>8} {'of peak':>8}")
    for s in sizes:
        flops = flops_per_iteration(s)
        rate = flops / engine[s]
        print(f"{s:>6} {1000 * baseline[s]:>12.0f} {1000 * engine[s]:>10.0f} "
              f"{engine[s] / baseline[s]:>6.2f} {flops / 1e9:>7.0f} {rate / 1e9:>8.0f} "
              f"{rate / peak:>8.0%}")


if __name__ == "__main__":
    main()
