"""Every artist's desktop: the runtime on Windows and macOS (simulated here: CI runs on Linux),
loopback TCP that only the user can use, and the way in for editors that can neither import
pyzmq nor start a program of the host (a Flatpak or Snap editor), through a real daemon."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from neural_mirage.client import locate
from neural_mirage.client import protocol as P
from neural_mirage.client.bridge import read_message, write_message
from neural_mirage.client.zmq_client import Client, DaemonError

from .daemon_process import free_port, short_dir, start_daemon, windows_folders_from_env

REPO = Path(__file__).resolve().parent.parent
TINY = {"size": 64, "iterations": 2, "scales": 1}


def simulate(monkeypatch, tmp_path: Path, platform: str) -> Path:
    """``sys.platform`` and that OS's per-user environment, all inside ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    for name in ("NEURAL_MIRAGE_RUNTIME_DIR", "NEURAL_MIRAGE_CACHE_DIR", "XDG_CACHE_HOME",
                 "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    if platform == "linux":  # the session manager sets it; macOS and Windows have none
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    windows_folders_from_env(monkeypatch)
    return home


@pytest.mark.parametrize("platform, runtime, cache", [
    ("linux", "run/neural-mirage", "home/.cache/neural-mirage"),
    ("darwin", "home/Library/Caches/TemporaryItems/neural-mirage",
     "home/Library/Caches/neural-mirage"),
    ("win32", "Local/Temp/neural-mirage", "Local/neural-mirage/Cache"),
])
def test_runtime_and_cache_folders_per_os(monkeypatch, tmp_path, platform, runtime, cache):
    simulate(monkeypatch, tmp_path, platform)
    assert locate.runtime_dir() == tmp_path / runtime
    assert locate.cache_dir() == tmp_path / cache
    assert locate.log_file() == tmp_path / cache / "daemon.log"
    expected = "tcp://127.0.0.1:5599" if platform == "win32" else \
        f"ipc://{tmp_path / runtime / 'daemon.sock'}"
    assert locate.default_endpoint() == expected


class FakeKernel32:
    """The three kernel32 calls the Windows process check makes (Windows cannot run here)."""

    def __init__(self, running: dict[int, int]) -> None:
        self.running = running  # pid -> exit code (259: still active)
        self.calls: list[str] = []

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        self.calls.append("OpenProcess")
        assert access == 0x1000  # PROCESS_QUERY_LIMITED_INFORMATION: no right to terminate
        return pid if pid in self.running else 0

    def GetExitCodeProcess(self, handle: int, code) -> int:
        code._obj.value = self.running[handle]
        return 1

    def CloseHandle(self, handle: int) -> int:
        self.calls.append("CloseHandle")
        return 1


def test_the_windows_process_check_never_signals(monkeypatch, tmp_path):
    simulate(monkeypatch, tmp_path, "win32")

    def kill(*args):
        raise AssertionError("os.kill on Windows terminates the process it is given")

    monkeypatch.setattr(os, "kill", kill)
    kernel32 = FakeKernel32({100: 259, 200: 0})
    monkeypatch.setattr(locate, "_kernel32", lambda: kernel32)
    # get_last_error exists on Windows only
    monkeypatch.setattr(ctypes, "get_last_error", lambda: 87, raising=False)  # no such pid
    assert locate.alive(100)
    assert not locate.alive(200)  # exited, its handle still open somewhere
    assert not locate.alive(300)  # no such process
    monkeypatch.setattr(ctypes, "get_last_error", lambda: 5, raising=False)  # not ours
    assert locate.alive(300)
    assert kernel32.calls.count("OpenProcess") == 4
    assert kernel32.calls.count("CloseHandle") == 2  # every handle opened is closed


def test_posix_process_check():
    assert locate.alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not locate.alive(child.pid)


def test_windows_daemon_is_started_detached_and_windowless(monkeypatch, tmp_path):
    simulate(monkeypatch, tmp_path, "win32")
    python = tmp_path / "Python312" / "python.exe"
    python.parent.mkdir()
    python.touch()
    (python.parent / "pythonw.exe").touch()
    monkeypatch.setattr(sys, "executable", str(python))
    started = []

    def popen(argv, **options):
        started.append((argv, options))
        if options["creationflags"] & 0x01000000:
            raise PermissionError(5, "Access is denied")  # an editor's job forbids breakaway
        return "process"

    monkeypatch.setattr(subprocess, "Popen", popen)
    assert locate.spawn_daemon() == "process"
    (first, tried), (argv, options) = started
    assert argv == first == [str(python.parent / "pythonw.exe"), "-m", "neural_mirage.cli",
                             "daemon"]
    assert tried["creationflags"] == 0x01000208  # detached, own group, out of the job
    assert options["creationflags"] == 0x00000208  # then without leaving the job
    assert "start_new_session" not in options  # POSIX only


