"""install-plugin and uninstall-plugin on each desktop: Windows, macOS and Linux simulated
(``sys.platform`` and the environment point into a temporary folder; Flatpak and Snap are their
folders in a fake home), the vendored platformdirs in an isolated Python, the zip read by
Krita's own importer, and that zip imported and loaded by the real Krita 5.1.5."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from configparser import ConfigParser
from pathlib import Path

import pytest

from neural_mirage import cli
from neural_mirage.install import plugins

from .daemon_process import windows_folders_from_env

#: Where install-plugin puts the plug-ins, per desktop (the README restates this table).
#: ``krita``: Krita's resource folder (``pykrita/neural_mirage_krita``, ``pykrita/
#: neural_mirage_krita.desktop`` and ``actions/neural_mirage_krita.action`` go there);
#: ``kritarc``: where ``[python] enable_neural_mirage_krita=true`` is set; ``gimp``: GIMP 3's
#: plug-ins folder (``neural-mirage/neural-mirage.py`` goes there). ``$GIMP3_DIRECTORY``, when
#: set, replaces GIMP's folder: ``$GIMP3_DIRECTORY/plug-ins``.
FOLDERS = {
    "Linux": {"krita": "$XDG_DATA_HOME/krita", "kritarc": "$XDG_CONFIG_HOME/kritarc",
              "gimp": "$XDG_CONFIG_HOME/GIMP/3.0/plug-ins"},
    "Windows": {"krita": r"%APPDATA%\krita", "kritarc": r"%LOCALAPPDATA%\kritarc",
                "gimp": r"%APPDATA%\GIMP\3.0\plug-ins"},
    "macOS": {"krita": "~/Library/Application Support/krita",
              "kritarc": "~/Library/Preferences/kritarc",
              "gimp": "~/Library/Application Support/GIMP/3.0/plug-ins"},
    "Flatpak": {"krita": "~/.var/app/org.kde.krita/data/krita",
                "kritarc": "~/.var/app/org.kde.krita/config/kritarc",
                "gimp": "~/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins"},
}
PLATFORMS = {"Linux": "linux", "Windows": "win32", "macOS": "darwin", "Flatpak": "linux"}
KRITA_IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")
KRITARC_LINE = "enable_neural_mirage_krita=true"
WEIGHTS = ["--weights", "random"]


@pytest.fixture(scope="module", autouse=True)
def cli_imported(tmp_path_factory):
    """One CLI run on the real platform first, so that every module it imports (torch, pyzmq)
    is loaded before a test pretends to be on another OS."""
    assert cli.main(["install-plugin", "krita", "--zip",
                     str(tmp_path_factory.mktemp("warm") / "k.zip"), *WEIGHTS]) == 0


class Desktop:
    """A fake home and environment, as on ``name`` (a key of :data:`FOLDERS`)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.root, self.home = root, root / "home"
        self.env = {"HOME": self.home, "XDG_DATA_HOME": root / "xdg-data",
                    "XDG_CONFIG_HOME": root / "xdg-config", "APPDATA": root / "AppData/Roaming",
                    "LOCALAPPDATA": root / "AppData/Local", "PROGRAMFILES": root / "Programs",
                    "PATH": root / "bin"}
        self.home.mkdir()
        (root / "bin").mkdir()
        for key, value in self.env.items():
            monkeypatch.setenv(key, str(value))
        for key in ("GIMP3_DIRECTORY", "XDG_RUNTIME_DIR", "NEURAL_MIRAGE_RUNTIME_DIR"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setattr(sys, "platform", PLATFORMS[name])
        windows_folders_from_env(monkeypatch)
        monkeypatch.setattr(plugins, "SYSTEM_FLATPAK", root / "var-lib-flatpak")
        monkeypatch.setattr(plugins, "SNAP_ROOT", root / "snap-root")
        monkeypatch.setattr(plugins, "MAC_APPLICATIONS", root / "Applications")

    def folder(self, spec: str) -> Path:
        """A :data:`FOLDERS` entry resolved in this fake environment."""
        head, _, rest = spec.replace("\\", "/").partition("/")
        base = {"~": self.home, "$XDG_DATA_HOME": self.env["XDG_DATA_HOME"],
                "$XDG_CONFIG_HOME": self.env["XDG_CONFIG_HOME"], "%APPDATA%": self.env["APPDATA"],
                "%LOCALAPPDATA%": self.env["LOCALAPPDATA"]}[head]
        return base / rest

    def files(self) -> set[Path]:
        """Every file and folder under the fake root but neural-mirage's own data folder (and
        the folders above it)."""
        ours = plugins.manifest_file().parent
        return {p for p in self.root.rglob("*")
                if p != ours and ours not in p.parents and p not in ours.parents}


def run(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 0
    return capsys.readouterr().out


def config_of(package: Path) -> dict:
    return json.loads((package / "_mirage" / "mirage_config.json").read_text())


def assert_krita_in(desktop: Desktop, folders: dict[str, str], target: str) -> Path:
    resources = desktop.folder(folders["krita"])
    package = resources / "pykrita" / "neural_mirage_krita"
    assert (package / "__init__.py").is_file()
    assert (resources / "pykrita" / "neural_mirage_krita.desktop").is_file()
    assert (resources / "actions" / "neural_mirage_krita.action").is_file()
    assert (package / "_mirage" / "platformdirs" / "__init__.py").is_file()
    assert not list(package.rglob("__pycache__"))
    lines = desktop.folder(folders["kritarc"]).read_text().splitlines()
    assert lines[lines.index("[python]") + 1] == KRITARC_LINE
    config = config_of(package)
    assert config["target"] == target and config["daemon_args"][:2] == WEIGHTS
    assert config["python"] == (None if target == "flatpak" else sys.executable)
    return package


def assert_gimp_in(desktop: Desktop, folders: dict[str, str], target: str) -> Path:
    package = desktop.folder(folders["gimp"]) / "neural-mirage"
    script = package / "neural-mirage.py"
    assert script.is_file() and os.access(script, os.X_OK)
    assert (package / "_mirage" / "platformdirs" / "__init__.py").is_file()
    assert config_of(package)["target"] == target
    return package


@pytest.mark.parametrize("name", ["Linux", "Windows", "macOS"])
def test_native_editors_get_the_folders_of_their_os(tmp_path, monkeypatch, capsys, name):
    desktop = Desktop(tmp_path, monkeypatch, name)
    # Both editors installed as their OS installs them: on PATH, in /Applications, in
    # %ProgramFiles%.
    if name == "Linux":
        for program in ("krita", "gimp-3.0"):
            (tmp_path / "bin" / program).write_text("#!/bin/sh\n")
            (tmp_path / "bin" / program).chmod(0o755)
    elif name == "macOS":
        for bundle in ("krita.app", "GIMP.app"):
            (tmp_path / "Applications" / bundle).mkdir(parents=True)
    else:
        for folder in ("Krita (x64)", "GIMP 3"):
            (tmp_path / "Programs" / folder).mkdir(parents=True)
    out = run(["install-plugin", "all", *WEIGHTS], capsys)
    krita = assert_krita_in(desktop, FOLDERS[name], "native")
    gimp = assert_gimp_in(desktop, FOLDERS[name], "native")
    assert f"in {krita}." in out and f"in {gimp}." in out and "not found" not in out
    assert not (desktop.home / ".var").exists()
    assert plugins.sandboxed_client_dirs() == []


@pytest.mark.parametrize("editor", ["krita", "gimp"])
def test_flatpak_editor_gets_its_sandbox_folders(tmp_path, monkeypatch, capsys, editor):
    desktop = Desktop(tmp_path, monkeypatch, "Flatpak")
    app_id = plugins.FLATPAK_IDS[editor]
    (desktop.home / ".var" / "app" / app_id).mkdir(parents=True)
    out = run(["install-plugin", editor, *WEIGHTS], capsys)
    check = assert_krita_in if editor == "krita" else assert_gimp_in
    package = check(desktop, FOLDERS["Flatpak"], "flatpak")
    assert out.count("Installed") == 1 and f"in {package}." in out
    native = desktop.folder(FOLDERS["Linux"][editor])
    assert not native.exists() and not desktop.folder(FOLDERS["Linux"]["kritarc"]).exists()
    assert plugins.sandboxed_client_dirs() == [package / "_mirage"]


def test_a_flatpak_found_only_in_the_system_installation_counts(tmp_path, monkeypatch, capsys):
    desktop = Desktop(tmp_path, monkeypatch, "Flatpak")
    (tmp_path / "var-lib-flatpak" / "app" / "org.gimp.GIMP").mkdir(parents=True)
    run(["install-plugin", "gimp", *WEIGHTS], capsys)
    assert_gimp_in(desktop, FOLDERS["Flatpak"], "flatpak")


def test_gimp3_directory_replaces_gimps_folder(tmp_path, monkeypatch, capsys):
    desktop = Desktop(tmp_path, monkeypatch, "Linux")
    monkeypatch.setenv("GIMP3_DIRECTORY", str(tmp_path / "gimp-cfg"))
    out = run(["install-plugin", "gimp", *WEIGHTS], capsys)
    assert (tmp_path / "gimp-cfg" / "plug-ins" / "neural-mirage" / "neural-mirage.py").is_file()
    assert "not found" not in out
    assert not desktop.folder(FOLDERS["Linux"]["gimp"]).exists()


def test_editor_found_nowhere_goes_to_its_native_folder_and_snaps_get_nothing(
        tmp_path, monkeypatch, capsys):
    desktop = Desktop(tmp_path, monkeypatch, "Linux")
    (desktop.home / "snap" / "krita").mkdir(parents=True)
    out = run(["install-plugin", "krita", *WEIGHTS], capsys)
    assert_krita_in(desktop, FOLDERS["Linux"], "native")
    assert "found only as a snap" in out and "PyQt5" in out
    assert not any((desktop.home / "snap").rglob("*.desktop"))
    assert cli.main(["install-plugin", "gimp", "--target", "snap", *WEIGHTS]) != 0
    assert "content' snaps" in capsys.readouterr().err
    # 'all' with nothing found installs nothing, and says how to install anyway.
    shutil.rmtree(desktop.folder(FOLDERS["Linux"]["krita"]))
    desktop.folder(FOLDERS["Linux"]["kritarc"]).unlink()
    assert cli.main(["install-plugin", "all", *WEIGHTS]) != 0
    assert "install-plugin krita" in capsys.readouterr().err


def test_flatpak_krita_and_gimp_installed_and_uninstalled(tmp_path, monkeypatch, capsys):
    desktop = Desktop(tmp_path, monkeypatch, "Flatpak")
    for app_id in plugins.FLATPAK_IDS.values():
        (desktop.home / ".var" / "app" / app_id).mkdir(parents=True)
    kritarc = desktop.folder(FOLDERS["Flatpak"]["kritarc"])
    kritarc.parent.mkdir(parents=True)
    theirs = "[General]\nfoo=1\n\n[python]\nenable_other_plugin=true\n\n[Theme]\nname=dark\n"
    kritarc.write_text(theirs)
    before = desktop.files()

    run(["install-plugin", "all", *WEIGHTS], capsys)
    out = run(["install-plugin", "all", *WEIGHTS], capsys)  # again: replaces, not adds
    assert out.count("(flatpak)") == 2 and "not found" not in out
    krita = assert_krita_in(desktop, FOLDERS["Flatpak"], "flatpak")
    gimp = assert_gimp_in(desktop, FOLDERS["Flatpak"], "flatpak")
    for native in ("krita", "kritarc", "gimp"):
        assert not desktop.folder(FOLDERS["Linux"][native]).exists()
    assert kritarc.read_text().count(KRITARC_LINE) == 1
    manifest = json.loads(plugins.manifest_file().read_text())["installs"]
    assert sorted((e["editor"], e["target"]) for e in manifest) == [
        ("gimp", "flatpak"), ("krita", "flatpak")]
    assert set(plugins.sandboxed_client_dirs()) == {krita / "_mirage", gimp / "_mirage"}

    out = run(["uninstall-plugin", "all"], capsys)
    assert out.count("Removed") == 2 and str(krita) in out and str(gimp) in out
    assert desktop.files() == before  # every file and folder it made is gone
    assert kritarc.read_text() == theirs
    assert plugins.sandboxed_client_dirs() == []
    assert "No neural-mirage plug-in is installed" in run(["uninstall-plugin", "all"], capsys)


def test_uninstall_removes_the_kritarc_it_made_and_only_the_named_editor(
        tmp_path, monkeypatch, capsys):
    desktop = Desktop(tmp_path, monkeypatch, "Linux")
    before = desktop.files()
    run(["install-plugin", "krita", *WEIGHTS], capsys)
    run(["install-plugin", "gimp", *WEIGHTS], capsys)
    out = run(["uninstall-plugin", "krita"], capsys)
    assert "Krita" in out and "GIMP" not in out
    gimp = assert_gimp_in(desktop, FOLDERS["Linux"], "native")
    run(["uninstall-plugin", "gimp", "--target", "native"], capsys)
    assert not gimp.exists() and desktop.files() == before


ISOLATED_IMPORT = """
import sys, types
plugin, package = sys.argv[1], sys.argv[2]
if package:  # Krita: the plug-in's package, without running its __init__ (it needs Krita)
    parent = types.ModuleType(package)
    parent.__path__ = [plugin + "/" + package]
    sys.modules[package] = parent
    prefix = package + "."
else:  # GIMP: the plug-in's folder is on sys.path, and it imports _mirage
    sys.path.insert(0, plugin)
    prefix = ""
try:
    import platformdirs
except ImportError:
    pass
else:
    sys.exit("platformdirs is importable without the plug-in: not an isolated Python")
import importlib
locate = importlib.import_module(prefix + "_mirage.locate")
assert locate._platformdirs.__name__ == prefix + "_mirage.platformdirs", locate._platformdirs
assert locate._platformdirs.__file__.startswith(plugin), locate._platformdirs.__file__
print(locate.user_dirs().user_cache_dir)
"""


def test_vendored_platformdirs_imports_in_a_python_without_it(tmp_path, monkeypatch, capsys):
    desktop = Desktop(tmp_path, monkeypatch, "Linux")
    run(["install-plugin", "krita", *WEIGHTS], capsys)
    run(["install-plugin", "gimp", *WEIGHTS], capsys)
    krita = desktop.folder(FOLDERS["Linux"]["krita"]) / "pykrita"
    gimp = desktop.folder(FOLDERS["Linux"]["gimp"]) / "neural-mirage"
    for plugin, package in ((krita, "neural_mirage_krita"), (gimp, "")):
        # -I -S: no site-packages (the venv's platformdirs), no PYTHONPATH, no user site.
        r = subprocess.run([sys.executable, "-I", "-S", "-c", ISOLATED_IMPORT, str(plugin),
                            package], capture_output=True, text=True, timeout=60,
                           env={"HOME": str(desktop.home)})
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(desktop.home / ".cache" / "neural-mirage")


def importer_rules_from_krita_source() -> dict:
    """What Krita 5.1's plugin_importer.py looks for, read from its source, so that the zip
    test follows the installed importer rather than a guess."""
    source = KRITA_IMPORTER.read_text()
    return {"desktop": "filename.endswith('.desktop')" in source,
            "action": "filename.endswith('.action')" in source,
            "library_key": "config['Desktop Entry']['X-KDE-Library']" in source,
            "name_key": "config['Desktop Entry']['Name']" in source,
            "folder_entry": "filename == '%s/' % name" in source,
            "init_in_folder": "('%s__init__.py' % filename) in namelist" in source}


def test_zip_is_what_kritas_importer_reads(tmp_path, monkeypatch, capsys):
    Desktop(tmp_path, monkeypatch, "Linux")  # the manifest of the install below goes there
    archive = tmp_path / "neural_mirage_krita.zip"
    out = run(["install-plugin", "krita", "--zip", str(archive), *WEIGHTS], capsys)
    assert "Import Python Plugin from File" in out
    names = zipfile.ZipFile(archive).namelist()
    # The layout the importer needs (Krita 5.1.5's plugin_importer.py): a .desktop naming the
    # module in X-KDE-Library, with a Name; a *directory entry* of that module holding
    # __init__.py; an .action file named after the module (copied to actions/).
    desktop = ConfigParser()
    desktop.read_string(zipfile.ZipFile(archive).read("neural_mirage_krita.desktop").decode())
    assert desktop["Desktop Entry"]["X-KDE-Library"] == "neural_mirage_krita"
    assert desktop["Desktop Entry"]["Name"]
    assert "neural_mirage_krita/" in names and "neural_mirage_krita/__init__.py" in names
    assert "neural_mirage_krita.action" in names
    assert "neural_mirage_krita/_mirage/platformdirs/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n]
    config = json.loads(zipfile.ZipFile(archive).read(
        "neural_mirage_krita/_mirage/mirage_config.json"))
    assert config == {"python": sys.executable, "daemon_args": config["daemon_args"],
                      "target": "zip",
                      "command": str(Path(sys.executable).with_name("neural-mirage"))}
    if not KRITA_IMPORTER.exists():
        pytest.skip("Krita's plugin_importer is not installed; the layout was checked above")
    assert all(importer_rules_from_krita_source().values()), "Krita's importer has changed"
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", KRITA_IMPORTER)
    importer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(importer)
    resources = tmp_path / "resources"
    resources.mkdir()
    imported = importer.PluginImporter(str(archive), str(resources), lambda p: True).import_all()
    assert [(p["name"], p["action"]) for p in imported] == [
        ("neural_mirage_krita", "neural_mirage_krita.action")]
    # The same files as install-plugin puts in a resource folder.
    plugins.install("krita", dest=tmp_path / "direct", daemon_args=WEIGHTS)

    def tree(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*")}

    assert tree(resources) == tree(tmp_path / "direct")


IMPORT_SCRIPT = """
import json, traceback

def __main__(args):
    archive, resources, out = args
    res = {}
    try:
        from plugin_importer.plugin_importer import PluginImporter
        imported = PluginImporter(archive, resources, lambda p: True).import_all()
        res["imported"] = [p["name"] for p in imported]
    except Exception:
        res["error"] = traceback.format_exc()
    with open(out, "w") as f:
        json.dump(res, f)
"""

PROBE_DESKTOP = """[Desktop Entry]
Type=Service
ServiceTypes=Krita/PythonPlugin
X-KDE-Library=mirage_probe
X-Python-2-Compatible=false
Name=Mirage probe (tests only)
"""

PROBE_PLUGIN = """
import json, os, sys, traceback
from krita import Extension, Krita
from PyQt5.QtCore import QTimer

def menu_paths(menu, prefix):
    for action in menu.actions():
        path = prefix + [action.text().replace("&", "")]
        if action.menu() is not None:
            yield from menu_paths(action.menu(), path)
        else:
            yield " > ".join(path)

def probe():
    res = {}
    try:
        k = Krita.instance()
        res["appdata"] = k.getAppDataLocation()
        res["module"] = getattr(sys.modules.get("neural_mirage_krita"), "__file__", None)
        action = k.action("neural_mirage")
        res["action"] = action.text() if action is not None else None
        res["menu"] = [p for p in menu_paths(k.activeWindow().qwindow().menuBar(), [])
                       if "Mirage" in p]
        from neural_mirage_krita._mirage import connection, locate
        res["platformdirs"] = locate._platformdirs.__name__
        res["config"] = connection.plugin_config()
    except Exception:
        res["error"] = traceback.format_exc()
    with open(os.environ["MIRAGE_PROBE_OUT"], "w") as f:
        json.dump(res, f)
    os._exit(0)

class Probe(Extension):
    def setup(self):
        Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(500, probe))

    def createActions(self, window):
        pass

Krita.instance().addExtension(Probe(Krita.instance()))
"""


@pytest.mark.skipif(shutil.which("kritarunner") is None, reason="Krita is not installed")
def test_real_krita_imports_the_zip_and_loads_the_plugin(tmp_path, capsys):
    """Krita's importer, run inside Krita 5.1.5 by kritarunner, puts the zip's plug-in in the
    resource folder; Krita (under Xvfb: kritarunner loads no plug-ins) then loads it, with its
    menu entry, once enabled as the importer's 'Enable plugins now?' does."""
    home = tmp_path / "home"
    resources = home / ".local" / "share" / "krita"  # Krita's AppDataLocation on Linux
    resources.mkdir(parents=True)  # Krita makes it on its first start; the importer needs it
    archive = tmp_path / "neural_mirage_krita.zip"
    run(["install-plugin", "krita", "--zip", str(archive), *WEIGHTS], capsys)
    (tmp_path / "mirage_import_zip.py").write_text(IMPORT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "QT_", "PYTHON"))}
    env["HOME"] = str(home)
    result = tmp_path / "imported.json"
    # kritarunner's own AppDataLocation is ~/.local/share/kritarunner (another application
    # name), so the importer is given Krita's folder, as Krita's import action would give it.
    r = subprocess.run(["kritarunner", "-s", "mirage_import_zip", "-f", "__main__",
                        str(archive), str(resources), str(result)],
                       env={**env, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(tmp_path)},
                       capture_output=True, text=True, timeout=300)
    assert result.exists(), f"kritarunner wrote nothing (rc {r.returncode}):\n{r.stderr[-3000:]}"
    assert json.loads(result.read_text()) == {"imported": ["neural_mirage_krita"]}
    assert (resources / "pykrita" / "neural_mirage_krita" / "__init__.py").is_file()
    assert (resources / "pykrita" / "neural_mirage_krita.desktop").is_file()
    assert (resources / "actions" / "neural_mirage_krita.action").is_file()
    assert (resources / "pykrita" / "neural_mirage_krita" / "_mirage" / "platformdirs").is_dir()

    if shutil.which("krita") is None or shutil.which("Xvfb") is None:
        pytest.skip("loading the plug-in needs krita and Xvfb")
    probe = resources / "pykrita" / "mirage_probe"
    probe.mkdir()
    (probe / "__init__.py").write_text(PROBE_PLUGIN)
    (resources / "pykrita" / "mirage_probe.desktop").write_text(PROBE_DESKTOP)
    (home / ".config").mkdir(exist_ok=True)  # kritarunner made it for its kritarunnerrc
    (home / ".config" / "kritarc").write_text(f"[python]\nenable_mirage_probe=true\n"
                                              f"{KRITARC_LINE}\n")
    out = tmp_path / "probe.json"
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x900x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE, text=True)
    try:
        display = xvfb.stdout.readline().strip()
        krita = subprocess.run(["krita", "--nosplash"], capture_output=True, text=True,
                               env={**env, "DISPLAY": f":{display}",
                                    "MIRAGE_PROBE_OUT": str(out)}, timeout=300)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    assert out.exists(), f"Krita wrote nothing (rc {krita.returncode}):\n{krita.stderr[-3000:]}"
    seen = json.loads(out.read_text())
    assert "error" not in seen, seen["error"]
    assert seen["appdata"] == str(resources)
    assert seen["module"] == str(resources / "pykrita" / "neural_mirage_krita" / "__init__.py")
    assert seen["action"] == "Neural Mirage..."
    assert seen["menu"] == ["Tools > Scripts > Neural Mirage..."]
    assert seen["platformdirs"] == "neural_mirage_krita._mirage.platformdirs"
    assert seen["config"]["target"] == "zip"
