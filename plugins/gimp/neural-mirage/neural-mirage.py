#!/usr/bin/env python3
"""Neural Mirage for GIMP 3: Filters > Artistic > Neural Mirage..., and ``python-fu-neural-mirage``
for scripts (non-interactive and with-last-values runs work, so gimp-console batch jobs can call
it through the PDB); Filters > Artistic > What the Net Sees (``python-fu-neural-mirage-sees``)
adds a map of the class the net sees in each 224 px window, as a layer.

The render happens in the neural-mirage daemon; this plug-in sends the active layer (limited to
the selection's bounds, and scaled down in GIMP when the render is smaller), shows progress, and
puts the result, which the daemon scales back to the area, in a new layer above the source: one
undo group, at the selection's place, transparent outside it.
"""

from __future__ import annotations

import sys
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from _mirage.connection import (  # noqa: E402
    ClassList,
    MirageError,
    friendly,
    open_session,
    starting_text,
)
from _mirage.job import JobCancelled  # noqa: E402
from _mirage.plan import (  # noqa: E402
    Plan,
    plan_render,
    plan_sees,
    progress_text,
    refuse_transparent,
    sees_layer_name,
)
from _mirage.presets import (  # noqa: E402
    CUSTOM,
    PRESET_NAMES,
    PRESET_NICKS,
    SEEING,
    SIZE_MODES,
    Settings,
    class_matches,
    field_range,
    last_item,
    load_settings,
    replace_last_item,
    save_settings,
)
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

PROCEDURE = "python-fu-neural-mirage"
SEES_PROCEDURE = "python-fu-neural-mirage-sees"
MIN_SIDE = 32
PICKER_PLACEHOLDER = "church, lakeside:0.5, @water"
LONG_RENDER = "Neural Mirage: a long render"
RW = GObject.ParamFlags.READWRITE


def _format(image: Any) -> tuple[str, str]:
    """Babl format and protocol dtype: 8-bit images as u8, anything finer as float."""
    precision = image.get_precision()
    eight_bit = precision in (Gimp.Precision.U8_LINEAR, Gimp.Precision.U8_NON_LINEAR,
                              Gimp.Precision.U8_PERCEPTUAL)
    return ("R'G'B'A u8", "u8") if eight_bit else ("R'G'B'A float", "f32")


def settings_from(config: Any) -> Settings:
    """The procedure's arguments as Settings. GIMP hands back NULL (None) for a string argument
    whose stored value is the empty string (every session after the first), so None is ""."""
    def text(name: str) -> str:
        return config.get_property(name) or ""

    defaults = Settings()
    return Settings(preset=PRESET_NICKS.get(text("preset"), defaults.preset),
                    custom_layers=text("custom-layers"),
                    content_weight=config.get_property("content-weight"),
                    style_weight=config.get_property("style-weight"),
                    size_mode=text("size-mode") or defaults.size_mode,
                    size=config.get_property("size"),
                    iterations=config.get_property("iterations"),
                    seed=config.get_property("seed"),
                    original_colors=config.get_property("original-colors"),
                    see=text("see"),
                    see_weight=config.get_property("see-weight"),
                    seeing=text("seeing") or defaults.seeing,
                    see_in_selection=config.get_property("see-in-selection"))


