"""The daemon as a per-user service that starts at login, on Linux, macOS and Windows.

One interface (:func:`install` and :func:`control`), three backends, picked by ``sys.platform``
when an action runs, never at import: a test can simulate each OS, and nothing imported here
exists on one OS only (``winreg`` is imported inside the Windows backend).

- Linux: a systemd user unit, driven with ``systemctl --user``.
- macOS: a launchd LaunchAgent in ``~/Library/LaunchAgents``, driven with ``launchctl``.
- Windows: a value of the per-user ``Run`` registry key, which Windows runs at every logon
  (no administrator rights needed), plus a small record of the command beside the settings.

Every action needs no administrator rights and returns a sentence for the CLI to print.
Every external command runs through :func:`_run` and every registry access through
:func:`_registry`: systemctl, launchctl and the registry cannot run in the tests, which replace
exactly these two seams.
"""

from __future__ import annotations

import contextlib
import json
import os
import plistlib
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Literal

from neural_mirage.client.locate import daemon_command, log_file, spawn_daemon, user_dirs

UNIT = "neural-mirage.service"
LABEL = "org.neural-mirage.daemon"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "neural-mirage"
#: Microsoft's "Run and RunOnce Registry Keys": "The data value for a key is a command line no
#: longer than 260 characters."
RUN_LIMIT = 260
ACTIONS = ("install", "uninstall", "enable", "disable", "start", "stop", "status")
HOW_TO_INSTALL = "run 'neural-mirage service install'"
INSTALL_FIRST = f"the service is not installed: {HOW_TO_INSTALL}"


class ServiceError(RuntimeError):
    """The service manager is missing or refused; the message says what to do instead."""


class _Missing(ServiceError):
    """The service manager's command is not on this system at all."""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run one external command (systemctl, launchctl), capturing its output: the one seam
    through which this module touches a service manager."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def _command(argv: list[str], hint: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """:func:`_run`, with a missing program or a failure turned into a :class:`ServiceError`
    (``hint`` says what to do without the program)."""
    try:
        result = _run(argv)
    except FileNotFoundError:
        raise _Missing(f"{argv[0]} is not available here: {hint}") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"{shlex.join(argv)} did not answer within 60 s") from None
    if check and result.returncode != 0:
        why = (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
        raise ServiceError(f"{shlex.join(argv)} failed: {why}")
    return result


def install(daemon_args: list[str]) -> str:
    """Write the service for this Python's daemon with ``daemon_args``; starts nothing."""
    return backend().install(daemon_command(*daemon_args))


def control(action: str) -> str:
    """uninstall, enable (now and at every login), disable, start, stop or status."""
    if action not in ACTIONS or action == "install":
        raise ValueError(f"unknown service action {action!r}")
    return getattr(backend(), action)()


def backend() -> Systemd | Launchd | RunKey:
    """This OS's backend, chosen now (not at import)."""
    if sys.platform == "win32":
        return RunKey()
    if sys.platform == "darwin":
        return Launchd()
    return Systemd()


# -- Linux: systemd --user ---------------------------------------------------------------------

def unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "systemd" / "user" / UNIT


def unit_text(command: list[str]) -> str:
    """The unit file (template ``neural-mirage.service``) that runs ``command``. systemd reads
    ``%`` as a specifier and ``$`` as a variable in ExecStart, so both are doubled."""
    template = resources.files("neural_mirage.install").joinpath(UNIT).read_text()
    exec_line = shlex.join(command).replace("%", "%%").replace("$", "$$")
    return template.replace("@EXEC@", exec_line)


_BY_HAND = ("run 'neural-mirage daemon' yourself (for example from your session's autostart), "
            "or 'neural-mirage submit --spawn'")


def _systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return _command(["systemctl", "--user", *args], _BY_HAND, check)
    except _Missing:
        raise
    except ServiceError as exc:
        if "Failed to connect to bus" in str(exc):  # no user session (ssh, a container)
            raise ServiceError(f"{exc}. There is no systemd user session here: {_BY_HAND}"
                               ) from None
        raise


