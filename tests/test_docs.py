"""The parameter tables in the documents, and the schema copy the editors' dialogs read, are
generated from the engine's schema; these tests fail when they drift. To refresh them:
``.venv/bin/python -m tests.test_docs``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from neural_mirage.engine.params import markdown_table, schema

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"
DIALOG_SCHEMA = ROOT / "client" / "schema.json"
BEGIN, END = "<!-- params:begin -->", "<!-- params:end -->"


def filled(text: str) -> str:
    """``text`` with the table between the markers made from the schema."""
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}"


def test_the_protocol_parameter_table_is_the_schema():
    text = PROTOCOL.read_text()
    assert text == filled(text), "docs/protocol.md's table drifted: run python -m tests.test_docs"


def test_the_dialogs_schema_is_the_engines():
    assert json.loads(DIALOG_SCHEMA.read_text()) == json.loads(json.dumps(schema())), (
        "client/schema.json drifted: run python -m tests.test_docs")


def test_the_readme_has_an_option_for_every_parameter_and_no_other():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Rendering", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `--([a-z-]+)`", section, re.M))
    listed |= set(re.findall(r"^\| `--[a-z-]+` / `--([a-z-]+)`", section, re.M))
    listed |= set(re.findall(r"^\| `--[a-z-]+` / `--[a-z-]+` / `--([a-z-]+)`", section, re.M))
    wanted = {name.replace("_", "-") for name in schema(wire=False)}
    assert wanted <= listed, f"README lacks options {sorted(wanted - listed)}"


if __name__ == "__main__":
    PROTOCOL.write_text(filled(PROTOCOL.read_text()))
    DIALOG_SCHEMA.write_text(json.dumps(schema(), indent=1) + "\n")
