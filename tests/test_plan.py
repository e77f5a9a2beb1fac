"""How the plug-ins plan a render with a real daemon (the code both editors run), and the words
their dialogs use for time and progress."""

from __future__ import annotations

import pytest

from neural_mirage.client.connection import MirageError
from neural_mirage.client.plan import duration, plan_render, progress_text
from neural_mirage.client.presets import Settings

from .daemon_process import start_daemon


@pytest.fixture(scope="module")
def client():
    # 1 GB: less than a 1600x1200 render needs even block by block (about 1.6 GB).
    daemon = start_daemon(None, None, "--max-pixels", "200000", "--max-memory", "1G")
    c = daemon.client()
    yield c
    c.close()
    daemon.stop()


def test_a_smaller_render_sends_the_area_scaled_down(client):
    plan = plan_render(client, Settings(size_mode="custom", size=160), 6000, 4000)
    assert plan.params["size"] == 160 and plan.render == (160, 107)
    assert plan.send == (160, 107) and plan.area == (6000, 4000) and plan.scaled
    assert plan.summary().startswith("Rendering at 160x107 px (about ")


def test_a_larger_render_sends_the_area_as_it_is(client):
    plan = plan_render(client, Settings(size_mode="custom", size=400), 240, 160)
    assert plan.render == (400, 267) and plan.send == (240, 160) and not plan.scaled


def test_quick_look_fits_the_time_budget_and_never_enlarges(client):
    plan = plan_render(client, Settings(iterations=20), 6000, 4000)
    assert 256 < plan.params["size"] < 6000 and plan.seconds <= 90 and not plan.long
    small = plan_render(client, Settings(iterations=2), 120, 80)
    assert small.params["size"] == 120 and small.send == (120, 80)


def test_a_slow_quick_look_keeps_256_px_and_advises_fewer_iterations(client):
    plan = plan_render(client, Settings(iterations=5000), 6000, 4000)
    assert plan.params["size"] == 256 and plan.long
    assert "Fewer iterations are quicker" in plan.question()
    assert "'Quick look'" not in plan.question()


def test_a_long_render_is_flagged_and_explained(client):
    plan = plan_render(client, Settings(size_mode="layer", iterations=5000), 480, 320)
    assert plan.long
    assert plan.question().startswith("This render at 480x320 px will take about ")
    assert "Render anyway?" in plan.question()


def test_more_pixels_than_the_daemon_takes_names_the_largest_size(client):
    with pytest.raises(MirageError) as info:
        plan_render(client, Settings(size_mode="layer"), 600, 400)
    assert info.value.code == "too_large"
    assert str(info.value).startswith("Choose a render size of at most 547 px")


def test_more_memory_than_the_daemon_has_names_the_largest_size(client):
    largest = client.estimate({"size": 1600}, 1600, 1200)["largest_size"]
    assert 500 < largest < 1600
    with pytest.raises(MirageError) as info:
        plan_render(client, Settings(size_mode="layer"), 1600, 1200)
    assert info.value.code == "out_of_memory"
    assert str(info.value).startswith(f"Choose a render size of at most {largest} px: a "
                                      "render at 1600 px needs about ")


def test_durations_and_progress_read_as_people_say_them():
    assert [duration(s) for s in (0.2, 40, 400, 9000)] == ["1 s", "40 s", "7 minutes",
                                                         "2.5 hours"]
    header = {"loss": 1.0, "scale": 2, "scales": 3, "width": 512, "height": 341,
              "scale_iteration": 12, "scale_iterations": 40, "eta": 75.0}
    assert progress_text(header) == ("Scale 2/3 (512x341 px), iteration 12/40, about 75 s "
                                     "left")
    single = {**header, "scale": 1, "scales": 1}
    assert progress_text(single) == "Iteration 12/40, about 75 s left"
    assert progress_text({**header, "loss": None}) == "Started..."
