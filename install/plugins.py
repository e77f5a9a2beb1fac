"""``neural-mirage install-plugin`` / ``uninstall-plugin``: put the plug-ins where each editor
the user has really looks for them, and take them away again.

Each editor is looked for as a native program and as a Flatpak, each with its own folders (a
Flatpak keeps its configuration under ``~/.var/app/<id>``). Snaps get no plug-in: Krita's snap is
built without PyQt5, so it has no Python plug-ins, and GIMP's snap loads third-party plug-ins
only from "content" snaps (see :data:`SNAP_REFUSES`). Per-OS folders come from
:func:`neural_mirage.client.locate.user_dirs`, which reads ``sys.platform`` when it is called, so
a test can simulate Windows or macOS.

Each installed plug-in gets a private ``_mirage`` package: a copy of the whole client package
(:mod:`neural_mirage.client`, so it never imports neural_mirage from the editor's Python), the
platformdirs package beside it (the editors' Pythons have none; ``locate`` imports it from
there first), and ``mirage_config.json``: this Python, to start the daemon or the relay when
the editor's Python has no pyzmq (``null`` in a sandbox, which may not start a host program),
the daemon's arguments and the install's target.

What an install creates is recorded in neural-mirage's own data folder (``plugins.json``), so
that ``uninstall-plugin`` removes exactly that, and the daemon knows which sandboxed plug-ins
need a copy of its connection file (:func:`sandboxed_client_dirs`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs

from neural_mirage.client.locate import connection_file, user_dirs

KRITA_PLUGIN = "neural_mirage_krita"
GIMP_PLUGIN = "neural-mirage"
EDITORS = ("krita", "gimp")
TARGETS = ("native", "flatpak", "snap")
#: Targets whose editor runs in a sandbox: it may not start a program of the host.
SANDBOXES = ("flatpak", "snap")
NAMES = {"krita": "Krita", "gimp": "GIMP 3"}
FLATPAK_IDS = {"krita": "org.kde.krita", "gimp": "org.gimp.GIMP"}
#: Where system-wide Flatpaks are installed (a constant, so that tests can move it).
SYSTEM_FLATPAK = Path("/var/lib/flatpak")
#: Where snapd mounts installed snaps.
SNAP_ROOT = Path("/snap")
#: Where macOS keeps applications.
MAC_APPLICATIONS = Path("/Applications")
#: Why neither snap gets the plug-in.
SNAP_REFUSES = {
    "krita": "Krita's snap has no Python plug-ins (its snapcraft.yaml, packaging/linux/snap in "
             "Krita's sources, builds Krita without PyQt5 and SIP)",
    "gimp": "GIMP's snap loads third-party plug-ins only from 'content' snaps "
            "(developer.gimp.org/resource/distributing-plug-ins/snap-plugin-publishing)",
}
#: The programs that say an editor is installed natively, per OS. PATH names; macOS bundles in
#: /Applications; Windows installers' folders in %ProgramFiles% (their default choice).
PROGRAMS = {
    "krita": {"path": ("krita",), "darwin": "krita.app", "win32": "Krita (x64)"},
    "gimp": {"path": ("gimp-3.0", "gimp-3"), "darwin": "GIMP.app", "win32": "GIMP 3"},
}
KRITARC_KEY = f"enable_{KRITA_PLUGIN}"


class PluginInstallError(Exception):
    """An install or uninstall that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class Location:
    """Where one packaging of an editor looks for plug-ins: Krita's resource folder (with
    ``pykrita/`` and ``actions/``) and its kritarc, or GIMP's plug-ins folder."""

    editor: str
    target: str
    folder: Path
    kritarc: Path | None = None