def render(image: Any, drawable: Any, settings: Settings, progress: Any,
           ask: Any = None, task: str = "render") -> Any:
    """Plan with the daemon, send the pixels, follow the job, insert the result; returns the new
    layer. ``ask(question)`` confirms a long render (interactive runs); None never asks.
    ``task`` ``sees``: the layer is the map of what the net sees where."""
    if image.get_base_type() != Gimp.ImageBaseType.RGB:
        raise MirageError("Neural Mirage works on RGB images; convert this one with "
                          "Image > Mode > RGB")
    if not isinstance(drawable, Gimp.Layer):
        raise MirageError("choose a layer (not a channel or a mask)")
    fmt, dtype = _format(image)
    intersects, x, y, w, h = drawable.mask_intersect()
    if not intersects:
        raise MirageError("the selection does not touch this layer")
    _, ox, oy = drawable.get_offsets()
    mask = see_mask = None
    selected = not Gimp.Selection.is_empty(image)
    steer = task == "render" and settings.steers_in_selection(selected)
    if steer:  # the whole layer is rendered; the selection says where to steer
        x, y, w, h = 0, 0, drawable.get_width(), drawable.get_height()
    if w < MIN_SIDE or h < MIN_SIDE:
        raise MirageError(f"the area is {w}x{h} pixels; Neural Mirage needs at least "
                          f"{MIN_SIDE}x{MIN_SIDE}")
    if selected:
        selection = image.get_selection().get_buffer()
        selected_bytes = bytes(selection.get(Gegl.Rectangle.new(ox + x, oy + y, w, h), 1.0,
                                             "Y u8", Gegl.AbyssPolicy.NONE))
        see_mask, mask = (selected_bytes, None) if steer else (None, selected_bytes)
    session = open_session(on_spawn=lambda: Gimp.progress_set_text(starting_text()))
    try:
        plan = (plan_sees(session, w, h) if task == "sees" else
                plan_render(session, settings, w, h))
        if plan.long and ask is not None and not ask(plan.question()):
            raise JobCancelled()
        progress.show(plan.summary())
        pixels = read_area(image, drawable, (x, y, w, h), plan, fmt)
        refuse_transparent(pixels, dtype)
        meta = {"width": plan.send[0], "height": plan.send[1], "channels": 4, "dtype": dtype,
                "order": "RGBA"}
        accepted = session.submit(pixels, meta, plan.params, mask=mask, output=plan.area,
                                  see_mask=see_mask, task=plan.task)
        job = accepted["job"]
        watch = session.watch(job, progress)
        result = None
        while result is None:
            if getattr(progress, "cancelled", False):
                watch.cancel()
            result = watch.poll(0.1)
            progress.pump()
        name = (sees_layer_name(result.header) if task == "sees" else
                settings.layer_name(max(plan.render), result.header.get("pretrained", True),
                                    steer))
        layer = _insert(image, drawable, result, name, fmt,
                        (ox + x, oy + y, w, h))
        session.ack(job)
        return layer
    except Exception as exc:
        raise friendly(exc) from exc
    finally:
        session.close()


def read_area(image: Any, drawable: Any, area: tuple[int, int, int, int], plan: Plan,
              fmt: str) -> bytes:
    """The area's pixels (drawable coordinates), scaled down to ``plan.send`` by GIMP when the
    render is smaller: a camera photo is never sent at full size for a small render."""
    x, y, w, h = area
    if not plan.scaled:
        rect = Gegl.Rectangle.new(x, y, w, h)
        return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))
    width, height = plan.send
    scratch = Gimp.Image.new_with_precision(w, h, Gimp.ImageBaseType.RGB,
                                            image.get_precision())
    Gimp.context_push()
    try:
        profile = image.get_color_profile()
        if profile is not None:
            scratch.set_color_profile(profile)
        copy = Gimp.Layer.new_from_drawable(drawable, scratch)
        scratch.insert_layer(copy, None, 0)
        copy.set_offsets(-x, -y)
        copy.resize_to_image_size()
        # Linear never overshoots (float layers stay in range); GIMP box-filters large
        # reductions with any interpolation.
        Gimp.context_set_interpolation(Gimp.InterpolationType.LINEAR)
        copy.scale(width, height, False)
        rect = Gegl.Rectangle.new(0, 0, width, height)
        return bytes(copy.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))
    finally:
        Gimp.context_pop()
        scratch.delete()


