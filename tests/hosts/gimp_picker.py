"""Run with the GIMP chroot's Python 3 and GTK 3 on an X display: builds the GIMP plug-in's class
picker on a real Gtk.Entry, waits while the test types into it and picks the first offer with
real key events, and reports what it saw."""

import importlib.util
import json
import os
import sys
import time

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, Gtk  # noqa: E402

PLUGIN_DIR, TYPED, OUT, SHOT = sys.argv[1:5]


def pump(seconds=0.0, until=None):
    deadline = time.monotonic() + seconds
    while True:
        while Gtk.events_pending():
            Gtk.main_iteration_do(False)
        if (until is not None and until()) or time.monotonic() >= deadline:
            return
        time.sleep(0.02)


sys.path.insert(0, PLUGIN_DIR)
spec = importlib.util.spec_from_file_location("mirage_gimp", os.path.join(PLUGIN_DIR,
                                                                           "neural-mirage.py"))
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)

window = Gtk.Window(title="Neural Mirage class picker")
window.set_default_size(200, 40)  # narrower than the hint: the entry must ask for its width
entry = Gtk.Entry()
window.add(entry)
window.show_all()
classes = plugin.attach_class_picker(entry)
pump(60, lambda: classes.ready)
pump(0.5)  # the hint follows within 200 ms
result = {"error": str(classes.error or ""), "count": len(classes.classes),
          "placeholder": entry.get_placeholder_text(),
          "entry_width": entry.get_allocated_width(),
          "placeholder_width": entry.create_pango_layout(
              entry.get_placeholder_text()).get_pixel_size()[0]}
window.present()
entry.grab_focus()
pump(0.3)
entry.set_text("church, ")
entry.set_position(-1)
print("READY", flush=True)  # the test now types with real key events (xdotool)
pump(20, lambda: entry.get_text() == "church, " + TYPED)
pump(1.0)  # the completion pops up 300 ms after the last key
store = entry.get_completion().get_model()
result["offers"] = [row[0] for row in store]
root = Gdk.get_default_root_window()
Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height()).savev(SHOT, "png",
                                                                                 [], [])
print("SHOWN", flush=True)  # the test now picks the first offer with Down and Return
pump(20, lambda: entry.get_text().endswith(", ") and entry.get_text() != "church, ")
result["text"] = entry.get_text()
with open(OUT, "w") as f:
    json.dump(result, f)
