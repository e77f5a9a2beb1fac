"""The Krita plug-in inside the real Krita 5 (Debian's), under Xvfb, against a real daemon, used
as an artist uses it: the menu, the dialog's fields and buttons, a photo, render sizes smaller and
larger than the area, rectangle and ellipse selections away from the origin, one undo, 8-bit,
16-bit and float layers, a camera-size layer, a daemon that has to be started, a daemon that
cannot start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .daemon_process import hidden_pyzmq, rendered_as_sent, short_dir, start_daemon

pytestmark = pytest.mark.skipif(shutil.which("krita") is None or shutil.which("Xvfb") is None,
                                reason="Krita and Xvfb are installed by install/test-hosts.sh")

REPO = Path(__file__).resolve().parent.parent
HOSTS = Path(__file__).parent / "hosts"
ARTIFACTS = Path(os.environ.get("NEURAL_MIRAGE_ARTIFACTS", "/tmp/neural-mirage-artifacts"))
#: The daemon refuses images over 1 MP here: a camera-size layer only gets through when the
#: plug-in scales it down to the render size before sending it.
MAX_PIXELS = 1_000_000
BASE = {"preset": "Mirage (fc7)", "iterations": 4, "seed": 3}
#: Krita's layouts: integer RGBA is B,G,R,A, float RGBA is R,G,B,A.
DEPTHS = {"U8": (np.uint8, "BGRA"), "U16": (np.uint16, "BGRA"), "F32": (np.float32, "RGBA")}


def photo(width: int, height: int, depth: str = "U8") -> np.ndarray:
    """The bundled example photo at the given size, in Krita's layout for ``depth``."""
    image = Image.open(REPO / "examples" / "village.png").convert("RGBA")
    rgba = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC))
    dtype, order = DEPTHS[depth]
    pixels = rgba[..., [2, 1, 0, 3]] if order == "BGRA" else rgba
    if dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if dtype == np.uint16:
        return pixels.astype(np.uint16) * 257
    return (pixels / 255.0).astype(np.float32)


def install_plugin(home: Path, env: dict[str, str], weights: str, flatpak: bool) -> None:
    """The plug-in as ``install-plugin`` installs it (the daemon it starts loads ``weights``),
    plus the test driver; ``flatpak``: into a home where Krita is the Flatpak."""
    sandbox = home / ".var/app/org.kde.krita"
    if flatpak:
        sandbox.mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "neural_mirage.cli", "install-plugin", "krita",
                        "--weights", weights], env={**env, "HOME": str(home)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pykrita = (sandbox / "data/krita" if flatpak else home / ".local/share/krita") / "pykrita"
    shutil.copytree(HOSTS / "krita_driver", pykrita / "krita_driver")
    shutil.copy2(HOSTS / "krita_driver.desktop", pykrita)
    kritarc = sandbox / "config/kritarc" if flatpak else home / ".config/kritarc"
    kritarc.write_text(kritarc.read_text() + "enable_krita_driver=true\n")


def as_flatpak(env: dict[str, str], home: Path) -> dict[str, str]:
    """Krita's environment in its Flatpak sandbox (XDG folders in ~/.var/app/org.kde.krita,
    FLATPAK_ID, a runtime folder of its own), and with no pyzmq to import."""
    hidden = hidden_pyzmq(home / "no-pyzmq")
    sandbox = home / ".var/app/org.kde.krita"
    return {**env, "FLATPAK_ID": "org.kde.krita", "XDG_DATA_HOME": str(sandbox / "data"),
            "XDG_CONFIG_HOME": str(sandbox / "config"), "PYTHONPATH": str(hidden),
            "NEURAL_MIRAGE_RUNTIME_DIR": str(home / "sandbox-run")}


def run_krita(env: dict[str, str], spec: dict, pixels: np.ndarray, depth: str = "U8",
              weights: str = "random", flatpak: bool = False) -> dict:
    """Krita with the plug-in and the test driver in a fresh home, running ``spec`` on a
    document of ``pixels``; ``flatpak``: Krita as a Flatpak without pyzmq (:func:`as_flatpak`)."""
    home = short_dir("nm-krita-")
    install_plugin(home, env, weights, flatpak)
    if flatpak:
        env = as_flatpak(env, home)
    (home / "photo.raw").write_bytes(pixels.tobytes())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height, width = pixels.shape[:2]
    spec = {**spec, "out": str(home / "result.json"), "artifacts": str(ARTIFACTS),
            "document": {"width": width, "height": height, "depth": depth,
                         "pixels": str(home / "photo.raw")}}
    (home / "scenario.json").write_text(json.dumps(spec))
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x900x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE, text=True)
    try:
        display = xvfb.stdout.readline().strip()
        run_env = {**env, "HOME": str(home), "DISPLAY": f":{display}",
                   "MIRAGE_KRITA_SCENARIO": str(home / "scenario.json")}
        run_env.pop("QT_QPA_PLATFORM", None)
        krita = subprocess.run(["krita", "--nosplash"], env=run_env, capture_output=True,
                               text=True, timeout=600)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    out = home / "result.json"
    assert out.exists(), f"Krita wrote no result (rc {krita.returncode}):\n{krita.stderr[-3000:]}"
    result = json.loads(out.read_text())
    shutil.rmtree(home, ignore_errors=True)
    assert result["ok"], result.get("traceback")
    return result


