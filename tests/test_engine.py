"""The engine on seeded random weights: shapes, exactness, losses, schedule, cancel, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torchvision.models import vgg16, vgg19

from neural_mirage.engine import (
    LAYER_NAMES,
    ParamError,
    RenderCancelled,
    RenderParams,
    imagenet_classes,
    plan_scales,
    random_state_dict,
    render,
    top_classes,
)
from neural_mirage.engine.losses import feature_loss, gram, tv_loss
from neural_mirage.engine.render import fit_size, keep_colors, scale_memory, scale_mode
from neural_mirage.weights import ModelSpec, load_model

FAST = dict(size=64, iterations=6, scales=1, early_stop=0.0)


@pytest.mark.parametrize("hw", [(37, 53), (224, 224), (300, 200), (480, 640)])
def test_fc_layers_work_at_any_size(model, hw):
    image = torch.rand(1, 3, *hw)
    feats = model.features(image, ["fc6", "fc7", "fc8", "relu5_4"])
    assert feats["fc6"].shape == (1, 4096)
    assert feats["fc7"].shape == (1, 4096)
    assert feats["fc8"].shape == (1, 1000)
    assert feats["relu5_4"].shape[-2:] == (hw[0] // 16, hw[1] // 16)


def test_fc8_equals_torchvision_logits_at_224(model):
    reference = vgg19(weights=None)
    reference.load_state_dict(random_state_dict(0))
    reference.eval()
    image = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        ours = model(image)
        theirs = reference(model.prepare(image))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_vgg16_matches_torchvision_and_rejects_vgg19_only_layers(photo):
    model16, info = load_model(ModelSpec(weights="random", arch="vgg16", seed=1))
    assert info.arch == "vgg16" and "conv5_4" not in model16.layer_names
    reference = vgg16(weights=None)
    reference.load_state_dict(random_state_dict(1, "vgg16"))
    reference.eval()
    image = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model16(image), reference(model16.prepare(image)),
                                   rtol=1e-4, atol=1e-4)
        assert model16.features(torch.rand(1, 3, 90, 70), ["fc7"])["fc7"].shape == (1, 4096)
    result = render(model16, photo, RenderParams(content_layers={"fc7": 1, "relu4_2": 0.2},
                                                 **FAST), see_top=2)
    assert result.image.shape == (3, 48, 64) and len(result.seen_result) == 2
    with pytest.raises(ParamError, match="'relu5_4' is not in this model"):
        render(model16, photo, RenderParams(style_layers={"relu5_4": 1.0}, **FAST))


def test_two_forward_passes_agree(model):
    image = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        a = model.features(image, ["fc7"])["fc7"]
        b = model.features(image, ["fc7"])["fc7"]
    assert torch.equal(a, b)


def test_layers_after_deepest_loss_are_not_run(model):
    called: list[str] = []
    hooks = [module.register_forward_hook(lambda m, i, o, n=name: called.append(n))
             for name, module in model.layers.items()]
    try:
        model.features(torch.rand(1, 3, 64, 64), ["relu3_1"])
    finally:
        for h in hooks:
            h.remove()
    assert called == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]


def test_reading_a_pre_relu_layer_keeps_its_value(model):
    """fc7 is read before relu7: an in-place ReLU would clip the stored negatives."""
    feats = model.features(torch.rand(1, 3, 64, 64), ["fc7", "fc8"])
    assert (feats["fc7"] < 0).any()


def test_unknown_layer_is_rejected(model):
    with pytest.raises(ValueError, match="VGG19 has no layer"):
        model.features(torch.rand(1, 3, 64, 64), ["fc9"])


def test_gram_matches_hand_computation():
    f = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    m = f[0].double().numpy().reshape(3, 20)
    expected = np.array([[sum(m[i, k] * m[j, k] for k in range(20)) for j in range(3)]
                         for i in range(3)]) / (3 * 4 * 5)
    # float32 sums: compare with a tolerance on the scale of the values, not of each entry
    np.testing.assert_allclose(gram(f).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gram_gradient_is_exact(layout):
    f = torch.randn(1, 4, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = f.contiguous(memory_format=layout).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: gram(x).mul(torch.arange(16.0).view(4, 4)).sum(),
                                    (f,))


def test_loss_normalisations_match_hand_computation():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    t = torch.tensor([1.0, 0.0, 3.0, 2.0])
    assert feature_loss(a, t, "neural-style").item() == pytest.approx((0 + 4 + 0 + 4) / 4)
    assert feature_loss(a, t, "relative").item() == pytest.approx(8 / (1 + 0 + 9 + 4))
    img = torch.zeros(1, 3, 2, 2)
    img[0, :, 0, 0] = 1.0
    # differences: one in x and one in y per channel, each 1.0
    assert tv_loss(img, "neural-style").item() == pytest.approx(255.0 * 6)
    assert tv_loss(img, "relative").item() == pytest.approx(3 / 6 + 3 / 6)


@pytest.mark.parametrize("content", [{"fc7": 1.0}, {"relu4_2": 1.0}, {"fc7": 1.0, "relu4_2": 0.5}],
                         ids=["fc-only", "conv-only", "mixed"])
def test_loss_falls(model, photo, content):
    losses: list[float] = []
    params = RenderParams(content_layers=content, **{**FAST, "iterations": 20})
    render(model, photo, params, on_progress=lambda p: p.iteration and losses.append(p.loss),
           see_top=0)
    assert len(losses) == 20
    assert losses[-1] < 0.5 * losses[0]


def test_adam_loss_falls(model, photo):
    losses: list[float] = []
    params = RenderParams(optimizer="adam", learning_rate=0.05, **{**FAST, "iterations": 15})
    render(model, photo, params, on_progress=lambda p: p.iteration and losses.append(p.loss),
           see_top=0)
    assert losses[-1] < losses[0]


def test_same_seed_same_result_and_other_seed_differs(model, photo):
    a = render(model, photo, RenderParams(seed=3, **FAST), see_top=0).image
    b = render(model, photo, RenderParams(seed=3, **FAST), see_top=0).image
    c = render(model, photo, RenderParams(seed=4, **FAST), see_top=0).image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_cancel_takes_effect_within_one_iteration(model, photo):
    seen: list[int] = []
    cancel_after = 3

    with pytest.raises(RenderCancelled):
        render(model, photo, RenderParams(**{**FAST, "iterations": 50}),
               on_progress=lambda p: seen.append(p.iteration),
               should_cancel=lambda: len(seen) > cancel_after)
    assert seen == [0, 1, 2, 3]


def test_progress_reports_terms_scales_and_previews(model, photo):
    reports = []
    params = RenderParams(size=96, iterations=4, scales=2, early_stop=0.0)
    result = render(model, photo, params, on_progress=reports.append, see_top=3,
                    preview_every=2)
    assert reports[0].iteration == 0 and reports[0].loss is None and reports[0].total == 6
    reports = reports[1:]
    assert [(r.scale, r.width) for r in reports] == [(1, 48)] * 2 + [(2, 96)] * 4
    assert reports[-1].iteration == reports[-1].total == 6
    assert set(reports[0].losses) == {"content:fc7", "tv"} | {
        f"style:relu{i}_1" for i in range(1, 6)}
    assert reports[0].loss == pytest.approx(sum(reports[0].losses.values()), rel=1e-5)
    previews = [r.preview for r in reports if r.preview is not None]
    assert [p.shape for p in previews] == [(3, 36, 48), (3, 72, 96), (3, 72, 96)]
    assert result.image.shape == (3, 72, 96)
    assert len(result.seen_input) == len(result.seen_result) == 3


def test_early_stop_ends_a_flat_scale(model, photo):
    params = RenderParams(size=64, iterations=400, scales=1, early_stop=0.5)
    result = render(model, photo, params, see_top=0)
    assert result.stopped_early
    assert 25 < result.iterations < 400


def test_automatic_scales_halve_the_side_and_the_iterations():
    params = RenderParams(iterations=100)
    scales = plan_scales(1024, 768, params)
    assert [(s.width, s.height, s.iterations) for s in scales] == [
        (128, 96, 12), (256, 192, 25), (512, 384, 50), (1024, 768, 100)]
    assert len(plan_scales(100, 100, params)) == 1
    wide = plan_scales(1024, 80, RenderParams(iterations=10, scales=3))
    assert [(s.width, s.height) for s in wide] == [(512, 40), (1024, 80)]
    with pytest.raises(ParamError, match="at least 32"):
        plan_scales(512, 20, params)


def test_wide_style_image_is_kept_above_32_px(model, photo):
    wide = torch.rand(3, 20, 400)
    result = render(model, photo, RenderParams(**FAST), styles=[wide], see_top=0)
    assert result.image.shape == (3, 48, 64)


def test_multiple_styles_and_blend(model, photo):
    other = torch.rand(3, 40, 40)
    params = RenderParams(style_blend=[3, 1], **FAST)
    result = render(model, photo, params, styles=[photo, other], see_top=0)
    assert result.image.shape == (3, 48, 64)
    with pytest.raises(ParamError, match="blend"):
        render(model, photo, RenderParams(style_blend=[1, 1, 1], **FAST),
               styles=[photo, other], see_top=0)


def test_init_content_and_original_colors(model, photo):
    params = RenderParams(init="content", original_colors=True, **FAST)
    result = render(model, photo, params, see_top=0)
    assert result.image.min() >= 0 and result.image.max() <= 1
    grey = torch.full((1, 3, 8, 8), 0.5)
    coloured = keep_colors(grey, torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8))
    assert coloured[0, 0].mean() > coloured[0, 1].mean()  # chroma from the red content


@pytest.mark.parametrize("init", ["content", "image"])
def test_render_never_writes_into_the_callers_tensors(model, photo, init):
    """At a first scale of the input's own size, resizing returns the caller's tensor itself; the
    optimiser must still work on a copy."""
    content, start = photo.clone(), photo.flip(-1).clone()
    params = RenderParams(init=init, **{**FAST, "size": max(photo.shape[-2:]), "scales": 1})
    render(model, photo, params, init_image=start if init == "image" else None, see_top=0)
    assert torch.equal(photo, content)
    assert torch.equal(start, photo.flip(-1))


def test_checkpointed_blocks_give_the_same_features_and_gradients(model, photo):
    layers = {"relu1_1", "relu3_1", "relu5_1", "fc7"}
    grads = []
    for checkpoint in (False, True):
        image = photo.unsqueeze(0).clone().requires_grad_(True)
        feats = model.features(image, layers, checkpoint=checkpoint)
        loss = sum(f.square().mean() for f in feats.values())
        loss.backward()
        grads.append((loss.detach(), image.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-4, atol=1e-7)


def test_a_memory_budget_checkpoints_large_scales_with_the_same_result(model, photo):
    """A budget below the plain estimate makes the render checkpoint (less memory, more
    compute); the optimisation itself is unchanged."""
    params = RenderParams(**FAST)
    final = plan_scales(*fit_size(photo.shape[2], photo.shape[1], params.size), params)[-1]
    budget = scale_memory(params, final, checkpoint=True)
    assert scale_mode(params, final, budget) == ("checkpoint", 0)
    plain = render(model, photo, params, see_top=0)
    tight = render(model, photo, params, see_top=0, memory_budget=budget)
    torch.testing.assert_close(tight.image, plain.image, rtol=1e-3, atol=1e-4)
    assert tight.loss == pytest.approx(plain.loss, rel=1e-4)


def test_top_classes_are_sorted_probabilities(model):
    seen = top_classes(model, torch.rand(3, 50, 70), 4, model.labels)
    assert len(seen) == 4
    assert all(a.probability >= b.probability for a, b in itertools.pairwise(seen))
    assert all(isinstance(s.name, str) and s.name for s in seen)


@pytest.mark.parametrize("change, message", [
    ({"content_layers": {"fc9": 1.0}}, "unknown or unusable layer 'fc9'"),
    ({"style_layers": {"fc7": 1.0}}, "spatial map"),
    ({"style_weight": -1.0}, "must not be negative"),
    ({"size": 100_000}, "between 32 and 8192"),
    ({"iterations": 0}, "between 1 and"),
    ({"optimizer": "sgd"}, "optimizer must be one of"),
    ({"content_layers": {}, "style_layers": {}}, "at least one"),
])
def test_bad_params_name_the_problem(change, message):
    with pytest.raises(ParamError, match=message):
        RenderParams(**change).validate()


def test_params_from_dict_rejects_unknown_and_wrong_types():
    with pytest.raises(ParamError, match="unknown parameter"):
        RenderParams.from_dict({"sise": 3})
    with pytest.raises(ParamError, match="whole number"):
        RenderParams.from_dict({"size": "big"})
    assert RenderParams.from_dict({"style_weight": 2}).style_weight == 2.0
    assert set(RenderParams().to_dict()) >= {"size", "content_layers"}
    assert "fc8" in LAYER_NAMES


def test_class_names_match_forgivingly_and_errors_list_close_names(model):
    from neural_mirage.engine.steering import GROUPS, find_class, resolve

    names = imagenet_classes()
    assert find_class("Church", names) == find_class("church", names) == find_class("497", names)
    assert resolve({"church": 1.0, "lakeside": 0.5}, names) == pytest.approx(
        {find_class("church", names): 2 / 3, find_class("lakeside", names): 1 / 3})
    for group in GROUPS:
        assert len(resolve({f"@{group}": 1.0}, names)) == len(GROUPS[group])
    with pytest.raises(ParamError, match="closest: church"):
        find_class("churh", names)
    # a word the labels lack points to the group that has it, not to names spelt alike
    with pytest.raises(ParamError) as cathedral:
        find_class("cathedral", names)
    assert str(cathedral.value) == ("unknown class 'cathedral'; closest: @buildings (church, "
                                    "castle, palace, monastery, ...)")
    with pytest.raises(ParamError, match="closest: @water"):
        find_class("Rivers", names)
    with pytest.raises(ParamError, match=r"'zzzz'; no label is close to it$"):
        find_class("zzzz", names)
    with pytest.raises(ParamError, match="ambiguous"):
        find_class("dog", names)
    with pytest.raises(ParamError, match="unknown group"):
        resolve({"@clouds": 1.0}, names)
    with pytest.raises(ParamError, match="unknown class"):
        RenderParams(see={"zzzz": 1.0}).check_model(model.layer_names, model.labels)


def test_groups_keep_the_members_another_label_set_has():
    from neural_mirage.engine.steering import available_groups, resolve

    places = ("church/outdoor", "lake/natural", "valley", "castle", "barn", "cliff")
    groups = available_groups(places)
    assert groups["buildings"] == ["church/outdoor", "castle", "barn"]  # "church" matches
    assert groups["landscape"] == ["valley", "cliff"]
    assert "animals" not in groups
    assert resolve({"@buildings": 1.0, "church/outdoor": 1.0}, places) == pytest.approx(
        {0: 2 / 3, 3: 1 / 6, 4: 1 / 6})
    with pytest.raises(ParamError, match="none of the classes of @animals"):
        resolve({"@animals": 1.0}, places)


def test_steering_raises_the_targeted_class(model, photo):
    from neural_mirage.engine.steering import find_class

    target = find_class("church", model.labels)
    base = dict(FAST, iterations=15)
    steered_losses = []
    plain = render(model, photo, RenderParams(**base), see_top=0)
    steered = render(model, photo, RenderParams(see={"church": 1.0}, see_weight=5.0, **base),
                     see_top=0, on_progress=lambda p: p.iteration and steered_losses.append(
                         p.losses["see"]))
    assert steered_losses[-1] < steered_losses[0]

    def probability(image):
        with torch.no_grad():
            return torch.softmax(model(image.unsqueeze(0))[0], 0)[target].item()

    assert probability(steered.image) > probability(plain.image)
