"""Starting and stopping a real daemon process for the tests (random weights, private dirs)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from neural_mirage.client.locate import daemon_command
from neural_mirage.client.zmq_client import Client, DaemonError


@dataclass
class DaemonProcess:
    process: subprocess.Popen
    runtime_dir: Path
    cache_dir: Path
    endpoint: str
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return daemon_env(self.runtime_dir, self.cache_dir)

    @property
    def connection(self) -> dict:
        """What the daemon's connection file says (endpoint, pid, secret, bridge port)."""
        return json.loads((self.runtime_dir / "daemon.json").read_text())

    def client(self, timeout: float = 10.0) -> Client:
        client = Client(self.endpoint, timeout=timeout, secret=self.connection.get("secret"))
        try:
            client.hello()
        except DaemonError:
            client.close()
            raise
        return client

    def rss(self) -> int:
        with open(f"/proc/{self.process.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def short_dir(prefix: str) -> Path:
    """A short temp path: ipc:// socket paths must stay under about 100 characters."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def free_port() -> int:
    """A loopback TCP port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def windows_folders_from_env(monkeypatch) -> None:
    """On a simulated Windows, platformdirs reads APPDATA and LOCALAPPDATA (off Windows it
    would ask the shell API through ctypes, which fails)."""
    import platformdirs.windows

    monkeypatch.setattr(platformdirs.windows, "_RESOLVE_WIN_FOLDER",
                        platformdirs.windows.get_win_folder_from_env_vars)


def hidden_pyzmq(folder: Path) -> Path:
    """A folder for PYTHONPATH in which ``zmq`` and ``msgpack`` fail to import, as in an
    editor's Python that has neither (Flatpak, Windows and macOS builds)."""
    for name in ("zmq", "msgpack"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is hidden')\n")
    return folder


def daemon_env(runtime_dir: Path, cache_dir: Path) -> dict[str, str]:
    return {**os.environ, "NEURAL_MIRAGE_RUNTIME_DIR": str(runtime_dir),
            "NEURAL_MIRAGE_CACHE_DIR": str(cache_dir)}


def start_daemon(runtime_dir: Path | None = None, cache_dir: Path | None = None,
                 *extra: str, wait: float = 60.0, hello: bool = True,
                 env: dict[str, str] | None = None) -> DaemonProcess:
    """Start a daemon with random weights; wait until it answers HELLO (with ``hello``; a
    CURVE daemon answers only clients with a listed key, so its test waits by itself).
    ``env``: more environment (a home of the test's own)."""
    runtime_dir = runtime_dir or short_dir("nm-run-")
    cache_dir = cache_dir or short_dir("nm-cache-")
    log = cache_dir / "test-daemon.log"
    endpoint = f"ipc://{runtime_dir}/daemon.sock"
    for item in extra:
        if item.startswith(("tcp://", "ipc://")):
            endpoint = item
    process = subprocess.Popen(
        daemon_command("--weights", "random", "--log-file", str(log), *extra),
        env={**daemon_env(runtime_dir, cache_dir), **(env or {})}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    daemon = DaemonProcess(process, runtime_dir, cache_dir, endpoint, log)
    if not hello:
        return daemon
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited: {process.stderr.read()}")
        if (runtime_dir / "daemon.json").exists():
            try:
                daemon.client(timeout=1.0).close()
                return daemon
            except DaemonError:
                pass
        time.sleep(0.1)
    daemon.kill()
    raise RuntimeError("daemon did not start in time")


def rendered_as_sent(daemon: DaemonProcess, sent: dict, dtype, order: str):
    """The daemon's own render of what a plug-in sent (as the editor drivers record it: the
    plan's params, the pixels at the sent size and the mask, in hex), at the area's size."""
    import numpy as np

    width, height = sent["send"]
    pixels = np.frombuffer(bytes.fromhex(sent["pixels"]), dtype).reshape(height, width, 4)
    _, _, area_w, area_h = sent["area"]
    masks = {}
    for name in ("mask", "see_mask"):
        if sent.get(name) is not None:
            masks[name] = np.frombuffer(bytes.fromhex(sent[name]), np.uint8).reshape(area_h,
                                                                                     area_w)
    return rendered(daemon, pixels, order, sent["params"], output=(area_w, area_h),
                    task=sent.get("task", "render"), **masks)


def rendered(daemon: DaemonProcess, pixels, order: str, params: dict, mask=None, output=None,
             see_mask=None, task: str = "render"):
    """The daemon's own result for ``pixels`` (H, W, 4; uint8, uint16 or float32), as an array
    of the same layout, sized ``output`` (width, height) when given.

    Renders are deterministic, so the plug-in tests compare an editor's new layer with this.
    """
    import numpy as np

    from neural_mirage.client.protocol import image_meta

    dtype = {np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16",
             np.dtype(np.float32): "f32"}[pixels.dtype]
    height, width = pixels.shape[:2]
    with daemon.client(timeout=60) as c:
        result = c.render(pixels.tobytes(), image_meta(width, height, 4, dtype, order), params,
                          mask=None if mask is None else mask.tobytes(), output=output,
                          see_mask=None if see_mask is None else see_mask.tobytes(), task=task)
        c.ack(result.job)
    out_w, out_h = output or (width, height)
    return np.frombuffer(result.pixels, pixels.dtype).reshape(out_h, out_w, 4)
