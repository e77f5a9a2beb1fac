"""VGG16/VGG19 with neural-style layer names and fully connected layers that accept any image size.

torchvision's VGG puts ``AdaptiveAvgPool2d((7, 7))`` between pool5 and the classifier. We put
``AdaptiveMaxPool2d((7, 7))`` there instead (the choice of the original "neural mirage" patch),
so fc6, fc7 and fc8 can be read at any image size; at 224x224 pool5 is already 7x7 and both
poolings are the identity, so fc8 equals torchvision's logits there.

The network is a flat list of named layers. :meth:`MirageVGG.features` runs it only as far as the
deepest layer that is asked for, and decides per call which ReLUs may work in place: a ReLU is
in place unless the layer just before it is read by a loss (its input would be overwritten).
Dropout is left out: it is an identity in eval mode and only adds noise to an optimisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from .seeing import imagenet_classes

#: Five 2x2 poolings: a smaller side would leave pool5 empty.
MIN_SIDE = 32

#: (channels, convs) per conv block: VGG16 is configuration "D", VGG19 configuration "E".
ARCHITECTURES: dict[str, tuple[tuple[int, int], ...]] = {
    "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
    "vgg19": ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),
}

# Indices in torchvision's ``vgg19().features`` / ``classifier`` of the layers with weights.
_CLASSIFIER_INDEX = {"fc6": 0, "fc7": 3, "fc8": 6}


def layer_plan(arch: str = "vgg19") -> tuple[tuple[str, str], ...]:
    """(name, kind) for every layer, in order; kinds: conv, relu, pool, adapt, fc."""
    plan: list[tuple[str, str]] = []
    for block, (_, convs) in enumerate(ARCHITECTURES[arch], start=1):
        for i in range(1, convs + 1):
            plan += [(f"conv{block}_{i}", "conv"), (f"relu{block}_{i}", "relu")]
        plan.append((f"pool{block}", "pool"))
    plan.append(("adapt", "adapt"))
    for n in (6, 7):
        plan += [(f"fc{n}", "fc"), (f"relu{n}", "relu")]
    plan.append(("fc8", "fc"))
    return tuple(plan)


#: VGG19's layer names; VGG16 has a subset of them (no conv3_4, conv4_4, conv5_4).
LAYER_NAMES: tuple[str, ...] = tuple(name for name, _ in layer_plan("vgg19"))
#: Layers that keep a spatial map (usable for Gram matrices).
SPATIAL_LAYERS: tuple[str, ...] = LAYER_NAMES[: LAYER_NAMES.index("adapt")]
#: Layers read from pool5's map as a whole (the adaptive pooling and the fc layers).
HEAD_LAYERS: tuple[str, ...] = LAYER_NAMES[LAYER_NAMES.index("adapt"):]


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image in [0, 1] becomes the network's input for a given set of weights.

    torchvision weights want RGB normalised by ImageNet mean/std; the Caffe-converted weights of
    neural-style want BGR in 0..255 minus the BGR mean.
    """

    name: str
    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


TORCHVISION_PREPROCESSING = Preprocessing(
    "torchvision", False, 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
)
CAFFE_PREPROCESSING = Preprocessing(
    "caffe", True, 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)
)


