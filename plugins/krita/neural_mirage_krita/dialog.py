"""The Neural Mirage dialog: presets, main weights, render size, how the net reads the picture
(what it sees, or where), class steering (everywhere or in the selection), live progress and
preview, Cancel; and a map of what the net sees where, as a layer. Errors go to a scrolling box
under the form, so a long one (a daemon that cannot start) is read whole and leaves the form as
it is."""

from __future__ import annotations

from typing import Any

from krita import Krita
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtGui import QImage, QPixmap
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTextBrowser,
    QVBoxLayout,
)

from ._mirage.connection import MirageError
from ._mirage.plan import Plan, progress_text
from ._mirage.presets import (
    CUSTOM,
    CUSTOM_SIZE,
    PRESET_NAMES,
    SEEING,
    SIZE_MODES,
    Settings,
    field_range,
    load_settings,
    save_settings,
)
from .class_picker import ClassPicker
from .layers import MirageRun

EDITOR = "krita"


class MirageDialog(QDialog):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Neural Mirage")
        self.run: MirageRun | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._tick)
        s = load_settings(EDITOR)

        self.preset = QComboBox()
        self.preset.addItems(PRESET_NAMES)
        self.preset.setCurrentText(s.preset)
        self.custom = QLineEdit(s.custom_layers)
        self.custom.setToolTip("content layers for Custom, e.g. fc7:1,relu4_2:0.2")
        self.content = _spin(QDoubleSpinBox(), *field_range("content_weight"), s.content_weight,
                             decimals=3)
        self.style = _spin(QDoubleSpinBox(), *field_range("style_weight"), s.style_weight,
                           decimals=3)
        self.size_mode = QComboBox()
        for mode, label in SIZE_MODES.items():
            self.size_mode.addItem(label, mode)
        self.size_mode.setCurrentIndex(max(0, self.size_mode.findData(s.size_mode)))
        self.size = _spin(QSpinBox(), *field_range("size"), s.size)
        self.size.setSuffix(" px")
        self.size.setToolTip("longest side of the render; the result is scaled to the layer "
                             "or selection")
        size_row = QHBoxLayout()
        size_row.addWidget(self.size_mode, 1)
        size_row.addWidget(self.size)
        self.iterations = _spin(QSpinBox(), *field_range("iterations"), s.iterations)
        self.seed = _spin(QSpinBox(), *field_range("seed"), s.seed)
        self.colors = QCheckBox("Keep the original &colours")
        self.colors.setChecked(s.original_colors)
        self.see = ClassPicker(s.see)
        self.see_weight = _spin(QDoubleSpinBox(), *field_range("see_weight"), s.see_weight,
                                decimals=2)
        self.see_weight.setToolTip("how strongly the classes pull (0: off)")
        self.seeing = QComboBox()
        for nick, (label, _) in SEEING.items():
            self.seeing.addItem(label, nick)
        self.seeing.setCurrentIndex(max(0, self.seeing.findData(s.seeing)))
        self.seeing.setToolTip("what the fc content keeps: what the net sees in the whole "
                               "picture, or also where it sees it (one 224 px window every "
                               "32 px)")
        self.see_in_selection = QCheckBox("Only i&n the selection (renders the whole layer)")
        self.see_in_selection.setChecked(s.see_in_selection)
        form = QFormLayout()
        form.addRow("&Preset", self.preset)
        form.addRow("Content &layers", self.custom)
        form.addRow("Content &weight", self.content)
        form.addRow("St&yle weight", self.style)
        form.addRow("&Render size", size_row)
        form.addRow("&Iterations", self.iterations)
        form.addRow("&Seed", self.seed)
        form.addRow("Content &keeps", self.seeing)
        form.addRow("", self.colors)
        form.addRow("&Make it see", self.see)
        form.addRow("", self.see_in_selection)
        form.addRow("Seeing s&trength", self.see_weight)
        self.preset.currentTextChanged.connect(
            lambda name: self.custom.setEnabled(name == CUSTOM))
        self.custom.setEnabled(s.preset == CUSTOM)
        self.size_mode.currentIndexChanged.connect(self._size_mode_changed)
        self._size_mode_changed()
        self._ticking = False

        self.progress = QProgressBar()
        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignCenter)
        self.preview.setMinimumSize(200, 150)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.errors = QTextBrowser()
        self.errors.setMaximumHeight(90)
        self.errors.hide()
        self.buttons = QDialogButtonBox()
        self.render_button = QPushButton("Render")
        self.map_button = QPushButton("Map what it sees")
        self.map_button.setToolTip("add a layer showing the class the net sees in each 224 px "
                                   "window of the layer (or selection)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.buttons.addButton(self.render_button, QDialogButtonBox.ActionRole)
        self.buttons.addButton(self.map_button, QDialogButtonBox.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ActionRole)
        self.buttons.addButton(QDialogButtonBox.Close)
        self.render_button.clicked.connect(lambda: self.start())  # not clicked's bool
        self.map_button.clicked.connect(lambda: self.start("sees"))
        self.cancel_button.clicked.connect(self.cancel)
        self.buttons.rejected.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.preview)
        layout.addWidget(self.status)
        layout.addWidget(self.errors)
        layout.addWidget(self.buttons)

    def settings(self) -> Settings:
        return Settings(preset=self.preset.currentText(), custom_layers=self.custom.text(),
                        content_weight=self.content.value(), style_weight=self.style.value(),
                        size_mode=self.size_mode.currentData(), size=self.size.value(),
                        iterations=self.iterations.value(),
                        seed=self.seed.value(), original_colors=self.colors.isChecked(),
                        see=self.see.text(), see_weight=self.see_weight.value(),
                        seeing=self.seeing.currentData(),
                        see_in_selection=self.see_in_selection.isChecked())

    def start(self, task: str = "render") -> None:
        settings = self.settings()
        save_settings(EDITOR, settings)
        doc = Krita.instance().activeDocument()
        self.errors.hide()
        self.preview.clear()  # a later error must not sit under the last render's preview
        self.progress.setValue(0)
        self.run = None  # a render that cannot start is not the last one
        try:
            self.run = MirageRun(doc, doc.activeNode() if doc else None, settings,
                                 on_progress=self._progress, confirm=self._confirm, task=task)
        except (MirageError, ValueError) as exc:
            self._failed(str(exc))
            return
        self.status.setText(self.run.stage)
        self.render_button.setEnabled(False)
        self.map_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.timer.start()

    def cancel(self) -> None:
        if self.run is not None:
            self.status.setText("Cancelling...")
            self.run.cancel()

    def _confirm(self, plan: Plan) -> bool:
        answer = QMessageBox.question(self, "Neural Mirage: a long render", plan.question(),
                                      QMessageBox.Yes | QMessageBox.Cancel, QMessageBox.Cancel)
        return answer == QMessageBox.Yes

    def _tick(self) -> None:
        if self._ticking:  # the long-render question runs its own event loop
            return
        self._ticking = True
        try:
            self._advance()
        finally:
            self._ticking = False

    def _advance(self) -> None:
        try:
            layer = self.run.poll(0)
        except MirageError as exc:
            self._finish()
            if exc.code == "cancelled":
                self.status.setText("Cancelled.")
            else:
                self._failed(str(exc))
            return
        if layer is not None:
            self._finish()
            self.progress.setValue(self.progress.maximum())
            self.status.setText(f"Done: new layer '{layer.name()}'.")
        elif self.run.watch is None:
            self.status.setText(self.run.stage)

    def _finish(self) -> None:
        self.timer.stop()
        self.render_button.setEnabled(True)
        self.map_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _failed(self, message: str) -> None:
        self.status.setText("Not rendered:")
        self.errors.setPlainText(message)
        self.errors.show()

    def _size_mode_changed(self) -> None:
        self.size.setEnabled(self.size_mode.currentData() == CUSTOM_SIZE)

    def _progress(self, progress: dict, preview: bytes | None) -> None:
        self.progress.setMaximum(max(1, progress["total"]))
        self.progress.setValue(progress["iteration"])
        self.status.setText(progress_text(progress))
        if preview is not None:
            meta = progress["preview"]
            image = QImage(preview, meta["width"], meta["height"], 3 * meta["width"],
                           QImage.Format_RGB888).copy()
            self.preview.setPixmap(QPixmap.fromImage(image))


def _spin(box: Any, low: float, high: float, value: float, decimals: int | None = None) -> Any:
    if decimals is not None:
        box.setDecimals(decimals)
    box.setRange(low, high)
    box.setValue(value)
    return box