def _insert(image: Any, source: Any, result: Any, name: str, fmt: str,
            area: tuple[int, int, int, int]) -> Any:
    """A new layer at the area's place holding the result (which the daemon scaled to the
    area's size), at the top of the source's group so that it shows above every earlier
    result: one undo group, nothing scaled here. The source stays the selected layer, so that
    Filters > Repeat and Re-Show render the photo again, not this result."""
    x, y, w, h = area
    if (result.image["width"], result.image["height"]) != (w, h):
        raise MirageError(f"the daemon sent a {result.image['width']}x{result.image['height']} "
                          f"result for a {w}x{h} area: update neural-mirage")
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(image, name, w, h, Gimp.ImageType.RGBA_IMAGE, 100.0,
                               Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, source.get_parent(), 0)
        layer.set_offsets(x, y)
        buffer = layer.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, 0, w, h), fmt, result.pixels)
        buffer.flush()
        layer.update(0, 0, w, h)
    finally:
        image.undo_group_end()
    image.set_selected_layers([source])
    Gimp.displays_flush()
    return layer


def attach_class_picker(entry: Any) -> ClassList:
    """Make the "see" entry a searchable class picker: the item being typed completes from the
    daemon's class names and groups (fetched in the background; typing works meanwhile)."""
    from gi.repository import Gtk

    classes = ClassList()
    store = Gtk.ListStore(str)
    completion = Gtk.EntryCompletion(model=store, minimum_key_length=1)
    completion.set_text_column(0)  # the method, not the property: it also adds the cell

    def refill(editable: Any) -> None:
        store.clear()
        for name in class_matches(last_item(editable.get_text()), classes.classes,
                                  classes.groups):
            store.append([name])
        completion.complete()  # show the new offers now, not at the next key

    def chosen(_completion: Any, model: Any, row: Any) -> bool:
        entry.set_text(replace_last_item(entry.get_text(), model[row][0]))
        entry.set_position(-1)
        return True  # we set the text ourselves: keep the items typed before

    completion.set_match_func(lambda *_: True)  # the store holds only matches already
    completion.connect("match-selected", chosen)
    entry.connect("changed", refill)
    entry.set_completion(completion)
    def show_hint() -> bool:
        hint = classes.hint() if classes.ready else PICKER_PLACEHOLDER
        entry.set_placeholder_text(hint)
        layout = entry.create_pango_layout(hint)
        entry.set_size_request(layout.get_pixel_size()[0] + 24, -1)  # never cut off
        return not classes.ready  # GLib: call again until the names came (or did not)

    show_hint()
    GLib.timeout_add(200, show_hint)
    return classes


class Progress:
    """GIMP's progress bar (batch and interactive); the dialog subclass adds a Cancel button."""

    cancelled = False

    def __call__(self, header: dict, preview: bytes | None) -> None:
        Gimp.progress_update(header["iteration"] / max(1, header["total"]))
        if header.get("loss") is not None:
            Gimp.progress_set_text(f"Neural Mirage: {progress_text(header)}")

    def show(self, text: str) -> None:
        """What the render is (its size and estimated time), until the first iteration."""
        Gimp.progress_set_text(text)

    def pump(self) -> None:
        pass


class DialogProgress(Progress):
    """A small window with a progress bar and our own Cancel button: GIMP's status-bar cancel
    kills the plug-in process (the daemon then cancels the job: its connection closed)."""

    def __init__(self) -> None:
        gi.require_version("Gtk", "3.0")
        from gi.repository import GimpUi, Gtk

        self.gtk = Gtk
        self.window = Gtk.Window(title="Neural Mirage")
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8, margin=12)
        self.bar = Gtk.ProgressBar(show_text=True)
        button = Gtk.Button(label="Cancel")
        button.connect("clicked", lambda _: setattr(self, "cancelled", True))
        box.pack_start(self.bar, False, False, 0)
        box.pack_start(button, False, False, 0)
        self.window.add(box)
        self.window.set_default_size(420, -1)
        # On top of GIMP's image window, so that a click there does not hide its Cancel.
        GimpUi.window_set_transient(self.window)
        self.window.set_keep_above(True)

    def show(self, text: str) -> None:
        """Open the window (once the long-render question, if any, is answered)."""
        super().show(text)
        self.bar.set_text(text)
        self.window.show_all()
        self.pump()

    def __call__(self, header: dict, preview: bytes | None) -> None:
        super().__call__(header, preview)
        self.bar.set_fraction(header["iteration"] / max(1, header["total"]))
        self.bar.set_text(progress_text(header))

    def pump(self) -> None:
        while self.gtk.events_pending():
            self.gtk.main_iteration_do(False)

    def close(self) -> None:
        self.window.destroy()


