"""Weight files: the Caffe key remap, hash checks and the missing-file message."""

from __future__ import annotations

import hashlib

import pytest
import torch

from neural_mirage.engine import random_state_dict
from neural_mirage.weights import (
    ModelSpec,
    WeightsError,
    load_model,
    read_labels,
    verify_file,
)

from .weights_files import places_like_files


def _caffe_layout(state: dict) -> dict:
    """The key layout of the original vgg19-d01eb7cb.pth (classifier starts with Dropout)."""
    names = {"classifier.0.": "classifier.1.", "classifier.3.": "classifier.4."}
    out = {}
    for key, value in state.items():
        for new, old in names.items():
            if key.startswith(new):
                key = old + key[len(new):]
        out[key] = value
    return out


def test_caffe_file_is_remapped_and_uses_bgr_255(tmp_path):
    state = random_state_dict(5)
    path = tmp_path / "vgg19-d01eb7cb.pth"
    torch.save(_caffe_layout(state), path)
    model, info = load_model(ModelSpec("caffe", path=str(path), verify=False))
    assert info.pretrained and info.weights == "caffe"
    torch.testing.assert_close(model.layers["fc6"].weight, state["classifier.0.weight"])
    torch.testing.assert_close(model.layers["fc7"].bias, state["classifier.3.bias"])
    image = torch.zeros(1, 3, 2, 2)
    image[:, 0] = 1.0  # pure red
    prepared = model.prepare(image)
    assert prepared[0, 2, 0, 0].item() == pytest.approx(255 - 123.68)  # red lands in BGR slot 2
    assert prepared[0, 0, 0, 0].item() == pytest.approx(-103.939)


def test_hash_mismatch_is_refused(tmp_path):
    path = tmp_path / "vgg19-d01eb7cb.pth"
    torch.save(_caffe_layout(random_state_dict(5)), path)
    with pytest.raises(WeightsError, match="sha256 does not start with d01eb7cb"):
        load_model(ModelSpec("caffe", path=str(path)))


def test_verify_file_checks_the_prefix(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"neural mirage")
    digest = hashlib.sha256(b"neural mirage").hexdigest()
    assert verify_file(path, digest[:8])
    assert not verify_file(path, "00000000")


def test_missing_file_and_wrong_shapes(tmp_path):
    with pytest.raises(WeightsError, match="fetch-weights torchvision' "):
        load_model(ModelSpec("torchvision", path=str(tmp_path / "absent.pth")))
    with pytest.raises(WeightsError, match="fetch-weights caffe --arch vgg16"):
        load_model(ModelSpec("caffe", "vgg16", path=str(tmp_path / "absent.pth")))
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="do not fit VGG19"):
        load_model(ModelSpec("torchvision", path=str(bad), verify=False))
    with pytest.raises(WeightsError, match="weights must be one of"):
        load_model(ModelSpec("imagenet21k"))
    with pytest.raises(WeightsError, match="needs the file"):
        load_model(ModelSpec("file"))
    conv_only = {k: v for k, v in random_state_dict(0, "vgg16").items() if "classifier" not in k}
    torch.save(conv_only, bad)
    with pytest.raises(WeightsError, match="no fc6/fc7/fc8 weights"):
        load_model(ModelSpec("file", path=str(bad)))
    torch.save({"conv1_1.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="1 conv layers: neither VGG16"):
        load_model(ModelSpec("file", path=str(bad)))


def test_user_file_with_its_own_labels(tmp_path):
    path, labels = places_like_files(tmp_path)
    with pytest.raises(WeightsError, match="365 classes, not ImageNet's 1000: pass its label"):
        load_model(ModelSpec("file", path=str(path)))
    model, info = load_model(ModelSpec("file", path=str(path), labels=str(labels),
                                       preprocessing="caffe"))
    assert (info.arch, info.classes, info.pretrained) == ("vgg16", 365, True)
    assert model.labels[:3] == ("airfield", "church/outdoor", "lake/natural")
    assert model.labels[3] == "place 0"
    assert model.preprocessing.bgr
    assert model.features(torch.rand(1, 3, 64, 64), ["fc8"])["fc8"].shape == (1, 365)
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    with pytest.raises(WeightsError, match="has 2 names but the model has 365 classes"):
        load_model(ModelSpec("file", path=str(path), labels=str(short)))


def test_label_file_formats(tmp_path):
    synsets = tmp_path / "synset_words.txt"
    synsets.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n\n")
    assert read_labels(synsets) == ("tench, Tinca tinca", "goldfish")
    plain = tmp_path / "plain.txt"
    plain.write_text("church\nsea_shore\n")
    assert read_labels(plain) == ("church", "sea shore")
    with pytest.raises(WeightsError, match="could not read the label file"):
        read_labels(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(WeightsError, match="no class names"):
        read_labels(tmp_path / "empty.txt")


def test_daemon_args_carry_the_whole_spec(tmp_path):
    spec = ModelSpec("file", "vgg19", path=str(tmp_path / "w.pth"), labels="labels.txt",
                     preprocessing="caffe", verify=False)
    args = spec.daemon_args()
    assert args[:4] == ["--weights", "file", "--arch", "vgg19"]
    assert args[args.index("--weights-path") + 1] == str(tmp_path / "w.pth")
    assert args[args.index("--labels") + 1].endswith("/labels.txt")
    assert args[-3:] == ["--preprocessing", "caffe", "--no-verify-weights"]
