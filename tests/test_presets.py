"""The plug-ins' shared presets and remembered settings (plain Python, no editor needed)."""

from __future__ import annotations

import pytest

from neural_mirage.engine import RenderParams
from neural_mirage.plugins.shared.presets import (
    PRESET_NAMES,
    Settings,
    load_settings,
    save_settings,
)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_gives_valid_render_parameters(preset):
    params = Settings(preset=preset).params(300, 200)
    assert params["size"] == 300
    RenderParams.from_dict(params)  # the daemon accepts them


def test_custom_layers_and_errors():
    settings = Settings(preset="Custom", custom_layers="fc8:2, relu4_2:0.5")
    assert settings.content_layers() == {"fc8": 2.0, "relu4_2": 0.5}
    assert "fc8+relu4_2" in settings.layer_name()
    with pytest.raises(ValueError, match="not a number"):
        Settings(preset="Custom", custom_layers="fc8:x").content_layers()
    with pytest.raises(ValueError, match="unknown preset"):
        Settings(preset="Nope").content_layers()


def test_last_values_are_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert load_settings("krita") == Settings()
    save_settings("krita", Settings(preset="Dream (fc8)", iterations=42, seed=9))
    again = load_settings("krita")
    assert (again.preset, again.iterations, again.seed) == ("Dream (fc8)", 42, 9)
    (tmp_path / "neural-mirage" / "krita-last.json").write_text("{broken")
    assert load_settings("krita") == Settings()
