"""`XResNet`: the "bag of tricks" ResNet (He et al. 2019) that fastai trains from scratch (fastbook ch. 7, 14).

Against the original ResNet: a stem of three 3x3 `ConvLayer` instead of one 7x7, residual blocks whose last
batch norm starts at zero, and shortcuts that average-pool before their 1x1 convolution when they downsample
(ResNet-D). It is an ``nn.Sequential``: stem, max pool, four stages of `ResBlock`, pooling, ``Flatten``,
dropout, linear. There are no pretrained weights.

Use it as a whole model (``Learner(dls, xresnet18(n_out=10, c_in=1), ...)``) or as the body of a
`vision_learner` (``vision_learner(dls, xresnet50, pretrained=False)``: cut before its pooling, with a new
head; such a learner exports like one on a timm arch).

>>> model = xresnet18(n_out=10, c_in=1)
>>> model(torch.randn(2, 1, 28, 28)).shape, type(model[-1]).__name__
(torch.Size([2, 10]), 'Linear')
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core.layers import ConvLayer, Flatten, ResBlock, init_cnn
from ..core.registry import register_model

__all__ = ["XResNet", "xresnet18", "xresnet34", "xresnet50", "XRESNETS", "build_xresnet_classifier"]


class XResNet(nn.Sequential):
    """fastai's ``XResNet(block, expansion, layers, p, c_in, n_out, stem_szs, widen, act_cls, ks, stride)``.

    Args:
        block: the residual block class (`ResBlock`). expansion: 1 (ResNet 18/34) or 4 (bottleneck, 50+).
        layers: blocks per stage, e.g. ``[2, 2, 2, 2]``. p: dropout before the last linear layer.
        c_in: input channels (1 for greyscale). n_out: outputs. stem_szs: the widths of the three stem convs.
        widen: multiplies the stage widths (64, 128, 256, 512). act_cls: the activation. ks: kernel size (odd).
        stride: the stride of the stem and of each stage after the first.

    >>> m = XResNet(ResBlock, 1, [1, 1], n_out=3)       # a small one: two stages of one block
    >>> m(torch.randn(1, 3, 32, 32)).shape
    torch.Size([1, 3])
    """

    def __init__(self, block: type[nn.Module], expansion: int, layers: Sequence[int], p: float = 0.0,
                 c_in: int = 3, n_out: int = 1000, stem_szs: Sequence[int] = (32, 32, 64), widen: float = 1.0,
                 act_cls: type[nn.Module] = nn.ReLU, ndim: int = 2, ks: int = 3, stride: int = 2, **kwargs: Any):
        if ks % 2 == 0:
            raise ValueError(f"the kernel size must be odd, got {ks}")
        self.block, self.expansion, self.act_cls, self.ndim, self.ks = block, expansion, act_cls, ndim, ks
        szs = [c_in, *stem_szs]
        stem = [ConvLayer(szs[i], szs[i + 1], ks=ks, stride=stride if i == 0 else 1, act_cls=act_cls, ndim=ndim)
                for i in range(3)]
        block_szs = [int(o * widen) for o in [64, 128, 256, 512] + [256] * (len(layers) - 4)]
        block_szs = [64 // expansion] + block_szs
        blocks = [self._make_layer(block_szs[i], block_szs[i + 1], n, 1 if i == 0 else stride, **kwargs)
                  for i, n in enumerate(layers)]
        pool = getattr(nn, f"MaxPool{ndim}d")(ks, stride=stride, padding=ks // 2)
        super().__init__(*stem, pool, *blocks, getattr(nn, f"AdaptiveAvgPool{ndim}d")(1), Flatten(), nn.Dropout(p),
                         nn.Linear(block_szs[len(layers)] * expansion, n_out))
        init_cnn(self)

    def __getitem__(self, idx: int | slice) -> nn.Module:
        """A layer, or for a slice an ``nn.Sequential`` of them (``model[:-4]``: the body)."""
        if isinstance(idx, slice):
            return nn.Sequential(*list(self.children())[idx])
        return super().__getitem__(idx)

    def _make_layer(self, ni: int, nf: int, blocks: int, stride: int, **kwargs: Any) -> nn.Sequential:
        return nn.Sequential(*[self.block(self.expansion, ni if i == 0 else nf, nf, stride=stride if i == 0 else 1,
                                          act_cls=self.act_cls, ndim=self.ndim, ks=self.ks, **kwargs)
                               for i in range(blocks)])


def _xresnet(name: str, expansion: int, layers: list[int], pretrained: bool, **kwargs: Any) -> XResNet:
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights: pass pretrained=False "
                         f"(vision_learner(dls, {name}, pretrained=False)) and train it from scratch")
    return XResNet(ResBlock, expansion, layers, **kwargs)


def xresnet18(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-18: ``[2, 2, 2, 2]`` basic blocks (keyword arguments: `XResNet`'s, e.g. ``n_out``, ``c_in``).

    >>> sum(p.numel() for p in xresnet18(n_out=10).parameters()) // 10**6   # millions of parameters
    11
    """
    return _xresnet("xresnet18", 1, [2, 2, 2, 2], pretrained, **kwargs)


def xresnet34(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-34: ``[3, 4, 6, 3]`` basic blocks.

    >>> len(xresnet34(n_out=2)[4])        # the first stage: 3 blocks
    3
    """
    return _xresnet("xresnet34", 1, [3, 4, 6, 3], pretrained, **kwargs)


def xresnet50(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-50: ``[3, 4, 6, 3]`` bottleneck blocks (expansion 4: 2048 features).

    >>> xresnet50(n_out=2)[-1]
    Linear(in_features=2048, out_features=2, bias=True)
    """
    return _xresnet("xresnet50", 4, [3, 4, 6, 3], pretrained, **kwargs)


#: The xresnets `vision_learner` knows by name (so that a learner on one exports and loads).
XRESNETS = {"xresnet18": xresnet18, "xresnet34": xresnet34, "xresnet50": xresnet50}


@register_model("vision.xresnet")
def build_xresnet_classifier(arch: str, n_out: int, lin_ftrs: Sequence[int] | None = None, ps: float = 0.5,
                             concat_pool: bool = True, bn_final: bool = False,
                             y_range: Sequence[float] | None = None, in_chans: int = 3) -> nn.Module:
    """A `VisionClassifier` whose body is the xresnet ``arch`` (the builder `load_learner` calls for a
    `vision_learner` made on ``xresnet18``/``34``/``50``).

    >>> m = build_xresnet_classifier("xresnet18", n_out=2, in_chans=1)
    >>> m(torch.randn(2, 1, 32, 32)).shape, type(m[0][0]).__name__
    (torch.Size([2, 2]), 'ConvLayer')
    """
    from .classifier import VisionClassifier, _n_channels, body_from_callable, create_head
    if arch not in XRESNETS:
        raise ValueError(f"unknown xresnet {arch!r} (known: {sorted(XRESNETS)})")
    body = body_from_callable(lambda pretrained: XRESNETS[arch](pretrained, c_in=in_chans), False)
    return VisionClassifier(body, create_head(_n_channels(body), n_out, lin_ftrs, ps, concat_pool, bn_final, y_range))
