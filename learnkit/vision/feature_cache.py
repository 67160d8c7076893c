"""Vision's `FeatureSource`: pooled body features, so that `FrozenFeatureCache` trains the head alone on them.

With the body frozen (no gradients), its batch-norm layers held in eval mode (``train_bn=False``), no dropout
or stochastic depth in it, and no random transform of the training images, ``body(image)`` is the same number
every epoch. `BodyFeatures` then runs the body once over the training and validation images
(``torch.inference_mode``) and the head trains on the pooled features (`learnkit.core.feature_cache`): the
same training as without the cache, up to floating-point rounding, for one forward pass of the body instead
of one per epoch. `vision_learner` adds ``FrozenFeatureCache(BodyFeatures())`` by default
(``cache_frozen_features=True``); when any condition fails it stays idle and says why in ``.reason``. Under
DDP each rank computes the features of its share of the set and the ranks gather them.

>>> cache = FrozenFeatureCache(BodyFeatures(max_bytes=2**20))
>>> cache.source.max_bytes, cache.reason
(1048576, 'not fitted yet')
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from ..core.callbacks.progress import progress_bar as tqdm
from ..core.data import make_loader
from ..core.feature_cache import FeatureSource, FrozenFeatureCache, NotCached, TensorFeatures
from ..core.sharding import DistributedDL
from .classifier import VisionClassifier

if TYPE_CHECKING:  # pragma: no cover
    from ..core.learner import Learner

__all__ = ["FrozenFeatureCache", "BodyFeatures", "frozen_part_problem", "frozen_outputs", "images_fixed_or_why"]

_STOCHASTIC = ("Dropout", "DropPath", "DropBlock", "AlphaDropout")


def _stochastic_modules(body: nn.Module) -> list[str]:
    """Names of modules that behave randomly in training mode (dropout with p > 0, drop-path...)."""
    out = []
    for name, m in body.named_modules():
        cls = type(m).__name__
        if any(s in cls for s in _STOCHASTIC):
            p = getattr(m, "p", getattr(m, "drop_prob", getattr(m, "drop_rate", 1.0)))
            if p:
                out.append(name or cls)
    return out


def frozen_part_problem(part: nn.Module, learn: "Learner", name: str = "body") -> str | None:
    """Why the output of a model's ``part`` could change from epoch to epoch while it is frozen (``None``: it
    cannot, so it may be computed once): trainable parameters, batch-norm layers that train (``train_bn``, or
    without parameters to freeze), dropout or drop-path inside it.

    >>> from types import SimpleNamespace
    >>> body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.1)).requires_grad_(False)
    >>> frozen_part_problem(body, SimpleNamespace(train_bn=False))
    'the body has random layers in training mode (2)'
    """
    if any(p.requires_grad for p in part.parameters()):
        return f"the {name} is not frozen"
    if learn.train_bn:
        return f"train_bn=True lets the frozen {name}'s batch-norm layers change"
    bns = [m for m in part.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if any(not list(m.parameters(recurse=False)) for m in bns):
        return f"the {name} has batch-norm layers without parameters, which keep training when frozen"
    if getattr(part, "drop_rate", 0) or getattr(part, "drop_path_rate", 0):
        return f"the {name} applies dropout or drop-path (a timm model built with drop_rate/drop_path_rate > 0)"
    stoch = _stochastic_modules(part)
    if stoch:
        return f"the {name} has random layers in training mode ({', '.join(stoch[:3])})"
    return None


def images_fixed_or_why(source: FeatureSource, learn: "Learner", name: str) -> str | None:
    """A vision source's ``why_not``: its ``why_not_head_fit``, and the training images must be the same every
    epoch (no random transforms), since exact caching replays one pass of the frozen ``name``.

    >>> from types import SimpleNamespace
    >>> learn = SimpleNamespace(model=nn.Linear(2, 2), train_bn=False, dls=None)
    >>> images_fixed_or_why(BodyFeatures(), learn, "body")
    'the model is a Linear, not a VisionClassifier'
    """
    why = source.why_not_head_fit(learn)
    if why is None and not getattr(learn.dls, "train_deterministic", False):
        return f"the training images have random transforms (augmentation), so the {name}'s output changes"
    return why


class BodyFeatures(FeatureSource):
    """The pooled features of a `VisionClassifier`'s frozen body (``model.features``), which the model's head
    takes directly (a 2-D input).

    Args:
        max_bytes: the most memory the cached features may take (pooled features are small: a
            ``[N, 2560]`` float matrix for EfficientNet-Lite0 is 10 kB per image).
    """

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes

    def why_not(self, learn: "Learner") -> str | None:
        return images_fixed_or_why(self, learn, "body")

    def why_not_head_fit(self, learn: "Learner") -> str | None:
        """As `why_not`, but augmentation is allowed: `fine_tune`'s frozen phase then fits the head on the
        features of the un-augmented training images (their validation-time transforms)."""
        model, dls = learn.model, learn.dls
        if not isinstance(model, VisionClassifier):
            return f"the model is a {type(model).__name__}, not a VisionClassifier"
        why = frozen_part_problem(model.body, learn)
        if why is not None:
            return why
        n = sum(len(dl.dataset) for dl in dls.loaders if isinstance(dl, DataLoader))
        need = n * model.head.n_features * 4
        if need > self.max_bytes:
            return f"the features would take {need / 2**20:.0f} MiB (> max_bytes)"
        return None

    def features(self, learn: "Learner", dl: DataLoader, shard: DistributedDL | None) -> TensorFeatures:
        """Body features of every item of ``dl``'s dataset, in dataset order. Under DDP (``shard``: this rank's
        `DistributedDL`) each rank computes those of an unshuffled shard and the ranks gather them."""
        model = learn.model
        (f,), t = frozen_outputs(learn, dl, shard, model.body, lambda x: (model.features(x).float(),))
        return TensorFeatures(f, t)


def frozen_outputs(learn: "Learner", dl: DataLoader, shard: DistributedDL | None, part: nn.Module,
                   fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
                   desc: str = "frozen body features (computed once)") -> tuple[tuple[torch.Tensor, ...], tuple]:
    """``(outputs, targets)`` of every item of ``dl``'s dataset in dataset order: ``fn(inputs)`` (a tuple of
    tensors, each concatenated over the batches) with ``part`` in eval mode, and the targets, both from the
    items' validation-time transforms (``dataset.fixed()``, ``on_device(training=False)``). Under DDP
    (``shard``: this rank's `DistributedDL`) each rank runs an unshuffled shard and the ranks gather them.
    Raises `NotCached` when items were skipped (``on_error='skip'``)."""
    dataset = dl.dataset.fixed() if hasattr(dl.dataset, "fixed") else dl.dataset  # no random item transforms
    if shard is None:
        plain = make_loader(dataset, dl.batch_size or 64, shuffle=False, collate_fn=dl.collate_fn,
                            num_workers=getattr(dl, "num_workers", 0), device=learn.device)
    else:
        plain = DistributedDL(shard.loader, shard.rank, shard.world_size, shuffle=False, drop_last=False)
    was_training = part.training
    part.eval()
    outs, targs = [], []
    show = bool(learn.show_progress) and os.environ.get("LEARNKIT_PROGRESS", "1") != "0"
    try:
        with torch.inference_mode(), learn.autocast():
            for batch in tqdm(plain, desc=desc, leave=False, disable=not show):
                batch = learn.dls.prepare_batch(batch, False, learn.device)
                outs.append(fn(batch[0]))
                targs.append(batch[learn.dls.n_inp:])
    finally:
        part.train(was_training)
    # cat outside inference mode: ordinary tensors that autograd may use as inputs
    o = tuple(torch.cat([b[i] for b in outs]).clone() for i in range(len(outs[0])))
    t = tuple(torch.cat([b[i] for b in targs]).clone() for i in range(len(targs[0])))
    if shard is not None:
        o, t = plain.gather_all(o), plain.gather_all(t)
    if len(o[0]) != len(dl.dataset) and isinstance(dl.dataset, IterableDataset):
        raise NotCached(f"the stream gave {len(o[0])} items, not the {len(dl.dataset)} its loader counts an epoch "
                        "in (n_items= or the shards' counts.json): the cached epoch would not match")
    if len(o[0]) != len(dl.dataset):  # items skipped (on_error='skip'): positions no longer match
        raise NotCached("some items were skipped (on_error='skip'): features and items no longer line up")
    return o, t
