"""Finding, fetching, verifying and loading VGG weights.

Four choices, each for VGG19 (default) or VGG16:

* ``torchvision``: ``VGG19_Weights.IMAGENET1K_V1`` / ``VGG16_Weights.IMAGENET1K_V1``, kept in
  torch's hub cache like every torchvision model (``$TORCH_HOME/hub/checkpoints/``).
* ``caffe``: the Caffe-converted ``vgg19-d01eb7cb.pth`` / ``vgg16-00b39a1b.pth`` that
  neural-style-pt uses (BGR, 0..255, mean-subtracted), either as downloaded (classifier keys 1/4/6)
  or as neural-style-pt's ``download_models.py`` saved them (keys remapped to 0/3/6).
* ``file``: the user's own VGG16/VGG19 state dict (for example a Places365 VGG16, as in the
  original mirage experiments), in torchvision's layout or with neural-style layer names
  (``conv1_1.weight``, ``fc6.weight``); the architecture is read from the file, the class names
  from a label file when fc8 is not ImageNet's 1000 classes.
* ``random``: seeded random weights of the same architecture, for tests and smoke runs. They are
  not a trained model: every label that shows them says RANDOM.

Known files are checked against the sha256 prefix in their names, as torch.hub does, so a truncated
or wrong download is caught before it produces garbage.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from neural_mirage.engine.vgg import (
    ARCHITECTURES,
    CAFFE_PREPROCESSING,
    TORCHVISION_PREPROCESSING,
    MirageVGG,
    Preprocessing,
    random_state_dict,
    torchvision_feature_kinds,
)

WEIGHT_CHOICES = ("torchvision", "caffe", "file", "random")
ARCH_CHOICES = tuple(ARCHITECTURES)
PREPROCESSINGS = {p.name: p for p in (TORCHVISION_PREPROCESSING, CAFFE_PREPROCESSING)}


@dataclass(frozen=True)
class WeightsSource:
    file_name: str
    sha256_prefix: str
    url: str
    preprocessing: Preprocessing
    label: str


_CAFFE_URL = "https://web.eecs.umich.edu/~justincj/models/"
_TORCHVISION_URL = "https://download.pytorch.org/models/"
SOURCES: dict[tuple[str, str], WeightsSource] = {
    ("torchvision", "vgg19"): WeightsSource(
        "vgg19-dcbb9e9d.pth", "dcbb9e9d", _TORCHVISION_URL + "vgg19-dcbb9e9d.pth",
        TORCHVISION_PREPROCESSING, "torchvision VGG19 IMAGENET1K_V1"),
    ("torchvision", "vgg16"): WeightsSource(
        "vgg16-397923af.pth", "397923af", _TORCHVISION_URL + "vgg16-397923af.pth",
        TORCHVISION_PREPROCESSING, "torchvision VGG16 IMAGENET1K_V1"),
    ("caffe", "vgg19"): WeightsSource(
        "vgg19-d01eb7cb.pth", "d01eb7cb", _CAFFE_URL + "vgg19-d01eb7cb.pth",
        CAFFE_PREPROCESSING, "Caffe VGG19 (neural-style)"),
    ("caffe", "vgg16"): WeightsSource(
        "vgg16-00b39a1b.pth", "00b39a1b", _CAFFE_URL + "vgg16-00b39a1b.pth",
        CAFFE_PREPROCESSING, "Caffe VGG16 (neural-style)"),
}

# The Caffe-converted files predate torchvision's current layout: their classifier starts with
# Dropout, so fc6/fc7 sit at indices 1/4 instead of 0/3.
_OLD_CLASSIFIER_REMAP = {"classifier.1.": "classifier.0.", "classifier.4.": "classifier.3."}


@dataclass(frozen=True)
class ModelSpec:
    """Which network to load; the same fields are the CLI's and the daemon's model options."""

    weights: str = "torchvision"
    arch: str = "vgg19"
    """For torchvision, caffe and random; a ``file`` says its own architecture."""
    path: str | None = None
    """Weights file (default for torchvision/caffe: torch's cache; needed for ``file``)."""
    labels: str | None = None
    """Label file: one class name per line, Places365's ``/a/name N`` or ``nXXXXXXXX name``."""
    preprocessing: str | None = None
    """``torchvision`` or ``caffe`` for a ``file`` (default torchvision)."""
    verify: bool = True
    seed: int = 0

    def daemon_args(self) -> list[str]:
        """The same model as ``neural-mirage daemon`` options (paths made absolute)."""
        args = ["--weights", self.weights, "--arch", self.arch]
        for option, value in (("--weights-path", self.path), ("--labels", self.labels)):
            if value:
                args += [option, str(Path(value).expanduser().resolve())]
        if self.preprocessing:
            args += ["--preprocessing", self.preprocessing]
        if not self.verify:
            args.append("--no-verify-weights")
        return args


class WeightsError(RuntimeError):
    """Weights are missing, corrupt or of the wrong shape; the message says what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is, for logs, the protocol's WELCOME and the CLI's output."""

    weights: str
    arch: str
    label: str
    pretrained: bool
    path: str | None
    classes: int


def cache_dir() -> Path:
    """torch's hub checkpoint folder, where torchvision keeps its weights too."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def default_path(choice: str, arch: str = "vgg19") -> Path:
    return cache_dir() / SOURCES[choice, arch].file_name


def _missing_message(spec: ModelSpec, path: Path) -> str:
    if spec.weights == "file":
        return f"weights file {path} not found"
    source = SOURCES[spec.weights, spec.arch]
    fetch = spec.weights + (f" --arch {spec.arch}" if spec.arch != "vgg19" else "")
    # The first sentence says what to do: editors show this line as the daemon's reason.
    return (f"Run 'neural-mirage fetch-weights {fetch}' once (it needs the network): the "
            f"{source.label} weights were not found at {path}. Or download {source.url} and put "
            f"it there (or pass its path with --weights-path); for a smoke run without a trained "
            f"model, use --weights random.")


def verify_file(path: Path, sha256_prefix: str) -> bool:
    """True when the file's sha256 starts with ``sha256_prefix``."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest().startswith(sha256_prefix)


def fetch_weights(choice: str, dest: Path | None = None, arch: str = "vgg19") -> Path:
    """Download a weights file (hash-checked) into the cache; return its path."""
    source = SOURCES.get((choice, arch))
    if source is None:
        raise WeightsError(f"only torchvision and caffe weights can be fetched, not {choice!r} "
                           f"for {arch}")
    dest = dest or default_path(choice, arch)
    if dest.exists() and verify_file(dest, source.sha256_prefix):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(".part")
    try:
        torch.hub.download_url_to_file(source.url, str(part), hash_prefix=source.sha256_prefix)
    except (OSError, RuntimeError) as exc:
        part.unlink(missing_ok=True)
        raise WeightsError(f"could not download {source.url}: {exc}. Download it by hand and "
                           f"put it at {dest}.") from exc
    part.replace(dest)
    return dest


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Class names from a label file, in fc8's order.

    Accepts one name per line, Places365's ``categories_places365.txt`` (``/a/airfield 0``: the
    letter folder goes, underscores become spaces) and Caffe's ``synset_words.txt``
    (``n01440764 tench, Tinca tinca``: the WordNet id goes).
    """
    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"could not read the label file {file}: {exc}") from exc
    labels = []
    for line in filter(None, (raw.strip() for raw in lines)):
        line = re.sub(r"\s+\d+$", "", line)         # Places365: trailing index
        line = re.sub(r"^/[a-z]/", "", line)          # Places365: /a/airfield
        line = re.sub(r"^n\d{8}\s+", "", line)        # synset_words.txt
        labels.append(line.replace("_", " "))
    if not labels:
        raise WeightsError(f"the label file {file} has no class names")
    return tuple(labels)


def _read_state_dict(spec: ModelSpec, path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise WeightsError(_missing_message(spec, path))
    if spec.verify and spec.weights != "file":
        source = SOURCES[spec.weights, spec.arch]
        if not verify_file(path, source.sha256_prefix):
            raise WeightsError(
                f"{path} is not the expected {source.label} weights file (its sha256 does not "
                f"start with {source.sha256_prefix}): it may be truncated or a different file. "
                "Fetch it again" + (", or pass --no-verify-weights for neural-style-pt's "
                                    "remapped copy" if spec.weights == "caffe" else "") + ".")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} could not be read as a torch weights file: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return _torchvision_layout(state, path)


def _torchvision_layout(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """torchvision's keys (features.N, classifier.N) from any of the layouts we accept."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "classifier.1.weight" in state and "classifier.0.weight" not in state:
        state = {_remap(k, _OLD_CLASSIFIER_REMAP): v for k, v in state.items()}
    if "features.0.weight" in state:
        return state
    named = {k.removeprefix("layers."): v for k, v in state.items()}
    if "conv1_1.weight" not in named:
        raise WeightsError(f"{path} is not a VGG state dict: it has neither torchvision's keys "
                           "(features.0.weight, ...) nor neural-style's (conv1_1.weight, ...)")
    convs = sorted({k.rsplit(".", 1)[0] for k in named if k.startswith("conv")},
                   key=lambda n: tuple(int(x) for x in n[4:].split("_")))
    arch = _arch_from_conv_count(len(convs), path)
    indices = [i for i, kind in enumerate(torchvision_feature_kinds(arch)) if kind == "conv"]
    out: dict[str, Tensor] = {}
    for name, index in zip(convs, indices, strict=True):
        for p in ("weight", "bias"):
            out[f"features.{index}.{p}"] = named[f"{name}.{p}"]
    for name, index in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
        for p in ("weight", "bias"):
            if f"{name}.{p}" in named:
                out[f"classifier.{index}.{p}"] = named[f"{name}.{p}"]
    return out