class Systemd:
    """A systemd user unit: the user's service manager starts it, restarts it after a crash,
    and collects its output in the journal."""

    def installed(self) -> bool:
        return unit_path().exists()

    def _require(self) -> None:
        if not self.installed():
            raise ServiceError(INSTALL_FIRST)

    def _reload(self) -> None:
        """Let a running systemd see the unit file's change; without one (no systemctl, no
        user bus) the file serves all the same at the next login."""
        with contextlib.suppress(_Missing):
            _systemctl("daemon-reload", check=False)

    def install(self, command: list[str]) -> str:
        path = unit_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(unit_text(command))
        self._reload()
        return (f"Installed {path}. 'neural-mirage service enable' starts it now and at every "
                "login; 'neural-mirage service start' only now.")

    def uninstall(self) -> str:
        path = unit_path()
        if not self.installed():
            return f"Nothing to uninstall: there is no {path}."
        try:
            _systemctl("disable", "--now", UNIT)
            done = "Stopped, disabled and removed"
        except _Missing:  # no systemd: nothing can have started or enabled it
            done = "Removed"
        except ServiceError as exc:  # no user bus, say: the file goes all the same
            done = f"{exc}. Removed"
        path.unlink()
        self._reload()
        return f"{done} {path}."

    def enable(self) -> str:
        self._require()
        _systemctl("enable", "--now", UNIT)
        return f"Enabled: the daemon runs now and at every login. Its log: {log_file()}"

    def disable(self) -> str:
        self._require()
        _systemctl("disable", "--now", UNIT)
        return "Disabled: the daemon is stopped and no longer starts at login."

    def start(self) -> str:
        self._require()
        _systemctl("start", UNIT)
        return f"Started the daemon (not at login unless enabled). Its log: {log_file()}"

    def stop(self) -> str:
        self._require()
        _systemctl("stop", UNIT)
        return "Stopped the daemon."

    def status(self) -> str:
        if not self.installed():
            return f"Not installed: {HOW_TO_INSTALL}."
        # is-enabled exits 1 when disabled, is-active 3 when inactive: answers, not failures
        enabled = _systemctl("is-enabled", UNIT, check=False).stdout.strip() or "unknown"
        active = _systemctl("is-active", UNIT, check=False).stdout.strip() or "unknown"
        return (f"{UNIT}: {enabled} at login, {active} now (details: "
                f"systemctl --user status {UNIT}).")


# -- macOS: launchd LaunchAgent ----------------------------------------------------------------

def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def output_log() -> Path:
    """The daemon's stdout and stderr under launchd (a traceback before its own log opens)."""
    return log_file().with_name("daemon-output.log")


def plist_data(command: list[str]) -> dict[str, object]:
    """The LaunchAgent's property list (launchd.plist(5))."""
    return {
        "Label": LABEL,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        # Restarted after a crash, not after a clean stop (SIGTERM, SHUTDOWN: exit status 0).
        "KeepAlive": {"SuccessfulExit": False},
        "StandardOutPath": str(output_log()),
        "StandardErrorPath": str(output_log()),
        # Interactive: a person waits in the editor for each render. Unset (or Standard)
        # launchd throttles the job's CPU and I/O, Background more so, and Adaptive follows
        # XPC activity, which a ZeroMQ socket never shows.
        "ProcessType": "Interactive",
    }


def _launchctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _command(["launchctl", *args], "run 'neural-mirage daemon' yourself", check)


class Launchd:
    """A LaunchAgent in the user's GUI session (``gui/<uid>``): launchd starts it at login and
    restarts it after a crash. launchd loads every plist in ~/Library/LaunchAgents at login
    unless the service is disabled, a state that "persists across boots" (launchctl(1)): so
    a first install disables it, as on the other systems nothing starts before 'enable'."""

    def __init__(self) -> None:
        self.domain = f"gui/{os.getuid()}"
        self.target = f"{self.domain}/{LABEL}"

    def installed(self) -> bool:
        return plist_path().exists()

    def state(self) -> str | None:
        """None when launchd has not loaded the agent, else its state (``running``, ...)."""
        result = _launchctl("print", self.target, check=False)
        if result.returncode != 0:  # 113: "Could not find service"
            return None
        found = re.search(r"^\s*state = (\S+)", result.stdout, re.MULTILINE)
        return found.group(1) if found else "loaded"

    def install(self, command: list[str]) -> str:
        path = plist_path()
        if not self.installed():
            _launchctl("disable", self.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        output_log().parent.mkdir(parents=True, exist_ok=True)  # launchd makes no folders
        with open(path, "wb") as f:
            plistlib.dump(plist_data(command), f)
        path.chmod(0o644)  # launchd refuses a plist that others may write
        return (f"Installed {path}. 'neural-mirage service enable' starts it now and at every "
                "login.")

    def uninstall(self) -> str:
        path = plist_path()
        loaded = self.state() is not None
        if not self.installed() and not loaded:
            return f"Nothing to uninstall: there is no {path}."
        if loaded:
            _launchctl("bootout", self.target)
        path.unlink(missing_ok=True)
        return f"Stopped, unloaded and removed {path}."

    def enable(self) -> str:
        if not self.installed():
            raise ServiceError(INSTALL_FIRST)
        _launchctl("enable", self.target)
        if self.state() is None:
            _launchctl("bootstrap", self.domain, str(plist_path()))  # RunAtLoad: starts it
        else:
            _launchctl("kickstart", self.target)  # loaded: start it unless it runs
        return f"Enabled: the daemon runs now and at every login. Its log: {log_file()}"

    def disable(self) -> str:
        if self.state() is not None:
            _launchctl("bootout", self.target)
        _launchctl("disable", self.target)
        return "Disabled: the daemon is stopped and no longer starts at login."

    def start(self) -> str:
        if not self.installed():
            raise ServiceError(INSTALL_FIRST)
        if self.state() is None:
            raise ServiceError("launchd has not loaded the agent: run 'neural-mirage service "
                               "enable' (starts it now and at every login)")
        _launchctl("kickstart", self.target)
        return f"Started the daemon. Its log: {log_file()}"

    def stop(self) -> str:
        state = self.state()
        if state != "running":
            return "The daemon is not running under launchd."
        _launchctl("kill", "SIGTERM", self.target)
        return "Asked the daemon to stop (SIGTERM); launchd restarts it only after a crash."

    def status(self) -> str:
        state = self.state()
        if state is None:
            if not self.installed():
                return f"Not installed: {HOW_TO_INSTALL}."
            return (f"Installed ({plist_path()}), not loaded: 'neural-mirage service enable' "
                    "starts it now and at every login.")
        return f"{self.target}: loaded, {state} (details: launchctl print {self.target})."


# -- Windows: the per-user Run key -------------------------------------------------------------

def record_path() -> Path:
    """What install writes on Windows: the daemon's command, for 'enable' and 'start'."""
    return Path(user_dirs().user_config_dir) / "service.json"


def run_value(command: list[str]) -> str:
    """The Run value's data: ``command`` as one Windows command line."""
    return subprocess.list2cmdline(command)


def _registry(op: Literal["get", "set", "delete"], data: str | None = None) -> str | None:
    """Read, write or remove the ``neural-mirage`` value of HKCU's Run key: the one place
    that touches the registry. Returns the value's data (None when there is none)."""
    import winreg  # Windows only

    access = winreg.KEY_QUERY_VALUE | winreg.KEY_SET_VALUE
    try:
        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, access) as key:
            if op == "set":
                winreg.SetValueEx(key, RUN_VALUE, 0, winreg.REG_SZ, data)
                return data
            if op == "get":
                return winreg.QueryValueEx(key, RUN_VALUE)[0]
            winreg.DeleteValue(key, RUN_VALUE)
    except FileNotFoundError:  # no such value: nothing to read or remove
        pass
    except OSError as exc:
        raise ServiceError(f"could not {op} HKEY_CURRENT_USER\\{RUN_KEY}\\{RUN_VALUE}: "
                           f"{exc}") from None
    return None


