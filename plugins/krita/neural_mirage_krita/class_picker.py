"""A searchable class picker: a comma list of classes whose last item completes from the
daemon's class names and groups as you type."""

from __future__ import annotations

from typing import Any

from PyQt5.QtCore import QStringListModel, Qt, QTimer
from PyQt5.QtWidgets import QCompleter, QLineEdit

from ._mirage.connection import ClassList
from ._mirage.presets import class_matches, last_item, replace_last_item


class ClassPicker(QLineEdit):
    """``church, lakeside:0.5, @water``: type part of a name and pick from the list.

    The names come from the daemon (so a Places365 model offers its own); until they arrive
    the field still takes typed names, which the daemon checks.
    """

    def __init__(self, text: str = "", parent: Any = None) -> None:
        super().__init__(text, parent)
        self._hint("loading class names...")
        self.setToolTip("classes the result should look like, e.g. church, lakeside:0.5, "
                        "@water; type to search")
        self.model = QStringListModel(self)
        self.completer = QCompleter(self.model, self)
        self.completer.setWidget(self)  # not setCompleter: it would replace the whole text
        self.completer.setCompletionMode(QCompleter.UnfilteredPopupCompletion)
        self.completer.setCaseSensitivity(Qt.CaseInsensitive)
        self.completer.setMaxVisibleItems(12)
        self.completer.activated[str].connect(self.choose)
        self.textEdited.connect(self._search)
        self.classes = ClassList()
        self._waiting = QTimer(self)
        self._waiting.setInterval(100)
        self._waiting.timeout.connect(self._check_loaded)
        self._waiting.start()

    def matches(self) -> list[str]:
        """What the picker offers for the item being typed."""
        return self.model.stringList()

    def choose(self, name: str) -> None:
        self.setText(replace_last_item(self.text(), name))

    def _search(self, text: str) -> None:
        found = class_matches(last_item(text), self.classes.classes, self.classes.groups)
        self.model.setStringList(found)
        if found:
            self.completer.complete()
        else:
            self.completer.popup().hide()

    def _check_loaded(self) -> None:
        if not self.classes.ready:
            return
        self._waiting.stop()
        self._hint(self.classes.hint())
        if self.classes.error is not None:
            self.setToolTip(str(self.classes.error))

    def _hint(self, text: str) -> None:
        """Show ``text`` when the field is empty, and be wide enough for all of it."""
        self.setPlaceholderText(text)
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance(text) + 24)
