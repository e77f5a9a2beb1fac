"""The neural-mirage engine: VGG19, fc content and Gram style; pure torch, no file or socket I/O.

Typical use::

    from neural_mirage.engine import RenderParams, render
    result = render(model, content, RenderParams(size=512))
"""

from .device import keep_freed_memory, pick_device
from .params import MAX_SIZE, ParamError, RenderParams
from .render import Progress, RenderCancelled, RenderDiverged, RenderResult, plan_scales, render
from .seeing import Seen, imagenet_classes, top_classes
from .vgg import LAYER_NAMES, SPATIAL_LAYERS, MirageVGG, random_state_dict

__all__ = [
    "LAYER_NAMES",
    "MAX_SIZE",
    "SPATIAL_LAYERS",
    "MirageVGG",
    "ParamError",
    "Progress",
    "RenderCancelled",
    "RenderDiverged",
    "RenderParams",
    "RenderResult",
    "Seen",
    "imagenet_classes",
    "keep_freed_memory",
    "pick_device",
    "plan_scales",
    "random_state_dict",
    "render",
    "top_classes",
]
