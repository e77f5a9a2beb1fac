"""The optimisation: an image whose fc features match the content and whose Grams match the style.

One :func:`render` call runs a coarse-to-fine schedule of scales. At each scale the targets are
computed once, the image from the previous scale is upsampled, and L-BFGS (or Adam) runs for that
scale's iterations or until the loss stops improving. A progress callback sees every iteration (on a
GPU in batches of :func:`read_every`, read back together) and a cancel check runs before every
iteration, so a cancel takes effect within one iteration.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .blocks import ALIGN, HALO, BlockwiseObjective
from .device import compute_settings
from .head import HeadLoss, reads_pool5
from .losses import feature_loss, gram, normalize_gradient, tv_loss
from .optim import LBFGS, Adam
from .params import ParamError, RenderParams
from .seeing import Seen, top_classes
from .vgg import HEAD_LAYERS, MIN_SIDE, MirageVGG

log = logging.getLogger(__name__)

#: Iterations over which the early stop compares the loss.
EARLY_STOP_WINDOW = 25
#: Memory the automatic L-BFGS history may use (two image-sized vectors per entry): 40 entries at
#: 512x512, 10 at 1024x1024, which keeps a 1024 px render under 4 GB (benchmarks/memory_peak.py).
LBFGS_HISTORY_BUDGET = 256 * 2**20
#: Capture each scale's step in a CUDA graph where memory allows (False: always eager).
USE_CUDA_GRAPHS = True
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
                 styles: Sequence[Tensor], blend: Sequence[float], checkpoint: bool,
                 see_mask: Tensor | None = None) -> None:
        self.model = model
        self.params = params
        self.checkpoint = checkpoint
        self.conv_content = [n for n in params.content_layers if n not in HEAD_LAYERS]
        self.layers = set(self.conv_content) | set(params.style_layers)
        self.head: HeadLoss | None = None
        if reads_pool5(params):
            self.layers.add("pool5")
        with torch.no_grad():
            feats = model.features(content, self.layers - set(params.style_layers),
                                   params.pooling)
            self.content_targets = {n: feats[n].detach().clone() for n in self.conv_content}
            if reads_pool5(params):
                self.head = HeadLoss(model, params, feats["pool5"], see_mask)
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
        head = self.head(feats["pool5"]) if self.head is not None else {}
        terms: dict[str, Tensor] = {}
        for name, layer_weight in p.content_layers.items():
            if name in HEAD_LAYERS:
                terms[f"content:{name}"] = head[f"content:{name}"]
                continue
            weight = p.content_weight * layer_weight
            f = normalize_gradient(feats[name], weight) if p.normalize_gradients else feats[name]
            terms[f"content:{name}"] = weight * feature_loss(
                f, self.content_targets[name], p.normalization)
        for name, layer_weight in p.style_layers.items():
            weight = p.style_weight * layer_weight
            f = normalize_gradient(feats[name], weight) if p.normalize_gradients else feats[name]
            terms[f"style:{name}"] = weight * feature_loss(
                gram(f), self.style_targets[name], p.normalization)
        if "see" in head:
            terms["see"] = head["see"]
        if p.tv_weight > 0:
            terms["tv"] = p.tv_weight * tv_loss(image, p.normalization)
        return torch.stack(list(terms.values())).sum(), terms


class _Stepper:
    """One optimiser on one image at one scale; :meth:`step` is one iteration.

    A step reads nothing back from the device: it returns the loss terms as a device tensor, and
    the render reads them in batches (:func:`read_every`). On CUDA, once cuDNN has tuned its
    algorithms, the whole step (forward, backward, L-BFGS) is captured in a CUDA graph and
    replayed: one launch instead of about a thousand.
    """

    def __init__(self, objective: _Objective | BlockwiseObjective, params: RenderParams,
                 scale: Scale, start: Tensor, graphs: bool) -> None:
        self.objective = objective
        # neural-style optimises the network's 0..255 input, as neural-style-pt does, so that
        # its L-BFGS steps and Adam learning rates are the same in pixel units.
        self.unit = 255.0 if params.normalization == "neural-style" else 1.0
        # A new tensor (mul), never the caller's: at the input's own size resize returns it.
        self.variable = resize(start.detach(), scale.width, scale.height).mul(self.unit)
        self.variable = self.variable.contiguous().requires_grad_(True)
        self.clamp = params.optimizer == "adam"
        self.optimizer: LBFGS | Adam
        if params.optimizer == "lbfgs":
            # One function evaluation per step, no line search: neural-style's behaviour, and it
            # lets progress, previews and cancel happen between any two evaluations.
            self.optimizer = LBFGS(self.variable, lbfgs_history_size(params, scale))
        else:
            self.optimizer = Adam(self.variable, params.learning_rate)
        self.names: list[str] = []
        self._eager_steps = GRAPH_WARMUP if graphs and params.optimizer == "lbfgs" else -1
        self._graph: torch.cuda.CUDAGraph | None = None
        self._side: torch.cuda.Stream | None = None
        self._graph_values = torch.empty(0)

    @property
    def image(self) -> Tensor:
        """The current image (1, 3, H, W) in [0, 1] (no copy when the units are the same)."""
        return self.variable.detach() if self.unit == 1 else self.variable.detach() / self.unit

    def _step(self) -> Tensor:
        if isinstance(self.objective, BlockwiseObjective):
            loss, terms, grad = self.objective.with_gradient(self.image)
            self.optimizer.step(grad.div_(self.unit))  # d/d(variable) = d/d(image) / unit
        else:
            self.variable.grad = None
            loss, terms = self.objective(self.variable / self.unit)
            loss.backward()
            self.optimizer.step(self.variable.grad)
        if self.clamp:
            with torch.no_grad():
                self.variable.clamp_(0, self.unit)
        self.names = list(terms)
        return torch.stack([loss, *terms.values()]).detach()

    def step(self) -> Tensor:
        """Run one iteration; return [loss, *terms] at the point evaluated, on the device."""
        if self._graph is not None:
            self._graph.replay()
            return self._graph_values.clone()
        if self._eager_steps < 0:
            return self._step()
        # cuDNN tunes, and the allocator settles, on a side stream (CUDA graphs' rule); one
        # stream for all warm-up steps, since cached memory is reused only on its own stream.
        self._side = self._side or torch.cuda.Stream()
        self._side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side):
            values = self._step()
        torch.cuda.current_stream().wait_stream(self._side)
        self._eager_steps -= 1
        if self._eager_steps == 0:
            self._capture()
        return values

    def _capture(self) -> None:
        """Record one step as a CUDA graph (it runs at each replay); on failure stay eager."""
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._graph_values = self._step()
        except RuntimeError as exc:  # an operation that cannot be captured: slower, not wrong
            log.warning("CUDA graph capture failed, the render goes on without: %s", exc)
            self._eager_steps = -1
            return
        self._graph = graph


#: Eager steps before a CUDA graph is captured (cuDNN's autotuner runs in the first).
GRAPH_WARMUP = 3
#: Larger scales step eagerly: their kernels are long enough to hide the launches, and a graph
#: keeps a second copy of the step's working memory. (On an H200 a 2048x1536 render whose warm-up
#: made a new stream per step peaked at 129 GiB against 8.6 estimated; the warm-up now keeps one
#: stream, not yet measured on a GPU.)
GRAPH_MAX_PIXELS = 1024 * 1024


def read_every(device: torch.device) -> int:
    """Iterations whose losses are read back in one go. A read makes the host wait for the
    device: on a GPU, reading every iteration left it idle about 40 % of the time. On the CPU a
    read costs nothing, and the progress stays per iteration."""
    return 1 if device.type == "cpu" else 10


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


#: Image-sized float vectors (3 floats a pixel) a blockwise scale needs besides the L-BFGS
#: history: the image, its gradient, the optimiser's last gradient and step, the content and style
#: images, and the temporaries of a step; measured as the RSS rise of block-by-block renders at
#: 1024x1024 (21 and 25) and 2048x2048 (18; benchmarks/memory_peak.py, 2026-11-27).
BLOCKWISE_VECTORS = 26
#: The smallest block side worth running: below it the halos cost more than the blocks.
MIN_BLOCK = 256


def blocks_memory(params: RenderParams, scale: Scale, side: int) -> int:
    """Estimated working memory of a scale run block by block (:mod:`.blocks`): one tile's
    activations plus the image-sized vectors, which are what grows with the image."""
    entries = lbfgs_history_size(params, scale) if params.optimizer == "lbfgs" else 2
    vectors = scale.width * scale.height * 3 * 4 * (2 * entries + BLOCKWISE_VECTORS)
    tile = min(side + 2 * HALO, scale.width) * min(side + 2 * HALO, scale.height)
    return vectors + tile * BYTES_PER_PIXEL


def scale_mode(params: RenderParams, scale: Scale, budget: int | None) -> tuple[str, int]:
    """How a scale runs within ``budget`` bytes: ``("plain", 0)``, ``("checkpoint", 0)`` (the
    conv blocks recomputed in the backward pass) or ``("blocks", side)``, the largest block side
    that fits, at least :data:`MIN_BLOCK` (whose memory may then exceed the budget)."""
    if budget is None or scale_memory(params, scale, checkpoint=False) <= budget:
        return "plain", 0
    if scale_memory(params, scale, checkpoint=True) <= budget:
        return "checkpoint", 0
    side = MIN_BLOCK
    longest = -(-max(scale.width, scale.height) // ALIGN) * ALIGN
    for trial in range(longest, MIN_BLOCK, -ALIGN):
        if blocks_memory(params, scale, trial) <= budget:
            side = trial
            break
    return "blocks", side


def mode_memory(params: RenderParams, scale: Scale, mode: tuple[str, int]) -> int:
    """The estimated working memory of a scale run in ``mode`` (from :func:`scale_mode`)."""
    kind, side = mode
    if kind == "blocks":
        return blocks_memory(params, scale, side)
    return scale_memory(params, scale, checkpoint=kind == "checkpoint")


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
    preview_every: int = 0,
    on_result: Callable[[RenderResult], None] | None = None,
    see_mask: Tensor | None = None,
) -> RenderResult:
    """Render a neural mirage of ``content`` (a (3, H, W) RGB tensor in [0, 1]).

    Args:
        model: the network, already on its device and in eval mode.
        content: the photo whose fc (and conv) features are kept.
        params: the render parameters (validated here).
        styles: style images (3, H, W) in [0, 1]; default: the content itself.
        init_image: start image for ``init="image"``.
        on_progress: called once before the first iteration (iteration 0), then once for every
            iteration, after it (on a GPU, for ten iterations at a time).
        should_cancel: polled before every iteration; True raises :class:`RenderCancelled`.
        see_top: how many classes to report for the input and the result (0: none).
        memory_budget: bytes the render may use; a scale whose estimate exceeds it runs with
            the conv blocks checkpointed (see :func:`scale_memory`). None: never.
        preview_every: hand the current image to ``on_progress`` every N iterations (0: never).
        on_result: called with the result while the render's working set is still held. Its
            release is not free (about 70 ms per GB on the CPU, gigabytes at camera sizes), so
            a daemon delivers the result first.
        see_mask: (H, W) in [0, 1], the content's size: steer (``params.see``) only where it is
            1 ("see a castle here"), through the spatial fc8 map (:mod:`.head`).
    """
    params.validate().check_model(model.layer_names, model.labels)
    if see_mask is not None:
        if not params.see:
            raise ParamError("a steering mask needs classes to steer towards (see)")
        if see_mask.shape != content.shape[-2:]:
            raise ParamError(f"the steering mask is {see_mask.shape[-1]}x{see_mask.shape[-2]}, "
                             f"the image {content.shape[-1]}x{content.shape[-2]}: they must match")
    device = next(model.parameters()).device
    with compute_settings(device, params.precision):
        return _render(model, device, content, params, styles, init_image, on_progress,
                       should_cancel, see_top, memory_budget, preview_every, on_result,
                       see_mask)


def _render(model: MirageVGG, device: torch.device, content: Tensor, params: RenderParams,
            styles: Sequence[Tensor] | None, init_image: Tensor | None,
            on_progress: Callable[[Progress], None] | None,
            should_cancel: Callable[[], bool] | None, see_top: int,
            memory_budget: int | None, preview_every: int,
            on_result: Callable[[RenderResult], None] | None,
            see_mask: Tensor | None) -> RenderResult:
    started = time.perf_counter()
    batch = read_every(device)
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
        # The plain pass where it fits, then the conv blocks checkpointed, then block by block:
        # small scales stay fast, and the budget decides for the large ones.
        mask_s = None
        if see_mask is not None:
            mask_s = resize(see_mask.to(device, torch.float32)[None, None], scale.width,
                            scale.height)[0, 0]
        mode, side = scale_mode(params, scale, memory_budget)
        objective: _Objective | BlockwiseObjective
        if mode == "blocks":
            objective = BlockwiseObjective(model, params, content_s, styles_s, blend, side,
                                           mask_s)
        else:
            objective = _Objective(model, params, content_s, styles_s, blend,
                                   mode == "checkpoint", mask_s)
        graphs = (USE_CUDA_GRAPHS and device.type == "cuda" and mode == "plain"
                  and scale.width * scale.height <= GRAPH_MAX_PIXELS
                  and (memory_budget is None
                       or 2 * scale_memory(params, scale, False) <= memory_budget))
        stepper = _Stepper(objective, params, scale, image, graphs)
        history: list[float] = []
        pending: list[Tensor] = []
        for planned in range(1, scale.iterations + 1):
            if should_cancel is not None and should_cancel():
                raise RenderCancelled()
            pending.append(stepper.step())
            preview_due = bool(preview_every and (done + len(pending)) % preview_every == 0)
            if len(pending) < batch and planned < scale.iterations and not preview_due:
                continue
            rows = torch.stack(pending).tolist()  # the one device-to-host read for the batch
            pending.clear()
            preview = (stepper.image[0].clamp(0, 1).float().cpu()
                       if preview_due and on_progress is not None else None)
            for position, row in enumerate(rows, start=1):
                loss_value, loss_terms = row[0], dict(zip(stepper.names, row[1:], strict=True))
                if not math.isfinite(loss_value):
                    raise RenderDiverged("the loss became NaN or infinite: lower the weights "
                                         "(or the learning rate with Adam)")
                done += 1
                work_done += scale.width * scale.height
                history.append(loss_value)
                if on_progress is not None:
                    elapsed = time.perf_counter() - started
                    on_progress(Progress(
                        iteration=done, total=total, scale=index, scales=len(scales),
                        scale_iteration=len(history), scale_iterations=scale.iterations,
                        width=scale.width, height=scale.height, loss=loss_value,
                        losses=loss_terms, elapsed=elapsed,
                        eta=elapsed / work_done * (work_total - work_done),
                        preview=preview if position == len(rows) else None))
                stopped_early = stopped_early or bool(
                    params.early_stop and len(history) > EARLY_STOP_WINDOW
                    and history[-EARLY_STOP_WINDOW - 1] - loss_value
                    < params.early_stop * abs(history[-EARLY_STOP_WINDOW - 1]))
            if stopped_early:
                break
        work_total -= (scale.iterations - len(history)) * scale.width * scale.height
        image = stepper.image

    result = image.clamp(0, 1)
    if params.original_colors:
        result = keep_colors(result, resize(content, width, height))
    # A render too large for one pass reads what the net sees block by block too.
    logits = objective.logits if isinstance(objective, BlockwiseObjective) else model
    seen_input = top_classes(logits, resize(content, width, height), see_top, model.labels) \
        if see_top else []
    seen_result = top_classes(logits, result, see_top, model.labels) if see_top else []
    finished = RenderResult(
        image=result[0].float().cpu(), iterations=done, loss=loss_value, losses=loss_terms,
        elapsed=time.perf_counter() - started, stopped_early=stopped_early,
        seen_input=seen_input, seen_result=seen_result)
    if on_result is not None:
        on_result(finished)
    return finished
