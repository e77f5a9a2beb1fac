"""Between Picture (numpy, for files and sockets) and torch tensors."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .images import Picture


def to_tensor(picture: Picture) -> torch.Tensor:
    """(3, H, W) float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(picture.rgb.transpose(2, 0, 1))).float()


def from_tensor(image: torch.Tensor, source: Picture) -> Picture:
    """A Picture of ``image`` that keeps ``source``'s alpha (resized) and bit depth."""
    rgb = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    alpha = None
    if source.alpha is not None:
        height, width = rgb.shape[:2]
        alpha = np.asarray(Image.fromarray(source.alpha.astype(np.float32), mode="F")
                           .resize((width, height), Image.Resampling.BILINEAR)).clip(0, 1)
    return Picture(np.ascontiguousarray(rgb), alpha, source.bits)
