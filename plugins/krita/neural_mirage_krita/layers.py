"""Pixels out of Krita and the result back in, as a new layer above the source.

The source layer is never written. The result, which the daemon scales to the area's size, goes
into a new paint layer filled while it is detached and then added with one ``addChildNode``: one
undo step, whatever the render size (``setPixelData`` on an attached layer is not undoable, and
``scaleNode`` would be an undo step of its own). It sits at the selection's place and is
transparent outside it (the daemon multiplies the result's alpha by the mask).

A render runs as a few steps that the dialog's timer drives through :meth:`MirageRun.poll`:
connecting (which may start the daemon: seconds), planning and sending happen on a worker
thread; Krita's own calls (reading pixels, adding the layer) on Krita's thread. So Krita never
freezes while the daemon loads the network.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from krita import Krita
from PyQt5.QtWidgets import QApplication

from ._mirage.connection import MirageError, friendly, open_session, starting_text
from ._mirage.job import JobCancelled
from ._mirage.plan import Plan, plan_render, plan_sees, refuse_transparent, sees_layer_name
from ._mirage.presets import Settings

# (color model, depth) -> (protocol dtype, channel order). Krita keeps integer RGBA as B,G,R,A
# and float RGBA as R,G,B,A.
FORMATS = {("RGBA", "U8"): ("u8", "BGRA"), ("RGBA", "U16"): ("u16", "BGRA"),
           ("RGBA", "F32"): ("f32", "RGBA")}
MIN_SIDE = 32


@dataclass
class Area:
    """The layer and the part of it to render: the selection's bounds, or the whole canvas."""

    node: Any
    x: int
    y: int
    width: int
    height: int
    dtype: str
    order: str
    mask: bytes | None
    """The selection, where it limits the result (the result is transparent outside it)."""
    see_mask: bytes | None = None
    """The selection, where it says where to steer instead (the whole layer is rendered)."""

    def meta(self, width: int, height: int) -> dict[str, Any]:
        return {"width": width, "height": height, "channels": 4, "dtype": self.dtype,
                "order": self.order}


def read_area(doc: Any, node: Any, steer_in_selection: bool = False) -> Area:
    """The active layer and the area to render (no pixels yet: their size is planned first):
    the selection's bounds, or the whole canvas when the selection says where to steer."""
    if doc is None or node is None:
        raise MirageError("open an image and select a paint layer first")
    if node.parentNode() is None:  # Krita still names a layer that an undo removed
        raise MirageError(f"Click the layer to render in the Layers docker: Krita reports "
                          f"'{node.name()}' as the active layer, but it is no longer in the "
                          f"image (undone or deleted).")
    if node.type() != "paintlayer":
        raise MirageError(f"'{node.name()}' is a {node.type()}; choose a paint layer")
    fmt = FORMATS.get((node.colorModel(), node.colorDepth()))
    if fmt is None:
        raise MirageError(f"Neural Mirage works on RGBA images in 8-bit or 16-bit integer or "
                          f"32-bit float; this layer is {node.colorModel()} "
                          f"{node.colorDepth()}. Convert it (Image > Convert Image Color Space).")
    selection = doc.selection()
    see_mask = None
    if steer_in_selection:
        x, y, w, h = 0, 0, doc.width(), doc.height()
        mask, see_mask = None, bytes(selection.pixelData(x, y, w, h))
    elif selection is not None and selection.width() > 0 and selection.height() > 0:
        x, y, w, h = selection.x(), selection.y(), selection.width(), selection.height()
        mask = bytes(selection.pixelData(x, y, w, h))
    else:
        x, y, w, h = 0, 0, doc.width(), doc.height()
        mask = None
    if w < MIN_SIDE or h < MIN_SIDE:
        raise MirageError(f"the area is {w}x{h} pixels; Neural Mirage needs at least "
                          f"{MIN_SIDE}x{MIN_SIDE}")
    return Area(node, x, y, w, h, *fmt, mask, see_mask)


def has_selection(doc: Any) -> bool:
    selection = doc.selection() if doc is not None else None
    return selection is not None and selection.width() > 0 and selection.height() > 0


def area_pixels(area: Area, send: tuple[int, int]) -> bytes:
    """The area's pixels at ``send`` size: scaled down by Krita in a scratch document when the
    render is smaller, so a camera photo is never sent at full size for a small render."""
    node = area.node
    pixels = bytes(node.pixelData(area.x, area.y, area.width, area.height))
    if send == (area.width, area.height):
        return pixels
    doc = Krita.instance().activeDocument()
    active = doc.activeNode() if doc is not None else None
    scratch = Krita.instance().createDocument(area.width, area.height, "neural-mirage-scaling",
                                              node.colorModel(), node.colorDepth(),
                                              node.colorProfile(), 72.0)
    try:
        layer = scratch.topLevelNodes()[0]
        layer.setPixelData(pixels, 0, 0, area.width, area.height)
        scratch.scaleImage(send[0], send[1], 72, 72, "Bicubic")
        scratch.waitForDone()
        return bytes(layer.pixelData(0, 0, *send))
    finally:
        scratch.close()
        if active is not None:  # closing it makes Krita activate the artist's top layer
            doc.setActiveNode(active)


