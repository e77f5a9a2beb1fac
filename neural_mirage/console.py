"""Terminal output shared by the CLI's commands: the progress line and the "net sees" lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProgressLine:
    """One status line: rewritten in place on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every
        self._last = 0.0

    def update(self, iteration: int, total: int, scale: int, scales: int, width: int,
               height: int, loss: float | None, eta: float,
               losses: Mapping[str, float] = ()) -> None:
        if loss is None:  # iteration 0: the render has only started
            return
        now = time.monotonic()
        if not self.tty and now - self._last < self.every and iteration < total:
            return
        self._last = now
        filled = int(30 * iteration / max(total, 1))
        content = sum(v for k, v in losses.items() if k.startswith("content:"))
        style = sum(v for k, v in losses.items() if k.startswith("style:"))
        text = (f"[{'#' * filled}{'.' * (30 - filled)}] {iteration}/{total} "
                f"scale {scale}/{scales} {width}x{height} loss {loss:.4g} "
                f"(content {content:.3g}, style {style:.3g}) left {_duration(eta)}")
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def print_seen(title: str, seen: Iterable[Mapping[str, Any]], pretrained: bool,
               stream: TextIO = sys.stdout) -> None:
    """Print the classes the net sees, and say plainly when the weights are random."""
    items = ", ".join(f"{s['name']} {100 * s['probability']:.1f}%" for s in seen)
    note = "" if pretrained else "  [RANDOM weights: these classes mean nothing]"
    print(f"{title}: {items}{note}", file=stream)
