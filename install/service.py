"""The daemon as a systemd --user service: write the unit, then start, stop and ask systemctl."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from neural_mirage.client.locate import daemon_command

UNIT = "neural-mirage.service"


class ServiceError(RuntimeError):
    """systemctl is missing or failed; the message says what to do instead."""


def unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "systemd" / "user" / UNIT


def unit_text(daemon_args: list[str]) -> str:
    """The unit file, starting this Python's daemon with ``daemon_args``."""
    template = resources.files("neural_mirage.install").joinpath(UNIT).read_text()
    command = daemon_command(*daemon_args)
    return template.replace("@EXEC@", shlex.join(command))


def install(daemon_args: list[str]) -> Path:
    path = unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text(daemon_args))
    if shutil.which("systemctl"):
        _systemctl("daemon-reload", check=False)
    return path


def _systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("systemctl") is None:
        raise ServiceError("systemctl is not available here: run 'neural-mirage daemon' "
                           "yourself (for example from your session's autostart)")
    result = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True)
    allowed = (0, 3) if args[0] == "status" else (0,)  # 3: status of a stopped unit
    if check and result.returncode not in allowed:
        raise ServiceError(f"systemctl --user {' '.join(args)} failed: "
                           f"{(result.stderr or result.stdout).strip()}")
    return result


def control(action: str) -> str:
    """start, stop, enable, disable or status; returns systemctl's output."""
    if action in ("start", "enable") and not unit_path().exists():
        raise ServiceError("the service is not installed: run 'neural-mirage service install'")
    args = ("enable", "--now", UNIT) if action == "enable" else (action, UNIT)
    result = _systemctl(*args)
    return (result.stdout or result.stderr).strip()
