"""The optimisation: an image whose fc features match the content and whose Grams match the style.

One :func:`render` call runs a coarse-to-fine schedule of scales. At each scale the targets are
computed once, the image from the previous scale is upsampled, and L-BFGS (or Adam) runs for that
scale's iterations or until the loss stops improving. A progress callback sees every iteration and
a cancel check runs before every iteration, so a cancel takes effect within one iteration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import feature_loss, gram, normalize_gradient, tv_loss
from .params import ParamError, RenderParams
from .seeing import Seen, top_classes
from .steering import steering_loss, steering_target
from .vgg import MIN_SIDE, MirageVGG

#: Iterations over which the early stop compares the loss.
EARLY_STOP_WINDOW = 25
#: Memory the automatic L-BFGS history may use (two image-sized vectors per entry): 40 entries at
#: 512x512, 10 at 1024x1024, which keeps a 1024 px render under 4 GB (benchmarks/memory_peak.py).
LBFGS_HISTORY_BUDGET = 256 * 2**20
#: The smallest side a coarse scale is given (the coarse scales exist to be cheap, not tiny).
COARSEST_SIDE = 128


class RenderCancelled(Exception):
    """The cancel check returned True; raised within one iteration of it."""


class RenderDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Progress:
    """What the progress callback gets after every iteration."""

    iteration: int
    """Iterations done so far, over all scales; 0 once, when the render starts."""
    total: int
    """Iterations planned over all scales (early stops make the real number smaller)."""
    scale: int
    """1-based index of the current scale."""
    scales: int
    scale_iteration: int
    """Iterations done at the current scale (what a person reads as "iteration 12/40")."""
    scale_iterations: int
    """Iterations planned at the current scale; the final scale's is ``params.iterations``."""
    width: int
    height: int
    loss: float | None
    """The total loss; None at iteration 0."""
    losses: dict[str, float]
    """Each weighted term: ``content:fc7``, ``style:relu1_1``, ..., ``tv``."""
    elapsed: float
    eta: float
    """Seconds left, estimated from the work (pixels x iterations) still planned."""
    preview: Tensor | None = None
    """The current image (3, H, W) in [0, 1] on the CPU, every ``preview_every`` iterations."""


@dataclass
class RenderResult:
    image: Tensor
    """(3, H, W) RGB in [0, 1], float32, on the CPU."""
    iterations: int
    loss: float
    losses: dict[str, float]
    elapsed: float
    stopped_early: bool
    seen_input: list[Seen] = field(default_factory=list)
    seen_result: list[Seen] = field(default_factory=list)


@dataclass(frozen=True)
class Scale:
    width: int
    height: int
    iterations: int


def fit_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longest side is ``longest``, keeping the aspect ratio."""
    factor = longest / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def plan_scales(width: int, height: int, params: RenderParams) -> list[Scale]:
    """The coarse-to-fine schedule for a final size of ``width`` x ``height``.

    Each coarser scale halves the side and the iterations: a coarse scale only has to lay out the
    image for the next one, and measured on the bundled example (benchmarks/time_to_result.py)
    halving reached a given final loss sooner than the same or twice the iterations (too few
    coarse iterations cost more at the final size again). Automatic scales stop
    before the longest side falls below 128 px, and are at most 4. Scales whose shortest side
    would fall below 32 px are left out, automatic or not.
    """
    if min(width, height) < MIN_SIDE:
        raise ParamError(f"the result would be {width}x{height}; VGG needs at least "
                         f"{MIN_SIDE} px on each side: raise size or use a less elongated image")
    count = params.scales
    if count == 0:
        count = 1
        while count < 4 and max(width, height) >> count >= COARSEST_SIDE:
            count += 1
    scales = []
    for level in range(count - 1, -1, -1):
        w, h = round(width / 2**level), round(height / 2**level)
        if min(w, h) >= MIN_SIDE:
            scales.append(Scale(w, h, max(1, params.iterations >> level)))
    return scales


def fit_at_least(width: int, height: int, longest: int) -> tuple[int, int]:
    """:func:`fit_size`, enlarged where needed so the shortest side is at least 32 px."""
    w, h = fit_size(width, height, longest)
    if min(w, h) < MIN_SIDE:
        longest = math.ceil(MIN_SIDE * max(width, height) / min(width, height))
        w, h = fit_size(width, height, longest)
    return w, h


def resize(image: Tensor, width: int, height: int) -> Tensor:
    """Resize a (N, 3, H, W) image; antialiased when shrinking."""
    if image.shape[-2:] == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1)


def keep_colors(result: Tensor, content: Tensor) -> Tensor:
    """Luminance of ``result`` with the chroma of ``content`` (neural-style's original_colors)."""
    def ycbcr(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r, g, b = rgb.unbind(-3)
        y = 0.299 * r + 0.587 * g + 0.114 * b
        return y, (b - y) * 0.564, (r - y) * 0.713

    y, _, _ = ycbcr(result)
    _, cb, cr = ycbcr(content)
    r = y + 1.403 * cr
    b = y + 1.773 * cb
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b], dim=-3).clamp(0, 1)