def test_posix_daemon_is_started_in_its_own_session(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert locate.detached() == [{"start_new_session": True}]


def test_the_daemon_starts_and_locks_without_fcntl():
    """Windows has no fcntl: with it hidden, the daemon still starts, holds its endpoint
    against a second daemon, and gives it up when it stops."""
    runtime, cache = short_dir("nm-nofcntl-"), short_dir("nm-nofcntl-cache-")
    hide = ("import sys, runpy; sys.modules['fcntl'] = None; "
            "sys.argv = ['neural-mirage', *sys.argv[1:]]; "
            "runpy.run_module('neural_mirage.cli', run_name='__main__')")
    env = {**os.environ, "NEURAL_MIRAGE_RUNTIME_DIR": str(runtime),
           "NEURAL_MIRAGE_CACHE_DIR": str(cache)}
    command = [sys.executable, "-c", hide, "daemon", "--weights", "random"]
    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        client = Client.connect(f"ipc://{runtime}/daemon.sock", timeout=60)
        client.close()
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"(pid {first.pid}) is already serving" in second.stderr
        first.terminate()
        assert first.wait(30) == 0, first.stderr.read()
        third = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        try:
            Client.connect(f"ipc://{runtime}/daemon.sock", timeout=60).close()
        finally:
            third.terminate()
            third.wait(30)
    finally:
        first.kill()


@pytest.fixture(scope="module")
def tcp_daemon():
    d = start_daemon(None, None, "--bind", f"tcp://127.0.0.1:{free_port()}")
    yield d
    d.stop()


def connection(daemon) -> dict:
    return json.loads((daemon.runtime_dir / "daemon.json").read_text())


def test_loopback_tcp_refuses_a_client_without_the_secret(tcp_daemon, monkeypatch):
    info = connection(tcp_daemon)
    assert info["endpoint"] == tcp_daemon.endpoint and len(info["secret"]) >= 32
    # A ZeroMQ client that does not present the secret: its HELLO is never answered...
    context = zmq.Context()
    raw = context.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(tcp_daemon.endpoint)
    raw.send(P.pack({"type": P.HELLO, "protocol": P.PROTOCOL_VERSION}))
    assert raw.poll(2000) == 0, "the daemon answered a client without the secret"
    raw.close()
    context.term()
    # ...and the client says why, and what to do.
    for secret in ("not-the-secret", None):
        monkeypatch.setenv("NEURAL_MIRAGE_RUNTIME_DIR", str(short_dir("nm-elsewhere-")))
        with pytest.raises(DaemonError) as refused, \
                Client(tcp_daemon.endpoint, timeout=2, secret=secret) as client:
            client.hello()
        assert refused.value.code == P.E_UNAUTHORIZED
        assert "refused this client" in str(refused.value)
        assert "secret in its connection file" in str(refused.value)


def test_loopback_tcp_with_the_secret_from_the_connection_file(tcp_daemon, monkeypatch):
    monkeypatch.setenv("NEURAL_MIRAGE_RUNTIME_DIR", str(tcp_daemon.runtime_dir))
    with Client(timeout=30) as client:  # no configuration: endpoint and secret from the file
        pixels = np.full((48, 64, 3), 120, np.uint8)
        result = client.render(pixels.tobytes(), P.image_meta(64, 48, 3, "u8", "RGB"), TINY)
        client.ack(result.job)
    assert result.header["image"]["width"] == 64
    status = subprocess.run([sys.executable, "-m", "neural_mirage.cli", "status"],
                            env={**os.environ, "NEURAL_MIRAGE_RUNTIME_DIR":
                                 str(tcp_daemon.runtime_dir)},
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "neural-mirage daemon" in status.stdout


def bridge_connection(daemon) -> tuple[socket.socket, object, object]:
    port = connection(daemon)["bridge"]["port"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock, sock.makefile("rb"), sock.makefile("wb")


@pytest.mark.parametrize("first", [{"op": "connect", "secret": "guess"}, {"op": "connect"},
                                   {"op": "classes"}], ids=["wrong", "none", "not-connect"])
def test_the_bridge_port_refuses_a_client_without_the_secret(tcp_daemon, first):
    sock, reader, writer = bridge_connection(tcp_daemon)
    with sock:
        write_message(writer, first)
        header, _ = read_message(reader)
        assert header["type"] == "ERROR" and header["code"] == "unauthorized"
        assert "secret from its connection file" in header["message"]
        assert read_message(reader) is None, "the refused connection stayed open"


def test_the_bridge_port_renders_for_a_plain_socket(tcp_daemon):
    """What a plug-in without pyzmq does, byte for byte, as docs/protocol.md says."""
    secret = connection(tcp_daemon)["bridge"]["secret"]
    sock, reader, writer = bridge_connection(tcp_daemon)
    with sock:
        write_message(writer, {"op": "connect", "secret": secret})
        welcome, _ = read_message(reader)
        assert welcome["type"] == "WELCOME" and welcome["protocol"] == P.PROTOCOL_VERSION
        pixels = bytes(np.full((48, 64, 4), 200, np.uint8))
        write_message(writer, {"op": "submit", "image": P.image_meta(64, 48, 4, "u8", "RGBA"),
                               "params": TINY}, [pixels])
        events = []
        while not events or events[-1][0]["type"] not in ("RESULT", "ERROR", "CANCELLED"):
            events.append(read_message(reader))
        kinds = [header["type"] for header, _ in events]
        assert kinds[0] == "ACCEPTED" and kinds[-1] == "RESULT", kinds
        result, frames = events[-1]
        assert len(frames[0]) == 64 * 48 * 4
        write_message(writer, {"op": "ack", "job": result["job"]})
        assert read_message(reader)[0] == {"type": "ACKED", "job": result["job"]}


def test_a_sandboxed_plugin_without_pyzmq_renders_through_the_daemon(tmp_path):
    """A home with Flatpak GIMP: install-plugin puts the plug-in in the sandbox's folder; the
    daemon (started after, or before) leaves its connection file beside the plug-in's client,
    since the sandbox cannot see the host's runtime folder; the plug-in's own Python, with no
    pyzmq, no msgpack and no platformdirs but the copy, renders through the bridge port."""
    home = tmp_path / "home"
    (home / ".var/app/org.gimp.GIMP").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home)}
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "GIMP3_DIRECTORY"):
        env.pop(name, None)
    installed = subprocess.run([sys.executable, "-m", "neural_mirage.cli", "install-plugin",
                                "gimp", "--weights", "random"], env=env, capture_output=True,
                               text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    plugin = home / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins/neural-mirage"
    config = json.loads((plugin / "_mirage/mirage_config.json").read_text())
    assert config["python"] is None and config["target"] == "flatpak"
    assert config["command"] == str(Path(sys.executable).with_name("neural-mirage"))
    copy = plugin / "_mirage/daemon.json"
    daemon = start_daemon(None, None, env={"HOME": str(home)})
    try:
        assert json.loads(copy.read_text())["bridge"] == connection(daemon)["bridge"]
        script = (
            "import sys; sys.path[:0] = [sys.argv[1]]\n"
            "for name in ('zmq', 'msgpack', 'platformdirs'):\n"
            "    try:\n"
            "        __import__(name); raise SystemExit(name + ' is importable')\n"
            "    except ImportError: pass\n"
            "from _mirage.connection import open_session\n"
            "session = open_session(timeout=30)\n"
            "image = {'width': 64, 'height': 48, 'channels': 3, 'dtype': 'u8', 'order': 'RGB'}\n"
            "accepted = session.submit(bytes([90]) * 64 * 48 * 3, image,"
            " {'size': 64, 'iterations': 2, 'scales': 1})\n"
            "watch = session.watch(accepted['job'])\n"
            "result = None\n"
            "while result is None: result = watch.poll(1.0)\n"
            "session.ack(result.job); session.close()\n"
            "print(type(session).__name__, len(result.pixels))\n")
        sandbox = {"PATH": os.environ["PATH"], "HOME": str(home), "FLATPAK_ID":
                   "org.gimp.GIMP", "NEURAL_MIRAGE_RUNTIME_DIR": str(tmp_path / "sandbox-run")}
        # -I -S: the editor's Python knows nothing of the virtual environment or its packages.
        ran = subprocess.run([sys.executable, "-I", "-S", "-c", script, str(plugin)],
                             env=sandbox, capture_output=True, text=True, timeout=180)
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert ran.stdout.split() == ["BridgeSession", str(64 * 48 * 3)]
    finally:
        daemon.stop()
    assert not copy.exists(), "the stopped daemon left its connection file in the plug-in"
    removed = subprocess.run([sys.executable, "-m", "neural_mirage.cli", "uninstall-plugin",
                              "all"], env=env, capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert not plugin.exists()


@pytest.mark.parametrize("left", [False, True], ids=["no-file", "a-killed-daemons-file"])
def test_a_sandboxed_editor_says_to_start_the_daemon_itself(tmp_path, monkeypatch, left):
    from neural_mirage.client import connection as C

    monkeypatch.setenv("FLATPAK_ID", "org.kde.krita")
    monkeypatch.setenv("NEURAL_MIRAGE_RUNTIME_DIR", str(tmp_path / "sandbox-run"))
    monkeypatch.setattr(C, "plugin_config", lambda: {
        "python": None, "target": "flatpak", "command": "/opt/nm/.venv/bin/neural-mirage"})
    monkeypatch.setattr(locate, "_HERE", tmp_path)  # where the daemon's copy would be
    if left:  # the copy a killed daemon left: its bridge port answers no more
        (tmp_path / "daemon.json").write_text(json.dumps({
            "endpoint": "ipc:///nowhere", "pid": 1, "starting": False,
            "bridge": {"host": "127.0.0.1", "port": free_port(), "secret": "old"}}))
    started = time.monotonic()
    with pytest.raises(C.MirageError) as error:
        C.open_session(timeout=2)
    assert time.monotonic() - started < 5
    assert str(error.value).startswith("Start neural-mirage's render daemon outside the editor "
                                       "first, with '/opt/nm/.venv/bin/neural-mirage service "
                                       "enable'")  # the command install-plugin ran, off PATH
    assert "Flatpak sandbox" in str(error.value)
