"""`UNet`: a decoder with skip connections over any timm ``features_only`` encoder.

The encoder returns feature maps at growing strides (2, 4, 8, 16, 32 for most timm models). The decoder
follows the ideas of fastai's ``DynamicUnet`` (our code, on timm encoders):

- a middle block (two conv-BN-ReLU) on the deepest map;
- each level upsamples by 2 with a **PixelShuffle** whose 1x1 convolution is **ICNR-initialised** (at
  init it equals nearest-neighbour upsampling, so no checkerboard artefacts), optionally **blurred**
  (a 2x2 average after a one-pixel pad), then concatenates the batch-normed skip map and applies two
  conv-BN-ReLU layers; an optional **self-attention** layer (SAGAN-style, zero-initialised gate) ends
  the level before the last two;
- a **residual block** on the last level and a 1x1 head, whose logits are upsampled bilinearly; or,
  with ``last_cross=True`` (fastai's ending), a final PixelShuffle to the input's resolution, the input
  image concatenated, then the residual block and the head.

Sizes that are not multiples of 32 work (each upsample is resized to the skip map's exact size).
``block="plain"`` builds the earlier, simpler decoder (bilinear upsampling, no middle/final blocks): it
is what `build_unet` makes for files exported before this decoder existed.

>>> import timm, torch
>>> enc = timm.create_model("resnet18", pretrained=False, features_only=True)
>>> model = UNet(enc, n_out=3, decoder_channels=(32, 16, 16, 8), self_attention=True)
>>> model(torch.randn(1, 3, 64, 96)).shape
torch.Size([1, 3, 64, 96])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ...core.registry import register_model
from ..models import create_encoder

__all__ = ["UNet", "EncoderMaps", "UNetBlock", "PlainUNetBlock", "ConvBNReLU", "PixelShuffleICNR", "SelfAttention", "ResBlock",
           "icnr_", "unet_splitter", "build_unet", "DEFAULT_DECODER_CHANNELS", "UNET_BLOCKS"]

#: Decoder widths, deepest level first: light enough to train on a CPU.
DEFAULT_DECODER_CHANNELS = (128, 64, 48, 32)
#: ``"dynamic"``: the DynamicUnet-style decoder (default of `unet_learner`); ``"plain"``: the earlier one.
UNET_BLOCKS = ("dynamic", "plain")


class ConvBNReLU(nn.Sequential):
    """3x3 (or ``ks``) convolution without bias, batch norm, ReLU (``act=False``: no ReLU)."""

    def __init__(self, n_in: int, n_out: int, ks: int = 3, act: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(n_in, n_out, ks, padding=ks // 2, bias=False), nn.BatchNorm2d(n_out)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        nn.init.kaiming_normal_(self[0].weight, nonlinearity="relu")


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR init (Aitken et al. 2017) of a conv weight ``[n_out * scale**2, n_in, k, k]`` feeding a
    ``PixelShuffle(scale)``: the ``scale**2`` sub-pixel filters of each output channel start equal, so
    the shuffle starts as nearest-neighbour upsampling of a kaiming-initialised conv.

    >>> w = icnr_(torch.empty(8, 3, 1, 1)); bool((w[0::4] == w[1::4]).all())
    True
    """
    n_out = weight.shape[0] // scale ** 2
    sub = torch.empty(n_out, *weight.shape[1:])
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale ** 2, dim=0))
    return weight


class PixelShuffleICNR(nn.Module):
    """Upsample by ``scale``: 1x1 conv (ICNR init) → ReLU → ``PixelShuffle`` → optional blur (pad + 2x2
    average, which removes the last checkerboard artefacts)."""

    def __init__(self, n_in: int, n_out: int, scale: int = 2, blur: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(n_in, n_out * scale ** 2, 1)
        icnr_(self.conv.weight, scale)
        nn.init.zeros_(self.conv.bias)
        self.shuffle = nn.PixelShuffle(scale)
        self.blur = nn.Sequential(nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)) if blur else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(F.relu(self.conv(x)))
        return self.blur(x) if self.blur is not None else x


