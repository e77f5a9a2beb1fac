"""The daemon as a real process on real sockets: round trips, progress, cancel, failures, load."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from neural_mirage.client import protocol as P
from neural_mirage.client.locate import daemon_command
from neural_mirage.client.zmq_client import Client, DaemonError, JobCancelled

from .daemon_process import short_dir, start_daemon

TINY = {"size": 40, "iterations": 2, "scales": 1, "early_stop": 0.0}
LONG = {"size": 64, "iterations": 5000, "scales": 1, "early_stop": 0.0}


def bgra(width: int = 40, height: int = 32) -> tuple[bytes, dict]:
    rng = np.random.default_rng(width * height)
    data = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    data[..., 3] = 255
    data[:, : width // 2, 3] = 128
    return data.tobytes(), P.image_meta(width, height, 4, "u8", "BGRA")


def fetch_when_finished(client: Client, job: str, timeout: float = 60.0):
    """FETCH ``job`` once it has finished (a detached job's result is fetched later)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.fetch(job)
        except DaemonError as exc:
            assert exc.code == P.E_NOT_FINISHED and time.monotonic() < deadline
            time.sleep(0.1)


@pytest.fixture(scope="module")
def daemon():
    d = start_daemon(None, None, "--max-queue", "100")
    yield d
    d.stop()


@pytest.fixture()
def client(daemon):
    c = daemon.client()
    yield c
    c.close()


def test_round_trip_keeps_layout_and_alpha(client):
    raw, meta = bgra(40, 32)
    progress = []
    result = client.render(raw, meta, TINY, on_progress=lambda p, _: progress.append(p))
    assert result.image == {**meta}
    assert len(result.pixels) == 40 * 32 * 4
    out = np.frombuffer(result.pixels, np.uint8).reshape(32, 40, 4)
    assert out[:, :15, 3].max() <= 129 and out[:, 25:, 3].min() == 255  # alpha carried over
    assert [p["iteration"] for p in progress] == [0, 1, 2]
    assert result.header["model"].startswith("RANDOM") and not result.header["pretrained"]
    assert len(result.header["seen_result"]) == 5
    client.ack(result.job)
    with pytest.raises(DaemonError) as info:
        client.fetch(result.job)
    assert info.value.code == P.E_UNKNOWN_JOB


def test_progress_is_in_order_with_previews(client):
    raw, meta = bgra(96, 72)
    events = []
    params = {"size": 96, "iterations": 6, "scales": 2, "early_stop": 0.0}
    result = client.render(raw, meta, params, preview_every=2, preview_size=32,
                           on_progress=lambda p, frame: events.append((p, frame)))
    assert [p["iteration"] for p, _ in events] == list(range(10))
    assert [p["scale"] for p, _ in events] == [1] * 4 + [2] * 6
    # what a person reads: the iterations of each scale, the final one as many as asked for
    assert [p["scale_iteration"] for p, _ in events] == [0, 1, 2, 3, 1, 2, 3, 4, 5, 6]
    assert [p["scale_iterations"] for p, _ in events] == [3] * 4 + [6] * 6
    assert all(p["total"] == 9 for p, _ in events)
    previews = [(p["preview"], frame) for p, frame in events if frame is not None]
    assert len(previews) == 4
    for preview, frame in previews:
        assert max(preview["width"], preview["height"]) <= 32
        assert len(frame) == preview["width"] * preview["height"] * 3
    client.ack(result.job)


def test_mask_makes_outside_transparent(client):
    raw, meta = bgra(40, 32)
    mask = np.zeros((32, 40), np.uint8)
    mask[8:24, 10:30] = 255
    result = client.render(raw, meta, TINY, mask=mask.tobytes())
    alpha = np.frombuffer(result.pixels, np.uint8).reshape(32, 40, 4)[..., 3]
    assert alpha[0, 0] == 0 and alpha[16, 25] == 255
    client.ack(result.job)


def test_output_scales_the_result_to_the_area_with_a_full_size_mask(client):
    """An editor sends its area scaled down to the render size; the result comes back at the
    area's size, masked by the full-size selection, in range (no bicubic overshoot)."""
    raw, meta = bgra(40, 32)
    mask = np.zeros((80, 100), np.uint8)
    mask[20:60, 25:90] = 255
    result = client.render(raw, meta, TINY, mask=mask.tobytes(), output=(100, 80))
    assert result.image == {**meta, "width": 100, "height": 80}
    alpha = np.frombuffer(result.pixels, np.uint8).reshape(80, 100, 4)[..., 3]
    assert (alpha[mask == 0] == 0).all()
    assert alpha[40, 80] == 255 and 120 <= alpha[40, 30] <= 136  # the source's alpha, scaled
    client.ack(result.job)

    floats = np.random.default_rng(1).random((32, 40, 4), dtype=np.float32)
    meta = P.image_meta(40, 32, 4, "f32", "RGBA")
    result = client.render(floats.tobytes(), meta, TINY, output=(160, 128))
    out = np.frombuffer(result.pixels, np.float32).reshape(128, 160, 4)
    assert out.min() >= 0.0 and out.max() <= 1.0
    client.ack(result.job)


def test_a_float_frame_with_nan_fails_its_job_with_bad_image(client):
    floats = np.full((32, 40, 4), 0.5, np.float32)
    floats[3, 4, 1] = np.nan
    with pytest.raises(DaemonError) as info:
        client.render(floats.tobytes(), P.image_meta(40, 32, 4, "f32", "RGBA"), TINY)
    assert info.value.code == P.E_BAD_IMAGE and "NaN" in str(info.value)
    assert client.ping() < 1.0


def test_estimate_gives_the_time_and_a_quick_size(client):
    params = {"size": 512, "iterations": 300}
    reply = client.estimate(params, 6000, 4000)
    assert reply["type"] == P.ESTIMATE_REPLY and reply["device"] == "cpu"
    assert reply["render"] == [512, 341] and reply["size"] == 512
    assert reply["iterations"] == 75 + 150 + 300
    bigger = client.estimate({**params, "size": 1024}, 6000, 4000)
    assert bigger["seconds"] > 3 * reply["seconds"]
    # a quick look: the largest size within 90 s (20 iterations: well above the floor here)
    quick = client.estimate({**params, "iterations": 20}, 6000, 4000)
    assert 256 < quick["quick_size"] < 6000 and quick["quick_seconds"] <= 90.0
    bigger = client.estimate({**params, "iterations": 20, "size": quick["quick_size"] + 1},
                             6000, 4000)
    assert bigger["seconds"] >= 89.95
    # never under 256 px (nor above the area): a slow render is then said, not shrunk
    slow = client.estimate({**params, "iterations": 100000}, 6000, 4000)
    assert slow["quick_size"] == 256 and slow["quick_seconds"] > 90
    assert client.estimate({"size": 64, "iterations": 2}, 120, 80)["quick_size"] == 120


def test_estimate_is_the_right_order_of_magnitude(client):
    raw, meta = bgra(96, 72)
    params = {"size": 96, "iterations": 20, "scales": 1, "early_stop": 0.0}
    estimate = client.estimate(params, 96, 72)["seconds"]
    result = client.render(raw, meta, params)
    client.ack(result.job)
    assert estimate / 3 < result.header["elapsed"] < estimate * 3


def test_a_render_that_would_not_fit_in_memory_is_refused_before_it_starts():
    d = start_daemon(None, None, "--max-memory", "300M")
    try:
        with d.client() as c:
            raw, meta = bgra(64, 48)
            reply = c.estimate({"size": 1024}, 64, 48)
            assert reply["max_memory"] == 300_000_000 and reply["memory"] > 300_000_000
            largest = reply["largest_size"]
            assert 64 < largest < 1024
            with pytest.raises(DaemonError) as info:
                c.submit(raw, meta, {**TINY, "size": 1024})
            assert info.value.code == P.E_OUT_OF_MEMORY
            assert str(info.value).startswith(f"Choose a size of at most {largest} px")
            result = c.render(raw, meta, {**TINY, "size": 64})  # the next job is served
            assert result.image["width"] == 64
            c.ack(result.job)
    finally:
        d.stop()


def test_cancel_mid_job(client):
    raw, meta = bgra(64, 64)
    seen = []
    started = time.monotonic()
    with pytest.raises(JobCancelled):
        client.render(raw, meta, LONG, on_progress=lambda p, _: seen.append(p["iteration"]),
                      should_cancel=lambda: len(seen) > 3)
    assert 3 < len(seen) < 50
    assert time.monotonic() - started < 20


def test_ping_and_status_answer_while_rendering(daemon, client):
    raw, meta = bgra(64, 64)
    accepted = client.submit(raw, meta, {**LONG, "size": 256}, detach=True)
    other = daemon.client(timeout=5)
    try:
        deadline = time.monotonic() + 30
        while not other.status()["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worst = max(other.ping() for _ in range(20))
        status = other.status()
        assert status["running"][0]["job"] == accepted["job"]
        assert status["memory"]["rss"] > 0
        assert worst < 0.25, f"PING took {worst:.3f} s during a render"
    finally:
        other.cancel(accepted["job"])
        other.close()


def test_ping_answers_while_a_64_mp_submit_arrives_and_converts(daemon, client):
    """The I/O thread only checks a SUBMIT's frame; a worker converts its pixels. So a camera
    scan of 8192x8192 (256 MB of 8-bit RGBA) does not hold up anybody's PING."""
    side = 8192
    raw = np.zeros((side, side, 4), np.uint8)
    raw[..., 3] = 255
    meta = P.image_meta(side, side, 4, "u8", "RGBA")
    accepted: list[dict] = []
    sender = threading.Thread(target=lambda: accepted.append(
        client.submit(raw.tobytes(), meta, {**TINY, "size": 64}, detach=True)))
    other = daemon.client(timeout=5)
    try:
        pings = [other.ping()]
        sender.start()
        deadline = time.monotonic() + 60
        def busy() -> bool:
            status = other.status()
            return any(j["job"] == accepted[0]["job"]
                       for j in status["running"] + status["queue"])

        while (not accepted or busy()) and time.monotonic() < deadline:
            pings.append(other.ping())
            time.sleep(0.02)
        sender.join()
        assert accepted, "the 64 MP SUBMIT was not accepted"
        assert len(pings) > 10
        assert max(pings) < 0.25, f"PING took {max(pings):.3f} s while 64 MP arrived"
        result = other.fetch(accepted[0]["job"])
        assert result.image["width"] == 64
        other.ack(result.job)
    finally:
        other.close()


CHILD = """
import sys
from neural_mirage.client.zmq_client import Client
import numpy as np
c = Client(sys.argv[1], timeout=10)
c.hello()
raw = np.full((64, 64, 4), 100, np.uint8).tobytes()
job = c.submit(raw, {"width": 64, "height": 64, "channels": 4, "dtype": "u8", "order": "RGBA"},
               {"size": 64, "iterations": 5000, "scales": 1, "early_stop": 0.0})["job"]
print(job, flush=True)
c.wait(job)
"""


def test_killed_client_gets_its_job_cancelled_within_2_s(daemon, client):
    child = subprocess.Popen([sys.executable, "-c", CHILD, daemon.endpoint],
                             stdout=subprocess.PIPE, text=True)
    job = child.stdout.readline().strip()
    deadline = time.monotonic() + 30
    while not any(j["job"] == job for j in client.status()["running"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.kill()
    child.wait()
    killed = time.monotonic()
    while any(j["job"] == job for j in client.status()["running"]):
        assert time.monotonic() - killed < 2.0, "job still running 2 s after its client died"
        time.sleep(0.05)
    with pytest.raises(DaemonError, match="was cancelled"):
        client.fetch(job)


def test_detached_job_is_fetched_after_reconnecting(daemon):
    raw, meta = bgra(40, 32)
    first = daemon.client()
    job = first.submit(raw, meta, TINY, detach=True)["job"]
    first.close()
    time.sleep(0.5)  # its client's connection has closed: a detached job must survive it
    second = daemon.client()
    try:
        result = fetch_when_finished(second, job)
        assert len(result.pixels) == 40 * 32 * 4
        second.ack(job)
    finally:
        second.close()


def test_sixteen_clients_four_jobs_each_complete_in_fifo_order(daemon):
    raw, meta = bgra(40, 32)
    results: list[dict] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def one_client() -> None:
        try:
            with daemon.client(timeout=60) as c:
                barrier.wait()
                jobs = [c.submit(raw, meta, TINY)["job"] for _ in range(4)]
                for job in jobs:
                    result = c.wait(job)
                    c.ack(job)
                    with lock:
                        results.append(result.header)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert len(results) == 64
    by_start = sorted(results, key=lambda h: h["started"])
    numbers = [h["number"] for h in by_start]
    assert numbers == sorted(numbers), "jobs did not start in the order they were accepted"


def test_bad_requests_get_stable_codes(daemon, client):
    raw, meta = bgra(40, 32)
    cases = [
        ({"type": "FROBNICATE"}, [], P.E_UNKNOWN_TYPE),
        ({"type": P.HELLO, "protocol": 99}, [], P.E_VERSION),
        ({"type": P.SUBMIT, "image": meta, "params": {}}, [raw[:-1]], P.E_BAD_IMAGE),
        ({"type": P.SUBMIT, "image": meta, "params": {}}, [], P.E_BAD_IMAGE),
        ({"type": P.SUBMIT, "image": {**meta, "dtype": "u4"}, "params": {}}, [raw], P.E_BAD_IMAGE),
        ({"type": P.SUBMIT, "image": meta, "params": {"size": -1}}, [raw], P.E_BAD_PARAMS),
        ({"type": P.SUBMIT, "image": meta, "params": {"colour": 1}}, [raw], P.E_BAD_PARAMS),
        ({"type": P.SUBMIT, "image": meta, "params": {"size": 33}}, [raw], P.E_BAD_PARAMS),
        ({"type": P.SUBMIT, "image": meta, "params": {"see": {"churh": 1}}}, [raw], P.E_BAD_PARAMS),
        ({"type": P.SUBMIT, "image": meta, "params": [1]}, [raw], P.E_BAD_PARAMS),
        ({"type": P.SUBMIT, "image": meta, "frobs": 1}, [raw], P.E_BAD_MESSAGE),
        ({"type": P.SUBMIT, "image": {**meta, "width": 10**6, "height": 10**6}}, [raw],
         P.E_TOO_LARGE),
        ({"type": P.SUBMIT, "image": meta, "output": {"width": 0, "height": 5}}, [raw],
         P.E_BAD_MESSAGE),
        ({"type": P.SUBMIT, "image": meta, "output": {"width": 10**5, "height": 10**5}}, [raw],
         P.E_TOO_LARGE),
        ({"type": P.SUBMIT, "image": meta, "output": {"width": 80, "height": 64},
          "mask": P.image_meta(40, 32, 1, "u8", "A")}, [raw, bytes(40 * 32)], P.E_BAD_IMAGE),
        ({"type": P.ESTIMATE, "params": {}, "width": 100}, [], P.E_BAD_MESSAGE),
        ({"type": P.ESTIMATE, "params": {"size": 7}, "width": 100, "height": 80}, [],
         P.E_BAD_PARAMS),
        ({"type": P.CANCEL, "job": "nope"}, [], P.E_UNKNOWN_JOB),
        ({"type": P.FETCH, "job": 7}, [], P.E_BAD_MESSAGE),
        ({"type": P.ACK, "job": "0" * 32}, [], P.E_UNKNOWN_JOB),
    ]
    for header, frames, code in cases:
        with pytest.raises(DaemonError) as info:
            client.request(header, frames)
        assert info.value.code == code, header
        assert len(str(info.value)) > 10
    assert client.ping() < 1.0


def test_queue_limit_gives_busy():
    d = start_daemon(None, None, "--max-queue", "1")
    try:
        with d.client() as c:
            raw, meta = bgra(64, 64)
            running = c.submit(raw, meta, LONG, detach=True)["job"]
            while not c.status()["running"]:
                time.sleep(0.05)
            queued = c.submit(raw, meta, LONG, detach=True)["job"]
            with pytest.raises(DaemonError) as info:
                c.submit(raw, meta, LONG, detach=True)
            assert info.value.code == P.E_BUSY
            assert c.cancel(queued)["state"] == "cancelled"
            c.cancel(running)
    finally:
        d.stop()


def test_killed_daemon_gives_clear_error_and_restart_serves(tmp_path):
    d = start_daemon()
    c = d.client(timeout=2.0)
    raw, meta = bgra(64, 64)
    job = c.submit(raw, meta, LONG)["job"]
    threading.Timer(0.5, d.kill).start()
    started = time.monotonic()
    with pytest.raises(DaemonError) as info:
        c.wait(job)
    assert info.value.code == P.E_TIMEOUT
    assert "stopped answering" in str(info.value) and job in str(info.value)
    assert time.monotonic() - started < 5
    c.close()
    # the dead daemon left its socket, lock and connection file: a new one starts anyway
    again = start_daemon(d.runtime_dir, d.cache_dir)
    try:
        with again.client() as c2:
            result = c2.render(raw, meta, TINY)
            assert result.image["width"] == result.image["height"] == 40  # size 40
            assert len(result.pixels) == 40 * 40 * 4
    finally:
        again.stop()


def test_second_daemon_on_same_endpoint_refuses(daemon):
    r = subprocess.run(daemon_command("--weights", "random"), env=daemon.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "already serving" in r.stderr


def test_security_defaults(daemon):
    assert stat.S_IMODE(os.stat(daemon.runtime_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(daemon.runtime_dir / "daemon.json").st_mode) == 0o600
    r = subprocess.run(daemon_command("--weights", "random", "--bind", "tcp://0.0.0.0:5611"),
                       env={**daemon.env, "NEURAL_MIRAGE_RUNTIME_DIR": str(short_dir("nm-sec-"))},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "refusing to listen on tcp://0.0.0.0:5611" in r.stderr
    assert "Traceback" not in r.stderr


def test_tcp_loopback_and_shutdown():
    d = start_daemon(None, None, "--bind", "tcp://127.0.0.1:5612")
    try:
        with d.client() as c:
            assert c.welcome["protocol"] == P.PROTOCOL_VERSION
            c.shutdown()
        d.process.wait(30)
        assert d.process.returncode == 0
        assert not (d.runtime_dir / "daemon.json").exists()
    finally:
        d.stop()


def test_client_without_daemon_fails_fast(monkeypatch):
    monkeypatch.setenv("NEURAL_MIRAGE_RUNTIME_DIR", str(short_dir("nm-none-")))
    with pytest.raises(DaemonError) as info:
        Client.connect(timeout=1.0)
    assert info.value.code == P.E_NO_DAEMON
    started = time.monotonic()
    with pytest.raises(DaemonError) as info, Client("tcp://127.0.0.1:5613", timeout=1.0) as c:
        c.hello()
    assert info.value.code == P.E_TIMEOUT
    assert time.monotonic() - started < 3


def test_one_worker_per_device():
    d = start_daemon(None, None, "--devices", "cpu,cpu")
    try:
        with d.client() as c:
            assert c.welcome["devices"] == ["cpu", "cpu"]
            raw, meta = bgra(64, 64)
            jobs = [c.submit(raw, meta, LONG, detach=True)["job"] for _ in range(2)]
            deadline = time.monotonic() + 60
            while len(c.status()["running"]) < 2:
                assert time.monotonic() < deadline, "the two jobs did not run side by side"
                time.sleep(0.1)
            for job in jobs:
                c.cancel(job)
    finally:
        d.stop()


def test_cli_submit_status_and_fetch(daemon, tmp_path):
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.fromarray(np.full((32, 40, 3), 120, np.uint8)).save(photo)
    cli = [sys.executable, "-m", "neural_mirage.cli"]
    args = ["--size", "40", "--iterations", "2", "--scales", "1", "--endpoint", daemon.endpoint]
    r = subprocess.run([*cli, "submit", photo, tmp_path / "a.png", *args], env=daemon.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "a.png").size == (40, 32)
    r = subprocess.run([*cli, "submit", photo, tmp_path / "b.png", *args, "--detach"],
                       env=daemon.env, capture_output=True, text=True, timeout=120)
    job = r.stdout.strip()
    assert r.returncode == 0 and len(job) == 32, r.stderr
    deadline = time.monotonic() + 60
    while True:
        r = subprocess.run([*cli, "fetch", job, tmp_path / "b.png", "--endpoint",
                            daemon.endpoint], env=daemon.env, capture_output=True, text=True,
                           timeout=120)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        assert "is queued" in r.stderr or "is running" in r.stderr, r.stderr
        time.sleep(0.5)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "b.png").size == (40, 32)
    r = subprocess.run([*cli, "status", "--endpoint", daemon.endpoint], env=daemon.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "0 finished result(s) waiting" in r.stdout, r.stdout


def test_classes_and_welcome_describe_the_model(client):
    welcome = client.hello()
    assert welcome["model"]["arch"] == "vgg19" and welcome["model"]["classes"] == 1000
    reply = client.classes()
    assert len(reply["classes"]) == 1000 and reply["classes"][497] == "church"
    assert "church" in reply["groups"]["@buildings"]
    assert reply["model"] == welcome["model"]


def test_daemon_serves_a_user_vgg16_with_its_own_labels(tmp_path):
    from .weights_files import places_like_files

    path, labels = places_like_files(tmp_path)
    d = start_daemon(None, None, "--weights", "file", "--weights-path", str(path),
                     "--labels", str(labels), "--preprocessing", "caffe")
    try:
        with d.client() as c:
            assert c.hello()["model"]["arch"] == "vgg16"
            reply = c.classes()
            assert len(reply["classes"]) == 365 and reply["classes"][1] == "church/outdoor"
            assert "@animals" not in reply["groups"]
            raw, meta = bgra(40, 32)
            result = c.render(raw, meta, {**TINY, "see": {"church": 1.0}})
            assert result.header["seen_result"][0]["name"] in reply["classes"]
            c.ack(result.job)
            for params, words in (({"see": {"tabby": 1.0}}, "unknown class 'tabby'"),
                                  ({"style_layers": {"relu5_4": 1.0}}, "not in this model")):
                with pytest.raises(DaemonError, match=words) as info:
                    c.submit(raw, meta, {**TINY, **params})
                assert info.value.code == P.E_BAD_PARAMS
    finally:
        d.stop()


def test_over_curve_each_client_key_sees_and_touches_only_its_own_jobs(tmp_path):
    import json

    import zmq.auth

    keys = short_dir("nm-keys-")
    (keys / "clients").mkdir()
    zmq.auth.create_certificates(keys, "server")
    pairs = {}
    for name in ("alice", "bob"):
        _, secret = zmq.auth.create_certificates(tmp_path, name)
        (keys / "clients" / f"{name}.key").write_bytes((tmp_path / f"{name}.key").read_bytes())
        pairs[name] = zmq.auth.load_certificate(secret)
    server_key, _ = zmq.auth.load_certificate(keys / "server.key")
    endpoint = "tcp://127.0.0.1:5614"
    d = start_daemon(None, None, "--bind", endpoint, "--curve-dir", str(keys), hello=False)
    connection = d.runtime_dir / "daemon.json"
    deadline = time.monotonic() + 120
    while not connection.exists() or json.loads(connection.read_text())["starting"]:
        assert d.process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    alice = Client(endpoint, timeout=10, server_key=server_key, client_keys=pairs["alice"])
    bob = Client(endpoint, timeout=10, server_key=server_key, client_keys=pairs["bob"])
    stranger = Client(endpoint, timeout=2, server_key=server_key)
    try:
        alice.hello()
        bob.hello()
        with pytest.raises(DaemonError) as info:  # a key the daemon does not list
            stranger.hello()
        assert info.value.code == P.E_TIMEOUT
        raw, meta = bgra(40, 32)
        running = alice.submit(raw, meta, LONG, detach=True)["job"]
        finished = alice.submit(raw, meta, TINY, detach=True)["job"]
        status = bob.status()
        assert status["running"] == [] and status["queue"] == []
        assert [j["job"] for j in alice.status()["running"]] == [running]
        for request in (bob.cancel, bob.fetch):
            with pytest.raises(DaemonError) as info:
                request(running)
            assert info.value.code == P.E_FORBIDDEN, request
        alice.cancel(running)
        result = fetch_when_finished(alice, finished)
        for request in (bob.fetch, bob.ack, bob.cancel):  # a stored result keeps its owner
            with pytest.raises(DaemonError) as info:
                request(finished)
            assert info.value.code == P.E_FORBIDDEN, request
        assert len(result.pixels) == len(raw)
        alice.ack(finished)
    finally:
        for client in (alice, bob, stranger):
            client.close()
        d.stop()


def test_a_daemon_with_idle_exit_renders_then_exits_when_unused():
    """The daemon a plug-in starts (``--idle-exit``) does not outlive the editor for long: a
    detached render that runs longer than the idle time, with no client talking meanwhile, is
    finished first; then the daemon exits, and the result stays stored for the next one."""
    d = start_daemon(None, None, "--idle-exit", "3")
    try:
        pixels = np.full((48, 64, 3), 90, np.uint8)
        with d.client(timeout=60) as c:
            job = c.submit(pixels.tobytes(), P.image_meta(64, 48, 3, "u8", "RGB"),
                           {**TINY, "size": 64, "iterations": 40}, detach=True)["job"]
        assert d.process.wait(120) == 0
        log = d.log.read_text()
        done = log.index(f"job {job}: done in")
        assert float(log[done:].split()[4]) > 3, "the render was too short to show anything"
        assert log.index("idle for 3 s: exiting") > done
        assert not (d.runtime_dir / "daemon.json").exists()
        again = start_daemon(d.runtime_dir, d.cache_dir)
        try:
            with again.client() as c:
                assert len(c.fetch(job).pixels) == 64 * 48 * 3
        finally:
            again.stop()
    finally:
        d.stop()


@pytest.mark.parametrize("how", ["killed", "stopped", "killed-bridge-port"])
def test_a_daemon_that_stops_mid_render_is_not_a_cancel(how, monkeypatch):
    """What the plug-ins show when the daemon goes away during a render: that it stopped and
    what to do, never "Cancelled." (the artist did not cancel)."""
    from neural_mirage.client.bridge import BridgeSession
    from neural_mirage.client.connection import friendly

    d = start_daemon(None, None)
    monkeypatch.setenv("NEURAL_MIRAGE_RUNTIME_DIR", str(d.runtime_dir))
    try:
        pixels = np.full((48, 64, 3), 90, np.uint8).tobytes()
        if how == "killed-bridge-port":
            bridge = d.connection["bridge"]
            session = BridgeSession.over_tcp(bridge["host"], bridge["port"], bridge["secret"], 5)
        else:
            session = Client(timeout=5)
            session.hello()
        job = session.submit(pixels, P.image_meta(64, 48, 3, "u8", "RGB"), LONG)["job"]
        progress: list[dict] = []
        watch = session.watch(job, lambda header, _: progress.append(header))
        while not progress:  # the render runs
            assert watch.poll(0.2) is None
        if how == "stopped":
            d.process.terminate()
        else:
            d.kill()
        started = time.monotonic()
        with pytest.raises(DaemonError) as stopped:
            while watch.poll(0.5) is None:
                pass
        session.close()
        message = str(friendly(stopped.value))
        assert friendly(stopped.value).code == "daemon_stopped", message
        assert message.startswith("Render again to start a new daemon: the render daemon "), \
            message
        assert time.monotonic() - started < 15
    finally:
        d.stop()

