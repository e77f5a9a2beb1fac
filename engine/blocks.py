"""The whole image's loss and its exact gradient, computed block by block in bounded memory.

Every term of the loss reaches the image through something small or local: a Gram matrix is a
sum over positions (G = sum over blocks of F_b^T F_b), the fc layers read only pool5's map (32x
smaller on each side), and conv content and total variation are sums of local terms. So a first
pass over the blocks, without autograd, collects the Grams and pool5's map; the loss and its
gradient with respect to those are computed whole; and a second pass runs each block forward and
backward with that gradient injected (<dL/dG, F_b^T F_b> + <dL/dpool5, pool5_b>), which gives each
block its exact share of the whole image's gradient (the block decomposition of Galerne et al.'s
global Gram loss, extended to the fc layers through pool5, pooled or spatial: :mod:`.head`).

Each block runs with a halo of its neighbours wide enough that its features are the whole
image's, not a padded tile's: pool5's receptive field reaches 118 px beyond its own 32 px cell,
and the halo is 128 px. So there is nothing to blend and no seam: the render is the direct
render's, in the memory of one tile plus a few image-sized vectors, for about 2.5x the compute.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .head import HeadLoss, reads_pool5
from .losses import feature_loss
from .params import ParamError, RenderParams
from .vgg import HEAD_LAYERS, MirageVGG

#: Pixels of neighbours run with each block: beyond pool5's reach (118 px past its cell).
HALO = 128
#: Blocks start on multiples of pool5's stride, so that every pooling window is the whole
#: image's.
ALIGN = 32


@dataclass(frozen=True)
class Block:
    """A block of the image (x0, y0)-(x1, y1) and the tile run for it: the block and its halo."""

    x0: int
    y0: int
    x1: int
    y1: int
    tx0: int
    ty0: int
    tx1: int
    ty1: int

    def interior(self, feature: Tensor, stride: int, width: int, height: int) -> Tensor:
        """The block's part of the tile's feature map (N, C, h, w) at ``stride``."""
        left, top = (self.x0 - self.tx0) // stride, (self.y0 - self.ty0) // stride
        right = feature.shape[-1] if self.x1 == width else left + (self.x1 - self.x0) // stride
        bottom = feature.shape[-2] if self.y1 == height else top + (self.y1 - self.y0) // stride
        return feature[..., top:bottom, left:right]

    def region(self, stride: int, width: int, height: int) -> tuple[slice, slice]:
        """Where the block's part lies in the whole image's map at ``stride`` (rows, columns)."""
        right = width // stride if self.x1 == width else self.x1 // stride
        bottom = height // stride if self.y1 == height else self.y1 // stride
        return slice(self.y0 // stride, bottom), slice(self.x0 // stride, right)


def plan_blocks(width: int, height: int, side: int) -> list[Block]:
    """Blocks of at most ``side`` px (a multiple of 32) covering the image, each with its tile."""
    if side % ALIGN:
        raise ValueError(f"a block side must be a multiple of {ALIGN}, not {side}")
    return [Block(x0, y0, min(x0 + side, width), min(y0 + side, height),
                  max(0, x0 - HALO), max(0, y0 - HALO),
                  min(width, x0 + side + HALO), min(height, y0 + side + HALO))
            for y0 in range(0, height, side) for x0 in range(0, width, side)]


@dataclass
class _Collected:
    """What the first pass gathers: Gram sums, pool5's whole map, local features per block."""

    grams: dict[str, Tensor]
    pool5: Tensor | None
    local: list[dict[str, Tensor]]


