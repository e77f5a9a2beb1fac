"""Weight files: the Caffe key remap, hash checks and the missing-file message."""

from __future__ import annotations

import hashlib

import pytest
import torch

from neural_mirage.engine import random_state_dict
from neural_mirage.install.weights import WeightsError, load_model, verify_file


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
    model, info = load_model("caffe", path, verify=False)
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
        load_model("caffe", path)


def test_verify_file_checks_the_prefix(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"neural mirage")
    digest = hashlib.sha256(b"neural mirage").hexdigest()
    assert verify_file(path, digest[:8])
    assert not verify_file(path, "00000000")


def test_missing_file_and_wrong_shapes(tmp_path):
    with pytest.raises(WeightsError, match="fetch-weights torchvision"):
        load_model("torchvision", tmp_path / "absent.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="do not fit VGG19"):
        load_model("torchvision", bad, verify=False)
    with pytest.raises(WeightsError, match="weights must be one of"):
        load_model("imagenet21k")
