"""Class steering: pull the result towards ImageNet classes the artist names.

A steering term is the cross-entropy of fc8's softmax against the named classes (weights normalised
to sum 1), so it falls as the net grows more certain that it sees them. Names are matched
forgivingly: exact (any case), then a unique name containing the words; anything else is an error
that lists the closest names. Groups such as ``@trees`` stand for lists of classes.
"""

from __future__ import annotations

import difflib

import torch
from torch import Tensor

from .params import ParamError
from .seeing import imagenet_classes

#: Curated groups, by class name.
GROUPS: dict[str, tuple[str, ...]] = {
    "buildings": ("church", "castle", "palace", "monastery", "boathouse", "barn", "greenhouse",
                  "mosque", "library", "cinema", "prison", "planetarium", "dome", "triumphal arch"),
    "landscape": ("lakeside", "valley", "alp", "cliff", "promontory", "seashore", "volcano"),
    "water": ("lakeside", "seashore", "sandbar", "breakwater", "dam", "fountain", "geyser",
              "coral reef", "boathouse", "canoe"),
    "animals": ("tabby", "golden retriever", "red fox", "tiger", "lion", "zebra", "goldfinch",
                "bald eagle", "peacock", "African elephant"),
}


def find_class(name: str) -> int:
    """Index of one class by name (forgiving) or by number."""
    names = imagenet_classes()
    text = name.strip()
    if text.isdigit():
        index = int(text)
        if not 0 <= index < len(names):
            raise ParamError(f"class index {index} is out of range (0..{len(names) - 1})")
        return index
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    containing = [i for i, n in enumerate(lowered) if text.lower() in n]
    if len(containing) == 1:
        return containing[0]
    if containing:
        listed = ", ".join(names[i] for i in containing[:8])
        raise ParamError(f"class {text!r} is ambiguous: it matches {listed}")
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ParamError(f"unknown class {text!r}{hint} (see 'neural-mirage classes')")


def resolve(see: dict[str, float]) -> dict[int, float]:
    """``{"church": 1, "@water": 0.5, "975": 1}`` -> class index -> weight (summing to 1)."""
    targets: dict[int, float] = {}
    for name, weight in see.items():
        if name.startswith("@"):
            group = GROUPS.get(name[1:].lower())
            if group is None:
                raise ParamError(f"unknown group {name!r}; groups: "
                                 + ", ".join(f"@{g}" for g in GROUPS))
            for member in group:
                index = find_class(member)
                targets[index] = targets.get(index, 0.0) + weight / len(group)
        else:
            index = find_class(name)
            targets[index] = targets.get(index, 0.0) + weight
    total = sum(targets.values())
    if total <= 0:
        raise ParamError("the steering classes need a positive weight")
    return {i: w / total for i, w in targets.items()}


def steering_target(see: dict[str, float], device: torch.device) -> Tensor:
    """A (1000,) probability vector over the named classes."""
    target = torch.zeros(len(imagenet_classes()), device=device)
    for index, weight in resolve(see).items():
        target[index] = weight
    return target


def steering_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of softmax(fc8) against the target distribution."""
    return -(target * torch.log_softmax(logits[0], dim=0)).sum()
