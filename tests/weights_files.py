"""Weight and label files shaped like real ones, made from seeded random weights (untrained)."""

from __future__ import annotations

from pathlib import Path

import torch

from neural_mirage.engine import LAYER_NAMES, random_state_dict


def _places_like(seed: int = 2) -> dict:
    """A VGG16 with a 365-class fc8 and neural-style layer names, like a converted Places365
    Caffe model."""
    state = random_state_dict(seed, "vgg16")
    state["classifier.6.weight"] = state["classifier.6.weight"][:365]
    state["classifier.6.bias"] = state["classifier.6.bias"][:365]
    convs = [n for n in LAYER_NAMES if n.startswith("conv") and n[-1] != "4"]
    indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.")})
    named = {}
    for name, index in zip(convs, indices, strict=True):
        for p in ("weight", "bias"):
            named[f"{name}.{p}"] = state[f"features.{index}.{p}"]
    for name, index in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
        for p in ("weight", "bias"):
            named[f"{name}.{p}"] = state[f"classifier.{index}.{p}"]
    return named


def places_like_files(folder: Path) -> tuple[Path, Path]:
    """A Places365-shaped VGG16 file and its ``categories_places365.txt``-style label file."""
    path = folder / "vgg16_places365.pth"
    torch.save(_places_like(), path)
    labels = folder / "categories_places365.txt"
    names = [f"/{c[0]}/{c}" for c in ("airfield", "church/outdoor", "lake/natural")]
    names += [f"/z/place_{i}" for i in range(362)]
    labels.write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    return path, labels