class BlockwiseObjective:
    """The loss of :class:`~neural_mirage.engine.render._Objective`, evaluated block by block:
    :meth:`with_gradient` returns the loss, its terms and the gradient for a (1, 3, H, W) image.
    """

    def __init__(self, model: MirageVGG, params: RenderParams, content: Tensor,
                 styles: Sequence[Tensor], blend: Sequence[float], side: int,
                 see_mask: Tensor | None = None) -> None:
        if params.normalize_gradients:
            raise ParamError("normalize_gradients needs the whole image in memory at once: "
                             "choose a smaller size or turn it off")
        self.model = model
        self.params = params
        self.side = side
        self.local_layers = [n for n in params.content_layers if n not in HEAD_LAYERS]
        self.wanted = set(params.style_layers) | set(self.local_layers)
        if reads_pool5(params):
            self.wanted.add("pool5")
        self.head: HeadLoss | None = None
        with torch.no_grad():
            target = self._collect(content, keep_local=True)
            self.local_targets = target.local
            self.local_norms = {n: self._norm(n, target.local) for n in self.local_layers}
            if target.pool5 is not None:
                self.head = HeadLoss(model, params, target.pool5, see_mask)
            self.style_targets: dict[str, Tensor] = {}
            for style, weight in zip(styles, blend, strict=True):
                for name, g in self._collect(style, keep_local=False).grams.items():
                    old = self.style_targets.get(name)
                    self.style_targets[name] = g * weight if old is None else old + g * weight

    def _norm(self, name: str, local: list[dict[str, Tensor]]) -> float:
        """What feature_loss divides a content layer's squared error by, for the whole map."""
        if self.params.normalization == "neural-style":
            return float(sum(block[name].numel() for block in local))
        return max(float(sum(block[name].pow(2).sum() for block in local)), 1e-12)

    def _tiles(self, image: Tensor) -> Iterator[tuple[Block, Tensor]]:
        width, height = image.shape[-1], image.shape[-2]
        for block in plan_blocks(width, height, self.side):
            yield block, image[..., block.ty0:block.ty1, block.tx0:block.tx1]

    def _features(self, block: Block, tile: Tensor, width: int, height: int,
                  wanted: set[str] | None = None, pooling: str | None = None
                  ) -> dict[str, Tensor]:
        """The block's part of each wanted layer (the render's layers and pooling by default)."""
        feats = self.model.features(tile, wanted or self.wanted, pooling or self.params.pooling)
        return {name: block.interior(f, self.model.stride(name), width, height)
                for name, f in feats.items()}

    def _collect(self, image: Tensor, keep_local: bool) -> _Collected:
        width, height = image.shape[-1], image.shape[-2]
        sums: dict[str, Tensor] = {}
        pool5 = None
        if "pool5" in self.wanted:
            pool5 = image.new_zeros(1, 512, height // 32, width // 32)
        local = []
        for block, tile in self._tiles(image):
            feats = self._features(block, tile, width, height)
            for name in self.params.style_layers:
                flat = _flat(feats[name])
                sums[name] = flat.t() @ flat + sums.get(name, 0)
            if pool5 is not None:
                pool5[(..., *block.region(32, width, height))] = feats["pool5"]
            local.append({n: feats[n].clone() for n in self.local_layers} if keep_local else {})
        grams = {n: g / self._gram_size(n, g, width, height) for n, g in sums.items()}
        return _Collected(grams, pool5, local)

    def _gram_size(self, name: str, gram: Tensor, width: int, height: int) -> int:
        stride = self.model.stride(name)
        return gram.shape[0] * (height // stride) * (width // stride)

    def with_gradient(self, image: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """The loss, its terms (as :class:`_Objective` names them) and d(loss)/d(image)."""
        p = self.params
        width, height = image.shape[-1], image.shape[-2]
        with torch.no_grad():
            now = self._collect(image, keep_local=False)
        # The whole-image part: small tensors, their gradients by autograd.
        grams = {n: g.requires_grad_(True) for n, g in now.grams.items()}
        pool5 = now.pool5.requires_grad_(True) if now.pool5 is not None else None
        small = self.head(pool5) if self.head is not None and pool5 is not None else {}
        for name, layer_weight in p.style_layers.items():
            small[f"style:{name}"] = p.style_weight * layer_weight * feature_loss(
                grams[name], self.style_targets[name], p.normalization)
        leaves = [*grams.values(), *([pool5] if pool5 is not None else [])]
        d_small = torch.autograd.grad(torch.stack(list(small.values())).sum(), leaves,
                                      allow_unused=True)
        d_grams = dict(zip(grams, d_small, strict=False))
        d_pool5 = d_small[-1] if pool5 is not None else None

        grad = torch.zeros_like(image)
        local = dict.fromkeys(self.local_layers, 0.0)
        for index, (block, tile) in enumerate(self._tiles(image)):
            tile = tile.detach().clone().requires_grad_(True)
            feats = self._features(block, tile, width, height)
            surrogate = tile.new_zeros(())
            for name in p.style_layers:
                flat = _flat(feats[name])
                d = d_grams[name]
                if d is not None:
                    surrogate = surrogate + (d * (flat.t() @ flat)).sum() / \
                        self._gram_size(name, d, width, height)
            if d_pool5 is not None:
                surrogate = surrogate + (d_pool5[(..., *block.region(32, width, height))]
                                         * feats["pool5"]).sum()
            for name in self.local_layers:
                weight = p.content_weight * p.content_layers[name]
                error = (feats[name] - self.local_targets[index][name]).pow(2).sum() \
                    / self.local_norms[name]
                local[name] = local[name] + error.detach()
                surrogate = surrogate + weight * error
            surrogate.backward()
            grad[..., block.ty0:block.ty1, block.tx0:block.tx1] += tile.grad

        terms: dict[str, Tensor] = {}
        for name in p.content_layers:
            terms[f"content:{name}"] = (small[f"content:{name}"].detach()
                                        if name in HEAD_LAYERS else
                                        p.content_weight * p.content_layers[name] * local[name])
        for name in p.style_layers:
            terms[f"style:{name}"] = small[f"style:{name}"].detach()
        if p.see:
            terms["see"] = small["see"].detach()
        if p.tv_weight > 0:
            terms["tv"] = p.tv_weight * _tv_with_gradient(image, p.normalization, grad,
                                                           p.tv_weight)
        return torch.stack(list(terms.values())).sum(), terms, grad

    @torch.no_grad()
    def logits(self, image: Tensor) -> Tensor:
        """fc8 for the whole (1, 3, H, W) image, from pool5's map gathered block by block."""
        width, height = image.shape[-1], image.shape[-2]
        pool5 = image.new_zeros(1, 512, height // 32, width // 32)
        for block, tile in self._tiles(image):
            feats = self._features(block, tile, width, height, {"pool5"}, "max")
            pool5[(..., *block.region(32, width, height))] = feats["pool5"]
        return self.model.head(pool5, ["fc8"])["fc8"]


def _tv_with_gradient(image: Tensor, normalization: str, grad: Tensor, weight: float,
                      rows: int = 256) -> Tensor:
    """:func:`tv_loss` of the whole (1, 3, H, W) image, computed in strips of ``rows`` rows;
    adds ``weight`` times its gradient to ``grad``. A strip also reads the next strip's first
    row, for the vertical differences across the border."""
    height, width = image.shape[-2:]
    if normalization == "neural-style":
        across, down = 255.0, 255.0
    else:
        across, down = 1 / (3 * height * (width - 1)), 1 / (3 * (height - 1) * width)
    total = image.new_zeros(())
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        strip = image[..., top:min(bottom + 1, height), :].detach().requires_grad_(True)
        own = strip[..., :bottom - top, :]
        value = across * (own[..., 1:] - own[..., :-1]).abs().sum() \
            + down * (strip[..., 1:, :] - strip[..., :-1, :]).abs().sum()
        (weight * value).backward()
        grad[..., top:top + strip.shape[-2], :] += strip.grad
        total = total + value.detach()
    return total


def _flat(features: Tensor) -> Tensor:
    """A (1, C, h, w) map as (h*w, C) rows, for Gram sums."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
