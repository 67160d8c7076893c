"""`ActivationStats`: the mean, standard deviation, near-zero fraction (and histogram) of every layer's
activations at each training batch, to see whether a network trains well (fastbook ch. 13).

The statistics stay on the device while training: each batch adds one small tensor per kind of statistic,
with no ``.item()`` and so no wait for the GPU; they come to the CPU once, when first read after ``fit``.
What they cost (``benchmarks/activation_stats.py``, one CPU thread, CPU time of an epoch): fastbook ch. 13's
``simple_cnn`` on 28x28 digits +15 % (+38 % with histograms), an XResNet-18 +7 % (+17 %); computed with
``torch.std_mean`` and ``histc``, as fastai does, they cost +54 % (+103 %) on ``simple_cnn``. ``every=n`` records one training batch in ``n``, and
divides the cost by about ``n``.

>>> dl = TensorLoader(torch.randn(32, 4), torch.randint(0, 2, (32,)), bs=8)
>>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
>>> learn = Learner(DataLoaders(dl, dl, device="cpu"), model, loss_func=CrossEntropyLossFlat(),
...                 cbs=ActivationStats(with_hist=True), progress=False)
>>> learn.fit(2)
>>> means, stds, near_zero = learn.activation_stats.layer_stats(0)   # the first Linear, one value per batch
>>> len(means), learn.activation_stats.hist(-1).shape              # 8 training batches, 40 bins
(8, torch.Size([40, 8]))
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .hooks import HookCallback

__all__ = ["ActivationStats"]

_STATS = ("mean", "std", "near_zero")


def _flat(o: torch.Tensor) -> torch.Tensor:
    """``o`` as one flat vector without a copy when it is contiguous in some layout (channels-last included)."""
    if o.is_contiguous():
        return o.reshape(-1)
    if o.ndim == 4 and o.is_contiguous(memory_format=torch.channels_last):
        return o.permute(0, 2, 3, 1).reshape(-1)
    return o.reshape(-1)


def _activation_stats(o: torch.Tensor, with_hist: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``([sum, sum of squares, sum of signs of o - 0.05, count], 40-bin histogram over [0, 10] or None)`` of ``o``,
    as device tensors (`_finish` turns the first into mean, std and near-zero fraction, once, on the CPU).

    Three cheap reductions, no host sync: ``torch.std_mean`` and ``histc`` are several times slower on a CPU than
    a sum, a dot product and ``bincount``, and would make the statistics cost more than a small CNN's layers.

    >>> raw, hist = _activation_stats(torch.tensor([0.0, 0.0, 1.0, 3.0]), with_hist=True)
    >>> [round(v, 4) for v in _finish(raw[None]).flatten().tolist()], hist[[0, 4, 12]].tolist()
    ([1.0, 1.4142, 0.5], [2.0, 1.0, 1.0])
    """
    f = _flat(o if o.dtype == torch.float32 else o.float())
    n = f.new_full((), float(f.numel()))  # a constant filled on the device: no transfer
    raw = torch.stack([f.sum(), torch.dot(f, f), (f - 0.05).sign_().sum(), n])
    if not with_hist:
        return raw, None
    if f.is_cuda:  # histc is fast on a GPU, and bincount would sync (it reads the largest value)
        return raw, torch.histc(f, 40, 0, 10)
    bins = torch.bincount(f.mul(4).floor_().clamp_(-1, 40).add_(1).long(), minlength=42)  # 0: < 0, 41: >= 10
    return raw, bins[1:41].float()


