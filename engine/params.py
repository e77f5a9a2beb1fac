"""Render parameters: one dataclass, one place where they are checked.

Every check raises :class:`ParamError` with a sentence that names the parameter, so the CLI, the
daemon and the plug-ins can all show it to a person as it is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .device import PRECISIONS
from .losses import NORMALIZATIONS
from .vgg import LAYER_NAMES, SPATIAL_LAYERS

#: Largest output side we accept: a 8192x8192 L-BFGS render needs tens of GB.
MAX_SIZE = 8192
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class ParamError(ValueError):
    """A render parameter is wrong; the message says which and why."""


def _weights(names: tuple[str, ...] | list[str], weight: float = 1.0) -> dict[str, float]:
    return {name: weight for name in names}


@dataclass
class RenderParams:
    """Everything that decides a render, besides the images and the model."""

    size: int = 512
    """Longest side of the result in pixels."""
    content_layers: dict[str, float] = field(default_factory=lambda: {"fc7": 1.0})
    """Content layers with per-layer weights; fc6/fc7/fc8 carry "what the net sees"."""
    style_layers: dict[str, float] = field(default_factory=lambda: _weights(DEFAULT_STYLE_LAYERS))
    """Style (Gram) layers with per-layer weights; conv, relu or pool layers only."""
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 0.01
    normalization: str = "relative"
    style_blend: list[float] | None = None
    """Blend weights for several style images (normalised to sum 1); None means equal."""
    style_scale: float = 1.0
    init: str = "random"
    """``random`` (seeded noise), ``content`` (the content image) or ``image`` (a given image)."""
    seed: int = 0
    optimizer: str = "lbfgs"
    lbfgs_history: int = 0
    """L-BFGS history size; 0 picks the largest that keeps the history under 256 MB (5..100)."""
    learning_rate: float = 0.02
    """Adam step size on the [0, 1] image (on 0..255 with the ``neural-style`` normalisation)."""
    iterations: int = 500
    """Iterations at the final size; each coarser scale gets half as many."""
    scales: int = 0
    """Number of coarse-to-fine scales; 0 chooses from the size (each scale halves the side)."""
    pooling: str = "max"
    normalize_gradients: bool = False
    original_colors: bool = False
    """Keep the content's colours: only the luminance comes from the render."""
    early_stop: float = 1e-3
    """Stop a scale when the loss improves less than this fraction in 25 iterations (0: never)."""
    preview_every: int = 0
    """Hand a preview image to the progress callback every N iterations (0: never)."""
    see: dict[str, float] = field(default_factory=dict)
    """Class steering: class names, indices (as strings) or @groups, with weights."""
    see_weight: float = 1.0
    precision: str = "fp32"
    """``fp32``, or ``tf32``: CUDA's faster, less exact mode (see :data:`PRECISIONS`)."""

    def validate(self) -> RenderParams:
        """Check every field; return self so calls can be chained."""
        _int_range("size", self.size, 32, MAX_SIZE)
        _layers("content_layers", self.content_layers, LAYER_NAMES)
        _layers("style_layers", self.style_layers, SPATIAL_LAYERS,
                "style layers need a spatial map (conv, relu or pool layers, not fc)")
        for name in ("content_weight", "style_weight", "tv_weight", "style_scale",
                     "learning_rate", "early_stop", "see_weight"):
            _non_negative(name, getattr(self, name))
        if self.style_scale == 0 or self.learning_rate == 0:
            raise ParamError("style_scale and learning_rate must be greater than 0")
        if not self.content_layers and not self.style_layers:
            raise ParamError("at least one content or style layer is needed")
        _choice("normalization", self.normalization, NORMALIZATIONS)
        _choice("init", self.init, ("random", "content", "image"))
        _choice("optimizer", self.optimizer, ("lbfgs", "adam"))
        _choice("pooling", self.pooling, ("max", "avg"))
        _choice("precision", self.precision, PRECISIONS)
        _int_range("seed", self.seed, 0, 2**63 - 1)
        _int_range("lbfgs_history", self.lbfgs_history, 0, 1000)
        _int_range("iterations", self.iterations, 1, 100_000)
        _int_range("scales", self.scales, 0, 8)
        _int_range("preview_every", self.preview_every, 0, 100_000)
        if self.style_blend is not None:
            if not self.style_blend or any(not _is_number(w) or w < 0 for w in self.style_blend):
                raise ParamError("style_blend must be a list of non-negative numbers")
            if sum(self.style_blend) <= 0:
                raise ParamError("style_blend must not be all zero")
        if not isinstance(self.see, dict) or not all(
                isinstance(k, str) and _is_number(w) and w >= 0 for k, w in self.see.items()):
            raise ParamError("see must map class names to non-negative weights")
        for name in ("normalize_gradients", "original_colors"):
            if not isinstance(getattr(self, name), bool):
                raise ParamError(f"{name} must be true or false")
        return self

    def check_model(self, layer_names: tuple[str, ...], labels: tuple[str, ...]) -> None:
        """Check what depends on the model: its layers (VGG16 has fewer) and class names."""
        for name in (*self.content_layers, *self.style_layers):
            if name not in layer_names:
                raise ParamError(f"layer {name!r} is not in this model (VGG16 has no conv3_4, "
                                 "conv4_4, conv5_4 and their relu layers)")
        if self.see:
            from .steering import resolve

            resolve(self.see, labels)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for the protocol and for remembering settings)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderParams:
        """Build and validate from plain data; unknown keys are an error, not ignored."""
        if not isinstance(data, dict):
            raise ParamError("parameters must be a mapping of names to values")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ParamError(f"unknown parameter(s): {', '.join(unknown)}")
        params = cls(**data)
        for f in fields(cls):
            default = getattr(cls(), f.name)
            value = getattr(params, f.name)
            if isinstance(default, float) and _is_number(value):
                setattr(params, f.name, float(value))
        return params.validate()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _non_negative(name: str, value: Any) -> None:
    if not _is_number(value):
        raise ParamError(f"{name} must be a number, not {value!r}")
    if value < 0:
        raise ParamError(f"{name} must not be negative (got {value})")


def _int_range(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParamError(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise ParamError(f"{name} must be between {low} and {high} (got {value})")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParamError(f"{name} must be one of {', '.join(choices)} (got {value!r})")


def _layers(name: str, layers: Any, allowed: tuple[str, ...], why: str = "") -> None:
    if not isinstance(layers, dict):
        raise ParamError(f"{name} must map layer names to weights")
    for layer, weight in layers.items():
        if layer not in allowed:
            hint = why if layer in LAYER_NAMES else f"known layers: {', '.join(LAYER_NAMES)}"
            raise ParamError(f"{name}: unknown or unusable layer {layer!r} ({hint})")
        _non_negative(f"{name}[{layer}]", weight)
