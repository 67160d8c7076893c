"""`FrozenFeatureCache`: while the body is frozen, compute its features once and train the head on them.

With the body frozen (no gradients), its batch-norm layers held in eval mode (``train_bn=False``), no
dropout or stochastic depth in it, and no random transform of the training images, ``body(image)`` is
the same number every epoch. This callback then, at the start of such a fit, runs the body once over the
training and validation images (``torch.inference_mode``) and feeds the head the pooled features,
batch by batch in the very order the image loader would have produced (it draws the shuffle from the same
generator). The result is the same training as without the cache, up to floating-point rounding, for the
cost of one forward pass instead of one per epoch. `vision_learner` adds it by default
(``cache_frozen_features=True``); when any condition fails it stays idle and says why in ``.reason``.
Under DDP each rank computes the features of its share of the set, the ranks gather them, and each trains
on its own (reshuffled) shard of them.
"""
from __future__ import annotations

import copy
import os

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..core.callback import Callback
from ..core.callbacks.progress import progress_bar as tqdm
from ..core.data import make_loader
from ..core.device import to_device
from ..core.sharding import DistributedDL
from .classifier import VisionClassifier

__all__ = ["FrozenFeatureCache"]

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


class _CachedLoader:
    """Batches ``(features[idx], *targets[idx])`` with ``idx`` drawn exactly as ``dl`` draws its batches."""

    def __init__(self, dl: DataLoader, feats: torch.Tensor, targets: tuple[torch.Tensor, ...]):
        self.dl, self.feats, self.targets = dl, feats, targets
        self._idx = DataLoader(range(len(feats)), batch_sampler=dl.batch_sampler, generator=dl.generator)

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self):
        for idx in self._idx:
            idx = idx.to(self.feats.device)
            yield (self.feats[idx], *(t[idx] for t in self.targets))


class FrozenFeatureCache(Callback):
    """Train the head on body features computed once while the body is frozen (see the module docstring).

    Args:
        max_bytes: the most memory the cached features may take (pooled features are small: a
            ``[N, 2560]`` float matrix for EfficientNet-Lite0 is 10 kB per image).
    """

    order = -20

    def __init__(self, max_bytes: int = 2 * 1024**3):
        self.max_bytes = max_bytes
        self.active, self.reason = False, "not fitted yet"
        self._cache: dict[int, _CachedLoader] = {}

    def _why_not(self) -> str | None:
        learn = self.learn
        model, dls = learn.model, learn.dls
        if not isinstance(model, VisionClassifier):
            return f"the model is a {type(model).__name__}, not a VisionClassifier"
        if any(p.requires_grad for p in model.body.parameters()):
            return "the body is not frozen"
        if learn.train_bn:
            return "train_bn=True lets the frozen body's batch-norm layers change"
        bns = [m for m in model.body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if any(not list(m.parameters(recurse=False)) for m in bns):
            return "the body has batch-norm layers without parameters, which keep training when frozen"
        if getattr(model.body, "drop_rate", 0) or getattr(model.body, "drop_path_rate", 0):
            return "the body applies dropout or drop-path (a timm model built with drop_rate/drop_path_rate > 0)"
        stoch = _stochastic_modules(model.body)
        if stoch:
            return f"the body has random layers in training mode ({', '.join(stoch[:3])})"
        mixers = [type(cb).__name__ for cb in learn.cbs if getattr(cb, "changes_inputs", False)]
        if mixers:
            return f"{', '.join(mixers)} changes the training images batch by batch"
        if not getattr(dls, "train_deterministic", False):
            return "the training images have random transforms (augmentation), so the body's output changes"
        if not isinstance(dls.train, DataLoader) or dls.train.batch_sampler is None:
            return "the training loader is not a batched torch DataLoader"
        n = sum(len(dl.dataset) for dl in dls.loaders if isinstance(dl, DataLoader))
        need = n * model.head.n_features * 4
        if need > self.max_bytes:
            return f"the features would take {need / 2**20:.0f} MiB (> max_bytes)"
        return None

    def before_fit(self):
        self._cache = {}
        why = self._why_not()
        self.active, self.reason = why is None, why or "active"

    def _features(self, dl: DataLoader, shard: DistributedDL | None = None) -> _CachedLoader | None:
        """Body features of every item of ``dl``'s dataset, in dataset order. Under DDP (``shard``: this rank's
        `DistributedDL`) each rank computes those of an unshuffled shard and the ranks gather them."""
        learn, model = self.learn, self.learn.model
        if shard is None:
            plain = make_loader(dl.dataset, dl.batch_size or 64, shuffle=False, collate_fn=dl.collate_fn,
                                num_workers=getattr(dl, "num_workers", 0), device=learn.device)
        else:
            plain = DistributedDL(shard.loader, shard.rank, shard.world_size, shuffle=False, drop_last=False)
        was_training = model.body.training
        model.body.eval()
        feats, targs = [], []
        show = bool(learn.show_progress) and os.environ.get("LEARNKIT_PROGRESS", "1") != "0"
        try:
            with torch.inference_mode(), learn.autocast():
                for batch in tqdm(plain, desc="frozen body features (computed once)", leave=False, disable=not show):
                    batch = learn.dls.on_device(to_device(tuple(batch), learn.device), training=False)
                    feats.append(model.features(batch[0]).float())
                    targs.append(batch[learn.dls.n_inp:])
        finally:
            model.body.train(was_training)
        # cat outside inference mode: ordinary tensors that autograd may use as inputs
        f = torch.cat(feats).clone()
        t = tuple(torch.cat([b[i] for b in targs]).clone() for i in range(len(targs[0])))
        if shard is not None:
            f, t = plain.gather_all(f), plain.gather_all(t)
        if len(f) != len(dl.dataset):  # items skipped (on_error='skip'): positions no longer match
            return None
        return _CachedLoader(dl, f, t)

    def _swap(self) -> None:
        dl = self.learn.dl
        # under DDP the phase's loader is this rank's `DistributedDL` shard: its inner loader draws the shard's
        # indices, so the cached loader serves exactly the shard's items, and the shard keeps gathering
        inner = dl.dl if isinstance(dl, DistributedDL) else dl
        if not self.active or not isinstance(inner, DataLoader):
            return
        key = id(dl)
        if key not in self._cache:
            cached = self._features(inner, dl if isinstance(dl, DistributedDL) else None)
            if cached is None:
                self.active = False
                self.reason = "some items were skipped (on_error='skip'): features and items no longer line up"
                return
            if isinstance(dl, DistributedDL):
                shard = copy.copy(dl)  # the same sampler (set_epoch reaches it) and gathering, cached batches
                shard.dl = cached
                cached = shard
            self._cache[key] = cached
        self.learn.dl = self._cache[key]
        self.learn.n_iter = len(self._cache[key])

    def before_train(self):
        self._swap()

    def before_validate(self):
        self._swap()

    def after_fit(self):
        self._cache = {}

    def __repr__(self) -> str:
        return f"FrozenFeatureCache(active={self.active}, reason={self.reason!r})"

