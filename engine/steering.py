"""Class steering: pull the result towards classes the artist names.

A steering term is the cross-entropy of fc8's softmax against the named classes (weights normalised
to sum 1), so it falls as the net grows more certain that it sees them. With a mask it is that of
the spatial fc8 map's windows under the mask (:mod:`.head`): "see a castle here". Names are matched
forgivingly against the model's labels (ImageNet's, or a label file's): exact (any case), then a
unique name containing the words; anything else is an error that lists the closest names. Groups
such as ``@water`` stand for lists of ImageNet classes; with other labels a group keeps the members
that the labels have.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import Tensor

from .errors import ParamError

#: Curated groups, by ImageNet class name.
GROUPS: dict[str, tuple[str, ...]] = {
    "buildings": ("church", "castle", "palace", "monastery", "boathouse", "barn", "greenhouse",
                  "mosque", "library", "cinema", "prison", "planetarium", "dome", "triumphal arch"),
    "landscape": ("lakeside", "valley", "alp", "cliff", "promontory", "seashore", "volcano"),
    "water": ("lakeside", "seashore", "sandbar", "breakwater", "dam", "fountain", "geyser",
              "coral reef", "boathouse", "canoe"),
    "animals": ("tabby", "golden retriever", "red fox", "tiger", "lion", "zebra", "goldfinch",
                "bald eagle", "peacock", "African elephant"),
}
#: Everyday words for what each group holds, so that a name the labels lack ("cathedral")
#: points to the group that has it, not to labels that are merely spelt alike ("admiral").
GROUP_WORDS: dict[str, tuple[str, ...]] = {
    "buildings": ("building", "cathedral", "chapel", "temple", "abbey", "basilica", "tower",
                  "house", "fortress", "fort", "shrine", "architecture", "town", "village"),
    "landscape": ("landscape", "mountain", "hill", "lake", "beach", "coast", "shore", "meadow",
                  "scenery"),
    "water": ("water", "sea", "ocean", "river", "lake", "pond", "waterfall", "wave", "stream"),
    "animals": ("animal", "bird", "horse", "wildlife", "pet", "beast", "mammal"),
}


def find_class(name: str, names: Sequence[str]) -> int:
    """Index of one class in ``names`` by name (forgiving) or by number."""
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
    close = _closest(text, names)
    hint = f"; closest: {', '.join(close)}" if close else "; no label is close to it"
    raise ParamError(f"unknown class {text!r}{hint}")


def _closest(text: str, names: Sequence[str]) -> list[str]:
    """What the artist may have meant: the groups whose everyday words hold ``text`` (with a
    few of their classes), else labels spelt alike (a typo)."""
    word = text.lower().removesuffix("s")
    lowered = {n.lower() for n in names}
    groups = [f"@{group} ({', '.join(GROUPS[group][:4])}, ...)"
              for group, words in GROUP_WORDS.items()
              if word in words and any(m.lower() in lowered for m in GROUPS[group])]
    return groups or difflib.get_close_matches(text, names, n=5, cutoff=0.7)


def group_members(group: str, names: Sequence[str]) -> list[int]:
    """Indices of a group's classes among ``names``; members they lack are left out."""
    members = GROUPS.get(group.lower())
    if members is None:
        raise ParamError(f"unknown group @{group}; groups: " + ", ".join(f"@{g}" for g in GROUPS))
    found = []
    for member in members:
        try:
            found.append(find_class(member, names))
        except ParamError:
            continue
    if not found:
        raise ParamError(f"none of the classes of @{group} is among this model's labels")
    return found


def available_groups(names: Sequence[str]) -> dict[str, list[str]]:
    """Each group that has members among ``names``, with those members' names."""
    groups = {}
    for group in GROUPS:
        try:
            groups[group] = [names[i] for i in group_members(group, names)]
        except ParamError:
            continue
    return groups


def resolve(see: dict[str, float], names: Sequence[str]) -> dict[int, float]:
    """``{"church": 1, "@water": 0.5, "975": 1}`` -> class index -> weight (summing to 1)."""
    targets: dict[int, float] = {}
    for name, weight in see.items():
        if name.startswith("@"):
            members = group_members(name[1:], names)
            for index in members:
                targets[index] = targets.get(index, 0.0) + weight / len(members)
        else:
            index = find_class(name, names)
            targets[index] = targets.get(index, 0.0) + weight
    total = sum(targets.values())
    if total <= 0:
        raise ParamError("the steering classes need a positive weight")
    return {i: w / total for i, w in targets.items()}


def steering_target(see: dict[str, float], names: Sequence[str], device: torch.device
                    ) -> Tensor:
    """A probability vector over ``names`` that puts the weights on the named classes."""
    target = torch.zeros(len(names), device=device)
    for index, weight in resolve(see, names).items():
        target[index] = weight
    return target


def steering_loss(logits: Tensor, target: Tensor, where: Tensor | None = None) -> Tensor:
    """Cross-entropy of softmax(fc8) against the target distribution: of the pooled (1, K)
    logits, or of a spatial (1, K, h, w) map's windows, averaged with the weights ``where``
    (1, 1, h, w) (how much of each window the steering mask covers)."""
    if where is None:
        return -(target * torch.log_softmax(logits[0], dim=0)).sum()
    per_window = -(target.view(1, -1, 1, 1) * torch.log_softmax(logits, dim=1)).sum(1, True)
    return (per_window * where).sum() / where.sum()
