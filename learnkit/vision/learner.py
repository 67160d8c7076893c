"""`vision_learner`: a pretrained body, a new head, the model's normalisation, and fine-tuning that is fast
on a CPU.

>>> import tempfile; from PIL import Image
>>> d = Path(tempfile.mkdtemp())
>>> for i in range(8):
...     Image.new("RGB", (32, 32), (40 * (i % 2),) * 3).save(d / f"{'ab'[i % 2]}_{i}.png")
>>> dls = ImageDataLoaders.from_name_func(d, get_image_files(d), lambda n: n[0], bs=4, device="cpu")
>>> learn = vision_learner(dls, "resnet18", pretrained=False, metrics=error_rate, progress=False)
>>> learn.model_spec["builder"], learn.dls.normalize.mean
('vision.classifier', (0.485, 0.456, 0.406))
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.callback import Callback
from ..core.device import default_device, to_cpu, to_device
from ..core.learner import Learner
from ..core.registry import register_learner
from ..core.optim import LR, Adam
from .classifier import VisionClassifier, _n_channels, body_from_callable, create_head, vision_splitter
from .data import ImageDataLoaders
from .feature_cache import BodyFeatures, FrozenFeatureCache
from .models import adapt_input_channels, create_body, model_meta
from .transforms import GeometricAug, Normalize, is_random
from .xresnet import XRESNETS
from ..core.data import raw_loader
from ..core.losses import loss_activation

__all__ = ["VisionLearner", "vision_learner"]


@register_learner
class VisionLearner(Learner):
    """A `Learner` for image classification: adds ``tta`` and ``show_results``.

    ``keep_body_bn_stats`` (set by `vision_learner` for a pretrained body) holds the body's batch-norm layers
    in inference mode during training, frozen or not: their affine weights still learn, but their running
    statistics stay the pretrained ones, so the head trained while the body was frozen keeps seeing the
    features it learnt on after `unfreeze` (the Keras fine-tuning recipe). Without it, a few batches of
    data unlike ImageNet (MNIST digits) overwrite the statistics and the accuracy falls from 0.98 to 0.7.

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp())
    >>> for i in range(5):
    ...     Image.new("RGB", (16, 16), (50 * i,) * 3).save(d / f"{'ab'[i % 2]}_{i}.png")
    >>> dls = ImageDataLoaders.from_name_func(d, get_image_files(d), lambda n: n[0], bs=2, device="cpu")
    >>> learn = vision_learner(dls, "resnet18", pretrained=False, progress=False)
    >>> probs, targets = learn.tta(n=2)      # 2 passes with random flips, blended with the plain one
    >>> type(learn).__name__, learn.keep_body_bn_stats, probs.shape
    ('VisionLearner', False, torch.Size([1, 2]))
    """

    keep_body_bn_stats: bool = False

    def _hold_frozen_bn(self) -> None:
        super()._hold_frozen_bn()
        model = getattr(self.model, "module", self.model)  # under DDP the classifier is wrapped
        if self.keep_body_bn_stats and isinstance(model, VisionClassifier):
            for m in model.body.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def tta(self, ds_idx: int = 1, dl: Any = None, n: int = 4, beta: float | None = 0.25,
            use_max: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Test-time augmentation: predictions averaged over ``n`` augmented passes (the data's random batch
        transforms, or left-right flips when it has none), blended with the plain predictions:
        ``(1 - beta) * augmented + beta * plain``. ``beta=None`` returns ``(augmented, plain)`` instead of the
        blend. Returns ``(probabilities, targets)``."""
        dl = self.dls[ds_idx] if dl is None else raw_loader(dl)
        plain, targs = self.get_preds(dl=dl)[:2]
        tfms = [t for t in self.dls.batch_tfms if is_random(t)] or [GeometricAug(p_affine=0.0)]
        fixed = [t for t in self.dls.batch_tfms if not is_random(t)]
        act = loss_activation(self.loss_func)
        runs = []
        self.model.eval()
        for _ in range(n):
            out = []
            with torch.inference_mode(), self.autocast():
                for batch in dl:
                    x = self.dls.prepare_images(to_device(batch[0], self.device), training=True, tfms=tfms + fixed)
                    out.append(to_cpu(act(self.model(x).float())))
            runs.append(torch.cat(out))
        stack = torch.stack(runs)
        aug = stack.max(0).values if use_max else stack.mean(0)
        if beta is None:
            return (aug, plain), targs
        return torch.lerp(aug, plain, beta), targs

    def show_cam(self, item: Any, target: Any = None, method: str = "gradcam", layer: nn.Module | None = None,
                 alpha: float = 0.5, cmap: str = "magma", ax: Any = None, figsize: tuple[float, float] = (4, 4)):
        """The class activation map of ``item`` (a path, PIL image, bytes, array or tensor, prepared as for
        `predict`) over the image: where the model saw ``target`` (a label, a class index, or ``None``: the
        predicted class). ``method``: ``"gradcam"`` or ``"hirescam"``; ``layer``: default the body,
        ``learn.model[0]`` (see `learnkit.vision.cam`). Titled ``label (probability)``; returns the axes,
        with the map (``[h, w]`` in ``[0, 1]``, the layer's grid) as ``ax.cam``."""
        import matplotlib.pyplot as plt

        from .cam import grad_cam, overlay_cam
        from .show import show_image
        x = to_device(next(iter(raw_loader(self.dls.test_dl([item]))))[0][:1], self.device)
        x = self.dls.prepare_images(x, training=False)
        if isinstance(target, str) or (target is not None and self.dls.vocab is not None
                                       and not isinstance(target, (int, torch.Tensor))):
            if self.dls.vocab is None or target not in self.dls.vocab:
                raise ValueError(f"target {target!r} is not one of the classes {self.dls.vocab}")
            target = list(self.dls.vocab).index(target)
        maps, targets = grad_cam(self.model, x, target, layer=layer, method=method)
        with torch.no_grad():
            probs = loss_activation(self.loss_func)(self.model(x).float())[0]
        t = int(targets[0])
        label = self.dls.vocab[t] if self.dls.vocab is not None else str(t)
        if ax is None:
            _, ax = plt.subplots(figsize=figsize)
        img = self.dls.decode_images(x)[0]
        show_image(img, ax=ax, title=f"{label} ({float(probs[t]):.2f})")
        overlay_cam(ax, maps[0], tuple(img.shape[-2:]), alpha=alpha, cmap=cmap)
        ax.cam = maps[0].detach().cpu()
        return ax

    def show_results(self, ds_idx: int = 1, max_n: int = 9, nrows: int | None = None, ncols: int | None = None,
                     figsize: tuple[float, float] | None = None):
        """Validation images titled ``target / prediction`` (green right, red wrong); returns the figure."""
        from .show import show_results
        return show_results(self, ds_idx, max_n, nrows, ncols, figsize)


