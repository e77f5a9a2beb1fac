"""Image files: every common mode in, PNG 8/16-bit and JPEG out, alpha and precision kept."""

from __future__ import annotations

import numpy as np
import png
import pytest
from PIL import Image

from neural_mirage.images import ImageError, Picture, read_image, write_image


def _gradient(h: int = 20, w: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x / (w - 1), y / (h - 1), (x + y) / (w + h - 2)], axis=2).astype(np.float32)


@pytest.mark.parametrize("mode", ["L", "P", "RGB", "CMYK", "1", "I;16"])
def test_reads_every_mode_as_rgb(tmp_path, mode):
    base = Image.fromarray((_gradient() * 255).astype(np.uint8))
    im = base.convert("L").convert(mode) if mode in ("1", "I;16") else base.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    im.save(path)
    pic = read_image(path)
    assert pic.rgb.shape == (20, 30, 3)
    assert pic.rgb.dtype == np.float32
    assert pic.rgb.min() >= 0.0 and pic.rgb.max() <= 1.0
    assert pic.alpha is None


def test_grey_16_bit_png_keeps_precision(tmp_path):
    grey = (np.linspace(0, 65535, 20 * 30).reshape(20, 30)).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(grey).save(path)
    pic = read_image(path)
    assert pic.bits == 16
    np.testing.assert_allclose(pic.rgb[..., 0], grey / 65535.0, atol=1e-6)


def test_rgba_16_bit_png_round_trip(tmp_path):
    data = (np.random.default_rng(0).random((12, 9, 4)) * 65535).astype(np.uint16)
    path = tmp_path / "c16.png"
    with path.open("wb") as f:
        png.Writer(9, 12, bitdepth=16, greyscale=False, alpha=True).write(f, data.reshape(12, -1))
    pic = read_image(path)
    assert pic.bits == 16
    np.testing.assert_allclose(pic.rgb, data[..., :3] / 65535.0, atol=1e-6)
    np.testing.assert_allclose(pic.alpha, data[..., 3] / 65535.0, atol=1e-6)
    out = tmp_path / "out16.png"
    write_image(out, pic)
    _, _, rows, info = png.Reader(filename=str(out)).asDirect()
    back = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(12, 9, 4)
    assert info["bitdepth"] == 16
    np.testing.assert_array_equal(back, data)


def test_8_bit_alpha_and_palette_transparency(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :5, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    pic = read_image(tmp_path / "a.png")
    assert pic.alpha is not None and pic.alpha[:, :5].min() == 1.0 and pic.alpha[:, 5:].max() == 0
    write_image(tmp_path / "b.png", pic)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), rgba)
    write_image(tmp_path / "b.jpg", pic)
    assert Image.open(tmp_path / "b.jpg").mode == "RGB"


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "not an image"),
    (b"hello, I am text", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image|damaged"),
])
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(path)


def test_truncated_jpeg_is_reported(tmp_path):
    path = tmp_path / "t.jpg"
    Image.fromarray((_gradient(200, 200) * 255).astype(np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageError):
        read_image(path)


def test_write_refuses_unknown_extension(tmp_path):
    with pytest.raises(ImageError, match="can only write"):
        write_image(tmp_path / "x.gif", Picture(_gradient()))