def _finish(raw: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` raw sums (`_activation_stats`) to ``[..., 3]`` mean, std (unbiased) and near-zero fraction (the
    values ``<= 0.05``, from the signs of ``o - 0.05``: a value of exactly 0.05 counts half), in float64."""
    raw = raw.double()
    s, ss, sg, n = raw.unbind(-1)
    mean = s / n
    var = ((ss - s * mean) / (n - 1).clamp_min(1)).clamp_min(0)
    return torch.stack([mean, var.sqrt(), (n - sg) / (2 * n)], -1).float()


class ActivationStats(HookCallback):
    """Record activation statistics of ``modules`` (default: every leaf layer with parameters) at each training
    batch (``every=n``: every ``n``-th), available as ``learn.activation_stats``.

    Per layer and batch: ``mean``, ``std`` and ``near_zero`` (the fraction of activations ``<= 0.05``); with
    ``with_hist=True`` also a 40-bin histogram of the values in ``[0, 10]`` (fastai's). Read them with
    ``layer_stats(idx)``, ``hist(idx)`` and ``stats`` (fastai's list, per batch, of a dict per layer); draw them
    with ``plot_layer_stats(idx)`` and ``color_dim(idx)`` (``idx`` counts layers, negative from the end). A layer
    that did not run in a batch (a frozen body whose features `FrozenFeatureCache` serves) has NaN there.

    >>> cb = ActivationStats(with_hist=True, every=2)
    >>> cb.name, cb.order
    ('activation_stats', -20)
    """

    order = -20

    def __init__(self, with_hist: bool = False, every: int | None = None, modules: Any = None, **kwargs: Any):
        kwargs.setdefault("detach", False)  # the hook detaches the output itself, and never reads the input
        super().__init__(modules=modules, every=every, **kwargs)
        self.with_hist = bool(with_hist)
        self._recorded: list[torch.Tensor] = []
        self._hists: list[torch.Tensor] = []
        self._cache: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def before_fit(self) -> None:
        super().before_fit()
        self._recorded, self._hists, self._cache = [], [], None

    def hook(self, m: nn.Module, i: Any, o: Any) -> Any:
        if not self.learn.training:
            return None  # only training batches are recorded: no work in validation
        if not isinstance(o, torch.Tensor):  # a module with several outputs: its first tensor
            o = next((t for t in o if isinstance(t, torch.Tensor)), None) if isinstance(o, (list, tuple)) else None
            if o is None:
                return None
        return _activation_stats(o.detach(), self.with_hist)

    def _record_now(self) -> bool:
        return self.learn.training and (self.every is None or self._train_iter % self.every == 0)

    def after_batch(self) -> None:
        if self._record_now() and self.hooks is not None:
            stored = self.hooks.stored
            ref = next((s for s in stored if s is not None), None)
            if ref is not None:  # a layer that did not run this batch (e.g. a cached frozen body) records NaN
                nan = (torch.full_like(ref[0], float("nan")),
                       torch.full_like(ref[1], float("nan")) if self.with_hist else None)
                stored = [s if s is not None else nan for s in stored]
                self._recorded.append(torch.stack([s[0] for s in stored]))   # [layers, 4], on the device
                if self.with_hist:
                    self._hists.append(torch.stack([s[1] for s in stored]))  # [layers, 40]
            for h in self.hooks:
                h.stored = None  # a layer skipped next batch must not repeat this batch's values
        super().after_batch()

    # --- reading -------------------------------------------------------------------------------------
    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``([batches, layers, 3] mean/std/near-zero, [batches, layers, 40] or None)`` on the CPU (one transfer,
        then cached)."""
        if self._cache is None or self._cache[0].shape[0] != len(self._recorded):
            if not self._recorded:
                raise ValueError("no activation statistics recorded yet: train with this callback first "
                                 "(learn.fit(1, cbs=ActivationStats()))")
            stats = _finish(torch.stack(self._recorded).cpu())
            hists = torch.stack(self._hists).cpu() if self._hists else None
            self._cache = (stats, hists)
        return self._cache

    @property
    def n_layers(self) -> int:
        return len(self._mods) if getattr(self, "_mods", None) is not None else 0

    @property
    def stats(self) -> list[list[dict[str, Any]]]:
        """fastai's form: for each recorded batch, one dict per layer (``mean``, ``std``, ``near_zero``, ``hist``)."""
        stats, hists = self._tensors()
        out = []
        for b in range(stats.shape[0]):
            row = []
            for layer in range(stats.shape[1]):
                d: dict[str, Any] = {k: float(stats[b, layer, j]) for j, k in enumerate(_STATS)}
                if hists is not None:
                    d["hist"] = hists[b, layer]
                row.append(d)
            out.append(row)
        return out

    def layer_stats(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(means, stds, near_zero)`` of layer ``idx``, one value per recorded batch."""
        stats = self._tensors()[0][:, idx]
        return stats[:, 0], stats[:, 1], stats[:, 2]

    def hist(self, idx: int) -> torch.Tensor:
        """``log1p`` of the histograms of layer ``idx``: ``[40 bins, batches]`` (what `color_dim` draws)."""
        hists = self._tensors()[1]
        if hists is None:
            raise ValueError("no histograms: create the callback with ActivationStats(with_hist=True)")
        return hists[:, idx].t().float().log1p()

    # --- drawing -------------------------------------------------------------------------------------
    def plot_layer_stats(self, idx: int, figsize: tuple[float, float] = (12, 3)):
        """Mean, standard deviation and near-zero fraction of layer ``idx`` over the batches; returns the figure."""
        import matplotlib.pyplot as plt
        fig, axs = plt.subplots(1, 3, figsize=figsize)
        for values, ax, title in zip(self.layer_stats(idx), axs, ("mean", "std", "% near zero")):
            ax.plot(values.numpy())
            ax.set_title(title)
        fig.tight_layout()
        return fig

    def color_dim(self, idx: int, figsize: tuple[float, float] = (10, 5), ax: Any = None):
        """The 'colorful dimension' plot of layer ``idx``: its activation histogram (log scale) per batch, batches
        left to right, values ``0`` to ``10`` bottom to top. Returns the axes."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots(figsize=figsize)
        ax.imshow(self.hist(idx).numpy(), origin="lower", aspect="auto")
        ax.axis("off")
        return ax

    def __repr__(self) -> str:
        return f"ActivationStats(with_hist={self.with_hist}, every={self.every})"