def _running() -> str | None:
    """How a daemon runs (``running at <endpoint>``, ``starting``), or None when none does."""
    from neural_mirage.client.locate import starting_daemon
    from neural_mirage.client.zmq_client import Client, DaemonError

    if starting_daemon() is not None:  # loading its model: it answers in a few seconds
        return "starting"
    try:
        with Client.connect(timeout=2.0) as client:
            return f"running at {client.endpoint}"
    except DaemonError:
        return None


def _shutdown() -> bool:
    """Ask the running daemon to stop (SHUTDOWN); False when none answers."""
    from neural_mirage.client.zmq_client import Client, DaemonError

    try:
        client = Client.connect(timeout=5.0)
    except DaemonError:
        return False
    with client:
        client.shutdown()
    return True


class RunKey:
    """HKCU's Run key: Windows starts the daemon at every logon of this user. There is no
    service manager to ask, so start spawns the daemon detached, and stop and status talk
    to whichever daemon answers (also one an editor started)."""

    def command(self) -> list[str]:
        """The daemon's command, as install recorded it."""
        try:
            command = json.loads(record_path().read_text())["command"]
        except FileNotFoundError:
            raise ServiceError(INSTALL_FIRST) from None
        except (ValueError, KeyError, TypeError):
            raise ServiceError(f"{record_path()} is damaged: run 'neural-mirage service "
                               "install' again") from None
        return [str(part) for part in command]

    def install(self, command: list[str]) -> str:
        line = run_value(command)
        if len(line) > RUN_LIMIT:
            raise ServiceError(f"the daemon's command line is {len(line)} characters, and "
                               f"Windows runs at most {RUN_LIMIT} from the Run key: install "
                               "from a Python, or with a weights file, at a shorter path")
        path = record_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"command": command}, indent=2))
        if _registry("get") is not None:  # enabled: the next logon uses the new command
            _registry("set", line)
        return (f"Installed {path}. 'neural-mirage service enable' starts it now and at every "
                "logon.")

    def uninstall(self) -> str:
        path = record_path()
        if not path.exists() and _registry("get") is None:
            return f"Nothing to uninstall: there is no {path}."
        _registry("delete")
        stopped = _shutdown()
        path.unlink(missing_ok=True)
        return (f"{'Stopped the daemon, removed' if stopped else 'Removed'} the Run value "
                f"{RUN_VALUE} and {path}.")

    def enable(self) -> str:
        _registry("set", run_value(self.command()))
        return f"Enabled: the daemon starts at every logon. {self.start()}"

    def disable(self) -> str:
        _registry("delete")
        return f"Disabled: the daemon no longer starts at logon. {self.stop()}"

    def start(self) -> str:
        command = self.command()
        if (running := _running()) is not None:
            return f"The daemon is already {running}."
        process = spawn_daemon(command)
        return f"Started the daemon (pid {process.pid}). Its log: {log_file()}"

    def stop(self) -> str:
        return "Asked the daemon to stop." if _shutdown() else "No daemon was running."

    def status(self) -> str:
        if not record_path().exists():
            return f"Not installed: {HOW_TO_INSTALL}."
        at_logon = "starts" if _registry("get") is not None else "does not start"
        return f"Installed ({record_path()}); {at_logon} at logon; {_running() or 'not running'}."
