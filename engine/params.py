"""Render parameters: the one schema of every parameter, and where they are checked.

Each field of :class:`RenderParams` carries a :class:`Spec` (kind, bounds, unit, help, whether
it travels over the protocol). Everything else is made from it: the validation here, the CLI's
options, the daemon's refusal of unknown or CLI-only fields, the schema WELCOME sends (from which
the editors' dialogs take their bounds), and the parameter table in docs/protocol.md
(:func:`markdown_table`, checked by a test). Every check raises :class:`ParamError` with a
sentence that names the parameter, so the CLI, the daemon and the plug-ins can show it as it is.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .device import PRECISIONS
from .errors import ParamError
from .losses import NORMALIZATIONS
from .steering import resolve
from .vgg import LAYER_NAMES, SPATIAL_LAYERS

#: Largest output side we accept: a 8192x8192 L-BFGS render needs tens of GB.
MAX_SIZE = 8192
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: Kinds of parameter, as the schema names them.
KINDS = ("int", "float", "bool", "choice", "layers", "classes", "weights")


@dataclass(frozen=True)
class Spec:
    """What one render parameter is: its kind, bounds, unit and a line of help."""

    kind: str
    help: str
    low: float | None = None
    high: float | None = None
    positive: bool = False
    """The value must be above ``low`` (0), not equal to it."""
    choices: tuple[str, ...] = ()
    """For ``choice``: the values; for ``layers``: the layers allowed."""
    unit: str = ""
    wire: bool = True
    """False for CLI-only parameters, which the daemon refuses (``bad_params``)."""
    wire_choices: tuple[str, ...] | None = None
    """The choices the daemon takes, where fewer than the CLI's."""

    def check(self, name: str, value: Any) -> None:
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ParamError(f"{name} must be a whole number, not {value!r:.40}")
            self._bounds(name, value)
        elif self.kind == "float":
            if not _is_number(value):
                raise ParamError(f"{name} must be a number, not {value!r:.40}")
            self._bounds(name, value)
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamError(f"{name} must be true or false")
        elif self.kind == "choice":
            if value not in self.choices:
                raise ParamError(f"{name} must be one of {', '.join(self.choices)} "
                                 f"(got {value!r:.40})")
        elif self.kind == "layers":
            self._layers(name, value)
        elif self.kind == "classes":
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and _is_number(w) and w >= 0 for k, w in value.items()):
                raise ParamError(f"{name} must map class names to non-negative weights")
        elif self.kind == "weights" and value is not None:
            if (not isinstance(value, list) or not value
                    or any(not _is_number(w) or w < 0 for w in value)):
                raise ParamError(f"{name} must be a list of non-negative numbers")
            if sum(value) <= 0:
                raise ParamError(f"{name} must not be all zero")

    def _bounds(self, name: str, value: float) -> None:
        if self.positive and value <= 0:
            raise ParamError(f"{name} must be greater than 0 (got {value})")
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if not low <= value <= high:
            if self.high is None:
                raise ParamError(f"{name} must not be negative (got {value})")
            raise ParamError(f"{name} must be between {_num(low)} and {_num(high)} "
                             f"(got {value})")

    def _layers(self, name: str, layers: Any) -> None:
        if not isinstance(layers, dict):
            raise ParamError(f"{name} must map layer names to weights")
        for layer, weight in layers.items():
            if layer not in self.choices:
                hint = (f"{name} need a spatial map (conv, relu or pool layers, not fc)"
                        if layer in LAYER_NAMES else f"known layers: {', '.join(LAYER_NAMES)}")
                raise ParamError(f"{name}: unknown or unusable layer {layer!r:.40} ({hint})")
            if not _is_number(weight) or weight < 0:
                raise ParamError(f"{name}[{layer}] must be a non-negative number")

    def describe(self, wire: bool = True) -> dict[str, Any]:
        """The schema entry a client builds a field of its dialog from."""
        entry: dict[str, Any] = {"kind": self.kind, "help": self.help}
        for key in ("low", "high", "unit"):
            if getattr(self, key) not in (None, ""):
                entry[key] = getattr(self, key)
        if self.positive:
            entry["positive"] = True
        choices = self.wire_choices if wire and self.wire_choices is not None else self.choices
        if choices:
            entry["choices"] = list(choices)
        return entry


def _param(default: Any, spec: Spec) -> Any:
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


def _weights(names: tuple[str, ...], weight: float = 1.0) -> dict[str, float]:
    return {name: weight for name in names}


