"""The "what the net sees where" picture: each window's top class as a labelled colour map over a
faded copy of the photo, and the classes' shares of the windows (for the CLI, the daemon and the
plug-ins' layer).

Every pixel takes the colour of the window whose centre is nearest (windows are 224 px wide,
every 32 px, so the centres start 112 px in). Each class is labelled once, the largest shares
first, at its cell nearest to the middle of its cells that keeps the labels apart, with its share
of the windows.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .engine.head import STRIDE, WINDOW, WhereSeen

#: How far the photo fades towards white under the colours, and the colours' opacity.
FADE, OPACITY = 0.55, 0.45
#: Classes labelled on the map (the largest shares); the rest keep their colour only.
MAX_LABELS = 12


@dataclass(frozen=True)
class ClassShare:
    index: int
    name: str
    share: float
    """Fraction of the windows whose top class this is."""
    probability: float
    """The class's highest probability in any window."""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "share": self.share,
                "probability": self.probability}


def class_shares(seen: WhereSeen, labels: tuple[str, ...]) -> list[ClassShare]:
    """Every class that is the top of some window, by share (largest first)."""
    classes = seen.classes.numpy().ravel()
    probabilities = seen.probabilities.numpy().ravel()
    found, counts = np.unique(classes, return_counts=True)
    shares = [ClassShare(int(c), labels[int(c)], float(n) / classes.size,
                         float(probabilities[classes == c].max()))
              for c, n in zip(found, counts, strict=True)]
    return sorted(shares, key=lambda s: (-s.share, s.index))


def colour(index: int) -> tuple[int, int, int]:
    """A class's colour: hues spread by the golden ratio, so neighbours in the list differ."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _nearest_window(pixels: int, analysed: int, windows: int) -> np.ndarray:
    """For each pixel along a side of the picture, the index of the nearest window centre."""
    position = (np.arange(pixels) + 0.5) * analysed / pixels
    return np.clip(np.rint((position - WINDOW / 2) / STRIDE), 0, windows - 1).astype(int)


def draw(photo: np.ndarray, seen: WhereSeen, labels: tuple[str, ...], caption: str) -> Image.Image:
    """The map over ``photo`` ((H, W, 3) float in [0, 1], any size: the windows are scaled to
    it); ``caption`` goes in the top left corner (the model, and whether it is random)."""
    height, width = photo.shape[:2]
    classes = seen.classes.numpy()
    rows = _nearest_window(height, seen.height, classes.shape[0])
    columns = _nearest_window(width, seen.width, classes.shape[1])
    cell = classes[rows][:, columns]
    palette = np.zeros((int(classes.max()) + 1, 3), np.float32)
    for index in np.unique(classes):
        palette[index] = colour(int(index))
    faded = photo.astype(np.float32) * (1 - FADE) + FADE
    mixed = faded * (1 - OPACITY) + palette[cell] / 255.0 * OPACITY
    picture = Image.fromarray(np.round(mixed.clip(0, 1) * 255).astype(np.uint8))
    pen = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(11, min(width, height) // 28))
    taken = [pen.textbbox((8, 6), caption, font=font, stroke_width=2)]
    for share in class_shares(seen, labels)[:MAX_LABELS]:
        text = f"{share.name.split(',')[0]} {100 * share.share:.0f}%"
        dark = tuple(round(0.4 * c) for c in colour(share.index))
        cells = np.argwhere(classes == share.index)
        # The cell nearest the middle of the class's cells, else the next free one.
        for row, column in cells[np.argsort(((cells - cells.mean(axis=0)) ** 2).sum(axis=1))]:
            x = (column * STRIDE + WINDOW / 2) * width / seen.width
            y = (row * STRIDE + WINDOW / 2) * height / seen.height
            box = pen.textbbox((x, y), text, font=font, anchor="mm", stroke_width=2)
            if not any(_overlap(box, other) for other in taken):
                taken.append(box)
                pen.text((x, y), text, font=font, anchor="mm", fill=(255, 255, 255),
                         stroke_width=max(2, font.size // 8), stroke_fill=dark)
                break
    pen.text((8, 6), caption, font=font, fill=(20, 20, 20), stroke_width=2,
             stroke_fill=(255, 255, 255))
    return picture


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
