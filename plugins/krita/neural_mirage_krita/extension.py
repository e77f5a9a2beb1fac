"""The Krita extension: one action, Tools > Scripts > Neural Mirage..., that opens the dialog."""

from __future__ import annotations

from typing import Any

from krita import Extension, Krita

from .dialog import MirageDialog


class MirageExtension(Extension):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self.dialog: MirageDialog | None = None

    def setup(self) -> None:
        pass

    def createActions(self, window: Any) -> None:
        action = window.createAction("neural_mirage", "Neural Mirage...", "tools/scripts")
        action.triggered.connect(self.show_dialog)

    def show_dialog(self) -> None:
        if self.dialog is None:
            self.dialog = MirageDialog(Krita.instance().activeWindow().qwindow())
        self.dialog.show()
        self.dialog.raise_()
