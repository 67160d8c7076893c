"""The DynamicUnet-style decoder: ICNR PixelShuffle, blur, self-attention, final residual block, legacy configs."""
from __future__ import annotations

import pytest
import timm
import torch
from torch import nn
from torch.nn import functional as F

from learnkit.vision.segmentation.unet import (PixelShuffleICNR, PlainUNetBlock, ResBlock, SelfAttention, UNet,
                                               UNetBlock, build_unet, icnr_, unet_splitter)


def test_icnr_pixel_shuffle_starts_as_nearest_upsampling():
    torch.manual_seed(0)
    up = PixelShuffleICNR(4, 3)
    x = torch.randn(2, 4, 5, 6)
    y = up(x)
    assert y.shape == (2, 3, 10, 12)
    conv = F.relu(F.conv2d(x, up.conv.weight[::4], up.conv.bias[::4]))   # one sub-pixel filter per channel
    assert torch.allclose(y, F.interpolate(conv, scale_factor=2, mode="nearest"), atol=1e-6)
    w = icnr_(torch.empty(12, 4, 1, 1))
    assert not torch.equal(w[0], w[4]) and torch.equal(w[4], w[7])


def test_blur_keeps_the_size_and_smooths():
    up = PixelShuffleICNR(4, 2, blur=True)
    y = up(torch.randn(1, 4, 6, 6))
    assert y.shape == (1, 2, 12, 12) and isinstance(up.blur[1], nn.AvgPool2d)


def test_self_attention_and_res_block_start_as_identity_and_train():
    x = torch.randn(2, 16, 4, 5)
    sa, rb = SelfAttention(16), ResBlock(16).eval()
    assert torch.equal(sa(x), x)
    assert torch.allclose(rb(x), F.relu(x))                      # zero-init last BN: relu(x + 0)
    sa.gamma.data.fill_(1.0)
    assert not torch.allclose(sa(x), x)


def test_dynamic_unet_structure_and_sizes():
    enc = timm.create_model("resnet18", pretrained=False, features_only=True)
    m = UNet(enc, 5, decoder_channels=(32, 16, 16, 8)).eval()                  # blur + self-attention by default
    assert all(isinstance(b, UNetBlock) for b in m.decoder) and isinstance(m.final["res"], ResBlock)
    assert [b.attn is not None for b in m.decoder] == [False, True, False, False]
    assert all(b.up.blur is not None for b in m.decoder) and "up" not in m.final
    assert m.final["res"].convs[0][0].in_channels == 8 and m.head.in_channels == 8   # on the last level
    with torch.no_grad():
        assert m(torch.randn(1, 3, 45, 70)).shape == (1, 5, 45, 70)
    groups = unet_splitter(m)
    assert sum(map(len, groups)) == len(list(m.parameters()))
    assert {id(p) for p in m.middle.parameters()} <= {id(p) for p in groups[1]}
    cross = UNet(enc, 5, decoder_channels=(16, 8), last_cross=True, self_attention=False, blur=False).eval()
    assert cross.final["res"].convs[0][0].in_channels == 8 + 3                # fastai's: the image joins
    assert all(b.attn is None and b.up.blur is None for b in cross.decoder)
    with torch.no_grad():
        assert cross(torch.randn(1, 3, 45, 70)).shape == (1, 5, 45, 70)
    with pytest.raises(ValueError, match="block must be one of"):
        UNet(enc, 5, block="fancy")


def test_build_unet_without_block_is_the_plain_decoder_of_old_exports():
    old = build_unet("efficientnet_lite0", n_out=3, decoder_channels=[16, 8])     # an old file's kwargs
    assert old.middle is None and old.final is None and isinstance(old.decoder[0], PlainUNetBlock)
    new = build_unet("efficientnet_lite0", n_out=3, decoder_channels=[16, 8], block="dynamic")
    assert new.middle is not None
    with pytest.raises(RuntimeError):
        new.load_state_dict(old.state_dict())                                    # they really differ
