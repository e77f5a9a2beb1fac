"""Raw pixel frames <-> float RGB + alpha arrays, in every layout the protocol allows."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from .protocol import E_BAD_IMAGE, ProtocolError, check_image_meta

_NUMPY = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32}
_SCALE = {"u8": 255.0, "u16": 65535.0, "f32": 1.0}


def decode(meta: dict[str, Any], frame: bytes | memoryview, max_pixels: int,
           name: str = "image") -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) float32 RGB and an (H, W) alpha or None, from a checked frame."""
    expected = check_image_meta(meta, max_pixels, name)
    if len(frame) != expected:
        raise ProtocolError(E_BAD_IMAGE, f"the {name} frame has {len(frame)} bytes, but "
                                         f"{meta['width']}x{meta['height']}x{meta['channels']} "
                                         f"{meta['dtype']} needs {expected}")
    dtype = meta["dtype"]
    data = np.frombuffer(frame, dtype=_NUMPY[dtype]).reshape(
        meta["height"], meta["width"], meta["channels"]).astype(np.float32) / _SCALE[dtype]
    if dtype == "f32":
        if not np.isfinite(data).all():
            raise ProtocolError(E_BAD_IMAGE, f"the {name} holds NaN or infinite values")
        data = data.clip(0.0, 1.0)
    if meta["channels"] == 1:
        return data[..., 0], None
    rgb = data[..., :3]
    if meta["order"].startswith("BGR"):
        rgb = rgb[..., ::-1]
    alpha = data[..., 3] if meta["channels"] == 4 else None
    return np.ascontiguousarray(rgb), alpha


def encode(rgb: np.ndarray, alpha: np.ndarray | None, like: dict[str, Any]) -> tuple[
        dict[str, Any], bytes]:
    """A frame in the layout of ``like`` (dtype and channel order), sized as ``rgb``."""
    height, width = rgb.shape[:2]
    channels = like["channels"]
    order = like["order"]
    planes = [rgb[..., ::-1] if order.startswith("BGR") else rgb]
    if channels == 4:
        planes.append((np.ones((height, width), np.float32) if alpha is None else alpha)[..., None])
    data = np.concatenate(planes, axis=2).clip(0.0, 1.0)
    dtype = like["dtype"]
    if dtype == "f32":
        raw = data.astype(np.float32).tobytes()
    else:
        raw = np.round(data * _SCALE[dtype]).astype(_NUMPY[dtype]).tobytes()
    meta = {"width": width, "height": height, "channels": channels, "dtype": dtype,
            "order": order}
    return meta, raw


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
