"""Spatial mirages: the fc layers as convolutions (exact against the pooled head and
torchvision), the steering mask's window coverage, and steering limited to a region."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import vgg19

from neural_mirage.engine import ParamError, RenderParams, render
from neural_mirage.engine.head import window_coverage
from neural_mirage.engine.steering import find_class, steering_loss
from neural_mirage.engine.vgg import random_state_dict


def _pool5(model, side_x: int, side_y: int, seed: int = 1) -> torch.Tensor:
    image = torch.rand(1, 3, side_y, side_x, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.features(image, ["pool5"])["pool5"], image


def test_at_224_the_spatial_fc8_map_is_one_cell_equal_to_pooled_and_torchvision(model):
    pool5, image = _pool5(model, 224, 224)
    with torch.no_grad():
        spatial = model.spatial_head(pool5, ["fc8"])["fc8"]
        pooled = model.head(pool5, ["fc8"])["fc8"]
        reference = vgg19()
        reference.load_state_dict(random_state_dict())
        logits = reference.eval()(model.prepare(image))
    assert spatial.shape == (1, 1000, 1, 1)
    torch.testing.assert_close(spatial[..., 0, 0], pooled, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(pooled, logits, atol=2e-6, rtol=1e-5)


def test_at_448_each_cell_is_the_fc_head_on_its_unfolded_pool5_window(model):
    pool5, _ = _pool5(model, 448, 448)
    with torch.no_grad():
        spatial = model.spatial_head(pool5, ["fc6", "fc8"])
        windows = F.unfold(pool5, 7)[0].t()  # (64 windows, 512*7*7), torch.flatten's order
        fc6 = model.layers["fc6"](windows)
        fc8 = model.layers["fc8"](torch.relu(model.layers["fc7"](torch.relu(fc6))))
    assert spatial["fc8"].shape == (1, 1000, 8, 8)
    torch.testing.assert_close(spatial["fc6"][0].flatten(1).t(), fc6, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(spatial["fc8"][0].flatten(1).t(), fc8, atol=2e-6, rtol=1e-5)


def test_under_224_px_the_spatial_map_is_one_window_across_that_side(model):
    pool5, _ = _pool5(model, 320, 128)  # pool5 is 10x4: 4 columns of windows, 1 row
    with torch.no_grad():
        spatial = model.spatial_head(pool5, ["fc8"])["fc8"]
        small, _ = _pool5(model, 128, 128)
        one = model.spatial_head(small, ["fc8"])["fc8"]
        torch.testing.assert_close(one[..., 0, 0], model.head(small, ["fc8"])["fc8"])
    assert spatial.shape == (1, 1000, 1, 4)


def test_window_coverage_is_the_masked_share_of_each_224_px_window():
    mask = torch.zeros(224, 448)
    mask[:, :160] = 1.0  # the left 160 px
    coverage = window_coverage(mask, (7, 14))
    assert coverage.shape == (1, 1, 1, 8)
    expected = torch.tensor([max(0, 160 - 32 * j) / 224 for j in range(8)])
    torch.testing.assert_close(coverage[0, 0, 0], expected)


def test_masked_steering_reads_only_the_covered_windows():
    target = torch.zeros(5)
    target[2] = 1.0
    logits = torch.randn(1, 5, 1, 3, generator=torch.Generator().manual_seed(0))
    where = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    loss = steering_loss(logits, target, where)
    changed = logits.clone()
    changed[..., 2] += 10.0  # a window the mask does not cover
    assert steering_loss(changed, target, where).item() == pytest.approx(loss.item())
    per_window = -torch.log_softmax(logits, 1)[0, 2, 0]
    assert loss.item() == pytest.approx(((per_window[0] + 0.5 * per_window[1]) / 1.5).item())


def test_steering_under_a_mask_moves_the_masked_windows_towards_the_class(model):
    """A 448x224 photo, "see a castle" on its left 160 px: the windows there gain more of the
    class than the windows the mask leaves free (random weights: the optimisation, not the
    picture, is what this checks)."""
    generator = torch.Generator().manual_seed(5)
    photo = torch.rand(3, 224, 448, generator=generator)
    mask = torch.zeros(224, 448)
    mask[:, :160] = 1.0
    castle = find_class("castle", model.labels)
    params = RenderParams(size=448, iterations=15, scales=1, early_stop=0.0, init="content",
                          fc_spatial=1.0, see={"castle": 1.0}, see_weight=5.0)

    def castle_share(image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pool5 = model.features(image[None], ["pool5"])["pool5"]
            return torch.softmax(model.spatial_head(pool5, ["fc8"])["fc8"], 1)[0, castle, 0]

    before = castle_share(photo)
    result = render(model, photo, params, see_top=0, see_mask=mask)
    gain = castle_share(result.image) / before
    assert gain[:2].min() > 1.5 and gain[5:].max() < 1.1, gain  # 2.3-2.6 and <= 1.01 here


def test_a_steering_mask_needs_classes_the_image_size_and_some_area(model):
    with pytest.raises(ParamError, match="needs classes"):
        render(model, torch.rand(3, 64, 64), RenderParams(), see_mask=torch.ones(64, 64))
    with pytest.raises(ParamError, match="must match"):
        render(model, torch.rand(3, 64, 64), RenderParams(see={"castle": 1.0}),
               see_mask=torch.ones(32, 64))
    with pytest.raises(ParamError, match="mask is empty"):
        render(model, torch.rand(3, 64, 64), RenderParams(see={"castle": 1.0}, size=64),
               see_mask=torch.zeros(64, 64))
