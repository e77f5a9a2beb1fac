"""Test driver, installed only by the tests: once Krita's window is up, it uses the Neural Mirage
plug-in as an artist and a script would (the menu action, the dialog's fields and buttons, a
selection, undo), writes what it saw to a JSON file, and ends Krita.

The scenario file says which steps to take. For renders it also records what the plug-in sends
(the plan, asked of the daemon the plug-in's own way, and the area's pixels as the plug-in reads
them), so the test can ask the daemon for the same render and compare it with the new layer.
"""

import json
import os
import time
import traceback
from types import SimpleNamespace

from krita import Extension, Krita, Selection
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtWidgets import QApplication, QFormLayout, QMessageBox

SCENARIO = {}


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if predicate():
            return True
        time.sleep(0.02)
    return False


def screenshot(name, settle=0.5):
    if SCENARIO.get("artifacts"):
        wait_until(lambda: False, settle)
        path = os.path.join(SCENARIO["artifacts"], name)
        QApplication.primaryScreen().grabWindow(0).save(path)


def make_document(spec):
    k = Krita.instance()
    width, height = spec["width"], spec["height"]
    doc = k.createDocument(width, height, "mirage-test", "RGBA", spec.get("depth", "U8"), "",
                           72.0)
    k.activeWindow().addView(doc)
    base = doc.topLevelNodes()[0]
    with open(spec["pixels"], "rb") as f:
        base.setPixelData(f.read(), 0, 0, width, height)
    doc.refreshProjection()
    doc.setActiveNode(base)
    return doc, base


def select(doc, spec):
    """A rectangle, an ellipse (as selection pixels) or nothing."""
    if spec is None:
        doc.setSelection(None)
        return
    shape, x, y, w, h = spec
    selection = Selection()
    if shape == "rect":
        selection.select(x, y, w, h, 255)
    else:
        cx, cy = (w - 1) / 2, (h - 1) / 2
        data = bytes(255 if ((i - cx) / (w / 2)) ** 2 + ((j - cy) / (h / 2)) ** 2 <= 1 else 0
                     for j in range(h) for i in range(w))
        selection.setPixelData(data, x, y, w, h)
    doc.setSelection(selection)


def sent(doc, base, settings, task="render"):
    """What the plug-in sends for these settings: plan, pixels, masks (hex), area, task."""
    from neural_mirage_krita import layers
    from neural_mirage_krita._mirage.connection import open_session
    from neural_mirage_krita._mirage.plan import plan_render, plan_sees

    steer = task == "render" and settings.steers_in_selection(layers.has_selection(doc))
    area = layers.read_area(doc, base, steer)
    session = open_session()
    try:
        plan = (plan_sees(session, area.width, area.height) if task == "sees" else
                plan_render(session, settings, area.width, area.height))
    finally:
        session.close()
    return {"params": plan.params, "send": list(plan.send), "task": task,
            "area": [area.x, area.y, area.width, area.height],
            "pixels": layers.area_pixels(area, plan.send).hex(),
            "mask": area.mask.hex() if area.mask is not None else None,
            "see_mask": area.see_mask.hex() if area.see_mask is not None else None}


def describe(layer):
    bounds = layer.bounds()
    x, y, w, h = bounds.x(), bounds.y(), bounds.width(), bounds.height()
    return {"name": layer.name(), "bounds": [x, y, w, h]}


def open_dialog():
    import neural_mirage_krita

    Krita.instance().action("neural_mirage").trigger()
    dialog = neural_mirage_krita.EXTENSION.dialog
    wait_until(dialog.isVisible, 5)
    return dialog


def fill_dialog(dialog, settings):
    dialog.preset.setCurrentText(settings.preset)
    dialog.content.setValue(settings.content_weight)
    dialog.style.setValue(settings.style_weight)
    dialog.size_mode.setCurrentIndex(dialog.size_mode.findData(settings.size_mode))
    dialog.size.setValue(settings.size)
    dialog.iterations.setValue(settings.iterations)
    dialog.seed.setValue(settings.seed)
    dialog.see.setText(settings.see)
    dialog.see_weight.setValue(settings.see_weight)
    dialog.seeing.setCurrentIndex(dialog.seeing.findData(settings.seeing))
    dialog.see_in_selection.setChecked(settings.see_in_selection)


class Watcher:
    """A 20 ms timer, as any editor has running: records when it fired (a frozen event loop
    shows as a gap) and the dialog's status lines."""

    def __init__(self, dialog):
        self.dialog = dialog
        self.ticks = []
        self.statuses = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        wait_until(lambda: len(self.ticks) >= 3, 5)  # ticking before the click it watches

    def _tick(self):
        self.ticks.append(time.monotonic())
        text = self.dialog.status.text()
        if not self.statuses or self.statuses[-1] != text:
            self.statuses.append(text)

    def stop(self):
        self.timer.stop()
        gaps = [b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)]
        return {"max_gap": max(gaps, default=0.0), "ticks": len(self.ticks),
                "statuses": self.statuses}