@dataclass
class RenderParams:
    """Everything that decides a render, besides the images and the model."""

    size: int = _param(512, Spec("int", "longest side of the result", 32, MAX_SIZE, unit="px"))
    content_layers: dict[str, float] = _param({"fc7": 1.0}, Spec(
        "layers", "content layers with weights; fc6, fc7 and fc8 carry what the net sees",
        choices=LAYER_NAMES))
    fc_spatial: float = _param(0.0, Spec(
        "float", "how the fc content layers read the image: 0 pooled (what the net sees), 1 "
        "spatial (what it sees where: one 224 px window every 32 px), between: a blend", 0, 1))
    style_layers: dict[str, float] = _param(_weights(DEFAULT_STYLE_LAYERS), Spec(
        "layers", "style (Gram) layers with weights: conv, relu or pool layers",
        choices=SPATIAL_LAYERS))
    content_weight: float = _param(1.0, Spec("float", "weight of the content term", 0))
    style_weight: float = _param(5.0, Spec("float", "weight of the style term", 0))
    tv_weight: float = _param(0.01, Spec("float", "weight of the smoothness (TV) term", 0))
    normalization: str = _param("relative", Spec(
        "choice", "loss normalisation: relative, or neural-style's (see the README)",
        choices=NORMALIZATIONS))
    style_blend: list[float] | None = _param(None, Spec(
        "weights", "blend weights for several style images (None: equal)", wire=False))
    style_scale: float = _param(1.0, Spec(
        "float", "style image size relative to the result", 0, positive=True))
    init: str = _param("random", Spec(
        "choice", "start image: seeded noise, the content, or a given image",
        choices=("random", "content", "image"), wire_choices=("random", "content")))
    seed: int = _param(0, Spec("int", "noise seed: same seed, same result on the CPU",
                               0, 2**63 - 1))
    optimizer: str = _param("lbfgs", Spec("choice", "optimiser", choices=("lbfgs", "adam")))
    lbfgs_history: int = _param(0, Spec(
        "int", "L-BFGS history; 0: the largest that keeps it under 256 MB", 0, 1000))
    learning_rate: float = _param(0.02, Spec(
        "float", "Adam's step on the [0, 1] image (0..255 with neural-style normalisation)",
        0, positive=True))
    iterations: int = _param(500, Spec(
        "int", "iterations at the final size; each coarser scale gets half as many", 1, 100_000))
    scales: int = _param(0, Spec(
        "int", "coarse-to-fine scales, each halving the side; 0: chosen from the size", 0, 8))
    pooling: str = _param("max", Spec("choice", "pool1..pool5", choices=("max", "avg")))
    normalize_gradients: bool = _param(False, Spec(
        "bool", "neural-style's per-layer gradient normalisation"))
    original_colors: bool = _param(False, Spec(
        "bool", "keep the input's colours: only the luminance comes from the render"))
    early_stop: float = _param(1e-3, Spec(
        "float", "stop a scale when the loss improves less than this fraction in 25 "
        "iterations; 0: never", 0))
    see: dict[str, float] = _param({}, Spec(
        "classes", "steer towards classes: names, indices as strings, or @groups, with "
        "weights"))
    see_weight: float = _param(1.0, Spec("float", "weight of the steering term", 0))
    precision: str = _param("fp32", Spec(
        "choice", "tf32: CUDA's faster, less exact mode; fp32 elsewhere", choices=PRECISIONS))

    def validate(self) -> RenderParams:
        """Check every field; return self so calls can be chained."""
        for f in fields(self):
            f.metadata["spec"].check(f.name, getattr(self, f.name))
        if not self.content_layers and not self.style_layers:
            raise ParamError("at least one content or style layer is needed")
        return self

    def check_model(self, layer_names: tuple[str, ...], labels: tuple[str, ...]) -> None:
        """Check what depends on the model: its layers (VGG16 has fewer) and class names."""
        for name in (*self.content_layers, *self.style_layers):
            if name not in layer_names:
                raise ParamError(f"layer {name!r} is not in this model (VGG16 has no conv3_4, "
                                 "conv4_4, conv5_4 and their relu layers)")
        if self.see:
            resolve(self.see, labels)

    def to_dict(self, wire: bool = True) -> dict[str, Any]:
        """Plain-data form: the protocol's fields (``wire``), or all (to remember settings)."""
        data = asdict(self)
        return {k: v for k, v in data.items() if not wire or _spec(k).wire}

    @classmethod
    def from_dict(cls, data: dict[str, Any], wire: bool = True) -> RenderParams:
        """Build and validate from plain data; unknown keys are an error, not ignored, and so
        are CLI-only ones when the data came over the protocol (``wire``)."""
        if not isinstance(data, dict):
            raise ParamError("parameters must be a mapping of names to values")
        known = {f.name for f in fields(cls) if not wire or _spec(f.name).wire}
        unknown = sorted(str(k)[:40] for k in data if k not in known)
        if unknown:
            raise ParamError(f"unknown parameter(s): {', '.join(unknown)} (the parameters are "
                             f"{', '.join(sorted(known))})")
        params = cls(**data)
        for f in fields(cls):
            if _spec(f.name).kind == "float" and _is_number(getattr(params, f.name)):
                setattr(params, f.name, float(getattr(params, f.name)))
        params.validate()
        choices = _spec("init").wire_choices or ()
        if wire and params.init not in choices:
            raise ParamError(f"init must be one of {', '.join(choices)} here (got "
                             f"{params.init!r:.40}; 'image' is for the CLI's render only)")
        return params


def _spec(name: str) -> Spec:
    return _SPECS[name]


_SPECS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in fields(RenderParams)}


def schema(wire: bool = True) -> dict[str, dict[str, Any]]:
    """Every parameter with its kind, bounds, default and help: WELCOME's ``schema``."""
    defaults = RenderParams().to_dict(wire=False)
    return {name: {**spec.describe(wire), "default": defaults[name]}
            for name, spec in _SPECS.items() if not wire or spec.wire}


def markdown_table() -> str:
    """The protocol's parameter table (docs/protocol.md holds a copy a test compares)."""
    rows = ["| name | kind | default | meaning |", "| --- | --- | --- | --- |"]
    for name, entry in schema().items():
        kind = entry["kind"]
        if "choices" in entry and kind == "choice":
            kind = " \\| ".join(f'`"{c}"`' for c in entry["choices"])
        elif "low" in entry:
            op = ">" if entry.get("positive") else "≥"
            kind += (f" {_num(entry['low'])}..{_num(entry['high'])}" if "high" in entry
                     else f" {op} {_num(entry['low'])}")
        unit = f" ({entry['unit']})" if "unit" in entry else ""
        default = entry["default"]
        shown = (f"`{json.dumps(default)}`" if not isinstance(default, dict) or not default
                 else ", ".join(f"{k}: {_num(v)}" for k, v in default.items()))
        rows.append(f"| `{name}` | {kind} | {shown} | {entry['help']}{unit} |")
    return "\n".join(rows)


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