class _Objective:
    """The loss at one scale: targets computed once, then evaluated every iteration."""

    def __init__(self, model: MirageVGG, params: RenderParams, content: Tensor,
                 styles: Sequence[Tensor], blend: Sequence[float], checkpoint: bool) -> None:
        self.model = model
        self.params = params
        self.checkpoint = checkpoint
        self.layers = set(params.content_layers) | set(params.style_layers)
        self.see_target = None
        if params.see:
            self.layers.add("fc8")
            self.see_target = steering_target(params.see, model.labels, content.device)
        with torch.no_grad():
            feats = model.features(content, params.content_layers, params.pooling)
            self.content_targets = {k: v.detach().clone() for k, v in feats.items()}
            self.style_targets: dict[str, Tensor] = {}
            for style, weight in zip(styles, blend, strict=True):
                feats = model.features(style, params.style_layers, params.pooling)
                for name in params.style_layers:
                    g = gram(feats[name]) * weight
                    old = self.style_targets.get(name)
                    self.style_targets[name] = g if old is None else old + g

    def __call__(self, image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        p = self.params
        feats = self.model.features(image, self.layers, p.pooling, self.checkpoint)
        terms: dict[str, Tensor] = {}
        for name, layer_weight in p.content_layers.items():
            weight = p.content_weight * layer_weight
            f = normalize_gradient(feats[name], weight) if p.normalize_gradients else feats[name]
            terms[f"content:{name}"] = weight * feature_loss(
                f, self.content_targets[name], p.normalization)
        for name, layer_weight in p.style_layers.items():
            weight = p.style_weight * layer_weight
            f = normalize_gradient(feats[name], weight) if p.normalize_gradients else feats[name]
            terms[f"style:{name}"] = weight * feature_loss(
                gram(f), self.style_targets[name], p.normalization)
        if self.see_target is not None:
            terms["see"] = p.see_weight * steering_loss(feats["fc8"], self.see_target)
        if p.tv_weight > 0:
            terms["tv"] = p.tv_weight * tv_loss(image, p.normalization)
        return torch.stack(list(terms.values())).sum(), terms


class _Stepper:
    """One optimiser on one image at one scale; :meth:`step` is one iteration."""

    def __init__(self, objective: _Objective, params: RenderParams, scale: Scale,
                 start: Tensor) -> None:
        self.objective = objective
        self.clamp = params.optimizer == "adam"
        # A copy: at the input's own size, resize returns the caller's tensor itself.
        self.image = resize(start.detach(), scale.width, scale.height).clone(
            memory_format=torch.contiguous_format)
        self.image.requires_grad_(True)
        if params.optimizer == "lbfgs":
            # One function evaluation per step, no line search: neural-style's behaviour, and it
            # lets progress, previews and cancel happen between any two evaluations.
            self.optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
                [self.image], lr=1.0, max_iter=1, history_size=lbfgs_history_size(params, scale),
                tolerance_grad=-1, tolerance_change=-1)
        else:
            self.optimizer = torch.optim.Adam([self.image], lr=params.learning_rate)
        self._terms: dict[str, Tensor] = {}

    def _closure(self) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss, self._terms = self.objective(self.image)
        loss.backward()
        return loss

    def step(self) -> tuple[float, dict[str, float]]:
        """Run one iteration; return the loss and its terms (at the point evaluated)."""
        loss = float(self.optimizer.step(self._closure).detach())
        if self.clamp:
            with torch.no_grad():
                self.image.clamp_(0, 1)
        if not math.isfinite(loss):
            raise RenderDiverged("the loss became NaN or infinite: lower the weights "
                                 "(or the learning rate with Adam)")
        values = torch.stack(list(self._terms.values())).detach().tolist()
        return loss, dict(zip(self._terms, values, strict=True))


