""""What the net sees": the top ImageNet classes of fc8 for an image of any size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor


@dataclass(frozen=True)
class Seen:
    """One class the net sees in an image, with its softmax probability."""

    index: int
    name: str
    probability: float


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, from torchvision's weights metadata.

    The torchvision and Caffe-converted VGG files all use this class order; a model with its own
    label file carries those labels instead (:attr:`MirageVGG.labels`).
    """
    from torchvision.models import VGG19_Weights

    return tuple(VGG19_Weights.IMAGENET1K_V1.meta["categories"])


@torch.no_grad()
def top_classes(logits: Callable[[Tensor], Tensor], image: Tensor, k: int,
                labels: Sequence[str]) -> list[Seen]:
    """The ``k`` most probable classes for a (3, H, W) or (1, 3, H, W) RGB image in [0, 1];
    ``logits`` is the model (or anything that gives its fc8 for an image)."""
    if image.dim() == 3:
        image = image.unsqueeze(0)
    return top_of(logits(image.float())[0], k, labels)


def top_of(logits: Tensor, k: int, labels: Sequence[str]) -> list[Seen]:
    """The ``k`` most probable classes of one fc8 vector."""
    probs = torch.softmax(logits.float(), dim=0)
    values, indices = probs.topk(min(k, probs.numel()))
    return [Seen(int(i), labels[int(i)], float(v)) for v, i in zip(values, indices, strict=True)]
