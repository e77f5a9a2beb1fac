"""The layout tells the truth: the arrows between packages point one way.

- The client package is copied whole into the editors' plug-ins, so it imports nothing of
  neural_mirage, and the modules an editor without pyzmq loads import neither pyzmq nor msgpack.
- Nothing of neural_mirage imports the plug-ins, and no two modules import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"neural_mirage": "neural_mirage", "engine": "neural_mirage.engine",
            "client": "neural_mirage.client", "daemon": "neural_mirage.daemon",
            "install": "neural_mirage.install"}
#: What an editor's Python without pyzmq and msgpack loads through the relay.
STANDARD_LIBRARY_ONLY = ("bridge", "connection", "job", "locate", "plan", "presets")


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Absolute names of what the module imports, at any depth of its code."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            module = node.module or ""
            target = (f"{base}.{module}" if module else base) if node.level else module
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def test_the_client_package_stands_alone():
    for name, path in modules().items():
        if not name.startswith("neural_mirage.client"):
            continue
        used = imports(name, path)
        outside = {u for u in used if u.startswith("neural_mirage")
                   and not u.startswith("neural_mirage.client")}
        assert not outside, f"{name} imports {sorted(outside)}: the plug-ins cannot"
        if name.rsplit(".", 1)[-1] in STANDARD_LIBRARY_ONLY:
            third = {u.split(".")[0] for u in used} & {"zmq", "msgpack", "numpy", "torch"}
            assert not third, f"{name} imports {sorted(third)}: an editor may not have them"


def test_nothing_imports_the_plugins_and_no_module_imports_itself_back():
    graph = {name: {u for u in imports(name, path) if u in modules() and u != name}
             for name, path in modules().items()}
    for name, path in modules().items():
        plugins = {u for u in imports(name, path) if u.startswith("neural_mirage.plugins")}
        assert not plugins, f"{name} imports the plug-ins: {sorted(plugins)}"

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or reaches(nxt, goal, seen | {nxt})
                   for nxt in graph[start] - seen)

    packages = set(PACKAGES.values())
    cycles = [(a, b) for a in graph for b in graph[a]
              if a not in packages and b not in packages and reaches(b, a, {b})]
    assert not cycles, f"import cycles: {cycles}"