def dialog_render(doc, base, dialog, settings, record, shot=None, task="render", undo=True):
    """Render from the dialog's Render button (or map what the net sees with its Map button);
    the result, the layers (top first), the active layer, and one undo (with ``undo``)."""
    fill_dialog(dialog, settings)
    out = {"sent": sent(doc, base, settings, task)} if record else {}
    before = [n.name() for n in doc.topLevelNodes()]
    out["before"] = before
    watcher = Watcher(dialog)
    (dialog.map_button if task == "sees" else dialog.render_button).click()
    wait_until(lambda: dialog.errors.isVisible() or (dialog.run is not None and (
        dialog.run.layer is not None or dialog.status.text() == "Cancelled.")), 300)
    out.update(watcher.stop())
    out["status"] = dialog.status.text()
    out["error"] = dialog.errors.toPlainText() if dialog.errors.isVisible() else ""
    layer = dialog.run.layer if dialog.run is not None else None
    if layer is not None:
        out.update(describe(layer))
        x, y, w, h = out["bounds"]
        out["pixels"] = bytes(layer.pixelData(x, y, w, h)).hex() if record else None
        out["layers"] = [n.name() for n in doc.topLevelNodes()]
        wait_until(lambda: False, 0.3)  # the active layer as Krita's view settles it
        out["active"] = doc.activeNode().name() if doc.activeNode() is not None else None
        if shot:  # the dialog moved aside, so the canvas and the Layers docker show
            dialog.move(900, 0)
            screenshot(shot, settle=1.5)
        if not undo:
            return out
        Krita.instance().action("edit_undo").trigger()
        wait_until(lambda: len(doc.topLevelNodes()) == len(before), 5)
        wait_until(lambda: False, 0.3)
        out["after_one_undo"] = [n.name() for n in doc.topLevelNodes()]
        if shot:
            screenshot(shot.replace(".png", "-after-one-undo.png"), settle=1.5)
    return out


def run_renders(spec):
    """Dialog renders (and script renders) of one document, each with its selection."""
    from neural_mirage_krita import layers
    from neural_mirage_krita._mirage.presets import Settings

    doc, base = make_document(spec["document"])
    source = bytes(base.pixelData(0, 0, doc.width(), doc.height()))
    res = {"action": Krita.instance().action("neural_mirage") is not None, "renders": []}
    dialog = open_dialog()
    for index, step in enumerate(spec["renders"]):
        select(doc, step.get("selection"))
        settings = Settings(**step["settings"])
        if step.get("script"):
            out = {"sent": sent(doc, base, settings)} if step.get("record", True) else {}
            layer = layers.render_layer(doc, base, settings, timeout=300)
            out.update(describe(layer))
            x, y, w, h = out["bounds"]
            if step.get("record", True):
                out["pixels"] = bytes(layer.pixelData(x, y, w, h)).hex()
        else:
            out = dialog_render(doc, base, dialog, settings, step.get("record", True),
                                shot=f"krita-{spec['name']}-{index}.png",
                                task=step.get("task", "render"), undo=step.get("undo", True))
        res["renders"].append(out)
    res["base_unchanged"] = bytes(base.pixelData(0, 0, doc.width(), doc.height())) == source
    res["labels"] = dialog_labels(dialog)
    dialog.close()
    return res


def dialog_labels(dialog):
    """The text of every field label and check box in the dialog's form (with its "&")."""
    from PyQt5.QtWidgets import QCheckBox

    form = dialog.findChild(QFormLayout)
    labels = []
    for row in range(form.rowCount()):
        for role in (QFormLayout.LabelRole, QFormLayout.FieldRole):
            item = form.itemAt(row, role)
            widget = item.widget() if item is not None else None
            if widget is not None and (role == QFormLayout.LabelRole
                                       or isinstance(widget, QCheckBox)) and widget.text():
                labels.append(widget.text())
    return labels


def run_picker_and_cancel(spec):
    """The class picker typed into and picked from; a long render cancelled."""
    from PyQt5.QtTest import QTest

    doc, _ = make_document(spec["document"])
    dialog = open_dialog()
    res = {}
    wait_until(lambda: dialog.see.classes.ready, 60)
    wait_until(lambda: False, 0.5)  # the picker shows its new hint on its next timer tick
    res["classes_error"] = str(dialog.see.classes.error or "")
    res["placeholder"] = dialog.see.placeholderText()
    res["placeholder_fits"] = (dialog.see.width()
                               >= dialog.see.fontMetrics().horizontalAdvance(
                                   dialog.see.placeholderText()) + 8)
    QTest.keyClicks(dialog.see, spec["see_typed"])
    popup = dialog.see.completer.popup()
    wait_until(popup.isVisible, 5)
    res["picker_matches"] = dialog.see.matches()
    res["picker_popup_visible"] = popup.isVisible()
    popup.setCurrentIndex(dialog.see.completer.completionModel().index(0, 0))
    QTest.keyClick(popup, Qt.Key_Return)
    wait_until(lambda: dialog.see.text() != spec["see_typed"], 5)
    res["picker_text"] = dialog.see.text()
    QTest.keyClicks(dialog.see, "lake")
    wait_until(popup.isVisible, 5)
    screenshot("krita-picker.png")
    popup.hide()

    # A render that would take hours: the dialog asks first (answered Yes), then it is cancelled.
    layers_before = len(doc.topLevelNodes())
    dialog.see.setText("")
    dialog.size_mode.setCurrentIndex(dialog.size_mode.findData("layer"))
    dialog.iterations.setValue(100000)

    def answer():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(100, answer)
            return
        res["question"] = box.text()
        screenshot("krita-long-render-question.png")
        box.button(QMessageBox.Yes).click()

    QTimer.singleShot(100, answer)
    dialog.render_button.click()
    wait_until(lambda: dialog.progress.value() >= 1, 120)
    dialog.cancel_button.click()
    wait_until(lambda: dialog.status.text() == "Cancelled.", 60)
    res["cancel_status"] = dialog.status.text()
    res["cancel_layers"] = [layers_before, len(doc.topLevelNodes())]
    dialog.close()
    res.update(removed_layer(doc))
    return res