@dataclass
class Install:
    """One installed plug-in, as recorded in the manifest. ``files`` are wholly ours (removed
    on uninstall); ``folders`` were made for them (removed only when left empty); ``kritarc``
    describes the line added there."""

    editor: str
    target: str
    folder: Path
    package: Path
    files: list[Path]
    folders: list[Path] = field(default_factory=list)
    kritarc: dict[str, Any] | None = None
    note: str = ""

    @property
    def client_dir(self) -> Path:
        """The plug-in's private client package (where a sandboxed plug-in finds the daemon's
        connection file)."""
        return self.package / "_mirage"

    def to_json(self) -> dict[str, Any]:
        return {"editor": self.editor, "target": self.target, "folder": str(self.folder),
                "package": str(self.package), "client": str(self.client_dir),
                "files": [str(p) for p in self.files],
                "folders": [str(p) for p in self.folders], "kritarc": self.kritarc}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Install:
        return cls(data["editor"], data["target"], Path(data["folder"]), Path(data["package"]),
                   [Path(p) for p in data["files"]], [Path(p) for p in data["folders"]],
                   data.get("kritarc"))


# --- where the editors are ----------------------------------------------------------------


def _home() -> Path:
    return Path.home()


def _is_linux() -> bool:
    return sys.platform.startswith("linux")


def _dirs(app: str | None, roaming: bool = False) -> Any:
    """platformdirs' folders for ``app``; ``roaming`` picks ``%APPDATA%`` over
    ``%LOCALAPPDATA%`` on Windows (Krita's resources and GIMP's folder roam; kritarc does not)."""
    dirs = user_dirs(app)
    dirs.roaming = roaming
    return dirs


def _editor_dir(dirs: Any, kind: str) -> str:
    """platformdirs' folder ``kind`` as the editors see it: on macOS without the XDG variables
    that platformdirs honours there (Qt's QStandardPaths and GIMP read them on Linux only)."""
    if sys.platform == "darwin":
        for cls in type(dirs).__mro__:
            if cls.__name__ == "XDGMixin":
                return getattr(super(cls, dirs), kind)
    return getattr(dirs, kind)


def _flatpak_home(editor: str) -> Path:
    return _home() / ".var" / "app" / FLATPAK_IDS[editor]


def location(editor: str, target: str = "native") -> Location:
    """The folders of ``editor`` packaged as ``target``, found or not.

    Krita: its resource folder is Qt's AppDataLocation, kritarc is in GenericConfigLocation (as
    Krita's manual lists them). GIMP: ``gimp_directory()`` (``$GIMP3_DIRECTORY``, else
    ``GIMP/3.0`` in the user's configuration folder), then ``plug-ins``. A Flatpak's XDG
    folders are ``~/.var/app/<id>/config`` and ``.../data``.
    """
    if target == "snap":
        raise PluginInstallError(f"{SNAP_REFUSES[editor]}: install {NAMES[editor]} natively or "
                                 "from Flathub for the plug-in")
    if target == "flatpak":
        if not _is_linux():
            raise PluginInstallError("Flatpaks exist on Linux only")
        app = _flatpak_home(editor)
        if editor == "krita":
            return Location(editor, target, app / "data" / "krita", app / "config" / "kritarc")
        return Location(editor, target, app / "config" / "GIMP" / "3.0" / "plug-ins")
    if target != "native":
        raise PluginInstallError(f"unknown target {target!r}: one of {', '.join(TARGETS)}")
    if editor == "krita":
        resources_dir = _editor_dir(_dirs("krita", roaming=True), "user_data_dir")
        kind = {"darwin": "user_preference_dir", "win32": "user_data_dir"}.get(
            sys.platform, "user_config_dir")
        kritarc = Path(_editor_dir(_dirs(None), kind)) / "kritarc"
        return Location(editor, target, Path(resources_dir), kritarc)
    return Location(editor, target, _gimp_directory() / "plug-ins")


def _gimp_directory() -> Path:
    """GIMP 3's ``gimp_directory()``: ``$GIMP3_DIRECTORY`` (relative to the home folder when
    relative), else ``GIMP/3.0`` in the configuration folder (Windows: roaming AppData; macOS:
    Application Support)."""
    explicit = os.environ.get("GIMP3_DIRECTORY")
    if explicit:
        return _home() / explicit
    kind = "user_data_dir" if sys.platform == "darwin" else "user_config_dir"
    return Path(_editor_dir(_dirs("GIMP", roaming=True), kind)) / "3.0"


