"""The installed ``neural-mirage`` command, run as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image

CLI = [sys.executable, "-m", "neural_mirage.cli"]
FAST = ["--weights", "random", "--size", "48", "--iterations", "3", "--scales", "1"]


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture()
def photo(tmp_path) -> Path:
    y, x = np.mgrid[0:60, 0:80]
    rgb = np.stack([x * 3, y * 4, (x + y) * 2], axis=2).clip(0, 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    return path


def test_render_writes_result_and_reports_what_the_net_sees(tmp_path, photo):
    out = tmp_path / "out.png"
    r = run("render", photo, out, *FAST, "--save-every", "2", "--top", "3")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (48, 36)
    assert (tmp_path / "out.00002.png").exists()
    assert "The net sees in the input:" in r.stdout
    assert "The net sees in the result:" in r.stdout
    assert "RANDOM weights" in r.stdout and "RANDOM weights" in r.stderr


def test_render_keeps_alpha_and_16_bits(tmp_path):
    rng = np.random.default_rng(1)
    data = (rng.random((40, 50, 4)) * 65535).astype(np.uint16)
    data[:, :25, 3] = 65535
    data[:, 25:, 3] = 0
    src = tmp_path / "rgba16.png"
    with src.open("wb") as f:
        png.Writer(50, 40, bitdepth=16, greyscale=False, alpha=True).write(f, data.reshape(40, -1))
    out = tmp_path / "out16.png"
    r = run("render", src, out, *FAST, "--size", "50", "--top", "0")
    assert r.returncode == 0, r.stderr
    width, height, rows, info = png.Reader(filename=str(out)).asDirect()
    assert (width, height, info["bitdepth"], info["alpha"]) == (50, 40, 16, True)
    back = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(40, 50, 4)
    assert back[:, :20, 3].min() == 65535 and back[:, 30:, 3].max() == 0


def test_render_grey_jpeg_to_jpeg(tmp_path, photo):
    src = tmp_path / "grey.jpg"
    Image.open(photo).convert("L").save(src)
    out = tmp_path / "out.jpg"
    r = run("render", src, out, *FAST, "--top", "0")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).mode == "RGB"


def test_missing_weights_say_how_to_get_them(tmp_path, photo):
    r = run("render", photo, tmp_path / "o.png", "--size", "48",
            env={"TORCH_HOME": str(tmp_path / "empty-torch-home")})
    assert r.returncode == 2
    assert "weights were not found" in r.stderr and "fetch-weights" in r.stderr
    assert "--weights random" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["render", "{tmp}/nope.png", "{tmp}/o.png"], "no such file"),
    (["render", "{tmp}/text.png", "{tmp}/o.png"], "not an image"),
    (["render", "{tmp}/empty.png", "{tmp}/o.png"], "not an image"),
    (["render", "{photo}", "{tmp}/o.png", "--content-layers", "fc9"], "unknown or unusable layer"),
    (["render", "{photo}", "{tmp}/o.png", "--style-weight", "-1"], "must not be negative"),
    (["render", "{photo}", "{tmp}/o.png", "--size", "100000"], "between 32 and 8192"),
    (["render", "{photo}", "{tmp}/o.png", "--frobnicate"], "unrecognized arguments"),
    (["render", "{photo}", "{tmp}/o.gif"], "must end in .png"),
    (["render", "{photo}", "{tmp}/o.png", "--content-layers", "fc7:x"], "not a number"),
    (["render", "{photo}", "{tmp}/o.png", "--device", "cuda:7"], "cuda"),
    (["render", "{photo}", "{tmp}/o.png", "--size", "4096", "--max-memory", "1G"],
     "Choose a size of at most"),
    (["render", "{photo}", "{tmp}/o.png", "--max-memory", "lots"], "not a memory size"),
    (["render", "{photo}", "{tmp}/o.png", "--fc-spatial", "2"], "between 0 and 1"),
    (["render", "{photo}", "{tmp}/o.png", "--see-mask", "{photo}"], "needs classes"),
    (["render", "{photo}", "{tmp}/o.png", "--see", "castle", "--see-mask", "{tmp}/tall.png"],
     "paint the mask over the photo"),
    (["sees", "{photo}", "--map", "{tmp}/o.gif"], "must end in .png"),
])
def test_bad_input_is_one_clear_line(tmp_path, photo, args, message):
    (tmp_path / "text.png").write_text("not really a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("L", (30, 90)).save(tmp_path / "tall.png")
    argv = [a.format(tmp=tmp_path, photo=photo) for a in args]
    r = run(*argv, *FAST[:2])
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_service_install_writes_a_unit_for_this_python(tmp_path):
    r = run("service", "install", "--weights", "random", "--devices", "cpu",
            env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    unit = (tmp_path / "systemd" / "user" / "neural-mirage.service").read_text()
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_line == (f"ExecStart={sys.executable} -m neural_mirage.cli daemon "
                         "--weights random --arch vgg19 --devices cpu")
    assert "[Install]" in unit and "WantedBy=default.target" in unit


def test_classes_lists_matches_and_groups(tmp_path):
    r = run("classes", "church")
    assert r.returncode == 0
    assert " 497  church" in r.stdout and "@buildings:" in r.stdout
    labels = tmp_path / "categories_places365.txt"
    labels.write_text("/a/airfield 0\n/c/castle 1\n/c/church/outdoor 2\n")
    r = run("classes", "--labels", labels)
    assert r.stdout.splitlines() == ["   0  airfield", "   1  castle", "   2  church/outdoor",
                                     "@buildings: church/outdoor, castle"]


def test_render_with_steering_and_an_unknown_class(tmp_path, photo):
    r = run("render", photo, tmp_path / "s.png", *FAST, "--see", "church, lakeside:0.5",
            "--top", "0")
    assert r.returncode == 0, r.stderr
    r = run("render", photo, tmp_path / "s.png", *FAST, "--see", "churh")
    assert r.returncode == 2
    assert "unknown class 'churh'; closest: church" in r.stderr


def test_an_output_in_a_missing_folder_is_refused_before_rendering(tmp_path, photo):
    for command in ("render", "submit"):
        r = run(command, photo, tmp_path / "no" / "such" / "out.png", *FAST)
        assert r.returncode == 2, r.stderr
        assert "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_submit_waits_for_a_starting_daemon_and_spawn_takes_the_model_options(tmp_path, photo):
    """A newcomer's first steps: 'daemon &' then 'submit' at once; or 'submit --spawn' with
    random weights (no pretrained weights on this machine)."""
    from .daemon_process import daemon_env, short_dir

    env = daemon_env(short_dir("nm-run-"), short_dir("nm-cache-"))
    small = ["--size", "48", "--iterations", "2", "--scales", "1"]
    daemon = subprocess.Popen([*CLI, "daemon", "--weights", "random"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connection = Path(env["NEURAL_MIRAGE_RUNTIME_DIR"]) / "daemon.json"
        deadline = time.monotonic() + 30
        while not connection.exists():  # the daemon has only just been started
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert json.loads(connection.read_text())["starting"]  # still loading its model
        r = subprocess.run([*CLI, "submit", photo, tmp_path / "a.png", *small], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert subprocess.run([*CLI, "status"], env=env, timeout=60).returncode == 0
    finally:
        daemon.terminate()
        daemon.wait(60)
    r = subprocess.run([*CLI, "submit", photo, tmp_path / "b.png", *small, "--spawn",
                        "--weights", "random"], env=env, capture_output=True, text=True,
                       timeout=300)
    try:
        assert r.returncode == 0, r.stderr
        assert "Starting the daemon" in r.stderr and "RANDOM weights" in r.stdout
    finally:  # stop the daemon that --spawn started
        from neural_mirage.client.zmq_client import Client

        with Client(json.loads(connection.read_text())["endpoint"]) as client:
            client.shutdown()


def test_sees_lists_and_draws_what_the_net_sees_where(tmp_path):
    """A 480x256 photo: 9x2 windows of 224 px (every 32 px) at its own size; the map is the
    photo's size and says the weights are random."""
    y, x = np.mgrid[0:256, 0:480]
    rgb = np.stack([x // 2, y, (x * y) % 256], axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    r = run("sees", tmp_path / "wide.png", "--map", tmp_path / "map.png", "--weights", "random",
            "--top", "3")
    assert r.returncode == 0, r.stderr
    assert "9x2 windows of 224 px at 480x256" in r.stdout and "RANDOM weights" in r.stdout
    shares = [float(line.split("%")[0]) for line in r.stdout.splitlines()[1:4]]
    assert shares == sorted(shares, reverse=True) and shares[0] >= 100 / 18
    drawn = np.asarray(Image.open(tmp_path / "map.png").convert("RGB")).astype(int)
    assert drawn.shape == (256, 480, 3)
    assert np.abs(drawn - rgb).mean() > 20  # faded and coloured, not the photo


def test_render_steered_under_a_mask_in_the_spatial_mode(tmp_path, photo):
    mask = np.zeros((60, 80), np.uint8)
    mask[:, :40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    r = run("render", photo, tmp_path / "s.png", *FAST, "--see", "castle", "--see-mask",
            tmp_path / "mask.png", "--fc-spatial", "0.5", "--top", "0")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "s.png").size == (48, 36)
    assert "Note: at 48x36 a side is under 224 px" in r.stderr
