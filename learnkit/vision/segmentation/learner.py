"""`unet_learner`: a U-Net on a pretrained timm encoder, the encoder's normalisation, and a loss that
skips the void code.

>>> import tempfile, numpy as np
>>> from PIL import Image
>>> d = Path(tempfile.mkdtemp()); (d / "img").mkdir(); (d / "lbl").mkdir()
>>> for i in range(5):
...     Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(d / "img" / f"{i}.png")
...     Image.fromarray(np.full((32, 32), i % 2, np.uint8)).save(d / "lbl" / f"{i}.png")
>>> dls = SegmentationDataLoaders.from_label_func(d, sorted((d / "img").iterdir()), lambda o: d / "lbl" / o.name,
...                                               codes=["bg", "fg"], bs=2, device="cpu")
>>> learn = unet_learner(dls, "efficientnet_lite0", pretrained=False, progress=False)
>>> learn.model_spec["builder"], learn.dls.normalize.mean
('vision.unet', (0.5, 0.5, 0.5))
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...core.callback import Callback
from ...core.headfit import HeadFit
from ...core.learner import Learner
from ...core.registry import register_learner
from ...core.optim import LR, Adam
from ..models import create_encoder, model_meta
from ..transforms import Normalize
from .data import SegmentationDataLoaders
from .feature_cache import EncoderFeatures, FrozenFeatureCache
from .unet import DEFAULT_DECODER_CHANNELS, UNet, unet_splitter

__all__ = ["SegmentationLearner", "unet_learner", "SEG_BASE_LR"]

#: Default ``base_lr`` of `SegmentationLearner.fine_tune` (fastai's, for every learner, is 2e-3): a U-Net's
#: decoder is most of its weights and starts from scratch, and at 2e-3 it underfits. camvid_tiny,
#: ``unet_learner(dls).fine_tune(8)``, pixel accuracy over seeds 0 / 1 / 2 (CPU; final training loss):
#: 2e-3: 0.805 / 0.792 / 0.814 (1.33); 4e-3: 0.826 / 0.818 / 0.828 (0.84); 8e-3: 0.839 / 0.842 / 0.836
#: (0.61); 1e-2: 0.845 / 0.842 / 0.841 (0.58); 2e-2 (``lr_mult=10``): 0.847 / 0.850 / 0.849 (0.53).
SEG_BASE_LR = 1e-2


@register_learner
class SegmentationLearner(Learner):
    """A `Learner` for segmentation: adds ``show_results`` (target and predicted masks side by side) and
    gives ``fine_tune`` a higher default learning rate (`SEG_BASE_LR`).

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp()); (d / "img").mkdir(); (d / "lbl").mkdir()
    >>> for i in range(5):
    ...     Image.new("RGB", (32, 32), (50 * i,) * 3).save(d / "img" / f"{i}.png")
    ...     Image.new("L", (32, 32), i % 2).save(d / "lbl" / f"{i}.png")
    >>> dls = SegmentationDataLoaders.from_label_func(d, get_image_files(d / "img"), lambda o: d / "lbl" / o.name,
    ...                                               codes=["bg", "fg"], bs=2, device="cpu")
    >>> learn = unet_learner(dls, "resnet18", pretrained=False, decoder_channels=(16,), block="plain", progress=False)
    >>> type(learn).__name__, [ax.get_title() for ax in learn.show_results(max_n=1).axes]
    ('SegmentationLearner', ['target', 'prediction'])
    """

    def show_results(self, ds_idx: int = 1, max_n: int = 4, alpha: float = 0.5,
                     figsize: tuple[float, float] | None = None):
        """The first ``max_n`` images of a split with their target and predicted masks; returns the figure."""
        from .show import show_seg_results
        return show_seg_results(self, ds_idx, max_n, alpha, figsize)

    def fine_tune(self, epochs: int, base_lr: float = SEG_BASE_LR, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, wd: float | None = None,
                  cbs: Callback | Sequence[Callback] | None = None, head_fit: HeadFit | None = None) -> None:
        """`Learner.fine_tune` (decoder alone for ``freeze_epochs``, then everything with learning rates
        ``base_lr / lr_mult`` for the encoder up to ``base_lr`` for the decoder) with a higher default
        ``base_lr``: `SEG_BASE_LR` (1e-2) instead of 2e-3, which leaves a U-Net's new decoder underfitting
        (on camvid_tiny: final training loss 1.33 against 0.58, pixel accuracy 0.80 against 0.84). With the
        encoder maps cached (``cache_frozen_features``) the decoder gets ``head_fit.min_steps`` steps on them
        (default 300); each costs about a frozen step, so ``HeadFit(min_steps=200)`` is the cheaper choice on
        large frames (``examples/camvid.py``)."""
        super().fine_tune(epochs, base_lr=base_lr, freeze_epochs=freeze_epochs, lr_mult=lr_mult, pct_start=pct_start,
                          div=div, wd=wd, cbs=cbs, head_fit=head_fit)


def unet_learner(dls: SegmentationDataLoaders, arch: str | Callable[..., nn.Module] = "efficientnet_lite0",
                 pretrained: bool = True, metrics: Any = None, n_out: int | None = None,
                 loss_func: Callable | None = None, decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
                 lr: LR = 1e-3, cbs: Callback | Sequence[Callback] | None = None, path: str | Path | None = None,
                 model_dir: str = "models", opt_func: Callable = Adam, wd: float | None = None,
                 normalize: bool = True, train_bn: bool = False, block: str = "dynamic", blur: bool = True,
                 blur_final: bool = True, self_attention: bool = True, last_cross: bool = False,
                 cache_frozen_features: bool = True, device: str | torch.device | None = None,
                 progress: bool = True) -> SegmentationLearner:
    """A U-Net learner for ``dls`` on the encoder ``arch``, with ``n_out`` classes (``len(dls.codes)``).

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp()); (d / "img").mkdir(); (d / "lbl").mkdir()
    >>> for i in range(5):
    ...     Image.new("RGB", (32, 32), (50 * i,) * 3).save(d / "img" / f"{i}.png")
    ...     Image.new("L", (32, 32), i % 2).save(d / "lbl" / f"{i}.png")
    >>> dls = SegmentationDataLoaders.from_label_func(d, get_image_files(d / "img"), lambda o: d / "lbl" / o.name,
    ...                                               codes=["bg", "fg"], bs=2, device="cpu")
    >>> learn = unet_learner(dls, "resnet18", pretrained=False, decoder_channels=(32, 16), progress=False)
    >>> learn.model.skip_channels, len(learn.param_groups())   # encoder skips used; encoder and decoder groups
    ([256, 128], 2)

    Args:
        arch: a timm model name (``"efficientnet_lite0"`` has offline ImageNet weights; ``"resnet34"``...
            download through timm) or a callable ``arch(pretrained=bool)`` returning a timm
            ``features_only`` encoder (such a learner cannot be exported).
        pretrained: load ImageNet weights into the encoder (``False``: random init, works offline).
        metrics: e.g. ``[foreground_acc(ignore_index=dls.void_code), JaccardMulti(ignore_index=dls.void_code)]``.
        loss_func: default ``dls.loss_func``: cross-entropy ignoring the void code.
        decoder_channels: width of each decoder level, deepest first (see `UNet`).
        block / blur / blur_final / self_attention / last_cross: the decoder (see `UNet`): by default
            fastai's ``DynamicUnet`` design (PixelShuffle-ICNR upsampling, self-attention, final residual
            block) with blur on and the full-resolution ``last_cross`` ending off (measured better on small
            data; fastai's defaults are ``blur=False, self_attention=False, last_cross=True``);
            ``block="plain"`` is the earlier bilinear decoder.
        normalize: add the pretrained encoder's normalisation (mean/std) to ``dls`` unless its
            ``batch_tfms`` already have a `Normalize`.
        cache_frozen_features: add `FrozenFeatureCache` with `EncoderFeatures`: while the encoder is frozen
            its maps are computed once and the decoder trains on them (exact when nothing is random; in
            ``fine_tune``'s frozen phase, on the un-augmented images, with extra passes: `HeadFit`).
        Other arguments go to `Learner` unchanged. The parameter groups are encoder then decoder, so
        ``fine_tune`` trains the decoder with the encoder frozen first (its default ``base_lr`` is
        `SEG_BASE_LR`, 1e-2, not 2e-3: the decoder is trained from scratch).
    """
    if not isinstance(dls, SegmentationDataLoaders):
        raise TypeError(f"unet_learner needs SegmentationDataLoaders, got {type(dls).__name__}")
    n_out = len(dls.codes) if n_out is None else int(n_out)
    spec = None
    if isinstance(arch, str):
        meta = model_meta(arch)
        encoder = create_encoder(arch, pretrained=pretrained)
        mean, std = meta.mean, meta.std
        spec = {"builder": "vision.unet",
                "kwargs": {"arch": arch, "n_out": n_out, "decoder_channels": [int(c) for c in decoder_channels],
                           "block": block, "blur": bool(blur), "blur_final": bool(blur_final),
                           "self_attention": bool(self_attention), "last_cross": bool(last_cross)}}
    elif callable(arch):
        encoder = arch(pretrained=pretrained)
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        raise TypeError(f"arch must be a timm model name or a callable, got {type(arch).__name__}")
    model = UNet(encoder, n_out, decoder_channels, block=block, blur=blur, blur_final=blur_final,
                 self_attention=self_attention, last_cross=last_cross)
    if normalize and not dls.has_normalize:
        dls.normalize = Normalize(mean, std)
    cbs = list(cbs) if isinstance(cbs, (list, tuple)) else ([cbs] if cbs is not None else [])
    if cache_frozen_features:
        cbs.append(FrozenFeatureCache(EncoderFeatures()))
    learn = SegmentationLearner(dls, model, loss_func=loss_func, opt_func=opt_func, lr=lr, splitter=unet_splitter,
                                cbs=cbs, metrics=metrics, wd=wd, path=path, model_dir=model_dir, train_bn=train_bn,
                                device=device, progress=progress)
    if spec is not None:
        learn.model_spec = spec
    return learn