def _on_path(names: Sequence[str]) -> bool:
    """Whether one of ``names`` is a file in a PATH folder (``.exe`` on Windows)."""
    suffixes = ("", ".exe") if sys.platform == "win32" else ("",)
    folders = [f for f in os.environ.get("PATH", "").split(os.pathsep) if f]
    return any((Path(f) / (name + s)).is_file() for f in folders for name in names
               for s in suffixes)


def _native_installed(editor: str) -> bool:
    """Its folder exists, or its program is installed: on PATH, in /Applications (macOS) or in
    its installer's default folder in %ProgramFiles% (Windows). For GIMP, a set
    ``$GIMP3_DIRECTORY`` also counts: the user has said where GIMP's folder is."""
    where = location(editor)
    if where.folder.exists() or (where.kritarc is not None and where.kritarc.exists()):
        return True
    if editor == "gimp" and (os.environ.get("GIMP3_DIRECTORY") or where.folder.parent.exists()):
        return True
    program = PROGRAMS[editor]
    if _on_path(program["path"]):
        return True
    if sys.platform == "darwin":
        return (MAC_APPLICATIONS / program["darwin"]).exists()
    if sys.platform == "win32":
        program_files = os.environ.get("PROGRAMFILES")  # Windows' environment ignores case
        return bool(program_files) and (Path(program_files) / program["win32"]).exists()
    return False


def _flatpak_installed(editor: str) -> bool:
    """Its sandbox folder exists (it has run), or it is installed for the user or the system."""
    if not _is_linux():
        return False
    app_id = FLATPAK_IDS[editor]
    user_flatpaks = Path(_dirs(None).user_data_dir) / "flatpak"
    return any(p.exists() for p in (_flatpak_home(editor), user_flatpaks / "app" / app_id,
                                    SYSTEM_FLATPAK / "app" / app_id))


def _snap_installed(editor: str) -> bool:
    return _is_linux() and ((_home() / "snap" / editor).exists()
                            or (SNAP_ROOT / editor).exists())


def found(editor: str) -> list[Location]:
    """Where ``editor`` is installed and can take the plug-in: native and/or Flatpak."""
    checks = {"native": _native_installed, "flatpak": _flatpak_installed}
    return [location(editor, target) for target, check in checks.items() if check(editor)]


# --- installing -----------------------------------------------------------------------------


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


def _vendor(package: Path, daemon_args: Sequence[str], target: str) -> None:
    """The plug-in's ``_mirage``: the client, platformdirs inside it, and the configuration."""
    client = _copy_package(_client_source(), package / "_mirage")
    _copy_package(Path(platformdirs.__file__).parent, client / "platformdirs")
    python = None if target in SANDBOXES else sys.executable
    (client / "mirage_config.json").write_text(json.dumps(
        {"python": python, "daemon_args": list(daemon_args), "target": target,
         "command": _command()}, indent=1))
    if target in SANDBOXES and connection_file().exists():
        # A daemon that runs already wrote its copies at its start: this one gets one now.
        shutil.copy2(connection_file(), client / connection_file().name)


def _command() -> str:
    """This installation's ``neural-mirage`` command (beside its Python, in the virtual
    environment), for the plug-ins' messages to name: it is often not on PATH."""
    script = Path(sys.executable).with_name(
        "neural-mirage.exe" if sys.platform == "win32" else "neural-mirage")
    return str(script) if script.exists() else "neural-mirage"


def _make_dirs(*paths: Path) -> list[Path]:
    """Create ``paths`` and their parents; return the folders that did not exist before."""
    made: list[Path] = []
    for path in paths:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(parents=True, exist_ok=True)
        made += [p for p in reversed(missing) if p not in made]
    return made


def _install_krita(where: Location, daemon_args: Sequence[str]) -> Install:
    pykrita, actions = where.folder / "pykrita", where.folder / "actions"
    made = _make_dirs(pykrita, actions)
    package = _copy_package(_source() / "krita" / KRITA_PLUGIN, pykrita / KRITA_PLUGIN)
    desktop = Path(shutil.copy2(_source() / "krita" / f"{KRITA_PLUGIN}.desktop", pykrita))
    action = Path(shutil.copy2(_source() / "krita" / f"{KRITA_PLUGIN}.action", actions))
    _vendor(package, daemon_args, where.target)
    kritarc = None
    if where.kritarc is not None:
        made += _make_dirs(where.kritarc.parent)
        kritarc = _enable_in_kritarc(where.kritarc)
    return Install("krita", where.target, where.folder, package, [package, desktop, action],
                   made, kritarc)


