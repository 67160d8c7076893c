"""`UNet`: a decoder with skip connections over any timm ``features_only`` encoder.

The encoder returns feature maps at growing strides (2, 4, 8, 16, 32 for most timm models). The decoder
starts from the deepest map and, level by level, upsamples to the next shallower map's size,
concatenates it and applies two 3x3 conv-BN-ReLU layers. A 1x1 head gives class logits, bilinearly
upsampled to the input's size. Upsampling goes to the skip map's exact size, so any input size works;
sizes divisible by 32 avoid rounding at the strided layers.

>>> import timm, torch
>>> enc = timm.create_model("resnet18", pretrained=False, features_only=True)
>>> model = UNet(enc, n_out=3, decoder_channels=(32, 16, 16, 8))
>>> model(torch.randn(1, 3, 64, 96)).shape
torch.Size([1, 3, 64, 96])
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...core.registry import register_model
from ..models import create_encoder

__all__ = ["UNet", "UNetBlock", "ConvBNReLU", "unet_splitter", "build_unet", "DEFAULT_DECODER_CHANNELS"]

#: Decoder widths, deepest level first: light enough to train on a CPU.
DEFAULT_DECODER_CHANNELS = (128, 64, 48, 32)


class ConvBNReLU(nn.Sequential):
    """3x3 (or ``ks``) convolution without bias, batch norm, ReLU."""

    def __init__(self, n_in: int, n_out: int, ks: int = 3):
        super().__init__(nn.Conv2d(n_in, n_out, ks, padding=ks // 2, bias=False), nn.BatchNorm2d(n_out),
                         nn.ReLU(inplace=True))


class UNetBlock(nn.Module):
    """Upsample ``x`` to the skip connection's size, concatenate them, then two conv-BN-ReLU layers."""

    def __init__(self, n_in: int, n_skip: int, n_out: int):
        super().__init__()
        self.conv1 = ConvBNReLU(n_in + n_skip, n_out)
        self.conv2 = ConvBNReLU(n_out, n_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class UNet(nn.Module):
    """U-Net over a timm ``features_only`` encoder.

    Args:
        encoder: a module returning a list of feature maps, shallow to deep, with ``feature_info``
            (``channels()``), as ``timm.create_model(..., features_only=True)`` builds.
        n_out: number of output channels (classes).
        decoder_channels: width of each decoder level, deepest first; there is one level per skip
            connection, so at most ``len(encoder features) - 1`` values (fewer drops the shallowest skips).
    """

    def __init__(self, encoder: nn.Module, n_out: int, decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS):
        super().__init__()
        if not hasattr(encoder, "feature_info"):
            raise TypeError("encoder must be a timm features_only model (it needs .feature_info); "
                            "build it with timm.create_model(arch, features_only=True)")
        chans = list(encoder.feature_info.channels())
        decoder_channels = [int(c) for c in decoder_channels]
        if not 1 <= len(decoder_channels) <= len(chans) - 1:
            raise ValueError(f"decoder_channels needs 1 to {len(chans) - 1} values (one per skip connection of this "
                             f"encoder, whose features have {chans} channels), got {decoder_channels}")
        if n_out < 1:
            raise ValueError(f"n_out must be >= 1, got {n_out}")
        self.encoder, self.n_out = encoder, n_out
        self.skip_channels = chans[::-1][1:len(decoder_channels) + 1]  # deep to shallow
        n_in = chans[-1]
        blocks = []
        for n_skip, n in zip(self.skip_channels, decoder_channels):
            blocks.append(UNetBlock(n_in, n_skip, n))
            n_in = n
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(n_in, n_out, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last activations: about 20 % faster convolutions on CPU (oneDNN), the same on GPU
        feats = self.encoder(x.contiguous(memory_format=torch.channels_last))[::-1]  # deepest first
        y = feats[0]
        for block, skip in zip(self.decoder, feats[1:]):
            y = block(y, skip)
        y = self.head(y)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def unet_splitter(model: UNet) -> list[list[nn.Parameter]]:
    """Two parameter groups: the encoder (body), then the decoder and head (trained from scratch)."""
    return [list(model.encoder.parameters()), list(model.decoder.parameters()) + list(model.head.parameters())]


@register_model("vision.unet")
def build_unet(arch: str, n_out: int, decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
               pretrained: bool = False) -> UNet:
    """A `UNet` on the timm encoder ``arch`` (the builder `load_learner` calls, with ``pretrained=False``).

    >>> build_unet("efficientnet_lite0", n_out=4)(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 4, 64, 64])
    """
    return UNet(create_encoder(arch, pretrained=pretrained), n_out, decoder_channels)