class SelfAttention(nn.Module):
    """Self-attention over the pixels of a feature map (SAGAN): ``x + gamma * attention(x)``, with
    ``gamma`` starting at 0 so the layer starts as the identity."""

    def __init__(self, n: int):
        super().__init__()
        self.query, self.key = nn.Conv1d(n, max(1, n // 8), 1, bias=False), nn.Conv1d(n, max(1, n // 8), 1, bias=False)
        self.value = nn.Conv1d(n, n, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)                                              # [B, C, HW]
        q, k, v = self.query(flat), self.key(flat), self.value(flat)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)              # [B, HW, HW]
        return x + self.gamma * (v @ attn.transpose(1, 2)).view_as(x)


class ResBlock(nn.Module):
    """``relu(x + conv_bn(conv_bn_relu(x)))``: two 3x3 convolutions with an identity shortcut."""

    def __init__(self, n: int):
        super().__init__()
        self.convs = nn.Sequential(ConvBNReLU(n, n), ConvBNReLU(n, n, act=False))
        nn.init.zeros_(self.convs[1][1].weight)                          # starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.convs(x))


def _resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return x if x.shape[-2:] == ref.shape[-2:] else F.interpolate(x, size=ref.shape[-2:], mode="nearest")


class UNetBlock(nn.Module):
    """One decoder level: PixelShuffle-ICNR upsampling of ``x`` to half its width, concatenated with the
    batch-normed skip map, ReLU, then two conv-BN-ReLU (the second followed by `SelfAttention` if asked).

    >>> block = UNetBlock(n_in=32, n_skip=16, n_out=24, blur=True)
    >>> block(torch.randn(2, 32, 4, 4), torch.randn(2, 16, 8, 8)).shape   # upsampled x2, joined with the skip map
    torch.Size([2, 24, 8, 8])
    """

    def __init__(self, n_in: int, n_skip: int, n_out: int, blur: bool = False, self_attention: bool = False):
        super().__init__()
        n_up = max(1, n_in // 2)
        self.up = PixelShuffleICNR(n_in, n_up, blur=blur)
        self.skip_bn = nn.BatchNorm2d(n_skip)
        self.conv1 = ConvBNReLU(n_up + n_skip, n_out)
        self.conv2 = ConvBNReLU(n_out, n_out)
        self.attn = SelfAttention(n_out) if self_attention else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = _resize_to(self.up(x), skip)
        x = self.conv2(self.conv1(F.relu(torch.cat([x, self.skip_bn(skip)], dim=1))))
        return self.attn(x) if self.attn is not None else x


class PlainUNetBlock(nn.Module):
    """The earlier decoder level: bilinear upsampling to the skip's size, concatenation, two conv-BN-ReLU."""

    def __init__(self, n_in: int, n_skip: int, n_out: int):
        super().__init__()
        self.conv1 = ConvBNReLU(n_in + n_skip, n_out)
        self.conv2 = ConvBNReLU(n_out, n_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class EncoderMaps(NamedTuple):
    """A batch of a U-Net encoder's feature maps computed earlier, which `UNet` takes instead of images (the
    decoder alone then runs): ``maps`` shallow to deep, ``image`` the input images (only a ``last_cross``
    decoder reads them; else ``None``), ``size`` the input's ``(height, width)``.

    >>> import timm
    >>> model = UNet(timm.create_model("resnet18", pretrained=False, features_only=True), n_out=3,
    ...              decoder_channels=(16, 8)).eval()
    >>> x = torch.randn(1, 3, 32, 48)
    >>> maps = EncoderMaps(tuple(model.encoder(x)), None, (32, 48))
    >>> bool(torch.allclose(model(maps), model(x), atol=1e-5))   # the decoder alone, on maps computed earlier
    True
    """

    maps: tuple[torch.Tensor, ...]
    image: torch.Tensor | None
    size: tuple[int, int]


class UNet(nn.Module):
    """U-Net over a timm ``features_only`` encoder (see the module docstring for the decoder).

    Args:
        encoder: a module returning a list of feature maps, shallow to deep, with ``feature_info``
            (``channels()``), as ``timm.create_model(..., features_only=True)`` builds.
        n_out: number of output channels (classes).
        decoder_channels: width of each decoder level, deepest first; there is one level per skip
            connection, so at most ``len(encoder features) - 1`` values (fewer drops the shallowest skips).
        block: ``"dynamic"`` (PixelShuffle-ICNR, middle and final residual blocks) or ``"plain"``.
        blur / blur_final: blur after each level's / the final PixelShuffle (``"dynamic"`` only).
        self_attention: a self-attention layer at the end of the level before the last two (stride 8
            with the default four levels), as fastai places it (``"dynamic"`` only).
        last_cross: fastai's ending: upsample to the input's resolution, concatenate the input image,
            then the residual block and the head. Without it (the default) the residual block and the
            head run on the last level and the logits are upsampled bilinearly (``"dynamic"`` only).

    The defaults (``blur=True``, ``self_attention=True``, ``last_cross=False``) differ from fastai's
    (``False``, ``False``, ``True``): on camvid_tiny (80 training frames, ``fine_tune(8)``, 2-4 seeds
    each, CPU) they gave pixel accuracy 0.79-0.82 (mean 0.80) against 0.75-0.80 (mean 0.78) for the
    plain decoder, and fastai's full-resolution ending the worst (0.76-0.78). ``examples/camvid.py``
    with them: pixel accuracy 0.902, mean IoU 0.631 (one run; README: 0.899 / 0.614). At the learning
    rate `SegmentationLearner.fine_tune` now defaults to (1e-2), seeds 0-2: 0.845 / 0.842 / 0.841 with
    these defaults, 0.831 / 0.846 / 0.847 without self-attention, 0.834 / 0.834 / 0.833 with ``last_cross``.

    >>> import timm
    >>> encoder = timm.create_model("resnet18", pretrained=False, features_only=True)
    >>> model = UNet(encoder, n_out=5, decoder_channels=(32, 16), block="plain")
    >>> model.skip_channels, model(torch.randn(2, 3, 48, 40)).shape      # any size, not only multiples of 32
    ([256, 128], torch.Size([2, 5, 48, 40]))
    >>> model[0] is model.encoder, model[-1] is model.head                # fastai's indexing
    (True, True)
    """

    def __init__(self, encoder: nn.Module, n_out: int, decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
                 block: str = "dynamic", blur: bool = True, blur_final: bool = True, self_attention: bool = True,
                 last_cross: bool = False):
        super().__init__()
        if not hasattr(encoder, "feature_info"):
            raise TypeError("encoder must be a timm features_only model (it needs .feature_info); "
                            "build it with timm.create_model(arch, features_only=True)")
        if block not in UNET_BLOCKS:
            raise ValueError(f"block must be one of {UNET_BLOCKS}, got {block!r}")
        chans = list(encoder.feature_info.channels())
        decoder_channels = [int(c) for c in decoder_channels]
        if not 1 <= len(decoder_channels) <= len(chans) - 1:
            raise ValueError(f"decoder_channels needs 1 to {len(chans) - 1} values (one per skip connection of this "
                             f"encoder, whose features have {chans} channels), got {decoder_channels}")
        if n_out < 1:
            raise ValueError(f"n_out must be >= 1, got {n_out}")
        self.encoder, self.n_out, self.block = encoder, n_out, block
        self.skip_channels = chans[::-1][1:len(decoder_channels) + 1]  # deep to shallow
        n_in = chans[-1]
        self.middle: nn.Module | None = None
        self.final: nn.ModuleDict | None = None
        if block == "dynamic":
            self.middle = nn.Sequential(ConvBNReLU(n_in, 2 * n_in), ConvBNReLU(2 * n_in, n_in))
            attn_at = max(0, len(decoder_channels) - 3) if self_attention else -1
            widths_in = [n_in] + decoder_channels[:-1]
            blocks: list[nn.Module] = [
                UNetBlock(w_in, n_skip, w_out, blur, i == attn_at)
                for i, (w_in, n_skip, w_out) in enumerate(zip(widths_in, self.skip_channels, decoder_channels))]
            n_in = decoder_channels[-1]
            self.last_cross = bool(last_cross)
            if last_cross:  # fastai's: up to the input's resolution, the image joined, then the residual block
                n_final = max(8, n_in // 2)
                self.final = nn.ModuleDict({"up": PixelShuffleICNR(n_in, n_final, blur=blur_final),
                                            "res": ResBlock(n_final + 3)})
                n_in = n_final + 3
            else:           # the residual block on the last level; the logits are upsampled bilinearly
                self.final = nn.ModuleDict({"res": ResBlock(n_in)})
        else:
            blocks = []
            for n_skip, n in zip(self.skip_channels, decoder_channels):
                blocks.append(PlainUNetBlock(n_in, n_skip, n))
                n_in = n
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(n_in, n_out, kernel_size=1)

    def _parts(self) -> list[nn.Module]:
        return [self.encoder, *([self.middle] if self.middle is not None else []), self.decoder,
                *([self.final] if self.final is not None else []), self.head]

    def __getitem__(self, i: int) -> nn.Module:
        """fastai's indexing: ``unet[0]`` is the encoder, then the middle block, the decoder levels, the final
        block and ``unet[-1]`` the 1x1 head (those present). Skip connections join them, so a slice of
        them is not a network: there is no slicing."""
        if isinstance(i, slice):
            raise TypeError("a U-Net's parts are joined by skip connections; index one part (unet[0]: the encoder)")
        return self._parts()[i]

    def __len__(self) -> int:
        return len(self._parts())

    def forward(self, x: torch.Tensor | EncoderMaps) -> torch.Tensor:
        """Logits ``[B, n_out, H, W]`` of images ``x`` ``[B, 3, H, W]``, or of the encoder's maps computed
        earlier (`EncoderMaps`: the decoder alone runs, as `FrozenFeatureCache` trains it)."""
        if isinstance(x, EncoderMaps):
            return self.decode(list(x.maps), x.image, tuple(int(s) for s in x.size))
        # channels-last activations: about 20 % faster convolutions on CPU (oneDNN), the same on GPU
        return self.decode(self.encoder(x.contiguous(memory_format=torch.channels_last)), x, tuple(x.shape[-2:]))

    def decode(self, maps: Sequence[torch.Tensor], image: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        """The decoder on the encoder's ``maps`` (shallow to deep, as the encoder returns them); ``image`` is
        the input (needed by ``last_cross`` only) and ``size`` its height and width."""
        feats = list(maps)[::-1]  # deepest first
        y = self.middle(feats[0]) if self.middle is not None else feats[0]
        for block, skip in zip(self.decoder, feats[1:]):
            y = block(y, skip)
        if self.final is not None:
            if self.last_cross:
                if image is None:
                    raise ValueError("a U-Net with last_cross=True needs the input image beside the encoder maps")
                y = torch.cat([_resize_to(self.final["up"](y), image), image.to(y.dtype)], dim=1)
            y = self.final["res"](y)
        y = self.head(y)
        return y if tuple(y.shape[-2:]) == size else F.interpolate(y, size=size, mode="bilinear", align_corners=False)


def unet_splitter(model: UNet) -> list[list[nn.Parameter]]:
    """Two parameter groups: the encoder (body), then the decoder and head (trained from scratch).

    >>> import timm
    >>> encoder = timm.create_model("resnet18", pretrained=False, features_only=True)
    >>> body, decoder = unet_splitter(UNet(encoder, n_out=2, decoder_channels=(16,)))
    >>> len(body) == len(list(encoder.parameters())), len(decoder) > 0   # freeze() trains the decoder alone
    (True, True)
    """
    enc = {id(p) for p in model.encoder.parameters()}
    return [list(model.encoder.parameters()), [p for p in model.parameters() if id(p) not in enc]]


@register_model("vision.unet")
def build_unet(arch: str, n_out: int, decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
               pretrained: bool = False, block: str = "plain", blur: bool = True, blur_final: bool = True,
               self_attention: bool = True, last_cross: bool = False) -> UNet:
    """A `UNet` on the timm encoder ``arch`` (the builder `load_learner` calls, with ``pretrained=False``).

    ``block`` defaults to ``"plain"`` here so that files exported before the dynamic decoder (whose
    config has no ``block``) still load; `unet_learner` always records ``block`` explicitly.

    >>> build_unet("efficientnet_lite0", n_out=4, block="dynamic")(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 4, 64, 64])
    """
    return UNet(create_encoder(arch, pretrained=pretrained), n_out, decoder_channels, block=block, blur=blur,
                blur_final=blur_final, self_attention=self_attention, last_cross=last_cross)
