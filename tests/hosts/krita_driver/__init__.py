"""Test driver, installed only by the tests: once Krita's window is up, it uses the Neural Mirage
plug-in as a user and a script would, writes what it saw to a JSON file, and ends Krita."""

import json
import os
import time
import traceback

from krita import Extension, Krita, Selection
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication

W, H = 96, 64


def source_pixels():
    return bytes(b for y in range(H) for x in range(W)
                 for b in ((x * 5) % 256, (y * 7) % 256, (x * y) % 256, 255))


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if predicate():
            return True
        time.sleep(0.02)
    return False


def run(spec):
    import neural_mirage_krita
    from neural_mirage_krita import layers
    from neural_mirage_krita._mirage.presets import Settings

    k = Krita.instance()
    res = {"action": k.action("neural_mirage") is not None}
    doc = k.createDocument(W, H, "mirage-test", "RGBA", "U8", "", 72.0)
    k.activeWindow().addView(doc)
    base = doc.topLevelNodes()[0]
    base.setPixelData(source_pixels(), 0, 0, W, H)
    doc.refreshProjection()
    doc.setActiveNode(base)
    settings = Settings(**spec["settings"])
    if spec["mode"] == "nodaemon":
        try:
            layers.render_layer(doc, base, settings, timeout=60)
            res["error"] = None
        except Exception as exc:
            res["error"] = str(exc)
            res["error_type"] = type(exc).__name__
        after = k.createDocument(40, 40, "after", "RGBA", "U8", "", 72.0)
        k.activeWindow().addView(after)
        res["usable"] = after.width() == 40 and len(k.documents()) == 2
        return res

    k.action("neural_mirage").trigger()
    dialog = neural_mirage_krita.EXTENSION.dialog
    dialog.preset.setCurrentText(settings.preset)
    dialog.content.setValue(settings.content_weight)
    dialog.style.setValue(settings.style_weight)
    dialog.size.setValue(0)
    dialog.iterations.setValue(settings.iterations)
    dialog.seed.setValue(settings.seed)
    dialog.see_weight.setValue(settings.see_weight)
    # The class picker, used as a person would: type part of a name, pick from the list.
    from PyQt5.QtCore import Qt
    from PyQt5.QtTest import QTest

    wait_until(lambda: dialog.see.classes.ready, 60)
    res["classes_error"] = str(dialog.see.classes.error or "")
    dialog.see.clear()
    QTest.keyClicks(dialog.see, spec["see_typed"])
    popup = dialog.see.completer.popup()
    wait_until(popup.isVisible, 5)
    res["picker_matches"] = dialog.see.matches()
    res["picker_popup_visible"] = popup.isVisible()
    popup.setCurrentIndex(dialog.see.completer.completionModel().index(0, 0))
    QTest.keyClick(popup, Qt.Key_Return)
    wait_until(lambda: dialog.see.text() != spec["see_typed"], 5)
    res["picker_text"] = dialog.see.text()
    if spec.get("screenshot"):
        QTest.keyClicks(dialog.see, "lake")
        wait_until(popup.isVisible, 5)
        wait_until(lambda: False, 0.5)
        QApplication.primaryScreen().grabWindow(0).save(spec["screenshot"].replace(
            ".png", "-picker.png"))
        popup.hide()
        dialog.see.setText(res["picker_text"])
    dialog.render_button.click()
    wait_until(lambda: (dialog.run is not None and dialog.run.layer is not None)
               or "Error" in dialog.status.text(), 180)
    res["dialog_status"] = dialog.status.text()
    layer = dialog.run.layer if dialog.run is not None else None
    res["whole_name"] = layer.name() if layer else None
    res["whole"] = bytes(layer.pixelData(0, 0, W, H)).hex() if layer else None
    res["layers_after_whole"] = [n.name() for n in doc.topLevelNodes()]
    if spec.get("screenshot"):
        wait_until(lambda: False, 0.5)
        QApplication.primaryScreen().grabWindow(0).save(spec["screenshot"])

    # Cancel from the dialog while a long render runs: no new layer appears.
    layers_before = len(doc.topLevelNodes())
    dialog.iterations.setValue(100000)
    dialog.render_button.click()
    wait_until(lambda: dialog.progress.value() >= 1, 120)
    dialog.cancel_button.click()
    wait_until(lambda: dialog.status.text() == "Cancelled.", 60)
    res["cancel_status"] = dialog.status.text()
    res["cancel_layers"] = [layers_before, len(doc.topLevelNodes())]
    dialog.close()

    selection = Selection()
    selection.select(20, 16, 48, 40, 255)
    doc.setSelection(selection)
    selected = layers.render_layer(doc, base, settings, timeout=180)
    res["selection"] = bytes(selected.pixelData(0, 0, W, H)).hex()
    res["base_unchanged"] = bytes(base.pixelData(0, 0, W, H)) == source_pixels()
    before = len(doc.topLevelNodes())
    k.action("edit_undo").trigger()
    wait_until(lambda: len(doc.topLevelNodes()) < before, 5)
    res["undo"] = [before, len(doc.topLevelNodes())]
    return res


def main():
    with open(os.environ["MIRAGE_KRITA_SCENARIO"]) as f:
        spec = json.load(f)
    try:
        res = run(spec)
        res["ok"] = True
    except Exception:
        res = {"ok": False, "traceback": traceback.format_exc()}
    with open(spec["out"], "w") as f:
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