def removed_layer(doc):
    """After an undo Krita can still name the removed layer as active: rendering it must say
    so, and a result whose source went away during the render must still be added."""
    from neural_mirage_krita import layers

    node = doc.createNode("gone", "paintlayer")
    doc.rootNode().addChildNode(node, None)
    area = layers.read_area(doc, node)
    node.remove()
    wait_until(lambda: node.parentNode() is None, 5)
    out = {}
    try:
        layers.read_area(doc, node)
        out["removed_error"] = ""
    except Exception as exc:
        out["removed_error"] = f"{type(exc).__name__}: {exc}"

    result = SimpleNamespace(image={"width": area.width, "height": area.height},
                             pixels=bytes(4 * area.width * area.height))  # as the daemon sends
    inserted = layers.insert_result(doc, area, result, "kept")
    out["kept_on_top"] = doc.topLevelNodes()[-1].name() == inserted.name() == "kept"
    return out


def run_error(spec):
    """A render whose daemon cannot start: the message, the form's layout, Krita still usable."""
    from neural_mirage_krita import layers
    from neural_mirage_krita._mirage.presets import Settings

    k = Krita.instance()
    doc, base = make_document(spec["document"])
    res = {}
    try:
        layers.render_layer(doc, base, Settings(**spec["settings"]), timeout=120)
        res["script_error"] = None
    except Exception as exc:
        res["script_error"] = str(exc)
        res["script_error_type"] = type(exc).__name__
    dialog = open_dialog()
    dialog.resize(dialog.sizeHint())
    watcher = Watcher(dialog)
    dialog.render_button.click()
    wait_until(dialog.errors.isVisible, 120)
    res.update(watcher.stop())
    res["dialog_error"] = dialog.errors.toPlainText()
    res["error_box_visible"] = dialog.errors.isVisible()
    wait_until(lambda: dialog.see.classes.ready, 120)
    wait_until(lambda: False, 0.3)
    res["picker_hint"] = dialog.see.placeholderText()
    form = dialog.findChild(QFormLayout)
    crushed = []
    for row in range(form.rowCount()):
        item = form.itemAt(row, QFormLayout.FieldRole)
        widget = item.widget() if item is not None else None
        if widget is not None and widget.height() < widget.sizeHint().height():
            crushed.append(row)
    res["crushed_rows"] = crushed
    screenshot("krita-long-error.png")
    dialog.close()
    after = k.createDocument(40, 40, "after", "RGBA", "U8", "", 72.0)
    k.activeWindow().addView(after)
    res["usable"] = after.width() == 40
    return res


def run_spawn(spec):
    """Render from the dialog when no daemon runs: the plug-in starts one (seconds) while Krita
    keeps running its event loop."""
    from neural_mirage_krita._mirage.presets import Settings

    doc, base = make_document(spec["document"])
    dialog = open_dialog()
    out = dialog_render(doc, base, dialog, Settings(**spec["settings"]), record=False)
    dialog.close()
    return out


SCENARIOS = {"renders": run_renders, "picker": run_picker_and_cancel, "error": run_error,
             "spawn": run_spawn}


def main():
    with open(os.environ["MIRAGE_KRITA_SCENARIO"]) as f:
        SCENARIO.update(json.load(f))
    try:
        res = SCENARIOS[SCENARIO["mode"]](SCENARIO)
        res["ok"] = True
    except Exception:
        res = {"ok": False, "traceback": traceback.format_exc()}
    with open(SCENARIO["out"], "w") as f:
        json.dump(res, f)
    os._exit(0)  # quitting Krita any other way crashes or hangs (see shared/hosts/README.md)


class Driver(Extension):
    def setup(self):
        if os.environ.get("MIRAGE_KRITA_SCENARIO"):
            Krita.instance().notifier().windowCreated.connect(
                lambda: QTimer.singleShot(1000, main))

    def createActions(self, window):
        pass


Krita.instance().addExtension(Driver(Krita.instance()))
