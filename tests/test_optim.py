"""The device-read-free optimisers: the same iterates as torch.optim's, and no host reads."""

from __future__ import annotations

import sys

import pytest
import torch

from neural_mirage.engine import RenderParams, render
from neural_mirage.engine.optim import LBFGS, Adam
from neural_mirage.engine.render import Scale, _Objective, _Stepper

from .device_reads import DeviceReads


def _problem(dtype: torch.dtype):
    """A small non-convex problem: a saturating least squares plus a quartic."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 192, generator=g, dtype=dtype) / 10
    b = torch.randn(300, generator=g, dtype=dtype) / 2
    x0 = torch.randn(1, 3, 8, 8, generator=g, dtype=dtype)

    def f(x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(a @ x.reshape(-1)) - b).pow(2).sum() + 0.01 * x.pow(4).sum()
    return f, x0


def _torch_lbfgs(f, x0, history: int, steps: int) -> list[torch.Tensor]:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=history,
                            tolerance_grad=-1, tolerance_change=-1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss
    iterates = []
    for _ in range(steps):
        opt.step(closure)
        iterates.append(x.detach().clone())
    return iterates


def _our_steps(f, x0, optimizer, steps: int) -> list[torch.Tensor]:
    x = x0.clone().requires_grad_(True)
    opt = optimizer(x)
    iterates = []
    for _ in range(steps):
        x.grad = None
        f(x).backward()
        opt.step(x.grad)
        iterates.append(x.detach().clone())
    return iterates


@pytest.mark.parametrize("history", [3, 100])
def test_lbfgs_iterates_match_torch_lbfgs(history):
    """Float64, so that the comparison sees the algorithm, not rounding: the same iterates to
    1e-9 for 60 steps, with a history that fills and wraps (3) and one that never does (100)."""
    f, x0 = _problem(torch.float64)
    theirs = _torch_lbfgs(f, x0, history, 60)
    ours = _our_steps(f, x0, lambda x: LBFGS(x, history), 60)
    for step, (a, b) in enumerate(zip(theirs, ours, strict=True)):
        assert torch.allclose(a, b, rtol=0, atol=1e-9), f"step {step}: {(a - b).abs().max()}"


def test_lbfgs_in_float32_reaches_the_same_loss():
    f, x0 = _problem(torch.float32)
    theirs = f(_torch_lbfgs(f, x0, 20, 150)[-1]).item()
    ours = f(_our_steps(f, x0, lambda x: LBFGS(x, 20), 150)[-1]).item()
    assert ours == pytest.approx(theirs, rel=0.01)


def test_adam_iterates_match_torch_adam():
    f, x0 = _problem(torch.float64)
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.05)
    theirs = []
    for _ in range(30):
        opt.zero_grad()
        f(x).backward()
        opt.step()
        theirs.append(x.detach().clone())
    ours = _our_steps(f, x0, lambda x: Adam(x, 0.05), 30)
    for a, b in zip(theirs, ours, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_optimiser_steps_read_nothing_from_the_device():
    f, x0 = _problem(torch.float32)
    for make in (lambda x: LBFGS(x, 5), lambda x: Adam(x, 0.05)):
        x = x0.clone().requires_grad_(True)
        opt = make(x)
        f(x).backward()
        with DeviceReads() as reads:
            for _ in range(8):
                opt.step(x.grad)
        assert reads.count == 0


def test_torch_lbfgs_reads_many_times_per_step():
    """The counter sees what the engine used to do: torch.optim.LBFGS reads every step."""
    f, x0 = _problem(torch.float32)
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=1, history_size=5, tolerance_grad=-1,
                            tolerance_change=-1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss
    for _ in range(6):
        opt.step(closure)
    with DeviceReads() as reads:
        for _ in range(5):
            opt.step(closure)
    assert reads.count / 5 > 5


@pytest.mark.parametrize("batch", [1, 10])
def test_a_render_reads_at_most_once_per_iteration(model, photo, monkeypatch, batch):
    """With the losses read every iteration (the CPU's setting), one read per iteration; read
    every 10 (a GPU's), one per 10 and one at each scale's end. And one for the result."""
    engine_render = sys.modules["neural_mirage.engine.render"]  # the module, not the function
    monkeypatch.setattr(engine_render, "read_every", lambda device: batch)
    params = RenderParams(size=96, iterations=30, scales=2, early_stop=0.0)
    seen = []
    with DeviceReads() as reads:
        result = render(model, photo, params, see_top=0, on_progress=seen.append)
    assert result.iterations == 45
    assert [p.iteration for p in seen] == list(range(46))  # every iteration still reported
    assert reads.count <= -(-15 // batch) + -(-30 // batch) + 1


def test_neural_style_normalisation_optimises_the_0_255_image(model, photo):
    """neural-style-pt optimises the network's 0..255 input: its first L-BFGS step is
    min(1, 1/|g|_1) times the gradient with respect to that, in pixel units 255 times the
    gradient with respect to the [0, 1] image."""
    params = RenderParams(normalization="neural-style", style_weight=100.0, content_weight=5.0)
    image = photo.unsqueeze(0)
    objective = _Objective(model, params, image, [image], [1.0], checkpoint=False)
    start = torch.full_like(image, 0.5)
    stepper = _Stepper(objective, params, Scale(64, 48, 1), start, graphs=False)
    stepper.step()

    z = (start * 255).requires_grad_(True)
    objective(z / 255)[0].backward()
    expected = (z - min(1.0, 1 / z.grad.abs().sum().item()) * z.grad) / 255
    assert torch.allclose(stepper.image, expected, atol=1e-6)
