"""Draw examples/village.png: a small landscape with houses, trees, a church and a lake.

The project draws its own example so that it can ship it under CC0 (see LICENSE.txt here).
Run: python examples/make_village.py
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

W, H = 640, 427


def draw() -> Image.Image:
    rng = random.Random(7)
    im = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(im)
    for y in range(260):  # sky: deep blue to pale at the horizon
        t = y / (H / 2)
        d.line([(0, y), (W, y)], fill=(int(70 + 120 * t), int(130 + 90 * t), int(200 + 40 * t)))
    d.ellipse([500, 40, 560, 100], fill=(255, 236, 160))
    for cx, cy in ((120, 70), (300, 50), (420, 95)):  # clouds
        for _ in range(6):
            r = rng.randint(18, 30)
            x, y = cx + rng.randint(-40, 40), cy + rng.randint(-8, 8)
            d.ellipse([x - r, y - r // 2, x + r, y + r // 2], fill=(245, 245, 250))
    d.polygon([(0, 230), (160, 160), (330, 215), (480, 150), (640, 210), (640, 260), (0, 260)],
              fill=(92, 128, 96))
    d.rectangle([0, 240, W, H], fill=(104, 160, 72))
    d.polygon([(0, 330), (260, 300), (420, 320), (640, 300), (640, H), (0, H)], fill=(60, 110, 160))
    for y in range(305, H, 6):  # ripples on the lake
        x = rng.randint(0, W - 60)
        d.line([(x, y), (x + rng.randint(20, 60), y)], fill=(120, 170, 210), width=1)
    houses = [(40, 250, (200, 80, 60)), (130, 262, (230, 210, 170)), (380, 255, (210, 180, 120)),
              (470, 265, (180, 90, 70)), (560, 250, (240, 230, 210))]
    for x, y, colour in houses:
        w, h = 70, 50
        d.rectangle([x, y, x + w, y + h], fill=colour, outline=(60, 40, 30))
        d.polygon([(x - 8, y), (x + w // 2, y - 35), (x + w + 8, y)], fill=(150, 50, 40))
        d.rectangle([x + 28, y + 22, x + 42, y + h], fill=(90, 60, 40))
        for wx in (x + 8, x + w - 22):
            d.rectangle([wx, y + 10, wx + 14, y + 22], fill=(170, 210, 240), outline=(60, 40, 30))
    d.rectangle([250, 190, 320, 300], fill=(225, 220, 205), outline=(80, 70, 60))  # church
    d.polygon([(240, 190), (285, 150), (330, 190)], fill=(110, 60, 50))
    d.rectangle([272, 100, 298, 160], fill=(225, 220, 205), outline=(80, 70, 60))
    d.polygon([(266, 100), (285, 55), (304, 100)], fill=(110, 60, 50))
    d.line([(285, 40), (285, 58)], fill=(60, 50, 40), width=3)
    d.line([(278, 46), (292, 46)], fill=(60, 50, 40), width=3)
    d.ellipse([276, 115, 294, 133], fill=(240, 240, 235), outline=(60, 50, 40))
    d.rectangle([276, 255, 294, 300], fill=(90, 60, 40))
    for x in (10, 100, 215, 340, 450, 540, 615):  # trees
        y = 300 + rng.randint(-10, 10)
        d.rectangle([x + 8, y - 20, x + 16, y + 10], fill=(95, 65, 40))
        for r, dy in ((26, -45), (22, -62), (16, -76)):
            d.ellipse([x + 12 - r, y + dy - r, x + 12 + r, y + dy + r],
                      fill=(40 + rng.randint(0, 30), 100 + rng.randint(0, 40), 50))
    return im.filter(ImageFilter.SMOOTH)


if __name__ == "__main__":
    draw().save(Path(__file__).with_name("village.png"), optimize=True)
