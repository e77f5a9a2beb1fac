"""The per-user service on each OS, simulated here: ``sys.platform`` and the user's folders
point at the OS and into tmp_path, and the only stand-ins are the two seams of
``install.service``: its command runner (systemctl, launchctl) and its registry helper."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest

from neural_mirage import cli
from neural_mirage.client.locate import daemon_command, log_file
from neural_mirage.install import service
from neural_mirage.install.service import LABEL, RUN_VALUE, UNIT, ServiceError

from .daemon_process import windows_folders_from_env

ARGS = ["--weights", "random", "--arch", "vgg19", "--devices", "cpu"]
UID = 501
TARGET = f"gui/{UID}/{LABEL}"


class Runner:
    """Stands in for ``service._run``: records each argv and answers from ``answers``, keyed
    by the subcommand (``print``, ``is-active``, ...): (exit code, stdout, stderr)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.answers: dict[str, tuple[int, str, str]] = {}
        self.missing = False

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if self.missing:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        self.calls.append(list(argv))
        sub = argv[2] if argv[1:2] == ["--user"] else argv[1]
        code, out, err = self.answers.get(sub, (0, "", ""))
        return subprocess.CompletedProcess(argv, code, out, err)


class Registry:
    """Stands in for ``service._registry``: the Run key's values, in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def __call__(self, op: str, data: str | None = None) -> str | None:
        if op == "set":
            assert isinstance(data, str)
            self.values[RUN_VALUE] = data
        elif op == "delete":
            self.values.pop(RUN_VALUE, None)
        else:
            assert op == "get"
        return self.values.get(RUN_VALUE)


@pytest.fixture()
def runner(monkeypatch) -> Runner:
    fake = Runner()
    monkeypatch.setattr(service, "_run", fake)
    return fake


@pytest.fixture()
def home(monkeypatch, tmp_path) -> Path:
    """A user whose every folder lies in tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME",
                 "NEURAL_MIRAGE_RUNTIME_DIR", "NEURAL_MIRAGE_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture()
def linux(monkeypatch, home, runner) -> Runner:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    return runner


@pytest.fixture()
def macos(monkeypatch, home, runner) -> Runner:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(os, "getuid", lambda: UID)
    return runner


def simulate_windows(monkeypatch, tmp_path: Path) -> Registry:
    """Windows, with a Python that has pythonw.exe beside python.exe, and the Run key."""
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    windows_folders_from_env(monkeypatch)
    python = tmp_path / "Python312" / "python.exe"
    python.parent.mkdir(exist_ok=True)
    python.touch()
    (python.parent / "pythonw.exe").touch()
    monkeypatch.setattr(sys, "executable", str(python))
    registry = Registry()
    monkeypatch.setattr(service, "_registry", registry)
    return registry


@pytest.fixture()
def windows(monkeypatch, tmp_path, home, runner) -> Registry:
    return simulate_windows(monkeypatch, tmp_path)


class Popen:
    """Stands in for subprocess.Popen where a simulated Windows would start a daemon."""

    started: ClassVar[list[tuple[list[str], dict]]] = []

    def __init__(self, argv: list[str], **kwargs: object) -> None:
        Popen.started.append((list(argv), kwargs))
        self.pid = 4242


@pytest.fixture()
def popen(monkeypatch) -> list[tuple[list[str], dict]]:
    Popen.started = []
    monkeypatch.setattr(subprocess, "Popen", Popen)
    return Popen.started


# -- Linux ---------------------------------------------------------------------------------------

