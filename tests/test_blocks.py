"""Rendering block by block: the whole image's loss and gradient, in the memory of one tile."""

from __future__ import annotations

import sys

import pytest
import torch

from neural_mirage.engine import RenderParams, render
from neural_mirage.engine.blocks import BlockwiseObjective, plan_blocks
from neural_mirage.engine.estimate import check_memory, peak_bytes
from neural_mirage.engine.render import Scale, _Objective, scale_memory, scale_mode

ENGINE_RENDER = sys.modules["neural_mirage.engine.render"]  # the module, not the function


def _images(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    y = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
    x = torch.linspace(0, 1, width).view(1, width).expand(height, width)
    content = torch.stack([x, y, (x * 7).sin().abs()])[None]
    style = torch.rand(1, 3, 150, 170, generator=g)
    image = torch.rand(1, 3, height, width, generator=g)
    return content, style, image


def test_blocks_cover_the_image_once_with_aligned_halos():
    blocks = plan_blocks(300, 200, 96)
    assert len(blocks) == 4 * 3
    covered = torch.zeros(200, 300, dtype=torch.int32)
    for b in blocks:
        covered[b.y0:b.y1, b.x0:b.x1] += 1
        assert b.x0 % 32 == 0 and b.y0 % 32 == 0 and b.tx0 % 32 == 0 and b.ty0 % 32 == 0
        assert b.x0 - b.tx0 in (0, 128) or b.tx0 == 0
    assert bool((covered == 1).all())


@pytest.mark.parametrize("fc_spatial,masked", [(0.0, False), (0.5, True)])
def test_loss_gradient_and_classes_by_blocks_equal_the_whole_image_ones(model, fc_spatial,
                                                                        masked):
    """Every kind of term: fc content (through pool5; pooled, or blended with the spatial
    map), a conv content layer, Grams of two blended style images, class steering (everywhere,
    or under a mask) and total variation; blocks of 64 px, so that 5x4 blocks with halos make
    the image."""
    content, style, image = _images(300, 260)
    params = RenderParams(content_layers={"fc7": 1.0, "relu3_2": 0.5}, see={"church": 1.0},
                          fc_spatial=fc_spatial)
    mask = None
    if masked:
        mask = torch.zeros(260, 300)
        mask[:, :100] = 1.0
    direct = _Objective(model, params, content, [content, style], [0.7, 0.3], checkpoint=False,
                        see_mask=mask)
    x = image.clone().requires_grad_(True)
    loss, terms = direct(x)
    loss.backward()
    blocks = BlockwiseObjective(model, params, content, [content, style], [0.7, 0.3], side=64,
                                see_mask=mask)
    loss_b, terms_b, grad_b = blocks.with_gradient(image)
    assert list(terms_b) == list(terms)
    assert loss_b.item() == pytest.approx(loss.item(), rel=1e-5)
    for name, value in terms.items():
        assert terms_b[name].item() == pytest.approx(value.item(), rel=1e-4), name
    assert ((grad_b - x.grad).norm() / x.grad.norm()).item() < 1e-4
    assert torch.allclose(blocks.logits(image), model(image), atol=1e-5)


def test_a_budget_too_small_even_for_checkpoints_renders_by_blocks_without_seams(
        model, monkeypatch):
    """Blocks of 64 px (the smallest allowed is lowered for the test): the render's loss is
    the direct render's within 10 %, and the image's gradient along block borders is like
    everywhere else (a seam would stand out there)."""
    monkeypatch.setattr(ENGINE_RENDER, "MIN_BLOCK", 64)
    content, _, _ = _images(256, 192)
    params = RenderParams(size=256, iterations=6, scales=1, early_stop=0.0)
    scale = Scale(256, 192, 6)
    budget = scale_memory(params, scale, checkpoint=True) // 2
    mode, side = scale_mode(params, scale, budget)
    assert mode == "blocks" and 64 <= side < 256
    monkeypatch.setattr(ENGINE_RENDER, "scale_mode", lambda *a: ("blocks", 64))
    by_blocks = render(model, content[0], params, see_top=3, memory_budget=budget)
    monkeypatch.undo()
    direct = render(model, content[0], params, see_top=3)
    assert by_blocks.loss == pytest.approx(direct.loss, rel=0.10)
    assert [s.name for s in by_blocks.seen_input] == [s.name for s in direct.seen_input]

    steps = (by_blocks.image[:, :, 1:] - by_blocks.image[:, :, :-1]).abs().mean(dim=(0, 1))
    borders = torch.tensor([x - 1 for x in range(64, 256, 64)])  # the step across x = 64k
    inside = torch.ones(255, dtype=torch.bool)
    inside[borders] = False
    ratio = (steps[borders].mean() / steps[inside].mean()).item()
    assert 0.8 < ratio < 1.25


def test_the_estimate_counts_on_blocks_where_checkpoints_do_not_fit():
    params = RenderParams(size=4096)
    plain_need = peak_bytes(4096, 3072, params)
    budget = 8 * 10**9
    need = peak_bytes(4096, 3072, params, budget)
    assert need <= budget < plain_need
    check_memory(4096, 3072, params, budget, "cpu")  # no refusal
