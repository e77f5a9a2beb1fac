"""Speed and gradient accuracy of fp32, TF32 and bf16 renders; the prepared GPU check.

Run on a GPU (the issue's check: 500 iterations at 512x384, target <= 2 s on an H100):
    python benchmarks/precision_check.py
Run on the CPU (a small smoke of the same code, and this CPU's bf16 accuracy):
    python benchmarks/precision_check.py --device cpu --iterations 5 --precisions fp32,bf16

For each precision it prints the wall time of a render of ``--iterations`` single-scale L-BFGS
iterations (no early stop, fc7 content + relu1_1..relu5_1 style, the engine's defaults otherwise),
ms per iteration, the ratio to fp32 measured in the same run, and the cosine between that
precision's gradients and fp32's, on the same image, for the fc-content term and the style term
separately (the issue asks for >= 0.99 before a faster precision may be offered). ``tf32`` is
CUDA's TF32 matmul/conv mode; ``bf16`` is torch.autocast to bfloat16 around the whole render.
Seeded random weights (speed does not depend on the values; accuracy may).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from neural_mirage.engine import RenderParams, keep_freed_memory, pick_device, render
from neural_mirage.engine.losses import feature_loss, gram
from neural_mirage.install.weights import ModelSpec, load_model

STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@contextlib.contextmanager
def precision(name: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed code in fp32, TF32 (CUDA only) or bf16 autocast."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
    try:
        if name == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def gradients(model: torch.nn.Module, image: torch.Tensor, content: torch.Tensor, name: str,
              device: torch.device) -> dict[str, torch.Tensor]:
    """d(loss)/d(image) for the fc7 content term and the style term, in one precision."""
    with torch.no_grad(), precision(name, device):
        targets = model.features(content, ["fc7", *STYLE])
        targets = {k: (gram(v) if k in STYLE else v).float() for k, v in targets.items()}
    out = {}
    for term in ("content", "style"):
        x = image.clone().requires_grad_(True)
        with precision(name, device):
            feats = model.features(x, ["fc7"] if term == "content" else STYLE)
            if term == "content":
                loss = feature_loss(feats["fc7"].float(), targets["fc7"], "relative")
            else:
                loss = sum(feature_loss(gram(feats[n]).float(), targets[n], "relative")
                           for n in STYLE)
        loss.backward()
        out[term] = x.grad.detach().flatten().double()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", default="512x384", help="WIDTHxHEIGHT")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    args = parser.parse_args()
    device = pick_device(args.device)
    names = [p for p in args.precisions.split(",") if p != "tf32" or device.type == "cuda"]
    width, height = (int(v) for v in args.size.lower().split("x"))
    keep_freed_memory()
    model, info = load_model(ModelSpec("random"), device)
    generator = torch.Generator().manual_seed(0)
    content = torch.rand(3, height, width, generator=generator)
    probe = F.interpolate(content[None], scale_factor=0.5, mode="bilinear").to(device)
    image = torch.rand(1, 3, height // 2, width // 2, generator=generator).to(device)
    params = RenderParams(size=max(width, height), iterations=args.iterations, scales=1,
                          early_stop=0.0)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else device}; "
          f"torch {torch.__version__}; {info.label}; {width}x{height}, {args.iterations} "
          "L-BFGS iterations")
    reference = gradients(model, image, probe, "fp32", device)
    baseline = None
    for name in names:
        with precision(name, device):  # warm-up: kernel choice and allocator caches
            render(model, content, RenderParams(size=params.size, iterations=3, scales=1,
                                                early_stop=0.0), see_top=0)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            result = render(model, content, params, see_top=0)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
        baseline = baseline or seconds
        grads = gradients(model, image, probe, name, device)
        cosines = {term: F.cosine_similarity(grads[term], reference[term], dim=0).item()
                   for term in grads}
        print(f"{name:5s} {seconds:8.2f} s  {1000 * seconds / result.iterations:8.1f} ms/it  "
              f"x{seconds / baseline:.2f} of fp32  loss {result.loss:.4g}  cosine vs fp32: "
              f"fc content {cosines['content']:.4f}, style {cosines['style']:.4f}")


if __name__ == "__main__":
    main()