def test_linux_install_writes_the_unit_under_xdg_config_home(linux, home, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    said = service.install(ARGS)
    unit = tmp_path / "config" / "systemd" / "user" / UNIT
    assert str(unit) in said and "service enable" in said
    text = unit.read_text()
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_line == f"ExecStart={shlex.join(daemon_command(*ARGS))}"
    assert "WantedBy=default.target" in text and "@EXEC@" not in text
    assert linux.calls == [["systemctl", "--user", "daemon-reload"]]


def test_linux_unit_defaults_to_dot_config_and_escapes_percent_and_dollar(linux, home,
                                                                         monkeypatch):
    monkeypatch.setattr(sys, "executable", "/opt/py%i$HOME/bin/python3")
    service.install(ARGS)
    text = (home / ".config" / "systemd" / "user" / UNIT).read_text()
    assert "ExecStart='/opt/py%%i$$HOME/bin/python3' -m neural_mirage.cli daemon" in text


@pytest.mark.parametrize(("action", "argv", "said"), [
    ("enable", ["enable", "--now", UNIT], "now and at every login"),
    ("disable", ["disable", "--now", UNIT], "no longer starts at login"),
    ("start", ["start", UNIT], "Started"),
    ("stop", ["stop", UNIT], "Stopped"),
])
def test_linux_actions_drive_systemctl_user(linux, action, argv, said):
    service.install(ARGS)
    linux.calls.clear()
    assert said in service.control(action)
    assert linux.calls == [["systemctl", "--user", *argv]]


def test_linux_status_asks_whether_enabled_and_active(linux):
    assert service.control("status") == "Not installed: run 'neural-mirage service install'."
    assert linux.calls == []
    service.install(ARGS)
    linux.calls.clear()
    linux.answers = {"is-enabled": (1, "disabled\n", ""), "is-active": (3, "inactive\n", "")}
    said = service.control("status")
    assert "disabled at login" in said and "inactive now" in said
    assert linux.calls == [["systemctl", "--user", "is-enabled", UNIT],
                           ["systemctl", "--user", "is-active", UNIT]]


def test_linux_uninstall_stops_disables_and_removes_the_unit(linux, home):
    service.install(ARGS)
    unit = home / ".config" / "systemd" / "user" / UNIT
    assert unit.exists()
    linux.calls.clear()
    assert str(unit) in service.control("uninstall")
    assert not unit.exists()
    assert linux.calls == [["systemctl", "--user", "disable", "--now", UNIT],
                           ["systemctl", "--user", "daemon-reload"]]
    assert service.control("uninstall").startswith("Nothing to uninstall")


def test_linux_without_systemctl_install_and_uninstall_still_work(linux, home):
    linux.missing = True
    service.install(ARGS)
    unit = home / ".config" / "systemd" / "user" / UNIT
    assert unit.exists()
    with pytest.raises(ServiceError, match="systemctl is not available here"):
        service.control("start")
    service.control("uninstall")
    assert not unit.exists()


def test_linux_without_a_user_bus_install_works_and_uninstall_removes_the_unit(linux, home):
    no_bus = (1, "", "Failed to connect to bus: No medium found")
    linux.answers = {"daemon-reload": no_bus, "disable": no_bus}
    assert service.install(ARGS).startswith("Installed")
    said = service.control("uninstall")
    assert "Failed to connect to bus" in said and "Removed" in said
    assert not (home / ".config" / "systemd" / "user" / UNIT).exists()


def test_linux_actions_before_install_say_to_install(linux):
    for action in ("enable", "disable", "start", "stop"):
        with pytest.raises(ServiceError, match="not installed: run 'neural-mirage service"):
            service.control(action)
    assert linux.calls == []


def test_linux_a_failing_systemctl_says_what_it_said(linux):
    service.install(ARGS)
    linux.answers = {"enable": (1, "", "Failed to connect to bus: No medium found")}
    with pytest.raises(ServiceError, match=r"enable --now neural-mirage\.service failed: "
                                           r"Failed to connect to bus") as failed:
        service.control("enable")
    # and, with no user session to run it in, what to do instead
    assert "no systemd user session here: run 'neural-mirage daemon' yourself" in \
        str(failed.value)


# -- macOS ---------------------------------------------------------------------------------------

def test_macos_install_writes_a_launch_agent(macos, home):
    said = service.install(ARGS)
    path = home / "Library" / "LaunchAgents" / "org.neural-mirage.daemon.plist"
    assert str(path) in said
    with open(path, "rb") as f:
        agent = plistlib.load(f)
    assert agent["Label"] == LABEL
    assert agent["ProgramArguments"] == daemon_command(*ARGS)
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["ProcessType"] == "Interactive"
    out = Path(agent["StandardOutPath"])
    assert out == Path(agent["StandardErrorPath"])
    assert out.parent == log_file().parent == home / "Library" / "Caches" / "neural-mirage"
    assert out != log_file() and out.parent.is_dir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    # Off at login until 'enable', as on the other systems; a reinstall keeps what the user chose.
    assert macos.calls == [["launchctl", "disable", TARGET]]
    macos.calls.clear()
    service.install(ARGS)
    assert macos.calls == []


def test_macos_enable_bootstraps_an_unloaded_agent(macos, home):
    service.install(ARGS)
    macos.calls.clear()
    macos.answers = {"print": (113, "", "Could not find service")}
    assert "now and at every login" in service.control("enable")
    plist = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    assert macos.calls == [["launchctl", "enable", TARGET], ["launchctl", "print", TARGET],
                           ["launchctl", "bootstrap", f"gui/{UID}", str(plist)]]


def test_macos_enable_kickstarts_a_loaded_agent(macos):
    service.install(ARGS)
    macos.calls.clear()
    macos.answers = {"print": (0, "gui/501/org.neural-mirage.daemon = {\n\tstate = not "
                                  "running\n}\n", "")}
    service.control("enable")
    assert macos.calls == [["launchctl", "enable", TARGET], ["launchctl", "print", TARGET],
                           ["launchctl", "kickstart", TARGET]]


@pytest.mark.parametrize(("action", "state", "argv"), [
    ("disable", "running", [["bootout", TARGET], ["disable", TARGET]]),
    ("disable", None, [["disable", TARGET]]),
    ("start", "not running", [["kickstart", TARGET]]),
    ("stop", "running", [["kill", "SIGTERM", TARGET]]),
    ("stop", "not running", []),
    ("stop", None, []),
])
def test_macos_actions_drive_launchctl_in_the_gui_domain(macos, action, state, argv):
    service.install(ARGS)
    macos.calls.clear()
    macos.answers = {"print": (113, "", "") if state is None else (0, f"state = {state}\n", "")}
    service.control(action)
    assert macos.calls == [["launchctl", "print", TARGET]] + [["launchctl", *a] for a in argv]


def test_macos_start_of_an_unloaded_agent_says_to_enable(macos):
    service.install(ARGS)
    macos.answers = {"print": (113, "", "")}
    with pytest.raises(ServiceError, match="service enable"):
        service.control("start")


def test_macos_status(macos):
    macos.answers = {"print": (113, "", "")}
    assert service.control("status").startswith("Not installed")
    service.install(ARGS)
    assert "not loaded" in service.control("status")
    macos.answers = {"print": (0, "\tstate = running\n\tpid = 77\n", "")}
    assert service.control("status") == (f"{TARGET}: loaded, running (details: launchctl print "
                                         f"{TARGET}).")


def test_macos_uninstall_boots_out_and_removes_the_plist(macos, home):
    service.install(ARGS)
    plist = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    macos.calls.clear()
    macos.answers = {"print": (0, "state = running\n", "")}
    assert str(plist) in service.control("uninstall")
    assert not plist.exists()
    assert macos.calls == [["launchctl", "print", TARGET], ["launchctl", "bootout", TARGET]]


# -- Windows -------------------------------------------------------------------------------------

def test_windows_install_records_the_pythonw_command_and_enable_sets_the_run_value(
        windows, tmp_path, runner, popen):
    said = service.install(ARGS)
    record = tmp_path / "Local" / "neural-mirage" / "service.json"
    assert str(record) in said
    command = json.loads(record.read_text())["command"]
    pythonw = str(tmp_path / "Python312" / "pythonw.exe")
    assert command == [pythonw, "-m", "neural_mirage.cli", "daemon", *ARGS]
    assert windows.values == {}  # nothing starts at logon before 'enable'
    said = service.control("enable")
    assert windows.values == {"neural-mirage": subprocess.list2cmdline(command)}
    assert "every logon" in said and "pid 4242" in said
    assert [argv for argv, _ in popen] == [command]
    assert runner.calls == []


def test_windows_run_value_quotes_a_path_with_spaces(windows, tmp_path, monkeypatch, popen):
    python = tmp_path / "Program Files" / "Python" / "python.exe"
    python.parent.mkdir(parents=True)
    python.touch()  # no pythonw.exe beside it: python.exe itself
    monkeypatch.setattr(sys, "executable", str(python))
    service.install(ARGS)
    service.control("enable")
    value = windows.values[RUN_VALUE]
    assert value.startswith(f'"{python}" -m neural_mirage.cli daemon ')
    assert value == subprocess.list2cmdline([str(python), "-m", "neural_mirage.cli", "daemon",
                                             *ARGS])


def test_windows_start_spawns_the_daemon_detached(windows, popen):
    service.install(ARGS)
    said = service.control("start")
    assert said.startswith("Started the daemon (pid 4242)")
    assert windows.values == {}  # started now, not at logon
    (argv, options), = popen
    assert argv == daemon_command(*ARGS)
    assert argv[0].endswith("pythonw.exe")
    assert options["creationflags"] & 0x8  # DETACHED_PROCESS
    assert "start_new_session" not in options
    assert options["stdin"] == subprocess.DEVNULL


def test_windows_reinstall_updates_an_enabled_run_value(windows, popen):
    service.install(ARGS)
    service.control("enable")
    service.install(["--weights", "random", "--devices", "cuda:1"])
    assert windows.values[RUN_VALUE].endswith("daemon --weights random --devices cuda:1")


def test_windows_disable_removes_the_run_value(windows, popen):
    service.install(ARGS)
    service.control("enable")
    said = service.control("disable")
    assert windows.values == {}
    assert said == "Disabled: the daemon no longer starts at logon. No daemon was running."


def test_windows_uninstall_removes_the_run_value_and_the_record(windows, tmp_path, popen):
    service.install(ARGS)
    service.control("enable")
    record = tmp_path / "Local" / "neural-mirage" / "service.json"
    assert record.exists()
    said = service.control("uninstall")
    assert windows.values == {} and not record.exists()
    assert said == f"Removed the Run value neural-mirage and {record}."
    assert service.control("uninstall").startswith("Nothing to uninstall")


def test_windows_status(windows, popen):
    assert service.control("status").startswith("Not installed")
    service.install(ARGS)
    assert "does not start at logon; not running" in service.control("status")
    service.control("enable")
    assert "; starts at logon; not running" in service.control("status")


def test_windows_needs_install_first_and_a_short_command(windows, tmp_path, popen):
    for action in ("enable", "start"):
        with pytest.raises(ServiceError, match="not installed"):
            service.control(action)
    long_path = "C:\\Users\\someone\\" + "weights\\" * 30 + "vgg19.pth"
    with pytest.raises(ServiceError, match="at most 260"):
        service.install(["--weights", "file", "--weights-path", long_path])
    assert windows.values == {} and popen == []
    assert not (tmp_path / "Local" / "neural-mirage" / "service.json").exists()


def test_windows_stop_and_status_reach_a_real_daemon(monkeypatch, tmp_path, home, runner):
    """stop sends SHUTDOWN to whichever daemon answers: here a real one (random weights),
    started on this machine before Windows is simulated."""
    from .daemon_process import start_daemon

    daemon = start_daemon()
    try:
        simulate_windows(monkeypatch, tmp_path)
        monkeypatch.setenv("NEURAL_MIRAGE_RUNTIME_DIR", str(daemon.runtime_dir))
        service.install(ARGS)
        assert f"running at {daemon.endpoint}" in service.control("status")
        assert service.control("stop") == "Asked the daemon to stop."
        assert daemon.process.wait(30) == 0
    finally:
        daemon.stop()


# -- the CLI, and imports ------------------------------------------------------------------------

def test_cli_service_commands_print_the_sentence(linux, home, capsys):
    assert cli.main(["service", "install", "--weights", "random", "--devices", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Installed {home / '.config' / 'systemd' / 'user' / UNIT}.")
    assert cli.main(["service", "enable"]) == 0
    assert capsys.readouterr().out.startswith("Enabled: the daemon runs now")
    assert cli.main(["service", "uninstall"]) == 0
    assert capsys.readouterr().out.startswith("Stopped, disabled and removed")
    assert linux.calls[-2:] == [["systemctl", "--user", "disable", "--now", UNIT],
                                ["systemctl", "--user", "daemon-reload"]]


def test_cli_service_on_macos_and_windows(macos, monkeypatch, tmp_path, capsys, popen):
    assert cli.main(["service", "install", "--weights", "random"]) == 0
    assert "org.neural-mirage.daemon.plist" in capsys.readouterr().out
    assert macos.calls == [["launchctl", "disable", TARGET]]
    simulate_windows(monkeypatch, tmp_path)
    assert cli.main(["service", "status"]) == 0
    assert capsys.readouterr().out == "Not installed: run 'neural-mirage service install'.\n"


def test_cli_without_systemctl_is_a_one_line_error(linux, capsys):
    assert cli.main(["service", "install", "--weights", "random"]) == 0
    capsys.readouterr()
    linux.missing = True
    assert cli.main(["service", "start"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("neural-mirage: error: systemctl is not available here")
    assert len(captured.err.strip().splitlines()) == 1


def test_importing_the_service_needs_no_module_of_one_os():
    """Nothing at module level may exist on one OS only: with Windows' and POSIX's own
    modules hidden, the module imports and picks each backend."""
    code = textwrap.dedent("""
        import sys
        for name in ("winreg", "_winapi", "msvcrt", "fcntl", "termios", "pwd", "grp",
                     "resource"):
            sys.modules[name] = None
        import neural_mirage.install.service as service
        for platform in ("linux", "darwin", "win32"):
            sys.platform = platform
            print(type(service.backend()).__name__)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Systemd", "Launchd", "RunKey"]