@pytest.fixture(scope="module")
def daemon():
    d = start_daemon(None, None, "--max-pixels", str(MAX_PIXELS))
    yield d
    d.stop()


def with_bridge(env: dict[str, str], bridge: bool) -> dict[str, str]:
    return {**env, "NEURAL_MIRAGE_BRIDGE": "relay" if bridge else "0"}


def layer_pixels(render: dict, dtype: type) -> np.ndarray:
    _, _, width, height = render["sent"]["area"]
    return np.frombuffer(bytes.fromhex(render["pixels"]), dtype).reshape(height, width, 4)


def daemon_result(daemon, render: dict, depth: str) -> np.ndarray:
    """The daemon's own render of what the plug-in sent, in Krita's layout for ``depth``."""
    return rendered_as_sent(daemon, render["sent"], *DEPTHS[depth])


@pytest.mark.parametrize("bridge", [False, True], ids=["pyzmq", "bridge"])
def test_class_picker_and_cancel_in_the_dialog(daemon, bridge):
    res = run_krita(with_bridge(daemon.env, bridge),
                    {"mode": "picker", "see_typed": "chur"}, photo(96, 64))
    assert res["classes_error"] == ""
    assert res["placeholder_fits"], f"the hint {res['placeholder']!r} is cut off"
    assert res["picker_popup_visible"] and res["picker_matches"][0] == "church"
    assert res["picker_text"] == "church, "  # picked from the list with the keyboard
    assert "will take about" in res["question"] and "Render anyway?" in res["question"]
    assert res["cancel_status"] == "Cancelled."
    assert res["cancel_layers"][0] == res["cancel_layers"][1], "a cancelled render added a layer"
    assert res["removed_error"].startswith("MirageError: Click the layer to render"), \
        res["removed_error"]
    assert res["kept_on_top"], "a result whose source layer was removed was not added"


@pytest.mark.parametrize("bridge", [False, True], ids=["pyzmq", "bridge"])
def test_renders_land_on_the_selection_and_undo_in_one_step(daemon, bridge):
    """A 600x400 photo: the dialog renders a rectangle at a size smaller than the area and an
    ellipse at a larger one, both away from the origin; a script renders the whole layer. Each
    new layer covers exactly its area, holds the daemon's render of what the plug-in sent, and
    one undo removes it."""
    area = [150, 100, 240, 160]
    renders = [
        {"settings": {**BASE, "size_mode": "custom", "size": 96},
         "selection": ["rect", *area]},
        {"settings": {**BASE, "size_mode": "custom", "size": 320, "see": "church"},
         "selection": ["ellipse", *area]},
        {"settings": {**BASE, "size_mode": "custom", "size": 160}, "script": True},
    ]
    res = run_krita(with_bridge(daemon.env, bridge),
                    {"mode": "renders", "name": "bridge" if bridge else "pyzmq",
                     "renders": renders}, photo(600, 400))
    assert res["action"], "the Neural Mirage action is not registered"
    rect, ellipse, script = res["renders"]
    for render in (rect, ellipse):
        assert render["error"] == "", render["error"]
        assert render["status"].startswith("Done"), render["status"]
        assert render["bounds"] == area, "the new layer is not where the selection is"
        assert render["sent"]["area"] == area
        assert sorted(render["layers"]) == sorted([*render["before"], render["name"]])
        assert render["after_one_undo"] == render["before"], "one undo left part of the result"
    assert max(rect["sent"]["send"]) == 96, "the area was not scaled down to the render size"
    assert ellipse["sent"]["send"] == [240, 160]
    assert script["bounds"] == [0, 0, 600, 400]
    for name, render in (("rect", rect), ("ellipse", ellipse), ("script", script)):
        got = layer_pixels(render, np.uint8)
        Image.fromarray(got[..., [2, 1, 0, 3]]).save(ARTIFACTS / f"krita-{name}.png")
        np.testing.assert_array_equal(got, daemon_result(daemon, render, "U8"))
    inside_ellipse = layer_pixels(ellipse, np.uint8)[..., 3]
    assert inside_ellipse[0, 0] == 0 and inside_ellipse[80, 120] == 255
    # iterations as they were asked for: 4 at the final scale, 2 at the coarse one
    for line in ("Scale 1/2 (160x106 px), iteration 2/2", "Scale 2/2 (320x213 px), iteration 4/4"):
        assert any(s.startswith(line) for s in ellipse["statuses"]), ellipse["statuses"]
    assert res["base_unchanged"]


