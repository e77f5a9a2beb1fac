"""Run by gimp-console-3.0's python-fu-eval inside the GIMP 3 chroot: calls python-fu-neural-mirage
through the PDB as a batch script would, and writes what it saw to a JSON file."""

import json
import os

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

W, H = 96, 64
OUT = os.environ["MIRAGE_GIMP_OUT"]
SETTINGS = json.loads(os.environ["MIRAGE_GIMP_SETTINGS"])
FMT = "R'G'B'A u8"


def pixels(drawable, w, h):
    rect = Gegl.Rectangle.new(0, 0, w, h)
    return bytes(drawable.get_buffer().get(rect, 1.0, FMT, Gegl.AbyssPolicy.CLAMP))


def call(procedure, image, layer, run_mode):
    config = procedure.create_config()
    config.set_property("run-mode", run_mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    if run_mode == Gimp.RunMode.NONINTERACTIVE:
        for name, value in SETTINGS.items():
            config.set_property(name, value)
    values = procedure.run(config)
    status = values.index(0).value_nick
    if status != "success":
        message = values.index(1) if values.length() > 1 else Gimp.get_pdb().get_last_error()
        return status, None, str(message)
    new = values.index(1)
    _, x, y = new.get_offsets()
    w, h = new.get_width(), new.get_height()
    return status, {"name": new.get_name(), "offsets": [x, y], "size": [w, h],
                    "pixels": pixels(new, w, h).hex()}, None


source = bytes(b for y in range(H) for x in range(W)
               for b in ((x * 5) % 256, (y * 7) % 256, (x * y) % 256, 255))
image = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
base = Gimp.Layer.new(image, "base", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0,
                      Gimp.LayerMode.NORMAL)
image.insert_layer(base, None, 0)
buffer = base.get_buffer()
buffer.set(Gegl.Rectangle.new(0, 0, W, H), FMT, source)
buffer.flush()
procedure = Gimp.get_pdb().lookup_procedure("python-fu-neural-mirage")
result = {"found": procedure is not None}
if procedure is not None:
    result["menu"] = list(procedure.get_menu_paths())
    status, whole, error = call(procedure, image, base, Gimp.RunMode.NONINTERACTIVE)
    result.update(whole_status=status, whole=whole, whole_error=error)
    if os.environ.get("MIRAGE_GIMP_MODE") == "render":
        status, again, error = call(procedure, image, base, Gimp.RunMode.WITH_LAST_VALS)
        result.update(last_vals_status=status, last_vals_error=error,
                      last_vals_same=again is not None and whole is not None
                      and again["pixels"] == whole["pixels"])
        image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 16, 48, 40)
        status, selected, error = call(procedure, image, base, Gimp.RunMode.NONINTERACTIVE)
        result.update(selection_status=status, selection=selected, selection_error=error)
    result["layers"] = [layer.get_name() for layer in image.get_layers()]
    result["base_unchanged"] = pixels(base, W, H) == source
image.delete()
with open(OUT, "w") as f:
    json.dump(result, f)
