"""Presets and the few parameters the editor dialogs show; shared by the GIMP and Krita plug-ins.

Standard library only: this runs inside the editors' own Python.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .locate import user_dirs

_SCHEMA_FILE = Path(__file__).resolve().parent / "schema.json"
#: Every render parameter with its kind, bounds and default: the engine's schema as WELCOME
#: carries it (written by ``python -m tests.test_docs``; a test fails when it drifts), so the
#: dialogs take the daemon's bounds without asking it first.
SCHEMA: dict[str, dict[str, Any]] = json.loads(_SCHEMA_FILE.read_text())
#: The largest value an editor's number field holds (Qt's and GIMP's int fields are 32-bit).
_FIELD_MAX = 2**31 - 1


def field_range(name: str) -> tuple[float, float]:
    """(low, high) of the dialog field for the render parameter ``name``: the schema's bounds,
    within what a number field holds (1e6 where the schema has no upper bound)."""
    entry = SCHEMA[name]
    return entry.get("low", 0), min(entry.get("high", 1e6), _FIELD_MAX)


STYLE_LAYERS = {"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0, "relu5_1": 1.0}

#: name -> content layers; the style layers are the same for all.
PRESETS: dict[str, dict[str, float]] = {
    "Mirage (fc7)": {"fc7": 1.0},
    "Mirage + layout (fc7 + relu4_2)": {"fc7": 1.0, "relu4_2": 0.2},
    "Dream (fc8)": {"fc8": 1.0},
}
CUSTOM = "Custom"
PRESET_NAMES = [*PRESETS, CUSTOM]
#: The presets' names for scripts (GIMP's choice arguments take such nicks).
PRESET_NICKS = dict(zip(("mirage", "mirage-layout", "dream", "custom"), PRESET_NAMES,
                        strict=True))

#: Render size choices: a size the daemon finishes in about a minute or two (the default, for a
#: first look at a camera photo), the area's own size, or a size the user types.
QUICK, LAYER, CUSTOM_SIZE = "quick", "layer", "custom"
SIZE_MODES = {QUICK: "Quick look (about a minute)", LAYER: "Layer size",
              CUSTOM_SIZE: "Custom size"}

#: How the fc content layers read the picture (the render parameter ``fc_spatial``): the whole
#: picture at once (the method's own), window by window (keeps where things are), or both.
POOLED, SPATIAL, BOTH = "pooled", "spatial", "both"
SEEING = {POOLED: ("What it sees", 0.0), SPATIAL: ("What it sees, and where", 1.0),
          BOTH: ("Both", 0.5)}
#: The longest side "what the net sees where" analyses a picture at: 26x18 windows of 224 px
#: for a 3:2 photo (the CLI's ``sees`` and the plug-ins' map).
SEES_SIZE = 1024


@dataclass
class Settings:
    """What the dialog shows; remembered between runs."""

    preset: str = "Mirage (fc7)"
    custom_layers: str = "fc7:1,relu4_2:0.2"
    """Content layers for the Custom preset, as ``layer:weight,...``."""
    content_weight: float = 1.0
    style_weight: float = 5.0
    tv_weight: float = 0.01
    size_mode: str = QUICK
    """One of :data:`SIZE_MODES`."""
    size: int = 1024
    """Longest side of the render for the custom size."""
    iterations: int = 300
    seed: int = 0
    original_colors: bool = False
    see: str = ""
    """Classes to steer towards, as ``class[:weight],...`` (names, indices or @groups)."""
    see_weight: float = 1.0
    seeing: str = POOLED
    """One of :data:`SEEING`."""
    see_in_selection: bool = False
    """Steer only inside the selection and render the whole layer (else the selection is the
    area rendered)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further render parameters by protocol name, for scripts."""

    def content_layers(self) -> dict[str, float]:
        if self.preset in PRESETS:
            return dict(PRESETS[self.preset])
        if self.preset != CUSTOM:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of "
                             f"{', '.join(PRESET_NAMES)}")
        return parse_weighted(self.custom_layers, "layer")

    def steers_in_selection(self, has_selection: bool) -> bool:
        """Whether the selection says where to steer (and the whole layer is rendered). With
        the option on and no classes it would quietly render the selection instead: refused."""
        if not (self.see_in_selection and has_selection):
            return False
        if not parse_weighted(self.see, "class"):
            raise ValueError("'Only in the selection' steers towards the classes of 'Make it "
                             "see': name one there, or untick it to render the selection")
        return True

    def fc_spatial(self) -> float:
        if self.seeing not in SEEING:
            raise ValueError(f"unknown seeing {self.seeing!r}; choose one of "
                             f"{', '.join(SEEING)}")
        return SEEING[self.seeing][1]

    def render_size(self, width: int, height: int, quick_size: int) -> int:
        """The longest side to render an area of ``width`` x ``height`` at; ``quick_size`` is
        the daemon's answer to how large a quick look can be."""
        if self.size_mode == QUICK:
            return min(quick_size, max(width, height))
        if self.size_mode == LAYER:
            return max(width, height)
        if self.size_mode != CUSTOM_SIZE:
            raise ValueError(f"unknown render size {self.size_mode!r}; choose one of "
                             f"{', '.join(SIZE_MODES)}")
        return int(self.size)

    def params(self, size: int) -> dict[str, Any]:
        """Protocol render parameters for a render whose longest side is ``size``."""
        return {"content_layers": self.content_layers(), "style_layers": dict(STYLE_LAYERS),
                "content_weight": float(self.content_weight),
                "style_weight": float(self.style_weight), "tv_weight": float(self.tv_weight),
                "size": int(size), "iterations": int(self.iterations), "seed": int(self.seed),
                "original_colors": bool(self.original_colors),
                "see": parse_weighted(self.see, "class"), "see_weight": float(self.see_weight),
                "fc_spatial": self.fc_spatial(), **self.extra}

    def layer_name(self, size: int, pretrained: bool = True, in_selection: bool = False) -> str:
        """A new layer's name that tells it from the other renders in the Layers panel, what
        differs most between renders first (the render ``size``, iterations, seed, classes),
        then how it was made (and when the daemon's network was not trained: its random
        weights show the method, not a mirage)."""
        layers = "+".join(self.content_layers())
        classes = parse_weighted(self.see, "class")
        seeing = ", sees " + " + ".join(classes) if classes else ""
        if classes and in_selection:
            seeing += " in the selection"
        where = {POOLED: "", SPATIAL: " where", BOTH: " and where"}.get(self.seeing, "")
        untrained = ", random weights" if not pretrained else ""
        return (f"Mirage {size} px, {self.iterations} it, seed {self.seed}{seeing} ({layers}"
                f"{where}, content {self.content_weight:g}, style {self.style_weight:g}"
                f"{untrained})")


