"""`VisionClassifier`: a pretrained body and a new head (pooling, batch-norm, dropout, linear).

``model.body`` maps images to feature maps, ``model.head.pool`` pools them to one vector per image and
``model.head.fc`` classifies the vector. As in fastai, ``model[0]`` is the body and ``model[1]`` the head,
whose layers index in order (``model[1][-1]``: the last linear layer, unless ``bn_final``/``y_range`` add one). The model also accepts those pooled vectors directly (a 2-D
input), which is how `FrozenFeatureCache` trains the head on features computed once.

>>> m = build_vision_classifier("resnet18", n_out=3)
>>> m(torch.zeros(2, 3, 64, 64)).shape, m(torch.zeros(2, m.head.n_features)).shape
(torch.Size([2, 3]), torch.Size([2, 3]))
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..core.hooks import in_channels
from ..core.layers import Flatten, SigmoidRange
from ..core.registry import register_model
from .models import create_body

__all__ = ["AdaptiveConcatPool2d", "SigmoidRange", "ClassifierHead", "VisionClassifier", "create_head", "build_vision_classifier",
           "body_from_callable", "vision_splitter"]


class AdaptiveConcatPool2d(nn.Module):
    """Average and max pooling to ``size``, concatenated on the channel axis (twice the channels).

    >>> x = torch.arange(8.0).view(1, 2, 2, 2)              # one image, two channels
    >>> AdaptiveConcatPool2d()(x).flatten().tolist()         # the max of each channel, then the mean
    [3.0, 7.0, 1.5, 5.5]
    """

    def __init__(self, size: int = 1):
        super().__init__()
        self.avg, self.max = nn.AdaptiveAvgPool2d(size), nn.AdaptiveMaxPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max(x), self.avg(x)], dim=1)


class ClassifierHead(nn.Module):
    """``pool`` (parameter-free, deterministic) then ``fc``: ``[BN, dropout, linear(, ReLU)]`` per layer.

    Args:
        nf: channels of the body's feature map. n_out: outputs (classes).
        lin_ftrs: sizes of hidden layers (``None``/``[]``: one linear layer straight to ``n_out``).
        ps: dropout before the last linear layer (earlier layers get ``ps / 2``).
        concat_pool: average + max pooling (``2 * nf`` features) instead of average only.
        bn_final: a batch-norm after the last linear layer.
        y_range: ``(low, high)``: squeeze the outputs into that range with a sigmoid (regression).

    >>> head = ClassifierHead(nf=16, n_out=3, lin_ftrs=[8]).eval()
    >>> head.n_features, head(torch.rand(2, 16, 4, 4)).shape    # concat pooling: 2 x 16 features
    (32, torch.Size([2, 3]))
    >>> type(head[0]).__name__, head[-1]                        # fastai's indexing: pooling first, last linear last
    ('AdaptiveConcatPool2d', Linear(in_features=8, out_features=3, bias=True))
    """

    def __init__(self, nf: int, n_out: int, lin_ftrs: Sequence[int] | None = None, ps: float = 0.5,
                 concat_pool: bool = True, bn_final: bool = False, y_range: Sequence[float] | None = None):
        super().__init__()
        if n_out < 1:
            raise ValueError(f"n_out must be at least 1, got {n_out}")
        self.pool = AdaptiveConcatPool2d(1) if concat_pool else nn.AdaptiveAvgPool2d(1)
        self.n_features = nf * (2 if concat_pool else 1)
        sizes = [self.n_features, *(lin_ftrs or []), n_out]
        drops = [ps / 2] * (len(sizes) - 2) + [ps]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.BatchNorm1d(a), nn.Dropout(drops[i]) if drops[i] > 0 else nn.Identity(), nn.Linear(a, b, bias=True)]
            if i < len(sizes) - 2:
                layers.append(nn.ReLU(inplace=True))
        if bn_final:
            layers.append(nn.BatchNorm1d(n_out, momentum=0.01))
        if y_range is not None:
            layers.append(SigmoidRange(*y_range))
        self.fc = nn.Sequential(*layers)
        self.flatten = Flatten()  # no parameters: the state dict keys stay pool.* and fc.*

    def _layers(self) -> list[nn.Module]:
        return [self.pool, self.flatten, *self.fc]

    def __getitem__(self, i: int | slice) -> nn.Module:
        """fastai's indexing: ``head[0]`` the pooling, ``head[1]`` the flatten, then the layers of ``fc``
        (``head[-1]``: the last one); a slice gives an ``nn.Sequential``."""
        layers = self._layers()
        return nn.Sequential(*layers[i]) if isinstance(i, slice) else layers[i]

    def __len__(self) -> int:
        return 2 + len(self.fc)

    def __iter__(self):
        return iter(self._layers())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(x)))


def create_head(nf: int, n_out: int, lin_ftrs: Sequence[int] | None = None, ps: float = 0.5,
                concat_pool: bool = True, bn_final: bool = False,
                y_range: Sequence[float] | None = None) -> ClassifierHead:
    """A new classifier head for a body with ``nf`` output channels (see `ClassifierHead`).

    >>> head = create_head(512, 10, concat_pool=False, y_range=(0, 1))
    >>> head.n_features, head.fc[-1]
    (512, SigmoidRange(low=0.0, high=1.0))
    """
    return ClassifierHead(nf, n_out, lin_ftrs, ps, concat_pool, bn_final, y_range)


class VisionClassifier(nn.Module):
    """``head(body(images))``; a 2-D input ``[B, head.n_features]`` is taken as pooled body features and
    goes straight to ``head.fc``. ``model[0]`` is ``model.body`` and ``model[1]`` is ``model.head`` (fastai's
    indexing: ``learn.model[1][-1]`` is the last layer of the head).

    >>> m = VisionClassifier(nn.Conv2d(3, 8, 3), create_head(8, 2))
    >>> m[0] is m.body, m[1] is m.head, len(m), m[1][-1]
    (True, True, 2, Linear(in_features=16, out_features=2, bias=True))

    >>> body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())    # any [B, 3, H, W] -> [B, C, h, w] network
    >>> model = VisionClassifier(body, create_head(8, 2)).eval()
    >>> feats = model.features(torch.rand(2, 3, 16, 16))
    >>> feats.shape, model(feats).shape                       # pooled features go straight to the head
    (torch.Size([2, 16]), torch.Size([2, 2]))
    """

    def __init__(self, body: nn.Module, head: ClassifierHead):
        super().__init__()
        self.body, self.head = body, head

    def __getitem__(self, i: int | slice) -> nn.Module:
        parts = [self.body, self.head]
        return nn.Sequential(*parts[i]) if isinstance(i, slice) else parts[i]

    def __len__(self) -> int:
        return 2

    def __iter__(self):
        return iter([self.body, self.head])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled body features ``[B, head.n_features]`` of images."""
        return self.head.pool(self.body(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return self.head.fc(x)
        return self.head(self.body(x))


def vision_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two parameter groups, body then head, so ``freeze()`` trains the head alone.

    >>> model = VisionClassifier(nn.Conv2d(3, 8, 3), create_head(8, 2))
    >>> [len(group) for group in vision_splitter(model)]    # conv weight + bias; head batch-norm + linear
    [2, 4]
    """
    return [list(model.body.parameters()), list(model.head.parameters())]


def _n_channels(body: nn.Module) -> int:
    """Channels of the body's output, by running it once on a small input (``num_features`` is not always
    the output width: timm's MobileNetV3 keeps a 1x1 conv head after it)."""
    was = body.training
    body.eval()
    with torch.no_grad():
        out = body(torch.zeros(2, in_channels(body), 64, 64, device=next(body.parameters()).device))
    body.train(was)
    if out.ndim != 4:
        raise ValueError(f"the body must return a [B, C, H, W] feature map; it returned shape {tuple(out.shape)}")
    return out.shape[1]


def body_from_callable(arch: Callable[..., nn.Module], pretrained: bool) -> nn.Module:
    """Call ``arch(pretrained=pretrained)`` and cut the network before its last global pooling layer (torchvision
    ResNets and the like), or remove a timm model's classifier and pooling.

    >>> def arch(pretrained=False):                           # a torchvision-style network
    ...     return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    >>> body_from_callable(arch, pretrained=False)            # cut before the pooling layer
    Sequential(
      (0): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1))
    )
    """
    model = arch(pretrained=pretrained)
    if not isinstance(model, nn.Module):
        raise TypeError(f"arch(pretrained=...) must return an nn.Module, got {type(model).__name__}")
    if hasattr(model, "reset_classifier") and hasattr(model, "forward_features"):  # a timm model
        model.reset_classifier(0, "")
        return model
    children = list(model.children())
    pools = [i for i, c in enumerate(children) if isinstance(c, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
    if not pools:
        raise ValueError(f"cannot find where to cut {type(model).__name__}: it has no AdaptiveAvgPool2d child. Pass a "
                         "timm model name, or a callable returning a body that outputs [B, C, H, W] feature maps")
    return nn.Sequential(*children[: pools[-1]])


@register_model("vision.classifier")
def build_vision_classifier(arch: str, n_out: int, lin_ftrs: Sequence[int] | None = None, ps: float = 0.5,
                            concat_pool: bool = True, bn_final: bool = False, pretrained: bool = False,
                            y_range: Sequence[float] | None = None, in_chans: int = 3) -> VisionClassifier:
    """A `VisionClassifier` on the timm arch ``arch`` (the builder `load_learner` calls, with ``pretrained=False``);
    ``in_chans``: the channels of the images (1: greyscale).

    >>> m = build_vision_classifier("resnet18", n_out=2, lin_ftrs=[64])
    >>> m.head.n_features, m.head.fc[-1]                       # 512 channels, average + max pooled
    (1024, Linear(in_features=64, out_features=2, bias=True))
    """
    body = create_body(arch, pretrained, in_chans=in_chans)
    return VisionClassifier(body, create_head(_n_channels(body), n_out, lin_ftrs, ps, concat_pool, bn_final, y_range))
