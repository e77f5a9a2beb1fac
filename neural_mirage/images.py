"""Reading and writing image files for the CLI: any common mode in, PNG (8/16-bit) or JPEG out.

Images travel inside the program as float32 numpy arrays in [0, 1]: RGB (H, W, 3) plus an optional
alpha (H, W). Pillow decodes everything except 16-bit colour PNG, which it would cut to 8 bits;
pypng reads and writes those (and all 16-bit PNG output), so a 16-bit photo keeps its precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest input we decode (about 10000 x 10000); larger files are refused before decoding.
MAX_INPUT_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """An image file cannot be read or written; the message names the file and the reason."""


@dataclass
class Picture:
    """Pixels plus what must survive the trip: alpha and bit depth."""

    rgb: np.ndarray
    """(H, W, 3) float32 in [0, 1]."""
    alpha: np.ndarray | None = None
    """(H, W) float32 in [0, 1], or None when the image is opaque."""
    bits: int = 8

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as f:
        head = f.read(26)
    if head[:8] != _PNG_SIGNATURE or len(head) < 26:
        return 0
    return head[24]


def _read_png16(path: Path) -> Picture:
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    _check_size(path, width, height)
    planes = info["planes"]
    data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    data = data.reshape(height, width, planes).astype(np.float32) / 65535.0
    colour = data[..., : planes - 1 if info["alpha"] else planes]
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
    alpha = data[..., -1] if info["alpha"] else None
    return Picture(np.ascontiguousarray(rgb), alpha, 16)


def _check_size(path: Path, width: int, height: int) -> None:
    if width == 0 or height == 0:
        raise ImageError(f"{path}: the image is empty ({width}x{height} pixels)")
    if width * height > MAX_INPUT_PIXELS:
        raise ImageError(f"{path}: {width}x{height} is too large (the limit is "
                         f"{MAX_INPUT_PIXELS // 1_000_000} megapixels)")


def read_image(path: str | Path) -> Picture:
    """Read JPEG, PNG, TIFF (and whatever else Pillow knows) in any mode."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        if _png_bit_depth(path) == 16:
            return _read_png16(path)
        with Image.open(path) as im:
            _check_size(path, *im.size)
            im = ImageOps.exif_transpose(im)
            return _picture_from_pil(im)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: the image is too large ({exc})") from exc
    except (UnidentifiedImageError, png.FormatError) as exc:
        raise ImageError(f"{path}: not an image file that can be read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: the image file is damaged or truncated ({exc})") from exc


def _picture_from_pil(im: Image.Image) -> Picture:
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(im, dtype=np.float32) / 65535.0
        return Picture(np.repeat(grey[..., None], 3, axis=2).clip(0, 1), None, 16)
    if im.mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        return Picture(np.repeat(grey[..., None], 3, axis=2).clip(0, 1), None, 16)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    im = im.convert("RGBA" if has_alpha else "RGB")
    data = np.asarray(im, dtype=np.float32) / 255.0
    return Picture(np.ascontiguousarray(data[..., :3]), data[..., 3] if has_alpha else None, 8)


def write_image(path: str | Path, picture: Picture, bits: int | None = None,
                quality: int = 95) -> None:
    """Write PNG (8 or 16 bits, alpha kept) or JPEG (8 bits, alpha dropped), by extension."""
    path = Path(path)
    bits = bits or picture.bits
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise ImageError(f"{path}: can only write .png, .jpg or .jpeg")
    if bits not in (8, 16):
        raise ImageError(f"{path}: bit depth must be 8 or 16, not {bits}")
    if suffix != ".png" and bits == 16:
        bits = 8
    channels = [picture.rgb]
    if picture.alpha is not None and suffix == ".png":
        channels.append(picture.alpha[..., None])
    data = np.concatenate(channels, axis=2).clip(0, 1)
    try:
        if bits == 16:
            rows = np.round(data * 65535).astype(np.uint16)
            writer = png.Writer(picture.width, picture.height, bitdepth=16, greyscale=False,
                                alpha=data.shape[2] == 4)
            with path.open("wb") as f:
                writer.write(f, rows.reshape(picture.height, -1))
        else:
            im = Image.fromarray(np.round(data * 255).astype(np.uint8))
            im.save(path, quality=quality) if suffix != ".png" else im.save(path)
    except OSError as exc:
        raise ImageError(f"{path}: could not write ({exc.strerror or exc})") from exc


def read_mask(path: str | Path, width: int, height: int) -> np.ndarray:
    """A grey mask image as an (H, W) float32 array in [0, 1] at ``width`` x ``height``: white
    where, black where not (transparent counts as black). A mask of another size is scaled if it
    has the photo's shape; one of another shape is refused, since it would not say where."""
    picture = read_image(path)
    grey = picture.rgb.mean(axis=2)
    if picture.alpha is not None:
        grey = grey * picture.alpha
    if (picture.width, picture.height) != (width, height):
        if abs(picture.width / picture.height - width / height) > 0.01 * width / height:
            raise ImageError(f"{path}: the mask is {picture.width}x{picture.height}, the photo "
                             f"{width}x{height}: paint the mask over the photo, at its shape")
        grey = np.asarray(Image.fromarray(grey.astype(np.float32), mode="F").resize(
            (width, height), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(grey.clip(0, 1), dtype=np.float32)