def parse_weighted(text: str, what: str) -> dict[str, float]:
    """``"fc7, relu4_2:0.2"`` -> ``{"fc7": 1.0, "relu4_2": 0.2}`` (layers or classes)."""
    items: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = item.partition(":")
        try:
            items[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"{what} weight {weight!r} of {name!r} is not a number") from None
    return items


def class_matches(query: str, classes: list[str], groups: dict[str, list[str]],
                  limit: int = 40) -> list[str]:
    """What a class picker offers for ``query``: groups (CLASSES_REPLY names them ``@name``, as
    ``see`` takes them) and class names that contain it, those that start with it first."""
    query = query.strip().lower()
    if not query:
        return []
    names = [*groups, *classes]
    found = [n for n in names if query in n.lower()]
    found.sort(key=lambda n: not n.lower().lstrip("@").startswith(query.lstrip("@")))
    return found[:limit]


def last_item(text: str) -> str:
    """The item being typed in a comma list (what the picker completes)."""
    return text.rsplit(",", 1)[-1]


def replace_last_item(text: str, choice: str) -> str:
    """``"church, lakes"`` + ``"lakeside"`` -> ``"church, lakeside, "``."""
    head = text.rsplit(",", 1)[0] + ", " if "," in text else ""
    return f"{head}{choice}, "


def settings_file(editor: str) -> Path:
    """The editor's last values, in neural-mirage's per-user configuration folder
    (``~/.config/neural-mirage``, ``~/Library/Application Support/neural-mirage``,
    ``%LOCALAPPDATA%\\neural-mirage``)."""
    return Path(user_dirs().user_config_dir) / f"{editor}-last.json"


def load_settings(editor: str) -> Settings:
    """The last values used in this editor, or the defaults (also when the file is damaged)."""
    try:
        data = json.loads(settings_file(editor).read_text())
        known = set(Settings.__dataclass_fields__)
        return Settings(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError):
        return Settings()


def save_settings(editor: str, settings: Settings) -> None:
    path = settings_file(editor)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(settings), indent=1))
    except OSError:
        pass  # remembering is a convenience; never fail a render over it
