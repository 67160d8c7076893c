"""Small layers that several task models share.

>>> float(sigmoid_range(torch.tensor(0.), 0, 5))
2.5
>>> SigmoidRange(0, 5)(torch.zeros(2)).tolist()
[2.5, 2.5]
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Module", "sigmoid_range", "SigmoidRange", "sequential", "Flatten", "NormType", "ConvLayer", "ResBlock", "SEModule",
           "init_cnn"]


def sigmoid_range(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """A sigmoid squeezed into ``(low, high)``: ``sigmoid(x) * (high - low) + low``.

    >>> sigmoid_range(torch.tensor([-10.0, 0.0, 10.0]), 0.5, 5.5).round(decimals=2)  # e.g. ratings from 0.5 to 5.5
    tensor([0.5000, 3.0000, 5.5000])
    """
    return torch.sigmoid(x) * (high - low) + low


class SigmoidRange(nn.Module):
    """`sigmoid_range` as a layer: squashes outputs into ``(low, high)`` (regression with a known range,
    ``y_range=`` of the vision, tabular and collab learners).

    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 1), SigmoidRange(0.5, 5.5))  # outputs inside (0.5, 5.5)
    >>> model[1]
    SigmoidRange(low=0.5, high=5.5)
    >>> out = model(torch.randn(16, 3))
    >>> out.shape, bool((out >= 0.5).all() and (out <= 5.5).all())
    (torch.Size([16, 1]), True)
    """

    def __init__(self, low: float, high: float):
        super().__init__()
        if not low < high:
            raise ValueError(f"y_range must be (low, high) with low < high, got {(low, high)!r}")
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sigmoid_range(x, self.low, self.high)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


# --- fastai's building blocks (fastbook ch. 13-15) ------------------------------------------------------

def sequential(*layers: nn.Module) -> nn.Sequential:
    """``nn.Sequential(*layers)``: fastai's name for it (fastbook ch. 13's ``simple_cnn``).

    >>> sequential(nn.Linear(2, 3), nn.ReLU())(torch.zeros(1, 2)).shape
    torch.Size([1, 3])
    """
    return nn.Sequential(*layers)


class Module(nn.Module):
    """An ``nn.Module`` that needs no ``super().__init__()``: fastai's ``Module``, so that fastbook's models
    (``class LMModel1(Module): def __init__(self, vocab_sz, n_hidden): self.i_h = nn.Embedding(...)``) run as
    written. ``nn.Module.__init__`` runs when the object is created, before the subclass's ``__init__``; calling
    ``super().__init__()`` as well is harmless (it does nothing here).

    >>> class Affine(Module):
    ...     def __init__(self, n): self.lin = nn.Linear(n, n)
    ...     def forward(self, x): return self.lin(x)
    >>> Affine(3)(torch.zeros(2, 3)).shape, len(list(Affine(3).parameters()))
    (torch.Size([2, 3]), 2)
    """

    def __new__(cls, *args: object, **kwargs: object) -> "Module":
        obj = super().__new__(cls)
        nn.Module.__init__(obj)
        return obj

    def __init__(self) -> None:
        """Nothing to do: ``__new__`` already ran ``nn.Module.__init__``."""


class Flatten(nn.Module):
    """Flatten everything after the batch axis (``full=True``: into one flat vector).

    >>> Flatten()(torch.zeros(2, 3, 1, 1)).shape, Flatten(full=True)(torch.zeros(2, 3)).shape
    (torch.Size([2, 3]), torch.Size([6]))
    """

    def __init__(self, full: bool = False):
        super().__init__()
        self.full = full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1) if self.full else x.reshape(x.shape[0], -1)

    def extra_repr(self) -> str:
        return "full=True" if self.full else ""


class NormType:
    """The normalisation a `ConvLayer` adds: ``Batch``, ``BatchZero`` (batch norm whose scale starts at 0, so
    a residual branch starts as nothing), ``Instance``, ``InstanceZero``, or ``None`` (fastai's names).

    >>> NormType.BatchZero
    'BatchZero'
    """

    Batch, BatchZero, Instance, InstanceZero = "Batch", "BatchZero", "Instance", "InstanceZero"


def _conv_cls(ndim: int, transpose: bool) -> type[nn.Module]:
    if ndim not in (1, 2, 3):
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim}")
    return getattr(nn, f"Conv{'Transpose' if transpose else ''}{ndim}d")


def _norm(norm_type: str | None, nf: int, ndim: int) -> nn.Module | None:
    if norm_type is None:
        return None
    if norm_type not in (NormType.Batch, NormType.BatchZero, NormType.Instance, NormType.InstanceZero):
        raise ValueError(f"norm_type must be one of NormType's (Batch, BatchZero, Instance, InstanceZero) or None, "
                         f"got {norm_type!r}")
    batch = norm_type.startswith("Batch")
    layer = getattr(nn, f"{'BatchNorm' if batch else 'InstanceNorm'}{ndim}d")(nf, affine=True)
    with torch.no_grad():
        layer.bias.fill_(1e-3)
        layer.weight.fill_(0.0 if norm_type.endswith("Zero") else 1.0)
    return layer


def init_cnn(m: nn.Module) -> nn.Module:
    """Kaiming-normal weights and zero biases for every convolution and linear layer of ``m`` (fastai's
    ``init_cnn``); returns ``m``.

    >>> lin = init_cnn(nn.Linear(4, 2)); float(lin.bias.detach().abs().sum())
    0.0
    """
    for layer in m.modules():
        if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return m


class ConvLayer(nn.Sequential):
    """Convolution, normalisation, activation (fastai's ``ConvLayer``).

    Args:
        ni, nf: input and output channels. ks, stride: kernel size and stride.
        padding: default ``(ks - 1) // 2`` ("same" size at stride 1).
        bias: default: only without batch norm.
        ndim: 1, 2 or 3 spatial dimensions. norm_type: a `NormType` name or ``None``.
        bn_1st: the normalisation before the activation (``False``: after it).
        act_cls: the activation class (``None``: none). transpose: a transposed convolution.
        init: ``"auto"``: Kaiming-normal weights for ReLU-like activations, zero bias.
        xtra: one more module at the end. Other keyword arguments go to the convolution (``groups``, ``dilation``).

    >>> layer = ConvLayer(3, 16, stride=2)
    >>> layer
    ConvLayer(
      (0): Conv2d(3, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)
      (1): BatchNorm2d(16, ...)
      (2): ReLU()
    )
    >>> layer(torch.zeros(1, 3, 28, 28)).shape
    torch.Size([1, 16, 14, 14])
    """

    def __init__(self, ni: int, nf: int, ks: int = 3, stride: int = 1, padding: int | None = None,
                 bias: bool | None = None, ndim: int = 2, norm_type: str | None = NormType.Batch, bn_1st: bool = True,
                 act_cls: type[nn.Module] | None = nn.ReLU, transpose: bool = False, init: str | None = "auto",
                 xtra: nn.Module | None = None, **kwargs):
        if padding is None:
            padding = (ks - 1) // 2 if not transpose else 0
        norm = _norm(norm_type, nf, ndim)
        if bias is None:
            bias = not (norm_type is not None and norm_type.startswith("Batch"))
        conv = _conv_cls(ndim, transpose)(ni, nf, kernel_size=ks, bias=bias, stride=stride, padding=padding, **kwargs)
        act = act_cls() if act_cls is not None else None
        if init == "auto" and (act is None or isinstance(act, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Mish,
                                                                nn.GELU))):
            nn.init.kaiming_normal_(conv.weight)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        layers: list[nn.Module] = [conv]
        after = [m for m in ([norm, act] if bn_1st else [act, norm]) if m is not None]
        layers += after
        if xtra is not None:
            layers.append(xtra)
        super().__init__(*layers)


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel weights in ``(0, 1)`` from the pooled map, multiplied in.

    >>> SEModule(16, reduction=4)(torch.ones(1, 16, 5, 5)).shape
    torch.Size([1, 16, 5, 5])
    """

    def __init__(self, ch: int, reduction: int, act_cls: type[nn.Module] = nn.ReLU):
        super().__init__()
        nh = max(1, ch // reduction)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvLayer(ch, nh, ks=1, norm_type=None, act_cls=act_cls),
                                ConvLayer(nh, ch, ks=1, norm_type=None, act_cls=nn.Sigmoid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class ResBlock(nn.Module):
    """fastai's residual block: ``act(convpath(x) + idpath(x))``.

    ``expansion=1``: two ``ks`` convolutions (ResNet 18/34); ``expansion=4``: the bottleneck 1x1 → ``ks`` → 1x1
    with ``nf * 4`` output channels (ResNet 50). The last normalisation starts at zero (``BatchZero``), so the
    block starts as its shortcut. The shortcut is the identity, or with another width a 1x1 `ConvLayer`, and
    with ``stride > 1`` an average pooling first (the "bag of tricks" ResNet-D). ``reduction``: a
    squeeze-and-excitation module (SE-ResNet); ``dw``: depthwise convolutions; ``groups``: grouped ones.

    >>> block = ResBlock(1, 16, 32, stride=2)
    >>> block(torch.randn(2, 16, 8, 8)).shape
    torch.Size([2, 32, 4, 4])
    >>> ResBlock(4, 16, 8)(torch.randn(1, 64, 4, 4)).shape        # bottleneck: 8 * 4 channels out
    torch.Size([1, 32, 4, 4])
    """

    def __init__(self, expansion: int, ni: int, nf: int, stride: int = 1, groups: int = 1,
                 reduction: int | None = None, nh1: int | None = None, nh2: int | None = None, dw: bool = False,
                 g2: int = 1, norm_type: str | None = NormType.Batch, act_cls: type[nn.Module] = nn.ReLU,
                 ndim: int = 2, ks: int = 3, pool_first: bool = True, **kwargs):
        super().__init__()
        norm2 = (NormType.BatchZero if norm_type == NormType.Batch else
                 NormType.InstanceZero if norm_type == NormType.Instance else norm_type)
        nh2 = nf if nh2 is None else nh2
        nh1 = nh2 if nh1 is None else nh1
        nf, ni = nf * expansion, ni * expansion
        k0 = dict(norm_type=norm_type, act_cls=act_cls, ndim=ndim, **kwargs)
        k1 = dict(norm_type=norm2, act_cls=None, ndim=ndim, **kwargs)
        if expansion == 1:
            convpath = [ConvLayer(ni, nh2, ks, stride=stride, groups=ni if dw else groups, **k0),
                        ConvLayer(nh2, nf, ks, groups=g2, **k1)]
        else:
            convpath = [ConvLayer(ni, nh1, 1, **k0),
                        ConvLayer(nh1, nh2, ks, stride=stride, groups=nh1 if dw else groups, **k0),
                        ConvLayer(nh2, nf, 1, groups=g2, **k1)]
        if reduction:
            convpath.append(SEModule(nf, reduction=reduction, act_cls=act_cls))
        self.convpath = nn.Sequential(*convpath)
        idpath: list[nn.Module] = []
        if ni != nf:
            idpath.append(ConvLayer(ni, nf, 1, act_cls=None, ndim=ndim, **kwargs))
        if stride != 1:
            pool = getattr(nn, f"AvgPool{ndim}d")(stride, ceil_mode=True)
            idpath.insert(0 if pool_first else 1, pool)
        self.idpath = nn.Sequential(*idpath)
        self.act = act_cls(inplace=True) if act_cls in (nn.ReLU, nn.ReLU6, nn.SiLU) else act_cls()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convpath(x) + self.idpath(x))