def insert_result(doc: Any, area: Area, result: Any, name: str) -> Any:
    """A new paint layer holding the result, added in one undo step at the top of the source's
    group, so that it shows above every earlier result; the source stays the active layer, so
    the next render renders the photo again, not this result."""
    image = result.image
    if (image["width"], image["height"]) != (area.width, area.height):
        raise MirageError(f"the daemon sent a {image['width']}x{image['height']} result for a "
                          f"{area.width}x{area.height} area: update neural-mirage")
    layer = doc.createNode(name, "paintlayer")
    layer.setPixelData(result.pixels, area.x, area.y, area.width, area.height)
    parent = area.node.parentNode()
    removed = parent is None  # the source was removed during the render: the result stays
    group = doc.rootNode() if removed else parent
    children = group.childNodes()  # bottom first
    group.addChildNode(layer, children[-1] if children else None)
    if not removed:  # the next render renders the photo again, not this result
        doc.setActiveNode(area.node)
    doc.refreshProjection()
    return layer


class _Background:
    """A call on a worker thread whose outcome Krita's thread collects later (no Qt in it)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.value = call()
        except Exception as exc:
            self.error = exc

    def done(self, timeout: float = 0.0) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class MirageRun:
    """One render from the click to the new layer; :meth:`poll` advances it (a Qt timer calls
    it), and :attr:`stage` says what it is doing for the dialog to show."""

    def __init__(self, doc: Any, node: Any, settings: Settings, on_progress: Any = None,
                 confirm: Callable[[Plan], bool] | None = None, task: str = "render") -> None:
        self.doc = doc
        self.settings = settings
        self.on_progress = on_progress
        self.confirm = confirm
        self.task = task
        self.steer = task == "render" and settings.steers_in_selection(has_selection(doc))
        self.area = read_area(doc, node, self.steer)
        self.stage = "Connecting to the neural-mirage daemon..."
        self.layer: Any = None
        self.plan: Plan | None = None
        self.session: Any = None
        self.watch: Any = None
        self._cancelled = False
        self._step: _Background | None = _Background(self._connect)

    def _connect(self) -> tuple[Any, Plan]:
        def spawning() -> None:
            self.stage = starting_text()

        session = open_session(on_spawn=spawning)
        try:
            if self.task == "sees":
                return session, plan_sees(session, self.area.width, self.area.height)
            return session, plan_render(session, self.settings, self.area.width,
                                        self.area.height)
        except BaseException:
            session.close()
            raise

    def poll(self, timeout: float = 0.0) -> Any:
        """The new layer once the result is in, else None; raises MirageError (code
        'cancelled' after a cancel)."""
        try:
            if self.watch is None:
                return self._prepare(timeout)
            result = self.watch.poll(timeout)
            if result is None:
                return None
            name = (sees_layer_name(result.header) if self.task == "sees" else
                    self.settings.layer_name(max(self.plan.render),
                                             result.header.get("pretrained", True), self.steer))
            self.layer = insert_result(self.doc, self.area, result, name)
            self.session.ack(self.watch.job)
            self._close()
            return self.layer
        except Exception as exc:
            self._close()
            raise friendly(exc) from exc

    def _prepare(self, timeout: float) -> None:
        """Connected and planned -> ask if long -> read pixels -> submitted -> watching."""
        if not self._step.done(timeout):
            return None
        value = self._step.result()
        if self.plan is None:
            self.session, self.plan = value
            if self._cancelled or (self.plan.long and self.confirm is not None
                                   and not self.confirm(self.plan)):
                raise JobCancelled()
            self.stage = self.plan.summary() + "..."
            area, plan = self.area, self.plan
            pixels = area_pixels(area, plan.send)
            refuse_transparent(pixels, area.meta(*plan.send)["dtype"])
            self._step = _Background(lambda: self.session.submit(
                pixels, area.meta(*plan.send), plan.params, mask=area.mask, preview_every=5,
                preview_size=200, output=plan.area, see_mask=area.see_mask, task=plan.task))
            return None
        self.watch = self.session.watch(value["job"], self.on_progress)
        if self._cancelled:
            self.watch.cancel()
        return None

    def cancel(self) -> None:
        self._cancelled = True
        if self.watch is not None:
            self.watch.cancel()

    def _close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def render_layer(doc: Any = None, node: Any = None, settings: Settings | None = None,
                 timeout: float = 3600.0) -> Any:
    """Scripting entry: render the (active) layer and return the new layer. Blocks, but keeps
    Krita's event loop running; never asks (a script decided the size)."""
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