def confirm(question: str) -> bool:
    """Ask before a long render (the dialog and Repeat, in GIMP's GUI)."""
    from gi.repository import GimpUi, Gtk

    box = Gtk.MessageDialog(message_type=Gtk.MessageType.QUESTION, title=LONG_RENDER,
                            buttons=Gtk.ButtonsType.OK_CANCEL, text="A long render")
    box.format_secondary_text(question)
    GimpUi.window_set_transient(box)
    answer = box.run()
    box.destroy()
    return answer == Gtk.ResponseType.OK


def run_sees(procedure: Any, run_mode: Any, image: Any, drawables: list, config: Any,
             data: Any) -> Any:
    """What the Net Sees: no options, a progress bar, the map as a new layer."""
    if len(drawables) != 1:
        return procedure.new_return_values(Gimp.PDBStatusType.CALLING_ERROR,
                                           GLib.Error("select exactly one layer"))
    Gimp.progress_init("What the net sees")
    try:
        layer = render(image, drawables[0], Settings(), Progress(), task="sees")
    except (MirageError, ValueError) as exc:
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                           GLib.Error(str(exc)))
    return _layer_values(procedure, layer)


def _layer_values(procedure: Any, layer: Any) -> Any:
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    values.remove(1)  # the declared return value's empty slot
    values.insert(1, GObject.Value(Gimp.Layer, layer))
    return values


def run(procedure: Any, run_mode: Any, image: Any, drawables: list, config: Any,
        data: Any) -> Any:
    if len(drawables) != 1:
        return procedure.new_return_values(Gimp.PDBStatusType.CALLING_ERROR,
                                           GLib.Error("select exactly one layer"))
    # The artist is there: the dialog, or Filters > Repeat (with last values, in GIMP's GUI).
    # Both ask before a long render and show the progress window with its Cancel; a script's
    # call (non-interactive, or in gimp-console, which has no display) does neither.
    gui = run_mode == Gimp.RunMode.INTERACTIVE or (
        run_mode == Gimp.RunMode.WITH_LAST_VALS and Gimp.Display.name() is not None)
    if gui:
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi

        GimpUi.init(PROCEDURE)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Mirage")
        attach_class_picker(dialog.get_widget("see", GimpUi.LabelEntry).get_entry())
        # Content layers are read only for the Custom preset: greyed out for the others (the
        # widget must exist first).
        dialog.get_widget("custom-layers", GimpUi.LabelEntry)
        dialog.set_sensitive_if_in("custom-layers", None, "preset",
                                   Gimp.ValueArray.new_from_values(["custom"]), True)
        dialog.fill(None)
        if not dialog.run():
            dialog.destroy()
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        dialog.destroy()
    progress = DialogProgress() if gui else Progress()
    # GIMP keeps a dialog's last values itself; batch runs with last values get ours, which
    # every successful run (of any mode) records.
    settings = (load_settings("gimp") if run_mode == Gimp.RunMode.WITH_LAST_VALS
                else settings_from(config))
    Gimp.progress_init("Neural Mirage")
    try:
        layer = render(image, drawables[0], settings, progress, ask=confirm if gui else None)
    except (MirageError, ValueError) as exc:
        status = (Gimp.PDBStatusType.CANCEL if getattr(exc, "code", "") == "cancelled"
                  else Gimp.PDBStatusType.EXECUTION_ERROR)
        return procedure.new_return_values(status, GLib.Error(str(exc)))
    finally:
        if isinstance(progress, DialogProgress):
            progress.close()
    save_settings("gimp", settings)
    return _layer_values(procedure, layer)


