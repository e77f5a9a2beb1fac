"""The GIMP plug-in inside the real GIMP 3.0 (a Debian 13 chroot), against a real daemon.

GIMP runs in the chroot; the daemon runs here and listens on TCP loopback, which the chroot
shares. install/gimp3-chroot.sh builds the chroot (CI runs it through install/setup.sh --test).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neural_mirage.plugins.shared.presets import Settings

from .daemon_process import rendered, start_daemon

ROOT = Path(os.environ.get("NEURAL_MIRAGE_GIMP_CHROOT", "/opt/neural-mirage-gimp3"))
pytestmark = pytest.mark.skipif(not (ROOT / "usr/bin/gimp-console-3.0").exists(),
                                reason="the GIMP 3 chroot is built by install/gimp3-chroot.sh")
W, H = 96, 64
SETTINGS = {"preset": "Mirage (fc7)", "iterations": 10, "seed": 5, "see": "church",
            "see_weight": 2.0}
PDB_SETTINGS = {"preset": "Mirage (fc7)", "iterations": 10, "seed": 5, "see": "church",
                "see-weight": 2.0}
DRIVER = Path(__file__).parent / "hosts" / "gimp_driver.py"
PICKER = Path(__file__).parent / "hosts" / "gimp_picker.py"
ARTIFACTS = Path(os.environ.get("NEURAL_MIRAGE_ARTIFACTS", "/tmp/neural-mirage-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source_pixels() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    rgba = np.stack([(x * 5) % 256, (y * 7) % 256, (x * y) % 256, np.full_like(x, 255)], axis=2)
    return rgba.astype(np.uint8)


@pytest.fixture(scope="module")
def daemon():
    port = free_port()
    d = start_daemon(None, None, "--bind", f"tcp://127.0.0.1:{port}")
    yield d
    d.stop()


def chroot_work(endpoint: str | None) -> tuple[Path, Path]:
    """A folder inside the chroot (and its path as seen there) with the plug-in installed and,
    when ``endpoint`` is given, a connection file that points at the daemon."""
    work = Path(tempfile.mkdtemp(prefix="nm-gimp-", dir=ROOT / "tmp"))
    cfg = work / "cfg"
    r = subprocess.run([sys.executable, "-m", "neural_mirage.cli", "install-plugin", "gimp",
                        "--weights", "random"], env={**os.environ, "GIMP3_DIRECTORY": str(cfg)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (work / "run").mkdir(mode=0o700)
    if endpoint is not None:
        (work / "run" / "daemon.json").write_text(json.dumps(
            {"endpoint": endpoint, "protocol": 1, "version": "test", "pid": 0}))
    return work, Path("/tmp") / work.name


def run_gimp(mode: str, endpoint: str | None) -> dict:
    work, inside = chroot_work(endpoint)
    shutil.copy2(DRIVER, work / "driver.py")
    env = {"HOME": str(inside), "GIMP3_DIRECTORY": str(inside / "cfg"),
           "NEURAL_MIRAGE_RUNTIME_DIR": str(inside / "run"),
           "NEURAL_MIRAGE_CACHE_DIR": str(inside / "cache"),
           "MIRAGE_GIMP_OUT": str(inside / "result.json"), "MIRAGE_GIMP_MODE": mode,
           "MIRAGE_GIMP_SETTINGS": json.dumps(PDB_SETTINGS), "PATH": "/usr/bin:/bin"}
    gimp = subprocess.run(
        ["chroot", str(ROOT), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
         "gimp-console-3.0", "-i", "--batch-interpreter=python-fu-eval",
         "-b", f"exec(open('{inside / 'driver.py'}').read())", "--quit"],
        capture_output=True, text=True, timeout=300)
    out = work / "result.json"
    assert out.exists(), f"GIMP wrote no result (rc {gimp.returncode}):\n{gimp.stderr[-4000:]}"
    assert gimp.returncode == 0, gimp.stderr[-4000:]
    result = json.loads(out.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return result


def expected(daemon, pixels: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    height, width = pixels.shape[:2]
    return rendered(daemon, pixels, "RGBA", Settings(**SETTINGS).params(width, height), mask)


def test_plugin_renders_through_the_pdb(daemon):
    res = run_gimp("render", daemon.endpoint)
    assert res["found"], "python-fu-neural-mirage is not registered"
    assert "<Image>/Filters/Artistic" in res["menu"]
    assert res["whole_status"] == "success", res["whole_error"]
    whole = res["whole"]
    assert whole["name"] == Settings(**SETTINGS).layer_name()
    assert whole["offsets"] == [0, 0] and whole["size"] == [W, H]
    got = np.frombuffer(bytes.fromhex(whole["pixels"]), np.uint8).reshape(H, W, 4)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(got).save(ARTIFACTS / "gimp-whole-layer.png")
    np.testing.assert_array_equal(got, expected(daemon, source_pixels(), None))

    assert res["last_vals_status"] == "success", res["last_vals_error"]
    assert res["last_vals_same"], "a with-last-values run did not reuse the last settings"

    assert res["selection_status"] == "success", res["selection_error"]
    selected = res["selection"]
    assert selected["offsets"] == [20, 16] and selected["size"] == [48, 40]
    got = np.frombuffer(bytes.fromhex(selected["pixels"]), np.uint8).reshape(40, 48, 4)
    Image.fromarray(got).save(ARTIFACTS / "gimp-selection-layer.png")
    mask = np.full((40, 48), 255, np.uint8)
    np.testing.assert_array_equal(got, expected(daemon, source_pixels()[16:56, 20:68], mask))
    assert res["base_unchanged"]
    assert res["layers"][-1] == "base" and len(res["layers"]) == 4


def test_no_daemon_is_an_execution_error_with_the_reason():
    res = run_gimp("nodaemon", None)
    assert res["found"]
    assert res["whole_status"] == "execution-error"
    assert "Could not reach or start the neural-mirage render daemon" in res["whole_error"]
    assert res["layers"] == ["base"] and res["base_unchanged"]


@pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("xdotool") is None,
                    reason="Xvfb and xdotool are installed by install/test-hosts.sh")
def test_class_picker_offers_and_inserts_classes_in_gimps_gtk(daemon):
    """The dialog's "Make it see" entry, built by the plug-in on GIMP's own GTK 3 (batch GIMP
    has no display, so the entry is shown in a window of its own on Xvfb)."""
    work, inside = chroot_work(daemon.endpoint)
    shutil.copy2(PICKER, work / "picker.py")
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "640x360x24",
                             "-listen", "tcp"], stdout=subprocess.PIPE, text=True)
    try:
        display = xvfb.stdout.readline().strip()
        env = {"HOME": str(inside), "DISPLAY": f"127.0.0.1:{display}", "PATH": "/usr/bin:/bin",
               "NEURAL_MIRAGE_RUNTIME_DIR": str(inside / "run")}
        plugin_dir = inside / "cfg" / "plug-ins" / "neural-mirage"
        picker = subprocess.Popen(
            ["chroot", str(ROOT), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
             "python3", str(inside / "picker.py"), str(plugin_dir), "lakes",
             str(inside / "picker.json"), str(inside / "picker.png")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        keys = {**os.environ, "DISPLAY": f":{display}"}
        for line, command in (("READY", ["type", "--delay", "80", "lakes"]),
                              ("SHOWN", ["key", "--delay", "200", "Down", "Return"])):
            assert picker.stdout.readline().strip() == line, picker.stderr.read()[-3000:]
            subprocess.run(["xdotool", *command], env=keys, check=True, timeout=30)
        _, errors = picker.communicate(timeout=60)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    assert picker.returncode == 0, errors[-3000:]
    res = json.loads((work / "picker.json").read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / "picker.png", ARTIFACTS / "gimp-class-picker.png")
    shutil.rmtree(work, ignore_errors=True)
    assert res["error"] == "" and res["count"] == 1000
    assert res["offers"] == ["lakeside"]
    assert res["text"] == "church, lakeside, "