def test_flatpak_krita_without_pyzmq_renders_through_the_daemons_bridge_port(daemon):
    """Krita as a Flatpak: no pyzmq, no host program it may start, and the host's runtime
    folder out of sight. install-plugin finds it in ~/.var/app, and the running daemon's
    connection file is copied beside the plug-in; the dialog's render of a selection away from
    the origin lands in place, as the daemon renders what was sent, and undoes in one step."""
    area = [150, 100, 240, 160]
    renders = [{"settings": {**BASE, "size_mode": "custom", "size": 96},
                "selection": ["rect", *area]}]
    res = run_krita(daemon.env, {"mode": "renders", "name": "flatpak", "renders": renders},
                    photo(600, 400), flatpak=True)
    (render,) = res["renders"]
    assert render["error"] == "", render["error"]
    assert render["status"].startswith("Done"), render["status"]
    assert render["bounds"] == area
    assert render["after_one_undo"] == render["before"]
    np.testing.assert_array_equal(layer_pixels(render, np.uint8),
                                  daemon_result(daemon, render, "U8"))


def test_new_layers_go_on_top_and_the_source_stays_active(daemon):
    """Two renders and a map on one image, with no click in the Layers docker between them:
    each new layer lands on top, above the earlier ones, and the photo stays the active layer,
    so the next render renders the photo again (not the last result)."""
    settings = {**BASE, "size_mode": "custom", "size": 64}
    renders = [{"settings": settings, "undo": False},
               {"settings": {**settings, "seed": 4}, "undo": False},
               {"settings": settings, "task": "sees", "undo": False}]
    res = run_krita(daemon.env, {"mode": "renders", "name": "stack", "renders": renders},
                    photo(160, 120))
    source = res["renders"][0]["before"][0]
    for render in res["renders"]:
        assert render["status"].startswith("Done"), render["error"] or render["status"]
        assert render["layers"] == [*render["before"], render["name"]], "not on top"
        assert render["active"] == source, f"the active layer became {render['active']!r}"
    for render in res["renders"][:2]:  # the photo rendered, both times
        np.testing.assert_array_equal(layer_pixels(render, np.uint8),
                                      daemon_result(daemon, render, "U8"))
    # every field of the dialog has its own keyboard mnemonic (Alt+letter)
    keys = [label[label.index("&") + 1].lower() for label in res["labels"] if "&" in label]
    assert len(keys) == len(res["labels"]) >= 12, res["labels"]
    assert len(set(keys)) == len(keys), res["labels"]


def test_a_fully_transparent_layer_is_refused_before_it_is_sent(daemon):
    clear = photo(160, 120).copy()
    clear[..., 3] = 0
    res = run_krita(daemon.env, {"mode": "renders", "name": "clear", "renders": [
        {"settings": {**BASE, "size_mode": "layer"}, "record": False}]}, clear)
    (render,) = res["renders"]
    assert "Choose a layer, or a part of it, with something on it" in render["error"], render
    assert "name" not in render, "a layer was added"