def _channel_stats(rgb: Sequence[float], n: int) -> tuple[float, ...]:
    """Per-channel statistics for ``n``-channel images from RGB ones: the average for one channel, repeated
    RGB values for more."""
    return (sum(rgb) / len(rgb),) if n == 1 else tuple((list(rgb) * n)[:n])


def vision_learner(dls: ImageDataLoaders, arch: str | Callable[..., nn.Module], pretrained: bool = True,
                   metrics: Any = None, n_out: int | None = None, loss_func: Callable | None = None, lr: LR = 1e-3,
                   cbs: Callback | Sequence[Callback] | None = None, path: str | Path | None = None,
                   model_dir: str = "models", opt_func: Callable = Adam, wd: float | None = None,
                   lin_ftrs: Sequence[int] | None = None, ps: float = 0.5, concat_pool: bool = True,
                   bn_final: bool = False, y_range: Sequence[float] | None = None, normalize: bool = True,
                   cache_frozen_features: bool = True,
                   train_bn: bool = False, keep_body_bn_stats: bool | None = None, device: str | torch.device | None = None,
                   progress: bool = True) -> VisionLearner:
    """A learner for ``dls`` on a pretrained ``arch`` with a new head for ``n_out`` outputs (``dls.c``).

    Args:
        arch: a timm model name (``"efficientnet_lite0"`` uses offline weights; ``"resnet18"``, ``"resnet34"``,
            ``"convnext_tiny"``... download through timm) or a callable ``arch(pretrained=bool) -> nn.Module``
            (cut before its last global pooling layer).
        pretrained: load ImageNet weights into the body (``False``: random init, works offline for every arch).
        n_out: model outputs; default from the target block (classes, labels, or regression values).
        loss_func: default from the target block (cross-entropy, BCE for multi-label, MSE for regression).
        lin_ftrs, ps, concat_pool, bn_final: the head (see `ClassifierHead`).
        y_range: ``(low, high)``: a sigmoid squeezes the outputs into that range (image regression).
        normalize: add the pretrained model's normalisation (mean/std from its config) to ``dls`` unless its
            ``batch_tfms`` already have a `Normalize`.
        cache_frozen_features: add `FrozenFeatureCache`, which trains the head on body features computed once
            while the body is frozen and nothing is random (exactly equivalent; idle otherwise).
        train_bn: keep training batch-norm layers of frozen groups (off: a frozen body is truly constant).
        keep_body_bn_stats: hold the body's batch-norm running statistics at their pretrained values, also
            after ``unfreeze`` (default: ``pretrained``; see `VisionLearner`).
        Other arguments go to `Learner` unchanged (``path`` is where ``save`` writes; the data folder is never used).

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp())
    >>> for i in range(5):
    ...     Image.new("RGB", (16, 16), (50 * i,) * 3).save(d / f"{'ab'[i % 2]}_{i}.png")
    >>> dls = ImageDataLoaders.from_name_func(d, get_image_files(d), lambda n: n[0], bs=2, device="cpu")
    >>> learn = vision_learner(dls, "resnet18", pretrained=False, lin_ftrs=[32], metrics=error_rate, progress=False)
    >>> learn.loss_func, learn.model.head.fc[-1], len(learn.param_groups())   # body, head
    (CrossEntropyLossFlat(), Linear(in_features=32, out_features=2, bias=True), 2)
    """
    if not isinstance(dls, ImageDataLoaders):
        raise TypeError(f"vision_learner needs ImageDataLoaders, got {type(dls).__name__}")
    n_out = dls.c if n_out is None else n_out
    if not n_out:
        raise ValueError("n_out is unknown (the DataLoaders has no target block); pass n_out=")
    y_range = None if y_range is None else [float(v) for v in y_range]
    if y_range is not None and (len(y_range) != 2 or not y_range[0] < y_range[1]):
        raise ValueError(f"y_range must be (low, high) with low < high, got {y_range!r}")
    spec = None
    n_in = int(getattr(dls, "n_channels", 3))  # 1 for ImageBlock(cls=PILImageBW): the stem is adapted
    head_kwargs = {"n_out": int(n_out), "lin_ftrs": list(lin_ftrs) if lin_ftrs else None, "ps": float(ps),
                   "concat_pool": bool(concat_pool), "bn_final": bool(bn_final), "y_range": y_range,
                   **({"in_chans": n_in} if n_in != 3 else {})}
    xresnet = next((name for name, f in XRESNETS.items() if f is arch), None)
    if isinstance(arch, str):
        meta = model_meta(arch)
        body = create_body(arch, pretrained, in_chans=n_in)
        spec = {"builder": "vision.classifier", "kwargs": {"arch": arch, **head_kwargs}}
        mean, std = meta.mean, meta.std
    elif xresnet is not None:  # fastai's from-scratch ResNet, by name: the learner exports
        body = body_from_callable(lambda pretrained: XRESNETS[xresnet](pretrained, c_in=n_in), pretrained)
        spec = {"builder": "vision.xresnet", "kwargs": {"arch": xresnet, **head_kwargs}}
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    elif callable(arch):
        body = adapt_input_channels(body_from_callable(arch, pretrained), n_in)
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        raise TypeError(f"arch must be a timm model name or a callable, got {type(arch).__name__}")
    if n_in != 3:  # the summed (or repeated) RGB filters see a grey channel normalised like an average one
        mean, std = _channel_stats(mean, n_in), _channel_stats(std, n_in)
    model = VisionClassifier(body, create_head(_n_channels(body), n_out, lin_ftrs, ps, concat_pool, bn_final, y_range))
    if (default_device(device) if device is not None else dls.device).type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)  # matches the layout of the dls' image batches
    if normalize and not dls.has_normalize:
        dls.normalize = Normalize(mean, std)
    cbs = list(cbs) if isinstance(cbs, (list, tuple)) else ([cbs] if cbs is not None else [])
    if cache_frozen_features:
        cbs.append(FrozenFeatureCache(BodyFeatures()))
    learn = VisionLearner(dls, model, loss_func=loss_func, opt_func=opt_func, lr=lr, splitter=vision_splitter, cbs=cbs,
                          metrics=metrics, wd=wd, path=path, model_dir=model_dir, train_bn=train_bn, device=device,
                          progress=progress)
    learn.model_spec = spec
    learn.keep_body_bn_stats = bool(pretrained if keep_body_bn_stats is None else keep_body_bn_stats)
    if pretrained:
        learn.freeze()
    return learn