class MirageVGG(nn.Module):
    """VGG16 or VGG19 whose named layers can be read at any input size.

    Args:
        preprocessing: how images in [0, 1] RGB are turned into network input.
        arch: ``"vgg19"`` or ``"vgg16"``.
        labels: fc8's class names, in order; their number sets fc8's size (ImageNet's 1000
            when not given, e.g. 365 for a Places365 model).
    """

    def __init__(self, preprocessing: Preprocessing = TORCHVISION_PREPROCESSING,
                 arch: str = "vgg19", labels: tuple[str, ...] | None = None) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                             f"not {arch!r}")
        self.arch = arch
        self.plan = layer_plan(arch)
        self.layer_names = tuple(name for name, _ in self.plan)
        self._index = {name: i for i, name in enumerate(self.layer_names)}
        if labels is None:
            labels = imagenet_classes()
        self.labels = tuple(labels)
        self.preprocessing = preprocessing
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1))
        self.layers = nn.ModuleDict()
        in_ch = 3
        channels = iter(c for c, n in ARCHITECTURES[arch] for _ in range(n))
        sizes = {"fc6": (512 * 7 * 7, 4096), "fc7": (4096, 4096),
                 "fc8": (4096, len(self.labels))}
        for name, kind in self.plan:
            if kind == "conv":
                out_ch = next(channels)
                self.layers[name] = nn.Conv2d(in_ch, out_ch, 3, padding=1)
                in_ch = out_ch
            elif kind == "fc":
                self.layers[name] = nn.Linear(*sizes[name])
        self._pools = {"max": nn.MaxPool2d(2, 2), "avg": nn.AvgPool2d(2, 2)}
        #: Plan indices just after each pooling: the conv blocks, the unit of checkpointing.
        self._block_ends = tuple(i + 1 for i, (_, kind) in enumerate(self.plan)
                                 if kind == "pool")
        self._adapt = nn.AdaptiveMaxPool2d((7, 7))

    # -- weights -----------------------------------------------------------------------------

    def load_torchvision_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a state dict in torchvision's ``vgg16``/``vgg19`` layout (features.N,
        classifier.N)."""
        mine: dict[str, Tensor] = {}
        conv_names = [n for n, k in self.plan if k == "conv"]
        conv_indices = [i for i, m in enumerate(torchvision_feature_kinds(self.arch))
                        if m == "conv"]
        for name, index in zip(conv_names, conv_indices, strict=True):
            for p in ("weight", "bias"):
                mine[f"layers.{name}.{p}"] = state[f"features.{index}.{p}"]
        for name, index in _CLASSIFIER_INDEX.items():
            for p in ("weight", "bias"):
                mine[f"layers.{name}.{p}"] = state[f"classifier.{index}.{p}"]
        mine["mean"] = self.mean
        mine["std"] = self.std
        self.load_state_dict(mine)

    # -- forward -----------------------------------------------------------------------------

    def prepare(self, image: Tensor) -> Tensor:
        """Turn a (N, 3, H, W) RGB image in [0, 1] into network input."""
        x = image.flip(1) if self.preprocessing.bgr else image
        return (x * self.preprocessing.scale - self.mean) / self.std

    def features(self, image: Tensor, wanted: Iterable[str],
                 pooling: str = "max", checkpoint: bool = False) -> dict[str, Tensor]:
        """Return the outputs of the ``wanted`` layers for an RGB image in [0, 1].

        Only the layers up to the deepest wanted one are run. ``pooling`` is ``"max"`` (as
        trained) or ``"avg"`` for pool1..pool5; the adaptive pooling before fc6 is always max.
        ``checkpoint`` keeps only each conv block's output (and the wanted layers) for the
        backward pass and runs the block again there: about a third more compute for much less
        memory at large sizes.
        """
        wanted = set(wanted)
        unknown = wanted - set(self.layer_names)
        if unknown:
            raise ValueError(f"{self.arch.upper()} has no layer(s) "
                             f"{', '.join(sorted(unknown))}")
        if not wanted:
            return {}
        if min(image.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"image too small for VGG: each side needs at least {MIN_SIDE} px")
        last = max(self._index[n] for n in wanted)
        # channels_last is oneDNN's native layout: no reorder before and after every conv.
        x = self.prepare(image).contiguous(memory_format=torch.channels_last)
        out: dict[str, Tensor] = {}
        start = 0
        for end in (*self._block_ends, len(self.plan)):
            if start > last:
                break
            layers = self.plan[start:min(end, last + 1)]
            if checkpoint and torch.is_grad_enabled() and layers[0][1] == "conv":
                x, found = torch.utils.checkpoint.checkpoint(
                    self._run, x, layers, wanted, pooling, use_reentrant=False)
            else:
                x, found = self._run(x, layers, wanted, pooling)
            out.update(found)
            start = end
        return out

    def _run(self, x: Tensor, layers: tuple[tuple[str, str], ...], wanted: set[str],
             pooling: str) -> tuple[Tensor, dict[str, Tensor]]:
        """Run ``layers`` on ``x``; return the last output and the wanted ones."""
        out: dict[str, Tensor] = {}
        previous = ""
        for name, kind in layers:
            if kind in ("conv", "fc"):
                x = self.layers[name](x)
            elif kind == "relu":
                x = torch.relu(x) if previous in wanted else torch.relu_(x)
            elif kind == "pool":
                x = self._pools[pooling](x)
            else:
                x = torch.flatten(self._adapt(x), 1)
            if name in wanted:
                out[name] = x
            previous = name
        return x, out

    def stride(self, name: str) -> int:
        """Pixels of the input per position of a spatial layer's map (1 for conv1_1, 32 for
        pool5)."""
        pools = sum(1 for n, kind in self.plan[: self._index[name] + 1] if kind == "pool")
        return 2**pools

    def head(self, pool5: Tensor, wanted: Iterable[str]) -> dict[str, Tensor]:
        """The fc layers (and relu6, relu7) among ``wanted``, from a pool5 map: the part of the
        network that sees the whole picture at once."""
        wanted = set(wanted)
        start = self._index["adapt"]
        last = max(self._index[n] for n in wanted)
        return self._run(pool5, self.plan[start:last + 1], wanted, "max")[1]

    def spatial_head(self, pool5: Tensor, wanted: Iterable[str]) -> dict[str, Tensor]:
        """The fc layers as convolutions over pool5's map: fc6 a 7x7 convolution (its weights
        reshaped to 4096x512x7x7), fc7 and fc8 1x1 ones. Each position of the maps is the fc
        head applied to one 7x7 window of pool5, that is to a 224 px window of the image, every
        32 px: where the net sees what. A side under 7 cells (an image side under 224 px) is
        first stretched to 7 by the adaptive max pooling, so the map is one window across it.
        ``adapt`` is then pool5's (stretched) map itself."""
        wanted = set(wanted)
        height, width = pool5.shape[-2:]
        x = pool5
        if height < 7 or width < 7:
            x = nn.functional.adaptive_max_pool2d(pool5, (max(7, height), max(7, width)))
        out = {"adapt": x} if "adapt" in wanted else {}
        start = self._index["adapt"]
        previous = "adapt"
        for name, kind in self.plan[start + 1:max(self._index[n] for n in wanted) + 1]:
            if kind == "fc":
                layer = self.layers[name]
                side = 7 if name == "fc6" else 1
                weight = layer.weight.view(layer.out_features, -1, side, side)
                x = nn.functional.conv2d(x, weight, layer.bias)
            else:
                x = torch.relu(x) if previous in wanted else torch.relu_(x)
            if name in wanted:
                out[name] = x
            previous = name
        return out

    def forward(self, image: Tensor) -> Tensor:
        """fc8 logits for an RGB image in [0, 1] of any size."""
        return self.features(image, ["fc8"])["fc8"]


def torchvision_feature_kinds(arch: str) -> list[str]:
    """Kinds of the modules in torchvision's ``vgg16().features`` / ``vgg19().features``."""
    kinds: list[str] = []
    for _, convs in ARCHITECTURES[arch]:
        kinds += ["conv", "relu"] * convs + ["pool"]
    return kinds


def random_state_dict(seed: int = 0, arch: str = "vgg19") -> dict[str, Tensor]:
    """Seeded random weights with torchvision's own initialisation (NOT pretrained).

    Used by tests and smoke runs; everything that shows such a model labels it as random.
    """
    from torchvision.models import vgg16, vgg19

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {"vgg16": vgg16, "vgg19": vgg19}[arch](weights=None).state_dict()
