"""Pixels out of Krita and the result back in, as a new layer above the source.

The source layer is never written. The result goes into a new paint layer (adding a node is one
undoable step in Krita; ``setPixelData`` on an existing layer is not undoable), offset to the
selection and transparent outside it (the daemon multiplies the result's alpha by the mask).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from krita import Krita
from PyQt5.QtCore import QPointF
from PyQt5.QtWidgets import QApplication

from ._mirage.connection import MirageError, friendly, open_session
from ._mirage.presets import Settings

# (color model, depth) -> (protocol dtype, channel order). Krita keeps integer RGBA as B,G,R,A
# and float RGBA as R,G,B,A.
FORMATS = {("RGBA", "U8"): ("u8", "BGRA"), ("RGBA", "U16"): ("u16", "BGRA"),
           ("RGBA", "F32"): ("f32", "RGBA")}
MIN_SIDE = 32


@dataclass
class Source:
    node: Any
    x: int
    y: int
    width: int
    height: int
    pixels: bytes
    meta: dict[str, Any]
    mask: bytes | None


def read_source(doc: Any, node: Any) -> Source:
    """The active layer's pixels, limited to the selection's bounds when there is one."""
    if doc is None or node is None:
        raise MirageError("open an image and select a paint layer first")
    if node.type() != "paintlayer":
        raise MirageError(f"'{node.name()}' is a {node.type()}; choose a paint layer")
    fmt = FORMATS.get((node.colorModel(), node.colorDepth()))
    if fmt is None:
        raise MirageError(f"Neural Mirage works on RGBA images in 8-bit or 16-bit integer or "
                          f"32-bit float; this layer is {node.colorModel()} "
                          f"{node.colorDepth()}. Convert it (Image > Convert Image Color Space).")
    selection = doc.selection()
    if selection is not None and selection.width() > 0 and selection.height() > 0:
        x, y, w, h = selection.x(), selection.y(), selection.width(), selection.height()
        mask = bytes(selection.pixelData(x, y, w, h))
    else:
        x, y, w, h = 0, 0, doc.width(), doc.height()
        mask = None
    if w < MIN_SIDE or h < MIN_SIDE:
        raise MirageError(f"the area is {w}x{h} pixels; Neural Mirage needs at least "
                          f"{MIN_SIDE}x{MIN_SIDE}")
    dtype, order = fmt
    meta = {"width": w, "height": h, "channels": 4, "dtype": dtype, "order": order}
    return Source(node, x, y, w, h, bytes(node.pixelData(x, y, w, h)), meta, mask)


def insert_result(doc: Any, source: Source, result: Any, name: str) -> Any:
    """A new paint layer above the source holding the result."""
    layer = doc.createNode(name, "paintlayer")
    image = result.image
    layer.setPixelData(result.pixels, source.x, source.y, image["width"], image["height"])
    source.node.parentNode().addChildNode(layer, source.node)
    if (image["width"], image["height"]) != (source.width, source.height):
        layer.scaleNode(QPointF(source.x, source.y), source.width, source.height, "Bicubic")
    doc.refreshProjection()
    return layer


class MirageRun:
    """One render from submit to the new layer; driven by :meth:`poll` (a Qt timer calls it)."""

    def __init__(self, doc: Any, node: Any, settings: Settings, on_progress: Any = None,
                 on_spawn: Any = None) -> None:
        self.doc = doc
        self.settings = settings
        self.source = read_source(doc, node)
        self.session = open_session(on_spawn=on_spawn)
        try:
            params = settings.params(self.source.width, self.source.height)
            accepted = self.session.submit(self.source.pixels, self.source.meta, params,
                                           mask=self.source.mask, preview_every=5,
                                           preview_size=200)
            self.job = accepted["job"]
            self.watch = self.session.watch(self.job, on_progress)
        except Exception as exc:
            self.session.close()
            raise friendly(exc) from exc
        self.layer: Any = None

    def poll(self, timeout: float = 0.0) -> Any:
        """The new layer once the result is in, else None; raises MirageError (code
        'cancelled' after a cancel)."""
        try:
            result = self.watch.poll(timeout)
        except Exception as exc:
            self.session.close()
            raise friendly(exc) from exc
        if result is None:
            return None
        try:
            self.layer = insert_result(self.doc, self.source, result, self.settings.layer_name())
            self.session.ack(self.job)
        finally:
            self.session.close()
        return self.layer

    def cancel(self) -> None:
        self.watch.cancel()


def render_layer(doc: Any = None, node: Any = None, settings: Settings | None = None,
                 timeout: float = 3600.0) -> Any:
    """Scripting entry: render the (active) layer and return the new layer. Blocks, but keeps
    Krita's event loop running."""
    doc = doc or Krita.instance().activeDocument()
    node = node or (doc.activeNode() if doc else None)
    run = MirageRun(doc, node, settings or Settings())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        layer = run.poll(0.05)
        if layer is not None:
            return layer
        QApplication.processEvents()
    run.cancel()
    raise MirageError(f"the render took longer than {timeout:g} s and was cancelled", "timeout")
