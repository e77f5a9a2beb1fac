"""The plug-ins' shared presets and remembered settings (plain Python, no editor needed)."""

from __future__ import annotations

import pytest

from neural_mirage.client.presets import (
    PRESET_NAMES,
    SIZE_MODES,
    Settings,
    class_matches,
    last_item,
    load_settings,
    replace_last_item,
    save_settings,
)
from neural_mirage.engine import RenderParams


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_gives_valid_render_parameters(preset):
    params = Settings(preset=preset).params(300)
    assert params["size"] == 300
    RenderParams.from_dict(params)  # the daemon accepts them


def test_render_size_modes():
    assert list(SIZE_MODES) == ["quick", "layer", "custom"]
    assert Settings().size_mode == "quick"  # a first look at a camera photo by default
    assert Settings(size_mode="quick").render_size(6000, 4000, quick_size=410) == 410
    assert Settings(size_mode="quick").render_size(300, 200, quick_size=410) == 300
    assert Settings(size_mode="layer").render_size(6000, 4000, quick_size=410) == 6000
    assert Settings(size_mode="custom", size=96).render_size(6000, 4000, quick_size=410) == 96
    with pytest.raises(ValueError, match="unknown render size"):
        Settings(size_mode="huge").render_size(60, 40, quick_size=410)


def test_custom_layers_and_errors():
    settings = Settings(preset="Custom", custom_layers="fc8:2, relu4_2:0.5")
    assert settings.content_layers() == {"fc8": 2.0, "relu4_2": 0.5}
    assert "fc8+relu4_2" in settings.layer_name(512)
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


def test_see_goes_into_the_parameters_and_the_layer_name():
    settings = Settings(see="church, lakeside:0.5, ", see_weight=2.0)
    params = settings.params(64)
    assert params["see"] == {"church": 1.0, "lakeside": 0.5} and params["see_weight"] == 2.0
    RenderParams.from_dict(params)
    assert "sees church + lakeside (" in settings.layer_name(512)
    assert Settings().params(64)["see"] == {}
    with pytest.raises(ValueError, match="class weight 'x'"):
        Settings(see="church:x").params(64)


def test_class_picker_offers_prefix_matches_first_and_completes_the_last_item():
    classes = ["Lakeland terrier", "lakeside", "church", "flakes"]
    groups = {"@water": ["lakeside"], "@buildings": ["church"]}
    assert class_matches(" lake", classes, groups) == ["Lakeland terrier", "lakeside", "flakes"]
    assert class_matches("@wat", classes, groups) == ["@water"]
    assert class_matches("", classes, groups) == []
    assert last_item("church, lak") == " lak"
    assert replace_last_item("church, lak", "lakeside") == "church, lakeside, "
    assert replace_last_item("chu", "church") == "church, "


def test_seeing_and_steering_in_the_selection():
    assert Settings().params(512)["fc_spatial"] == 0.0
    assert Settings(seeing="spatial").params(512)["fc_spatial"] == 1.0
    assert Settings(seeing="both").params(512)["fc_spatial"] == 0.5
    with pytest.raises(ValueError, match="unknown seeing"):
        Settings(seeing="sideways").params(512)
    steer = Settings(see="castle", see_in_selection=True, seeing="spatial")
    assert steer.steers_in_selection(True) and not steer.steers_in_selection(False)
    assert not Settings(see="castle").steers_in_selection(True)
    with pytest.raises(ValueError, match="name one there"):
        Settings(see="  ", see_in_selection=True).steers_in_selection(True)
    assert ", sees castle in the selection (" in steer.layer_name(512, in_selection=True)
    assert " where," in steer.layer_name(512)
    assert "sees" not in Settings(see="  ").layer_name(512)


def test_layer_names_tell_renders_apart_and_say_first_what_differs():
    quick, big = Settings(iterations=40, seed=1), Settings(iterations=300, seed=1)
    names = {quick.layer_name(256), big.layer_name(256), big.layer_name(1024),
             Settings(iterations=300, seed=2).layer_name(1024)}
    assert len(names) == 4
    # what changes between renders is in the part the Layers panel shows (its first words)
    assert big.layer_name(1024).startswith("Mirage 1024 px, 300 it, seed 1")
    assert quick.layer_name(256, pretrained=False).endswith(", random weights)")
