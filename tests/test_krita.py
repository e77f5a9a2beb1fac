"""The Krita plug-in inside the real Krita 5 (Debian's), under Xvfb, against a real daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neural_mirage.plugins.shared.presets import Settings

from .daemon_process import rendered, short_dir, start_daemon

pytestmark = pytest.mark.skipif(shutil.which("krita") is None or shutil.which("Xvfb") is None,
                                reason="Krita and Xvfb are installed by install/test-hosts.sh")

HOSTS = Path(__file__).parent / "hosts"
W, H = 96, 64
SETTINGS = {"preset": "Mirage (fc7)", "iterations": 12, "seed": 3, "see": "church, ",
            "see_weight": 2.0}
ARTIFACTS = Path(os.environ.get("NEURAL_MIRAGE_ARTIFACTS", "/tmp/neural-mirage-artifacts"))


def source_pixels() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    bgra = np.stack([(x * 5) % 256, (y * 7) % 256, (x * y) % 256, np.full_like(x, 255)], axis=2)
    return bgra.astype(np.uint8)


def install_plugin(home: Path, env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-m", "neural_mirage.cli", "install-plugin", "krita",
                        "--weights", "random"], env={**env, "HOME": str(home)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pykrita = home / ".local/share/krita/pykrita"
    shutil.copytree(HOSTS / "krita_driver", pykrita / "krita_driver")
    shutil.copy2(HOSTS / "krita_driver.desktop", pykrita)
    kritarc = home / ".config/kritarc"
    kritarc.write_text(kritarc.read_text() + "enable_krita_driver=true\n")


def run_krita(home: Path, env: dict[str, str], spec: dict) -> dict:
    spec = {**spec, "out": str(home / "result.json")}
    (home / "scenario.json").write_text(json.dumps(spec))
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x900x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE, text=True)
    try:
        display = xvfb.stdout.readline().strip()
        run_env = {**env, "HOME": str(home), "DISPLAY": f":{display}",
                   "MIRAGE_KRITA_SCENARIO": str(home / "scenario.json")}
        run_env.pop("QT_QPA_PLATFORM", None)
        krita = subprocess.run(["krita", "--nosplash"], env=run_env, capture_output=True,
                               text=True, timeout=400)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    out = home / "result.json"
    assert out.exists(), f"Krita wrote no result (rc {krita.returncode}):\n{krita.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["ok"], result.get("traceback")
    return result


@pytest.fixture(scope="module")
def daemon():
    d = start_daemon()
    yield d
    d.stop()


def expected(daemon, pixels: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    height, width = pixels.shape[:2]
    return rendered(daemon, pixels, "BGRA", Settings(**SETTINGS).params(width, height), mask)


@pytest.mark.parametrize("bridge", [False, True], ids=["pyzmq", "bridge"])
def test_plugin_renders_whole_layer_and_selection_in_krita(daemon, bridge):
    home = short_dir("nm-krita-")
    install_plugin(home, daemon.env)
    env = {**daemon.env, "NEURAL_MIRAGE_BRIDGE": "1" if bridge else "0"}
    screenshot = ARTIFACTS / f"krita-{'bridge' if bridge else 'pyzmq'}.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    res = run_krita(home, env, {"mode": "render", "settings": SETTINGS, "see_typed": "chur",
                                "screenshot": str(screenshot)})
    assert res["action"], "the Neural Mirage action is not registered"
    assert res["classes_error"] == ""
    assert res["picker_popup_visible"] and res["picker_matches"][0] == "church"
    assert res["picker_text"] == SETTINGS["see"]  # picked from the list with the keyboard
    assert res["dialog_status"].startswith("Done"), res["dialog_status"]
    assert res["whole_name"] == Settings(**SETTINGS).layer_name()
    assert res["layers_after_whole"] == ["Background", res["whole_name"]]

    whole = np.frombuffer(bytes.fromhex(res["whole"]), np.uint8).reshape(H, W, 4)
    np.testing.assert_array_equal(whole, expected(daemon, source_pixels(), None))

    layer = np.frombuffer(bytes.fromhex(res["selection"]), np.uint8).reshape(H, W, 4)
    inside = layer[16:56, 20:68]
    mask = np.full((40, 48), 255, np.uint8)
    np.testing.assert_array_equal(inside, expected(daemon, source_pixels()[16:56, 20:68], mask))
    outside = layer.copy()
    outside[16:56, 20:68] = 0
    assert not outside.any(), "the new layer is not transparent outside the selection"
    assert res["cancel_status"] == "Cancelled."
    assert res["cancel_layers"][0] == res["cancel_layers"][1], "a cancelled render added a layer"
    assert res["base_unchanged"]
    assert res["undo"][1] == res["undo"][0] - 1, "adding the result layer could not be undone"
    assert screenshot.exists()


def test_no_daemon_gives_a_clear_error_and_krita_stays_usable(tmp_path):
    home = short_dir("nm-krita-")
    runtime, cache = short_dir("nm-none-"), short_dir("nm-none-cache-")
    env = {**os.environ, "NEURAL_MIRAGE_RUNTIME_DIR": str(runtime),
           "NEURAL_MIRAGE_CACHE_DIR": str(cache), "TORCH_HOME": str(tmp_path / "no-weights")}
    install_plugin(home, env)
    # the daemon the plug-in starts needs the real weights, which are missing here
    config = home / ".local/share/krita/pykrita/neural_mirage_krita/_mirage/mirage_config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "daemon_args": ["--weights", "torchvision"]}))
    res = run_krita(home, env, {"mode": "nodaemon", "settings": SETTINGS})
    assert res["error_type"] == "MirageError"
    assert "could not start" in res["error"] and "weights not found" in res["error"], res["error"]
    assert res["usable"]