#: Working memory per pixel of a scale, L-BFGS history aside: measured on the CPU as the rise of
#: peak RSS during 512 and 768 px renders with the default layers (2,730 and 2,490 B/px,
#: 2026-11-27; an H100 showed about 2,400, 27 GiB at 4096x3072), and 1,830 B/px at 768 px with
#: the conv blocks checkpointed.
BYTES_PER_PIXEL = 2800
CHECKPOINTED_BYTES_PER_PIXEL = 2000


def scale_memory(params: RenderParams, scale: Scale, checkpoint: bool) -> int:
    """Estimated working memory of one scale: the activations kept for the backward pass
    (ReLU outputs, pooling indices, gradients) plus the L-BFGS history, two image-sized vectors
    per entry."""
    per_pixel = CHECKPOINTED_BYTES_PER_PIXEL if checkpoint else BYTES_PER_PIXEL
    entries = lbfgs_history_size(params, scale) if params.optimizer == "lbfgs" else 2
    return scale.width * scale.height * (per_pixel + 2 * 3 * 4 * entries)


def lbfgs_history_size(params: RenderParams, scale: Scale) -> int:
    """L-BFGS history entries for a scale: the user's, or as many as fit the budget (5..100)."""
    if params.lbfgs_history:
        return params.lbfgs_history
    entry_bytes = 2 * 3 * scale.width * scale.height * 4
    return max(5, min(100, LBFGS_HISTORY_BUDGET // entry_bytes))


def _initial_image(params: RenderParams, content: Tensor, init_image: Tensor | None,
                   scale: Scale) -> Tensor:
    if params.init == "content":
        return resize(content, scale.width, scale.height)
    if params.init == "image":
        if init_image is None:
            raise ParamError("init 'image' needs an init image")
        return resize(init_image.to(content.device, content.dtype).unsqueeze(0),
                      scale.width, scale.height)
    # Seeded on the CPU so the same seed gives the same start on every device.
    generator = torch.Generator().manual_seed(params.seed)
    noise = torch.randn(1, 3, scale.height, scale.width, generator=generator)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    return (mean + 0.05 * noise).clamp(0, 1).to(content.device)


def render(
    model: MirageVGG,
    content: Tensor,
    params: RenderParams,
    styles: Sequence[Tensor] | None = None,
    init_image: Tensor | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    see_top: int = 5,
    memory_budget: int | None = None,
) -> RenderResult:
    """Render a neural mirage of ``content`` (a (3, H, W) RGB tensor in [0, 1]).

    Args:
        model: the network, already on its device and in eval mode.
        content: the photo whose fc (and conv) features are kept.
        params: the render parameters (validated here).
        styles: style images (3, H, W) in [0, 1]; default: the content itself.
        init_image: start image for ``init="image"``.
        on_progress: called once before the first iteration (iteration 0), then after every
            iteration.
        should_cancel: polled before every iteration; True raises :class:`RenderCancelled`.
        see_top: how many classes to report for the input and the result (0: none).
        memory_budget: bytes the render may use; a scale whose estimate exceeds it runs with
            the conv blocks checkpointed (see :func:`scale_memory`). None: never.
    """
    params.validate().check_model(model.layer_names, model.labels)
    started = time.perf_counter()
    device = next(model.parameters()).device
    styles = list(styles) if styles else [content]
    blend = params.style_blend or [1.0] * len(styles)
    if len(blend) != len(styles):
        raise ParamError(f"{len(styles)} style image(s) but {len(blend)} blend weight(s)")
    blend = [w / sum(blend) for w in blend]
    content = content.to(device, torch.float32).unsqueeze(0)
    styles = [s.to(device, torch.float32).unsqueeze(0) for s in styles]

    width, height = fit_size(content.shape[-1], content.shape[-2], params.size)
    scales = plan_scales(width, height, params)
    total = sum(s.iterations for s in scales)
    work_total = sum(s.iterations * s.width * s.height for s in scales)
    work_done = 0
    done = 0
    stopped_early = False
    loss_value = math.inf
    loss_terms: dict[str, float] = {}
    image = _initial_image(params, content, init_image, scales[0])
    if on_progress is not None:  # tells a waiting user at once that the render has started
        on_progress(Progress(iteration=0, total=total, scale=1, scales=len(scales),
                             scale_iteration=0, scale_iterations=scales[0].iterations,
                             width=scales[0].width, height=scales[0].height, loss=None,
                             losses={}, elapsed=time.perf_counter() - started, eta=0.0))

    for index, scale in enumerate(scales, start=1):
        content_s = resize(content, scale.width, scale.height)
        style_side = round(params.style_scale * max(scale.width, scale.height))
        styles_s = [resize(s, *fit_at_least(s.shape[-1], s.shape[-2], style_side))
                    for s in styles]
        # Checkpoint the conv blocks only where the plain pass would not fit: small scales stay
        # fast, and the budget decides for the large ones.
        checkpoint = (memory_budget is not None
                      and scale_memory(params, scale, checkpoint=False) > memory_budget)
        objective = _Objective(model, params, content_s, styles_s, blend, checkpoint)
        stepper = _Stepper(objective, params, scale, image)
        history: list[float] = []
        for _ in range(scale.iterations):
            if should_cancel is not None and should_cancel():
                raise RenderCancelled()
            loss_value, loss_terms = stepper.step()
            done += 1
            work_done += scale.width * scale.height
            history.append(loss_value)
            if on_progress is not None:
                elapsed = time.perf_counter() - started
                preview = None
                if params.preview_every and done % params.preview_every == 0:
                    preview = stepper.image.detach()[0].clamp(0, 1).float().cpu()
                on_progress(Progress(
                    iteration=done, total=total, scale=index, scales=len(scales),
                    scale_iteration=len(history), scale_iterations=scale.iterations,
                    width=scale.width, height=scale.height, loss=loss_value, losses=loss_terms,
                    elapsed=elapsed, eta=elapsed / work_done * (work_total - work_done),
                    preview=preview))
            if (params.early_stop and len(history) > EARLY_STOP_WINDOW
                    and history[-EARLY_STOP_WINDOW - 1] - loss_value
                    < params.early_stop * abs(history[-EARLY_STOP_WINDOW - 1])):
                stopped_early = True
                break
        work_total -= (scale.iterations - len(history)) * scale.width * scale.height
        image = stepper.image.detach()

    result = image.clamp(0, 1)
    if params.original_colors:
        result = keep_colors(result, resize(content, width, height))
    seen_input = top_classes(model, resize(content, width, height), see_top) if see_top else []
    seen_result = top_classes(model, result, see_top) if see_top else []
    return RenderResult(
        image=result[0].float().cpu(), iterations=done, loss=loss_value, losses=loss_terms,
        elapsed=time.perf_counter() - started, stopped_early=stopped_early,
        seen_input=seen_input, seen_result=seen_result)