class NeuralMirage(Gimp.PlugIn):
    def do_set_i18n(self, name: str) -> bool:
        return False

    def do_query_procedures(self) -> list[str]:
        return [PROCEDURE, SEES_PROCEDURE]

    def do_create_procedure(self, name: str) -> Any:
        if name == SEES_PROCEDURE:
            return self._procedure(
                name, run_sees, "What the Net Sees", "Map what VGG19 sees where in a layer",
                "Adds a layer above the active one (within the selection) showing the class "
                "the net sees in each 224 px window, labelled, over a faded copy of the layer.")
        p = self._procedure(
            name, run, "Neural Mirage...", "Repaint a layer as what VGG19 sees in it",
            "Renders the active layer (or the selection) with the neural-mirage daemon and "
            "adds the result as a new layer above it. Presets: " + ", ".join(PRESET_NAMES))
        defaults = Settings()
        presets = Gimp.Choice.new()
        for number, (nick, name) in enumerate(PRESET_NICKS.items()):
            presets.add(nick, number, name, "")
        nicks = {name: nick for nick, name in PRESET_NICKS.items()}
        p.add_choice_argument("preset", "_Preset", "content layers: " + ", ".join(PRESET_NAMES),
                              presets, nicks[defaults.preset], RW)
        p.add_string_argument("custom-layers", "Content _layers",
                              f"content layers for the {CUSTOM} preset, e.g. fc7:1,relu4_2:0.2",
                              defaults.custom_layers, RW)
        p.add_double_argument("content-weight", "Content _weight", "fc content weight",
                              *field_range("content_weight"), defaults.content_weight, RW)
        p.add_double_argument("style-weight", "St_yle weight", "Gram style weight",
                              *field_range("style_weight"), defaults.style_weight, RW)
        sizes = Gimp.Choice.new()
        for number, (nick, label) in enumerate(SIZE_MODES.items()):
            sizes.add(nick, number, label, "")
        p.add_choice_argument("size-mode", "_Render size",
                              "quick: a size the daemon renders in about a minute or two; "
                              "layer: the layer's (or selection's) own; custom: 'size'",
                              sizes, defaults.size_mode, RW)
        p.add_int_argument("size", "Custom si_ze", "longest side of a custom-size render (px)",
                           *field_range("size"), defaults.size, RW)
        p.add_int_argument("iterations", "_Iterations", "iterations at the final size",
                           *field_range("iterations"), defaults.iterations, RW)
        p.add_int_argument("seed", "_Seed", "random seed", *field_range("seed"), defaults.seed,
                           RW)
        p.add_boolean_argument("original-colors", "Keep the original _colours",
                               "luminance-only transfer", defaults.original_colors, RW)
        p.add_string_argument("see", "_Make it see",
                              "classes to steer towards, e.g. church, lakeside:0.5, @water",
                              defaults.see, RW)
        p.add_boolean_argument("see-in-selection", "Only i_n the selection",
                               "steer only inside the selection (the whole layer is rendered)",
                               defaults.see_in_selection, RW)
        p.add_double_argument("see-weight", "Seeing s_trength", "how strongly the classes pull",
                              *field_range("see_weight"), defaults.see_weight, RW)
        seeing = Gimp.Choice.new()
        for number, (nick, (label, _)) in enumerate(SEEING.items()):
            seeing.add(nick, number, label, "")
        p.add_choice_argument("seeing", "Content _keeps",
                              "pooled: what the net sees in the whole picture; spatial: also "
                              "where (one 224 px window every 32 px); both",
                              seeing, defaults.seeing, RW)
        return p

    def _procedure(self, name: str, function: Any, label: str, blurb: str, help_text: str
                   ) -> Any:
        """A layer procedure under Filters > Artistic that returns its new layer."""
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, function, None)
        p.set_image_types("RGB*")
        p.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        p.set_menu_label(label)
        p.add_menu_path("<Image>/Filters/Artistic")
        p.set_documentation(blurb, help_text, name)
        p.set_attribution("neural-mirage", "neural-mirage", "2026")
        p.add_layer_return_value("layer", "Layer", "the new layer", False, RW)
        return p


if __name__ == "__main__":
    Gimp.main(NeuralMirage.__gtype__, sys.argv)
