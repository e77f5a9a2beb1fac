"""Raw pixel frames <-> float RGB + alpha arrays, in every layout the protocol allows."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from neural_mirage.client.protocol import E_BAD_IMAGE, ProtocolError, check_image_meta

_NUMPY = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32}
_TORCH = {"u8": torch.uint8, "u16": torch.uint16, "f32": torch.float32}
_SCALE = {"u8": 255.0, "u16": 65535.0, "f32": 1.0}


def check_frame(meta: dict[str, Any], frame: bytes | memoryview, max_pixels: int,
                name: str = "image") -> None:
    """Check a frame against its meta (cheap: the daemon's I/O thread does this at SUBMIT)."""
    expected = check_image_meta(meta, max_pixels, name)
    if len(frame) != expected:
        raise ProtocolError(E_BAD_IMAGE, f"the {name} frame has {len(frame)} bytes, but "
                                         f"{meta['width']}x{meta['height']}x{meta['channels']} "
                                         f"{meta['dtype']} needs {expected}")


def decode(meta: dict[str, Any], frame: bytes | memoryview,
           name: str = "image") -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) float32 RGB and an (H, W) alpha or None, from a frame :func:`check_frame`
    passed. A pass over every pixel: a worker does it, so a 64 MP frame never holds up the I/O
    thread."""
    dtype, channels = meta["dtype"], meta["channels"]
    data = np.frombuffer(frame, dtype=_NUMPY[dtype]).reshape(meta["height"], meta["width"],
                                                             channels)
    if dtype == "f32" and not np.isfinite(data).all():
        raise ProtocolError(E_BAD_IMAGE, f"the {name} holds NaN or infinite values")
    if channels == 1:
        return _unit(data[..., 0], dtype), None
    # One gather in the source type, one conversion: images can be 2048x2048 and larger.
    colour = data[..., [2, 1, 0]] if meta["order"].startswith("BGR") else data[..., :3]
    alpha = _unit(data[..., 3], dtype) if channels == 4 else None
    return _unit(colour, dtype), alpha


def _unit(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 in [0, 1]."""
    out = values.astype(np.float32)
    if dtype == "f32":
        return np.clip(out, 0.0, 1.0, out=out)
    out *= 1.0 / _SCALE[dtype]
    return out


def encode(rgb: np.ndarray, alpha: np.ndarray | None, like: dict[str, Any]) -> tuple[
        dict[str, Any], memoryview]:
    """A frame in the layout of ``like`` (dtype and channel order), sized as ``rgb``.

    Channel by channel into the output type, in torch: a 2048x2048 result takes a pass per
    channel on every core instead of whole-frame float copies (it is on the round trip)."""
    height, width = rgb.shape[:2]
    channels, order, dtype = like["channels"], like["order"], like["dtype"]
    out = torch.empty((height, width, channels), dtype=_TORCH[dtype])
    source = torch.from_numpy(rgb)
    planes = [source[..., i] for i in ((2, 1, 0) if order.startswith("BGR") else (0, 1, 2))]
    if channels == 4:
        planes.append(torch.ones(()) if alpha is None else torch.from_numpy(alpha))
    for index, plane in enumerate(planes):
        plane = plane.clamp(0.0, 1.0)
        if dtype != "f32":
            plane = plane.mul(_SCALE[dtype]).add_(0.5)  # round half up; the copy truncates
        out[..., index] = plane
    meta = {"width": width, "height": height, "channels": channels, "dtype": dtype,
            "order": order}
    return meta, memoryview(out.numpy()).cast("B")


def resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of one (H, W) float plane (alpha or mask) to the result size."""
    if plane.shape == (height, width):
        return plane
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR)).clip(0.0, 1.0)


def preview_frame(rgb: np.ndarray, longest: int) -> tuple[dict[str, Any], bytes]:
    """A small 8-bit RGB preview (the longest side at most ``longest``)."""
    height, width = rgb.shape[:2]
    im = Image.fromarray(np.round(rgb.clip(0, 1) * 255).astype(np.uint8))
    if max(width, height) > longest:
        factor = longest / max(width, height)
        im = im.resize((max(1, round(width * factor)), max(1, round(height * factor))),
                       Image.Resampling.BILINEAR)
    return ({"width": im.width, "height": im.height, "channels": 3, "dtype": "u8",
             "order": "RGB"}, im.tobytes())
