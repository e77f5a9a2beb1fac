"""Draw the README's pictures of the spatial mode from the bundled example, with SEEDED RANDOM
weights (no trained weights can be downloaded where the project is built): they show what the
modes do to an optimisation, not what a trained VGG19 sees. Each picture says so.

Run:  .venv/bin/python examples/make_readme_images.py  (about 3 minutes on 2 CPU cores)

- docs/images/village-modes.png: the photo, the pooled render, the spatial render and a spatial
  render steered to "castle" in the left third only (the mask drawn as a frame);
- docs/images/village-sees.png: what the net sees where in the photo (``neural-mirage sees``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from neural_mirage.client.presets import SEES_SIZE
from neural_mirage.convert import to_tensor
from neural_mirage.engine import RenderParams, render
from neural_mirage.engine.head import where_seen
from neural_mirage.engine.render import fit_size, resize
from neural_mirage.images import read_image
from neural_mirage.sees_map import draw
from neural_mirage.weights import ModelSpec, load_model

ROOT = Path(__file__).resolve().parent.parent
SIZE, ITERATIONS = 320, 60


def labelled(image: Image.Image, text: str) -> Image.Image:
    framed = Image.new("RGB", (image.width, image.height + 22), (255, 255, 255))
    framed.paste(image, (0, 22))
    ImageDraw.Draw(framed).text((4, 4), text, fill=(0, 0, 0),
                                font=ImageFont.load_default(size=13))
    return framed


def picture(tensor: torch.Tensor) -> Image.Image:
    return Image.fromarray(np.round(tensor.permute(1, 2, 0).numpy() * 255).astype(np.uint8))


def main() -> None:
    torch.manual_seed(0)
    model, info = load_model(ModelSpec("random"))
    photo = to_tensor(read_image(ROOT / "examples" / "village.png"))
    width, height = fit_size(photo.shape[-1], photo.shape[-2], SIZE)
    base = dict(size=SIZE, iterations=ITERATIONS, scales=1, early_stop=0.0)
    mask = torch.zeros(photo.shape[-2:])
    mask[:, : photo.shape[-1] // 3] = 1.0
    panels = [labelled(picture(resize(photo[None], width, height)[0]), "photo")]
    for title, params, see_mask in (
            ("pooled (fc_spatial 0)", RenderParams(**base), None),
            ("spatial (fc_spatial 1)", RenderParams(**base, fc_spatial=1.0), None),
            ("spatial, 'castle' in the left third",
             RenderParams(**base, fc_spatial=1.0, see={"castle": 1.0}, see_weight=2.0), mask)):
        result = render(model, photo, params, see_top=0, see_mask=see_mask).image
        image = picture(result)
        if see_mask is not None:
            ImageDraw.Draw(image).rectangle((0, 0, width // 3, height - 1), outline=(255, 0, 0),
                                            width=2)
        panels.append(labelled(image, title))
    sheet = Image.new("RGB", (2 * panels[0].width + 6, 2 * panels[0].height + 28),
                      (255, 255, 255))
    for index, panel in enumerate(panels):
        sheet.paste(panel, ((index % 2) * (panel.width + 6), (index // 2) * (panel.height + 6)))
    ImageDraw.Draw(sheet).text((4, sheet.height - 18), f"{info.label}: the method, not a "
                               "real mirage", fill=(160, 0, 0),
                               font=ImageFont.load_default(size=13))
    out = ROOT / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    sheet.save(out / "village-modes.png", optimize=True)

    source = read_image(ROOT / "examples" / "village.png")
    seen = where_seen(model, photo)  # 640 px: under SEES_SIZE, analysed at its own size
    assert max(photo.shape[-2:]) <= SEES_SIZE
    draw(source.rgb, seen, model.labels, f"what the net sees where: {info.label}").save(
        out / "village-sees.png", optimize=True)


if __name__ == "__main__":
    main()
