"""Finding, fetching, verifying and loading VGG19 weights.

Three choices:

* ``torchvision``: ``VGG19_Weights.IMAGENET1K_V1``, kept in torch's hub cache like every torchvision
  model (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``).
* ``caffe``: the Caffe-converted ``vgg19-d01eb7cb.pth`` that neural-style-pt uses (BGR, 0..255,
  mean-subtracted), either as downloaded (classifier keys 1/4/6) or as neural-style-pt's
  ``download_models.py`` saved it (keys remapped to 0/3/6). Same cache folder, or any path.
* ``random``: seeded random weights of the same architecture, for tests and smoke runs. They are
  not a trained model: every label that shows them says RANDOM.

Files are checked against the sha256 prefix in their names, as torch.hub does, so a truncated or
wrong download is caught before it produces garbage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from neural_mirage.engine.vgg import (
    CAFFE_PREPROCESSING,
    TORCHVISION_PREPROCESSING,
    MirageVGG,
    Preprocessing,
    random_state_dict,
)

WEIGHT_CHOICES = ("torchvision", "caffe", "random")


@dataclass(frozen=True)
class WeightsSource:
    file_name: str
    sha256_prefix: str
    url: str
    preprocessing: Preprocessing


SOURCES = {
    "torchvision": WeightsSource(
        "vgg19-dcbb9e9d.pth", "dcbb9e9d", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        TORCHVISION_PREPROCESSING),
    "caffe": WeightsSource(
        "vgg19-d01eb7cb.pth", "d01eb7cb",
        "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth", CAFFE_PREPROCESSING),
}

# The Caffe-converted file predates torchvision's current layout: its classifier starts with
# Dropout, so fc6/fc7 sit at indices 1/4 instead of 0/3.
_CAFFE_KEY_REMAP = {"classifier.1.": "classifier.0.", "classifier.4.": "classifier.3."}


class WeightsError(RuntimeError):
    """Weights are missing, corrupt or of the wrong shape; the message says what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is, for logs, the protocol's WELCOME and the CLI's output."""

    weights: str
    label: str
    pretrained: bool
    path: str | None


def cache_dir() -> Path:
    """torch's hub checkpoint folder, where torchvision keeps its weights too."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def default_path(choice: str) -> Path:
    return cache_dir() / SOURCES[choice].file_name


def _missing_message(choice: str, path: Path) -> str:
    source = SOURCES[choice]
    return (f"{choice} VGG19 weights not found at {path}. Run 'neural-mirage fetch-weights "
            f"{choice}' (needs the network), or download {source.url} and put it there "
            f"(or pass its path with --weights-path). For a smoke run without a trained model, "
            f"use --weights random.")


def verify_file(path: Path, sha256_prefix: str) -> bool:
    """True when the file's sha256 starts with ``sha256_prefix``."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest().startswith(sha256_prefix)


def fetch_weights(choice: str, dest: Path | None = None) -> Path:
    """Download a weights file (hash-checked) into the cache; return its path."""
    if choice not in SOURCES:
        raise WeightsError(f"only {', '.join(SOURCES)} weights can be fetched, not {choice!r}")
    source = SOURCES[choice]
    dest = dest or default_path(choice)
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


def _read_state_dict(choice: str, path: Path, verify: bool) -> dict[str, Tensor]:
    if not path.is_file():
        raise WeightsError(_missing_message(choice, path))
    source = SOURCES[choice]
    if verify and not verify_file(path, source.sha256_prefix):
        raise WeightsError(
            f"{path} is not the expected {choice} weights file (its sha256 does not start with "
            f"{source.sha256_prefix}): it may be truncated or a different file. Fetch it again"
            + (", or pass --no-verify-weights for neural-style-pt's remapped copy"
               if choice == "caffe" else "") + ".")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} could not be read as a torch weights file: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    if choice == "caffe":
        state = {_remap_caffe_key(k): v for k, v in state.items()}
    return state


def _remap_caffe_key(key: str) -> str:
    for old, new in _CAFFE_KEY_REMAP.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def load_model(choice: str = "torchvision", path: str | Path | None = None,
               device: torch.device | str = "cpu", seed: int = 0,
               verify: bool = True) -> tuple[MirageVGG, ModelInfo]:
    """Build the network with the chosen weights, in eval mode, frozen, on ``device``."""
    if choice not in WEIGHT_CHOICES:
        raise WeightsError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, not {choice!r}")
    if choice == "random":
        state = random_state_dict(seed)
        preprocessing = TORCHVISION_PREPROCESSING
        info = ModelInfo("random", f"RANDOM weights (seed {seed}), not a trained model", False,
                         None)
    else:
        file = Path(path).expanduser() if path else default_path(choice)
        state = _read_state_dict(choice, file, verify)
        preprocessing = SOURCES[choice].preprocessing
        label = ("torchvision VGG19 IMAGENET1K_V1" if choice == "torchvision"
                 else "Caffe VGG19 (neural-style)")
        info = ModelInfo(choice, label, True, str(file))
    model = MirageVGG(preprocessing)
    try:
        model.load_torchvision_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise WeightsError(f"the {choice} weights do not fit VGG19: {exc}") from exc
    model.eval().requires_grad_(False)
    return model.to(device, memory_format=torch.channels_last), info
