"""``neural-mirage install-plugin krita|gimp``: copy a plug-in where its editor looks for it.

Each installed plug-in gets a private ``_mirage`` package: a copy of the whole client package
(:mod:`neural_mirage.client`, so it never imports neural_mirage from the editor's Python), and
``mirage_config.json``, which records this Python so the plug-in can start the daemon, or the
relay when the editor's Python has no pyzmq.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

KRITA_PLUGIN = "neural_mirage_krita"
GIMP_PLUGIN = "neural-mirage"


def _source() -> Path:
    return Path(str(resources.files("neural_mirage.plugins")))


def _client_source() -> Path:
    return Path(str(resources.files("neural_mirage.client")))


def _copy_package(source: Path, package: Path) -> Path:
    """Replace ``package`` with a fresh copy of ``source`` (an upgrade leaves no stale files)."""
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def _vendor(package: Path, daemon_args: list[str]) -> None:
    target = _copy_package(_client_source(), package / "_mirage")
    (target / "mirage_config.json").write_text(json.dumps(
        {"python": sys.executable, "daemon_args": daemon_args}, indent=1))


def krita_resource_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "krita"


def install_krita(dest: Path | None = None, daemon_args: list[str] | None = None) -> Path:
    """Install into Krita's resource folder and enable it in kritarc."""
    resource_dir = dest or krita_resource_dir()
    pykrita = resource_dir / "pykrita"
    package = _copy_package(_source() / "krita" / KRITA_PLUGIN, pykrita / KRITA_PLUGIN)
    shutil.copy2(_source() / "krita" / f"{KRITA_PLUGIN}.desktop", pykrita)
    actions = resource_dir / "actions"
    actions.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_source() / "krita" / f"{KRITA_PLUGIN}.action", actions)
    _vendor(package, daemon_args or [])
    if dest is None:
        _enable_in_kritarc()
    return package


def _enable_in_kritarc() -> None:
    """Set ``[python] enable_neural_mirage_krita=true``, keeping every other line as it is."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    path = Path(base) / "kritarc"
    lines = path.read_text().splitlines() if path.exists() else []
    key = f"enable_{KRITA_PLUGIN}"
    lines = [line for line in lines if not line.startswith(f"{key}=")]
    if "[python]" in lines:
        lines.insert(lines.index("[python]") + 1, f"{key}=true")
    else:
        lines += ["", "[python]", f"{key}=true"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def gimp_plugin_dir() -> Path:
    explicit = os.environ.get("GIMP3_DIRECTORY")
    base = Path(explicit) if explicit else (
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "GIMP" / "3.0")
    return base / "plug-ins"


def install_gimp(dest: Path | None = None, daemon_args: list[str] | None = None) -> Path:
    """Install into GIMP 3's plug-ins folder (folder and script named alike, executable)."""
    plugins = dest or gimp_plugin_dir()
    package = _copy_package(_source() / "gimp" / GIMP_PLUGIN, plugins / GIMP_PLUGIN)
    script = package / f"{GIMP_PLUGIN}.py"
    script.chmod(0o755)
    _vendor(package, daemon_args or [])
    return package