def _install_gimp(where: Location, daemon_args: Sequence[str]) -> Install:
    """GIMP 3 wants the script in a folder of the same name, executable."""
    made = _make_dirs(where.folder)
    package = _copy_package(_source() / "gimp" / GIMP_PLUGIN, where.folder / GIMP_PLUGIN)
    (package / f"{GIMP_PLUGIN}.py").chmod(0o755)
    _vendor(package, daemon_args, where.target)
    return Install("gimp", where.target, where.folder, package, [package], made)


def _enable_in_kritarc(path: Path) -> dict[str, Any]:
    """Set ``[python] enable_neural_mirage_krita=true``, keeping every other line as it is;
    return what was added, so that uninstalling removes only that."""
    created = not path.exists()
    lines = [] if created else path.read_text().splitlines()
    line = f"{KRITARC_KEY}=true"
    lines = [x for x in lines if not x.startswith(f"{KRITARC_KEY}=")]
    added_section = "[python]" not in lines
    if added_section:
        lines += [*([""] if lines else []), "[python]", line]
    else:
        lines.insert(lines.index("[python]") + 1, line)
    path.write_text("\n".join(lines) + "\n")
    return {"file": str(path), "line": line, "added_section": added_section,
            "created_file": created}


def _disable_in_kritarc(record: dict[str, Any]) -> None:
    """Remove the line :func:`_enable_in_kritarc` added (whatever Krita set it to since), its
    ``[python]`` section if it added that and nothing else is in it, and the file if it made
    it and nothing else is in it."""
    path = Path(record["file"])
    if not path.exists():
        return
    lines = [x for x in path.read_text().splitlines() if not x.startswith(f"{KRITARC_KEY}=")]
    if record.get("added_section") and "[python]" in lines:
        at = lines.index("[python]")
        end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith("[")),
                   len(lines))
        if not any(x.strip() for x in lines[at + 1:end]):
            last = end == len(lines) and at > 0 and not lines[at - 1].strip()
            del lines[at - 1 if last else at:end]  # with the blank line added before it
    if record.get("created_file") and not any(x.strip() for x in lines):
        path.unlink()
    else:
        path.write_text("\n".join(lines) + "\n" if lines else "")


def _targets(editor: str, target: str | None, dest: Path | None,
             explicit: bool) -> list[tuple[Location, str]]:
    """Where to install ``editor``, each with a note for the user (empty when there is none)."""
    if dest is not None:
        return [(Location(editor, "folder", dest), "")]
    if target is not None:
        where = location(editor, target)
        absent = not {"native": _native_installed, "flatpak": _flatpak_installed}[target](editor)
        if absent and not explicit:
            return []
        note = (f"{NAMES[editor]} ({target}) was not found; installed where it will look"
                if absent else "")
        return [(where, note)]
    where = found(editor)
    if where or not explicit:
        return [(w, "") for w in where]
    why = (f"{NAMES[editor]} was found only as a snap ({SNAP_REFUSES[editor]})"
           if _snap_installed(editor) else f"{NAMES[editor]} was not found")
    return [(location(editor), f"{why}; installed in its usual folder for a native "
                               f"{NAMES[editor]}")]


def install(editor: str = "all", target: str | None = None, dest: Path | None = None,
            daemon_args: Sequence[str] = ()) -> list[Install]:
    """Install the plug-in of ``editor`` (krita, gimp or all) wherever it is installed, only
    in ``target`` (native, flatpak), or in the folder ``dest`` (Krita's resource folder or
    GIMP's plug-ins folder; not enabled in kritarc there). An editor named explicitly and found
    nowhere gets its native folder, with a note saying so. Each install is recorded in the
    manifest, replacing an earlier record of the same plug-in folder."""
    if editor not in (*EDITORS, "all"):
        raise PluginInstallError(f"unknown editor {editor!r}: krita, gimp or all")
    if dest is not None and editor == "all":
        raise PluginInstallError("--dest is one editor's folder: name krita or gimp")
    editors = EDITORS if editor == "all" else (editor,)
    installs = []
    for name in editors:
        for where, note in _targets(name, target, dest, explicit=editor != "all"):
            done = (_install_krita if name == "krita" else _install_gimp)(where, daemon_args)
            done.note = note
            installs.append(done)
    _record(installs)
    return installs