def test_steering_in_the_selection_and_the_map_of_what_the_net_sees(daemon):
    """A 600x400 photo with an ellipse selected away from the origin: "see a castle" only in
    the selection renders the whole layer (the selection steers, it does not crop) in the
    spatial mode; the same checkbox without classes is refused with what to do (it would
    quietly render the selection); "Map what it sees" adds the map over the selection. Each
    result is the daemon's for what the plug-in sent, and goes with one undo."""
    area = [150, 100, 240, 160]
    steer = {**BASE, "size_mode": "custom", "size": 160, "see": "castle",
             "see_in_selection": True, "seeing": "spatial"}
    renders = [
        {"settings": steer, "selection": ["ellipse", *area]},
        {"settings": {**steer, "see": ""}, "selection": ["ellipse", *area], "record": False},
        {"settings": BASE, "selection": ["rect", *area], "task": "sees"},
    ]
    res = run_krita(daemon.env, {"mode": "renders", "name": "steer", "renders": renders},
                    photo(600, 400))
    steered, refused, seen = res["renders"]
    for render in (steered, seen):
        assert render["error"] == "", render["error"]
        assert render["after_one_undo"] == render["before"], "one undo left part of the result"
    assert steered["bounds"] == [0, 0, 600, 400] and steered["sent"]["mask"] is None
    see_mask = np.frombuffer(bytes.fromhex(steered["sent"]["see_mask"]), np.uint8)
    assert see_mask.reshape(400, 600)[180, 270] == 255 and see_mask[0] == 0
    assert steered["sent"]["params"]["fc_spatial"] == 1.0
    assert " where," in steered["name"] and "sees castle in the selection" in steered["name"]
    assert "name one there, or untick it" in refused["error"] and "bounds" not in refused
    assert seen["bounds"] == area and seen["name"].startswith("What the net sees where (")
    assert "random weights" in seen["name"]
    for name, render in (("steered", steered), ("sees", seen)):
        got = layer_pixels(render, np.uint8)
        Image.fromarray(got[..., [2, 1, 0, 3]]).save(ARTIFACTS / f"krita-{name}.png")
        np.testing.assert_array_equal(got, daemon_result(daemon, render, "U8"))
    assert res["base_unchanged"]


@pytest.mark.parametrize("depth", ["U16", "F32"])
def test_high_precision_layers_in_place_and_in_range(daemon, depth):
    renders = [{"settings": {**BASE, "size_mode": "custom", "size": 64},
                "selection": ["rect", 40, 30, 160, 100]}]
    res = run_krita(daemon.env, {"mode": "renders", "name": depth.lower(), "renders": renders},
                    photo(240, 160, depth), depth)
    (render,) = res["renders"]
    assert render["error"] == "", render["error"]
    assert render["bounds"] == [40, 30, 160, 100]
    assert render["after_one_undo"] == render["before"]
    dtype, _ = DEPTHS[depth]
    got = layer_pixels(render, dtype)
    expected = daemon_result(daemon, render, depth)
    if depth == "F32":
        assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_array_equal(got, expected)


def test_camera_size_layer_is_scaled_down_before_sending(daemon):
    """A 4000x3000 layer (12 MP) through a daemon that takes at most 1 MP."""
    renders = [{"settings": {**BASE, "iterations": 2, "size_mode": "custom", "size": 200},
                "script": True, "record": False}]
    res = run_krita(daemon.env, {"mode": "renders", "name": "camera", "renders": renders},
                    photo(4000, 3000))
    (render,) = res["renders"]
    assert render["bounds"] == [0, 0, 4000, 3000]


def test_starting_the_daemon_does_not_freeze_krita():
    """No daemon runs: Render starts one (loading the network takes seconds) while Krita's
    event loop keeps running and the dialog says what is happening."""
    runtime, cache = short_dir("nm-spawn-"), short_dir("nm-spawn-cache-")
    env = {**os.environ, "NEURAL_MIRAGE_RUNTIME_DIR": str(runtime),
           "NEURAL_MIRAGE_CACHE_DIR": str(cache)}
    try:
        res = run_krita(env, {"mode": "spawn", "settings": {
            **BASE, "iterations": 2, "size_mode": "layer"}}, photo(96, 64))
    finally:
        info = runtime / "daemon.json"
        if info.exists():
            os.kill(json.loads(info.read_text())["pid"], signal.SIGTERM)
    assert res["error"] == "", res["error"]
    assert res["status"].startswith("Done"), res["status"]
    assert ("Starting the neural-mirage daemon (loading the network; it stops by itself after "
            "15 minutes without a render)...") in res["statuses"]
    assert res["max_gap"] < 1.0, f"Krita's event loop stopped for {res['max_gap']:.1f} s"


def test_daemon_that_cannot_start_says_what_to_do_and_keeps_the_form(tmp_path):
    runtime, cache = short_dir("nm-none-"), short_dir("nm-none-cache-")
    env = {**os.environ, "NEURAL_MIRAGE_RUNTIME_DIR": str(runtime),
           "NEURAL_MIRAGE_CACHE_DIR": str(cache), "TORCH_HOME": str(tmp_path / "no-weights")}
    res = run_krita(env, {"mode": "error", "settings": {**BASE, "size_mode": "layer"}},
                    photo(96, 64), weights="torchvision")
    for message in (res["script_error"], res["dialog_error"]):
        assert message.startswith("Run 'neural-mirage fetch-weights torchvision' once"), message
        assert "could not start" in message and ".." not in message
    assert res["script_error_type"] == "MirageError"
    assert res["picker_hint"] == "no daemon answered: type names, e.g. church"
    assert res["error_box_visible"] and res["crushed_rows"] == []
    assert res["max_gap"] < 1.0
    assert res["usable"]
