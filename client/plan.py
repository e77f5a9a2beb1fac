"""What a render of an editor's area will be, decided with the daemon before any pixel is read;
and the words both dialogs use for time and progress.

An artist's layer is a camera photo (12-50 MP); a quick look renders a few hundred pixels. So
the plug-in first asks the daemon how long the chosen size takes and how large a quick look can
be (ESTIMATE), then reads the area already scaled down to the render size, and the daemon scales
the result back up to the area (SUBMIT's ``output``). The editors then insert the result as it
comes: in place, in one undo step.

Standard library only: this runs inside the editors' own Python.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .connection import MirageError
from .presets import CUSTOM_SIZE, QUICK, SEES_SIZE, Settings

#: Before a render estimated longer than this, the dialogs say how long it takes and ask.
ASK_SECONDS = 180.0
#: The pixel frames' element types (docs/protocol.md), as ``memoryview.cast`` formats.
_ELEMENTS = {"u8": "B", "u16": "H", "f32": "f"}


def refuse_transparent(pixels: bytes, dtype: str) -> None:
    """Refuse an area with nothing to render (4 channels, alpha last, every pixel fully
    transparent: an empty layer, or a selection over its empty part) before it is sent."""
    alpha = memoryview(pixels).cast(_ELEMENTS[dtype])[3::4]
    if not any(alpha):
        raise MirageError("Choose a layer, or a part of it, with something on it: the area to "
                          "render is fully transparent", "bad_image")


@dataclass
class Plan:
    params: dict[str, Any]
    """The protocol render parameters, ``size`` decided."""
    area: tuple[int, int]
    """(width, height) of the layer or selection: the result's size."""
    render: tuple[int, int]
    """(width, height) rendered at, as the daemon fits the area to ``params["size"]``."""
    send: tuple[int, int]
    """(width, height) of the pixels to send: the area, or the area scaled down to the render
    size when that is smaller."""
    seconds: float
    """The daemon's estimate for the whole render."""
    device: str
    mode: str
    """The settings' size mode (the advice before a long render depends on it)."""
    task: str = "render"
    """``render``, or ``sees``: the map of what the net sees where."""

    @property
    def scaled(self) -> bool:
        return self.send != self.area

    @property
    def long(self) -> bool:
        return self.seconds > ASK_SECONDS

    def summary(self) -> str:
        """``"Rendering at 160x107 px (about 40 s on cpu)"``."""
        width, height = self.render
        if self.task == "sees":
            return f"Mapping what the net sees where, at {width}x{height} px"
        return (f"Rendering at {width}x{height} px (about {duration(self.seconds)} on "
                f"{self.device})")

    def question(self) -> str:
        """What the dialogs ask before a long render."""
        width, height = self.render
        advice = ("Fewer iterations are quicker: a quick look is not rendered smaller than this"
                  if self.mode == QUICK else
                  "A smaller render size or fewer iterations is quicker; 'Quick look' picks a "
                  "size for a first result in a minute or two")
        return (f"This render at {width}x{height} px will take about {duration(self.seconds)} "
                f"on the daemon's {self.device}. Render anyway? ({advice}.)")


def plan_render(session: Any, settings: Settings, width: int, height: int) -> Plan:
    """Decide the render size for an area with the daemon's estimate (``session`` is a daemon
    client or a bridge session)."""
    limits = session.welcome.get("limits", {})
    max_size = limits.get("max_size", 8192)
    params = settings.params(min(max(width, height), max_size))
    reply = session.estimate(params, width, height)
    size = min(settings.render_size(width, height, reply["quick_size"]), max_size)
    if size != params["size"]:
        params["size"] = size
        reply = session.estimate(params, width, height)
    if size > reply.get("largest_size", size):
        raise MirageError(f"Choose a render size of at most {reply['largest_size']} px: a "
                          f"render at {size} px needs about {reply['memory'] / 1e9:.1f} GB of "
                          f"memory, and the daemon's {reply['device']} has "
                          f"{reply['max_memory'] / 1e9:.1f} GB for it.", "out_of_memory")
    render = (int(reply["render"][0]), int(reply["render"][1]))
    send = render if size < max(width, height) else (width, height)
    max_pixels = limits.get("max_pixels", send[0] * send[1])
    if send[0] * send[1] > max_pixels:
        largest = int((max_pixels * max(send) / min(send)) ** 0.5)
        raise MirageError(f"Choose a render size of at most {largest} px: this daemon renders "
                          f"at most {max_pixels / 1e6:.1f} megapixels, and {send[0]}x{send[1]} "
                          f"is more.", "too_large")
    return Plan(params, (width, height), render, send, float(reply["seconds"]),
                reply["device"], settings.size_mode)


def plan_sees(session: Any, width: int, height: int) -> Plan:
    """The plan of a "what the net sees where" map of an area: analysed with its longest side
    at :data:`SEES_SIZE` (at most its own), one forward pass (nothing to ask), drawn by the
    daemon at the area's size."""
    size = min(SEES_SIZE, max(width, height))
    plan = plan_render(session, Settings(size_mode=CUSTOM_SIZE, size=size, iterations=1),
                       width, height)
    return replace(plan, params={"size": plan.params["size"]}, seconds=0.0, task="sees")


def sees_layer_name(header: dict[str, Any]) -> str:
    """The map layer's name: what the net sees most, and when its weights are random."""
    top = ", ".join(s["name"].split(",")[0] for s in header.get("sees", [])[:3])
    untrained = ", random weights" if not header.get("pretrained", True) else ""
    return f"What the net sees where ({top}{untrained})"


def duration(seconds: float) -> str:
    """``"40 s"``, ``"6 minutes"``, ``"2.5 hours"``: how people say how long."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def progress_text(header: dict[str, Any]) -> str:
    """A PROGRESS message as a person reads it: the iterations of the current scale, as they
    were asked for (the final scale has the dialog's iterations; coarser ones half as many)."""
    if header.get("loss") is None:
        return "Started..."
    scale = (f"Scale {header['scale']}/{header['scales']} ({header['width']}x"
             f"{header['height']} px), " if header["scales"] > 1 else "")
    text = (f"{scale}iteration {header['scale_iteration']}/{header['scale_iterations']}, "
            f"about {duration(header['eta'])} left")
    return text[0].upper() + text[1:]