def krita_zip(path: Path, daemon_args: Sequence[str] = ()) -> Path:
    """A zip for Krita's *Tools > Scripts > Import Python Plugin from File...*.

    Krita's importer (``plugin_importer``, Krita 4.2 and later) reads every ``.desktop`` file
    in the zip, takes the module name from ``X-KDE-Library``, and needs a *directory entry*
    named after it holding ``__init__.py``; an ``.action`` file of the same name is copied to
    ``actions/``. It extracts them into Krita's resource folder and, when the user agrees,
    enables the plug-in. So the zip holds, at its top level: the ``.desktop``, the ``.action``
    and the package (with directory entries), ``_mirage`` and platformdirs included. Its
    ``mirage_config.json`` says ``"target": "zip"`` and records this Python.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        package = _copy_package(_source() / "krita" / KRITA_PLUGIN, Path(tmp) / KRITA_PLUGIN)
        _vendor(package, daemon_args, "zip")
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in (f"{KRITA_PLUGIN}.desktop", f"{KRITA_PLUGIN}.action"):
                zf.write(_source() / "krita" / name, name)
            for item in sorted([package, *package.rglob("*")]):
                zf.write(item, item.relative_to(tmp).as_posix())  # a folder: a "name/" entry
    return path


# --- the manifest ---------------------------------------------------------------------------


def manifest_file() -> Path:
    """``plugins.json`` in neural-mirage's own data folder."""
    return Path(user_dirs().user_data_dir) / "plugins.json"


def _load() -> list[Install]:
    try:
        data = json.loads(manifest_file().read_text())
        return [Install.from_json(entry) for entry in data["installs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _save(entries: list[Install]) -> None:
    path = manifest_file()
    if not entries:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"installs": [e.to_json() for e in entries]}, indent=1))


def _record(installs: list[Install]) -> None:
    """Add ``installs`` to the manifest. A re-install replaces the entry of the same package,
    keeping the folders and kritarc changes the first install made (they are still ours)."""
    entries = _load()
    for new in installs:
        for old in [e for e in entries if (e.editor, e.package) == (new.editor, new.package)]:
            new.folders = [*new.folders, *(p for p in old.folders
                                           if p.exists() and p not in new.folders)]
            if old.kritarc and new.kritarc and old.kritarc["file"] == new.kritarc["file"]:
                for flag in ("added_section", "created_file"):
                    new.kritarc[flag] = new.kritarc[flag] or old.kritarc[flag]
            entries.remove(old)
        entries.append(new)
    _save(entries)


def uninstall(editor: str = "all", target: str | None = None) -> list[Install]:
    """Remove what the manifest records for ``editor`` (krita, gimp or all), in ``target``
    (native, flatpak, snap, folder) or all of them, and drop those records. Returns them."""
    entries = _load()
    chosen = [e for e in entries if editor in ("all", e.editor) and target in (None, e.target)]
    for entry in chosen:
        for path in entry.files:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        if entry.kritarc:
            _disable_in_kritarc(entry.kritarc)
        for folder in sorted(entry.folders, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # only when empty: others may have put files there
                folder.rmdir()
    remaining = [e for e in entries if e not in chosen]
    for folder in {f for e in chosen for f in e.folders if f.exists()}:
        # Kept because another recorded plug-in is inside: it goes when that one goes.
        for entry in remaining:
            if any(folder in p.parents for p in entry.files) and folder not in entry.folders:
                entry.folders.append(folder)
                break
    _save(remaining)
    return chosen


def sandboxed_client_dirs() -> list[Path]:
    """The ``_mirage`` folders of the recorded Flatpak and Snap installs that still exist: the
    daemon writes a copy of its connection file there, since a sandboxed editor cannot see the
    host's runtime folder."""
    return [e.client_dir for e in _load() if e.target in SANDBOXES and e.client_dir.is_dir()]
