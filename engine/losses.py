"""Content, style (Gram) and total-variation losses, in two normalisations.

``relative`` (the default) divides each squared error by the squared norm of its target, so every
layer's loss starts near 1 whatever the layer, the image size or the weights file (Caffe weights see
0..255 input and have features ~60x larger than torchvision's, which would otherwise shift the
balance of content and style by a factor of thousands). Weights therefore mean the same thing for
fc and conv layers and for both weight files.

``neural-style`` reproduces jcjohnson/neural-style exactly, so that its users' weights carry over:
content = mean squared error of the features; style = mean squared error of the Gram matrices
G = F F^T / (C*H*W); total variation = sum of absolute neighbour differences on the 0..255 scale.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

NORMALIZATIONS = ("relative", "neural-style")
_EPS = 1e-12


class _SymmetricGram(torch.autograd.Function):
    """``F^T F`` for an (N, C) matrix, whose backward is one matmul, ``F (dG + dG^T)``, where
    autograd's generic one does two of the same size (about 3 % of a 512 px iteration)."""

    @staticmethod
    def forward(ctx: Any, flat: Tensor) -> Tensor:
        ctx.save_for_backward(flat)
        return flat.t() @ flat

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (flat,) = ctx.saved_tensors
        return flat @ (grad + grad.t())


def gram(features: Tensor) -> Tensor:
    """Gram matrix of a (1, C, H, W) feature map, divided by C*H*W as in neural-style."""
    _, c, h, w = features.shape
    # (H*W, C) is a view of channels_last memory (the engine's layout): no copy of the map.
    flat = features.permute(0, 2, 3, 1).reshape(h * w, c)
    return _SymmetricGram.apply(flat) / (c * h * w)


def feature_loss(value: Tensor, target: Tensor, normalization: str,
                 where: Tensor | None = None) -> Tensor:
    """Squared error between features (content) or Gram matrices (style); ``where`` (1, 1,
    h, w), if given, weights each position of a (1, C, h, w) map, target norm included."""
    diff = (value - target).pow(2)
    if where is None:
        if normalization == "neural-style":
            return diff.mean()
        return diff.sum() / target.pow(2).sum().clamp_min(_EPS)
    if normalization == "neural-style":
        return (diff * where).sum() / (where.sum() * value.shape[1]).clamp_min(_EPS)
    return (diff * where).sum() / (target.pow(2) * where).sum().clamp_min(_EPS)


def tv_loss(image: Tensor, normalization: str) -> Tensor:
    """Total variation (L1) of a (1, 3, H, W) image in [0, 1]."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs()
    if normalization == "neural-style":
        return 255.0 * (dx.sum() + dy.sum())
    return dx.mean() + dy.mean()


class _NormalizeGradient(torch.autograd.Function):
    """Identity forward; backward rescales the gradient to L1 norm ``strength``.

    This is neural-style's ``-normalize_gradients``: every loss layer pushes with its own weight,
    however large its raw gradient is.
    """

    @staticmethod
    def forward(ctx, x: Tensor, strength: float) -> Tensor:  # type: ignore[override]
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad / (grad.abs().sum() + 1e-8) * ctx.strength, None


def normalize_gradient(x: Tensor, strength: float) -> Tensor:
    """Pass ``x`` through unchanged, with its gradient normalised to L1 norm ``strength``."""
    return _NormalizeGradient.apply(x, strength)
