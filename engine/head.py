"""The terms the fc layers carry, read from pool5's map: what the net sees, and where.

*Pooled* (the method's own): the fc layers read pool5 max-pooled to 7x7, one vector for the whole
picture, so the content term keeps *that* the net sees houses and trees. *Spatial*: the fc layers
run as convolutions over pool5 (:meth:`MirageVGG.spatial_head`), one vector per 224 px window
every 32 px, so it keeps *where* it sees them. ``fc_spatial`` blends the two content terms.

Steering with a mask reads the spatial fc8 map: each window's cross-entropy counts as much as the
mask covers it, and the spatial content term counts as much as the mask leaves it free, so the
masked region is pulled towards the named classes while the rest keeps what the net saw there.

Both objectives use this module on pool5's whole map: the plain one from a pass over the image,
the block-by-block one from the map it gathers (:mod:`.blocks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ParamError
from .losses import feature_loss, normalize_gradient
from .params import RenderParams
from .steering import steering_loss, steering_target
from .vgg import HEAD_LAYERS, MirageVGG

#: The spatial fc map's windows: 224 px of the image (7 pool5 cells), every 32 px.
WINDOW, STRIDE = 224, 32


def window_coverage(mask: Tensor, cells: tuple[int, int]) -> Tensor:
    """How much of each 7x7 window of pool5's map a (H, W) mask in [0, 1] covers: a (1, 1,
    h, w) map the shape of :meth:`MirageVGG.spatial_head`'s, for pool5's ``cells`` (rows,
    columns). Pool5 cell (i, j) reads the image's 32 px square at (32 j, 32 i)."""
    rows, columns = cells
    mask = mask[None, None, :32 * rows, :32 * columns].float()
    grid = F.avg_pool2d(mask, 32)
    if rows < 7 or columns < 7:  # stretched as the spatial head stretches pool5
        grid = F.interpolate(grid, size=(max(7, rows), max(7, columns)), mode="nearest")
    return F.avg_pool2d(grid, 7, stride=1)


def reads_pool5(params: RenderParams) -> bool:
    """Whether any term of the render reads the fc head (so pool5's map is needed)."""
    return bool(params.see) or any(n in HEAD_LAYERS for n in params.content_layers)


class HeadLoss:
    """fc content (pooled, spatial or a blend) and class steering (everywhere, or under a mask)
    from pool5's map."""

    def __init__(self, model: MirageVGG, params: RenderParams, content_pool5: Tensor,
                 see_mask: Tensor | None) -> None:
        self.model = model
        self.params = params
        self.layers = {n: w for n, w in params.content_layers.items() if n in HEAD_LAYERS}
        self.see_target = (steering_target(params.see, model.labels, content_pool5.device)
                           if params.see else None)
        self.coverage = None
        if self.see_target is not None and see_mask is not None:
            self.coverage = window_coverage(see_mask, tuple(content_pool5.shape[-2:]))
            if float(self.coverage.sum()) <= 0:
                raise ParamError("the steering mask is empty: paint where the net should see "
                                 "the classes (white), or steer without a mask")
        mix = params.fc_spatial
        self.pooled_layers = list(self.layers) if mix < 1 else []
        self.spatial_layers = list(self.layers) if mix > 0 else []
        if self.see_target is not None:
            (self.spatial_layers if self.coverage is not None else self.pooled_layers).append(
                "fc8")
        with torch.no_grad():
            self.pooled_targets = _targets(model.head, content_pool5,
                                           [n for n in self.layers if n in self.pooled_layers])
            self.spatial_targets = _targets(model.spatial_head, content_pool5,
                                            [n for n in self.layers if n in self.spatial_layers])

    def _normalized(self, features: Tensor, weight: float) -> Tensor:
        return (normalize_gradient(features, weight) if self.params.normalize_gradients
                else features)

    def __call__(self, pool5: Tensor) -> dict[str, Tensor]:
        """The weighted terms, named as the render reports them (``content:fc7``, ``see``)."""
        p = self.params
        pooled = self.model.head(pool5, self.pooled_layers) if self.pooled_layers else {}
        spatial = (self.model.spatial_head(pool5, self.spatial_layers)
                   if self.spatial_layers else {})
        terms: dict[str, Tensor] = {}
        for name, layer_weight in self.layers.items():
            weight = p.content_weight * layer_weight
            parts = []
            if name in self.pooled_targets:
                parts.append((1 - p.fc_spatial) * feature_loss(
                    self._normalized(pooled[name], weight), self.pooled_targets[name],
                    p.normalization))
            if name in self.spatial_targets:
                free = None if self.coverage is None else 1 - self.coverage
                parts.append(p.fc_spatial * feature_loss(
                    self._normalized(spatial[name], weight), self.spatial_targets[name],
                    p.normalization, free))
            terms[f"content:{name}"] = weight * sum(parts)
        if self.see_target is not None:
            logits = spatial["fc8"] if self.coverage is not None else pooled["fc8"]
            terms["see"] = p.see_weight * steering_loss(logits, self.see_target, self.coverage)
        return terms


def _targets(head: Callable[[Tensor, list[str]], dict[str, Tensor]], pool5: Tensor,
             layers: list[str]) -> dict[str, Tensor]:
    """The content's features at ``layers`` of one head (pooled or spatial), kept."""
    return {k: v.clone() for k, v in head(pool5, layers).items()} if layers else {}


@dataclass
class WhereSeen:
    """The top class of every 224 px window (every 32 px) of an image: "what the net sees
    where". ``classes`` and ``probabilities`` are (rows, columns) maps; window (i, j) reads the
    image from (32 j, 32 i) on, at the size it was analysed (``width`` x ``height``).
    ``pooled`` is the whole picture's fc8 (the pooled head), from the same pass."""

    classes: Tensor
    probabilities: Tensor
    width: int
    height: int
    pooled: Tensor


@torch.no_grad()
def where_seen(model: MirageVGG, image: Tensor) -> WhereSeen:
    """:class:`WhereSeen` for a (3, H, W) RGB image in [0, 1] (analysed at its own size)."""
    pool5 = model.features(image[None].float(), ["pool5"])["pool5"]
    pooled = model.head(pool5, ["fc8"])["fc8"][0]
    probabilities = torch.softmax(model.spatial_head(pool5, ["fc8"])["fc8"][0].float(), 0)
    best, classes = probabilities.max(0)
    return WhereSeen(classes.cpu(), best.cpu(), image.shape[-1], image.shape[-2], pooled.cpu())