def _arch_from_conv_count(count: int, path: Path) -> str:
    for arch, blocks in ARCHITECTURES.items():
        if count == sum(n for _, n in blocks):
            return arch
    raise WeightsError(f"{path} has {count} conv layers: neither VGG16 (13) nor VGG19 (16)")


def _remap(key: str, remap: dict[str, str]) -> str:
    for old, new in remap.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def load_model(spec: ModelSpec, device: torch.device | str = "cpu") -> tuple[MirageVGG, ModelInfo]:
    """Build the network with the chosen weights, in eval mode, frozen, on ``device``."""
    if spec.weights not in WEIGHT_CHOICES:
        raise WeightsError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, not "
                           f"{spec.weights!r}")
    if spec.arch not in ARCH_CHOICES:
        raise WeightsError(f"arch must be one of {', '.join(ARCH_CHOICES)}, not {spec.arch!r}")
    if spec.preprocessing is not None and spec.preprocessing not in PREPROCESSINGS:
        raise WeightsError(f"preprocessing must be one of {', '.join(PREPROCESSINGS)}, not "
                           f"{spec.preprocessing!r}")
    arch = spec.arch
    if spec.weights == "random":
        state = random_state_dict(spec.seed, arch)
        preprocessing = TORCHVISION_PREPROCESSING
        label = f"RANDOM weights ({arch.upper()}, seed {spec.seed}), not a trained model"
        file = None
    elif spec.weights == "file":
        if not spec.path:
            raise WeightsError("--weights file needs the file: pass it with --weights-path")
        file = Path(spec.path).expanduser()
        state = _read_state_dict(spec, file)
        convs = sum(1 for k, v in state.items() if k.startswith("features.") and v.dim() == 4)
        arch = _arch_from_conv_count(convs, file)
        if not all(f"classifier.{i}.weight" in state for i in (0, 3, 6)):
            raise WeightsError(f"{file} has no fc6/fc7/fc8 weights: a neural mirage reads what "
                               "the classifier sees, so it needs a VGG with its classifier")
        preprocessing = TORCHVISION_PREPROCESSING
        label = f"{arch.upper()} from {file.name}"
    else:
        source = SOURCES[spec.weights, arch]
        file = Path(spec.path).expanduser() if spec.path else default_path(spec.weights, arch)
        state = _read_state_dict(spec, file)
        preprocessing = source.preprocessing
        label = source.label
    if spec.preprocessing is not None:  # e.g. a Caffe-converted file of the user's
        preprocessing = PREPROCESSINGS[spec.preprocessing]
    labels = _labels_for(spec, state, file)
    if spec.labels:
        label += f", labels from {Path(spec.labels).name}"
    model = MirageVGG(preprocessing, arch, labels)
    try:
        model.load_torchvision_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise WeightsError(f"the {spec.weights} weights do not fit {arch.upper()}: {exc}"
                           ) from exc
    model.eval().requires_grad_(False)
    info = ModelInfo(spec.weights, arch, label, spec.weights != "random",
                     str(file) if file else None, len(model.labels))
    return model.to(device, memory_format=torch.channels_last), info


def _labels_for(spec: ModelSpec, state: dict[str, Tensor], file: Path | None
                ) -> tuple[str, ...] | None:
    """The label file's names (checked against fc8's size), or None for ImageNet's."""
    fc8 = state.get("classifier.6.weight")
    classes = fc8.shape[0] if fc8 is not None else None
    if not spec.labels:
        if classes not in (None, 1000):
            raise WeightsError(f"{file} has {classes} classes, not ImageNet's 1000: pass its "
                               "label file with --labels")
        return None
    labels = read_labels(spec.labels)
    if classes is not None and len(labels) != classes:
        raise WeightsError(f"the label file {spec.labels} has {len(labels)} names but the model "
                           f"has {classes} classes")
    return labels
