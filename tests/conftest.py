"""Shared fixtures: one seeded random-weights VGG19 (the real architecture, never pretrained)."""

from __future__ import annotations

import pytest
import torch

from neural_mirage.weights import ModelSpec, load_model

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def model():
    net, info = load_model(ModelSpec("random", seed=0))
    assert not info.pretrained
    return net


@pytest.fixture()
def photo() -> torch.Tensor:
    """A small structured image (gradients and a square), so Grams and fc features are not flat."""
    h, w = 48, 64
    y = torch.linspace(0, 1, h).view(h, 1).expand(h, w)
    x = torch.linspace(0, 1, w).view(1, w).expand(h, w)
    img = torch.stack([x, y, 1 - x * y])
    img[:, 10:30, 20:40] = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
    return img
