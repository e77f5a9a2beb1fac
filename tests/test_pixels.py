"""Frames <-> float RGB + alpha: every dtype, channel order and alpha case, exact values."""

from __future__ import annotations

import numpy as np
import pytest

from neural_mirage.daemon import pixels

LAYOUTS = [(3, "RGB"), (3, "BGR"), (4, "RGBA"), (4, "BGRA")]


def _rgb(h: int = 5, w: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    rgb = rng.uniform(-0.2, 1.2, (h, w, 3)).astype(np.float32)  # out of range gets clamped
    rgb[0, 0] = [0.5 / 255, 0.5 / 65535, 1.0]  # halves round up
    alpha = rng.uniform(0.0, 1.0, (h, w)).astype(np.float32)
    return rgb, alpha


@pytest.mark.parametrize("channels,order", LAYOUTS)
@pytest.mark.parametrize("dtype,scale,numpy_type", [("u8", 255, np.uint8),
                                                    ("u16", 65535, np.uint16),
                                                    ("f32", 1, np.float32)])
def test_encode_writes_each_layout_exactly(channels, order, dtype, scale, numpy_type):
    rgb, alpha = _rgb()
    meta, raw = pixels.encode(rgb, alpha, {"channels": channels, "order": order, "dtype": dtype})
    assert meta == {"width": 7, "height": 5, "channels": channels, "dtype": dtype,
                    "order": order}
    out = np.frombuffer(raw, numpy_type).reshape(5, 7, channels)
    expected = np.concatenate([rgb[..., ::-1] if order.startswith("BGR") else rgb,
                               alpha[..., None]], axis=2)[..., :channels].clip(0, 1)
    if dtype != "f32":
        expected = np.floor(expected * scale + 0.5)
    np.testing.assert_array_equal(out, expected.astype(numpy_type))
    back, back_alpha = pixels.decode(meta, raw)
    np.testing.assert_allclose(back, rgb.clip(0, 1), atol=0.5 / scale + 1e-7)
    if channels == 4:
        np.testing.assert_allclose(back_alpha, alpha, atol=0.5 / scale + 1e-7)


def test_encode_without_alpha_into_four_channels_is_opaque():
    rgb, _ = _rgb()
    _, raw = pixels.encode(rgb, None, {"channels": 4, "order": "BGRA", "dtype": "u16"})
    assert (np.frombuffer(raw, np.uint16).reshape(5, 7, 4)[..., 3] == 65535).all()
