"""Run by gimp-console-3.0's python-fu-eval inside the GIMP 3 chroot: makes an image the way the
scenario says (size, precision, a photo's pixels), calls python-fu-neural-mirage through the PDB
as a batch script would, once per call (with its selection), and writes what it saw to JSON.

For each call it also records what the plug-in sends for it: the plan (asked of the daemon the
plug-in's own way) and the area's pixels as the plug-in's ``read_area`` reads them, so the test
can ask the daemon for the same render and compare it with the new layer, pixel for pixel.
"""

import functools
import importlib.util
import json
import os
import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

with open(os.environ["MIRAGE_GIMP_SCENARIO"]) as scenario_file:
    SCENARIO = json.load(scenario_file)
PRECISIONS = {"u8": (Gimp.Precision.U8_NON_LINEAR, "R'G'B'A u8"),
              "u16": (Gimp.Precision.U16_NON_LINEAR, "R'G'B'A float"),
              "float": (Gimp.Precision.FLOAT_NON_LINEAR, "R'G'B'A float")}
RUN_MODES = {"noninteractive": Gimp.RunMode.NONINTERACTIVE,
             "last_vals": Gimp.RunMode.WITH_LAST_VALS}


@functools.cache
def plugin_module():
    """The installed plug-in's own code (its read_area, plan_render and session)."""
    folder = os.path.join(Gimp.directory(), "plug-ins", "neural-mirage")
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("nm_plugin",
                                                  os.path.join(folder, "neural-mirage.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(drawable, fmt):
    w, h = drawable.get_width(), drawable.get_height()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))


def make_image(spec):
    w, h = spec["width"], spec["height"]
    precision, _ = PRECISIONS[spec.get("precision", "u8")]
    image = Gimp.Image.new_with_precision(w, h, Gimp.ImageBaseType.RGB, precision)
    base = Gimp.Layer.new(image, "base", w, h, Gimp.ImageType.RGBA_IMAGE, 100.0,
                          Gimp.LayerMode.NORMAL)
    image.insert_layer(base, None, 0)
    with open(spec["pixels"], "rb") as f:  # 8-bit RGBA, converted by GEGL to the precision
        base.get_buffer().set(Gegl.Rectangle.new(0, 0, w, h), "R'G'B'A u8", f.read())
    base.get_buffer().flush()
    return image, base


def select(image, selection):
    if selection is None:
        Gimp.Selection.none(image)
        return
    shape, x, y, w, h = selection
    if shape == "rect":
        image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
    else:
        image.select_ellipse(Gimp.ChannelOps.REPLACE, x, y, w, h)


def sent(plugin, image, base, settings_map, fmt, task="render"):
    """What the plug-in sends for these settings: plan, pixels, masks (hex), area, task (the
    base layer is at the origin)."""
    settings = plugin.Settings(**settings_map)
    _, x, y, w, h = base.mask_intersect()
    selected = not Gimp.Selection.is_empty(image)
    steer = task == "render" and settings.steers_in_selection(selected)
    if steer:
        x, y, w, h = 0, 0, base.get_width(), base.get_height()
    session = plugin.open_session()
    try:
        plan = (plugin.plan_sees(session, w, h) if task == "sees" else
                plugin.plan_render(session, settings, w, h))
    finally:
        session.close()
    pixels = plugin.read_area(image, base, (x, y, w, h), plan, fmt)
    mask = None
    if selected:
        rect = Gegl.Rectangle.new(x, y, w, h)
        mask = bytes(image.get_selection().get_buffer().get(rect, 1.0, "Y u8",
                                                          Gegl.AbyssPolicy.NONE)).hex()
    return {"params": plan.params, "send": list(plan.send), "area": [x, y, w, h],
            "pixels": pixels.hex(), "mask": None if steer else mask,
            "see_mask": mask if steer else None, "task": task, "seconds": plan.seconds}


def composite(image):
    """What the artist sees: GIMP's own flattening of a copy of the image, 8-bit RGBA."""
    copy = image.duplicate()
    try:
        merged = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        return read(merged, "R'G'B'A u8")
    finally:
        copy.delete()


def call(procedure, image, layer, run_mode, settings):
    """Run the procedure; ``settings`` are Settings fields (``see_weight`` is ``see-weight``;
    a preset's name is its nick, as a script passes it)."""
    config = procedure.create_config()
    config.set_property("run-mode", run_mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    if run_mode == Gimp.RunMode.NONINTERACTIVE:
        nicks = {name: nick for nick, name in plugin_module().PRESET_NICKS.items()}
        for name, value in settings.items():
            config.set_property(name.replace("_", "-"),
                                nicks.get(value, value) if name == "preset" else value)
    values = procedure.run(config)
    status = values.index(0).value_nick
    if status != "success":
        message = values.index(1) if values.length() > 1 else Gimp.get_pdb().get_last_error()
        return {"status": status, "error": str(message)}
    return {"status": status, "layer": values.index(1)}


def main():
    procedure = Gimp.get_pdb().lookup_procedure("python-fu-neural-mirage")
    result = {"found": procedure is not None, "calls": []}
    if procedure is None:
        return result
    result["menu"] = list(procedure.get_menu_paths())
    plugin = None
    if any(c.get("record") for c in SCENARIO["calls"]):
        plugin = plugin_module()
    image, base = make_image(SCENARIO["image"])
    _, fmt = PRECISIONS[SCENARIO["image"].get("precision", "u8")]
    source = read(base, fmt)
    for spec in SCENARIO["calls"]:
        select(image, spec.get("selection"))
        out, layer = {}, None
        task = spec.get("task", "render")
        if spec.get("run", True):
            called = (procedure if task == "render" else
                      Gimp.get_pdb().lookup_procedure("python-fu-neural-mirage-sees"))
            # As Filters > Repeat does, "selected" renders the layer selected now.
            (drawable,) = image.get_selected_layers() if spec.get("selected") else (base,)
            out = call(called, image, drawable, RUN_MODES[spec.get("mode", "noninteractive")],
                       spec.get("settings", {}) if task == "render" else {})
            layer = out.pop("layer", None)
            out["selected"] = [item.get_name() for item in image.get_selected_layers()]
            out["layers"] = [item.get_name() for item in image.get_layers()]
        if layer is not None:
            _, x, y = layer.get_offsets()
            out.update(name=layer.get_name(), offsets=[x, y],
                       size=[layer.get_width(), layer.get_height()], pixels=read(layer, fmt).hex())
        if layer is not None and spec.get("composite"):
            out["composite"] = composite(image).hex()
        if spec.get("record"):
            try:
                out["sent"] = sent(plugin, image, base, spec["settings"], fmt, task)
            except Exception as exc:  # an older plug-in: the test fails on what it sees first
                out["sent_error"] = repr(exc)
        result["calls"].append(out)
    result["layers"] = [layer.get_name() for layer in image.get_layers()]
    result["base_unchanged"] = read(base, fmt) == source
    image.delete()
    return result


with open(os.environ["MIRAGE_GIMP_OUT"], "w") as out_file:
    json.dump(main(), out_file)
