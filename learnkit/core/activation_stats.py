"""`ActivationStats`: the mean, standard deviation, near-zero fraction (and histogram) of every layer's
activations at each training batch, to see whether a network trains well (fastbook ch. 13).

The statistics stay on the device while training: each batch adds one small tensor per kind of statistic,
with no ``.item()`` and so no wait for the GPU; they come to the CPU once, when first read after ``fit``.

What it costs (``benchmarks/activation_stats.py``, benchmarks/RESULTS.md): the mean, standard deviation and
near-zero fraction are exact, four cheap ops per layer (a sum, a dot product, a comparison and its sum); the
histograms count a fixed, evenly spread sample of ``hist_sample`` activations per layer (default 4096, scaled to
the layer's size; ``hist_sample=None``: every activation, as fastai does), binned for all layers at once after
the batch. On one CPU thread that is about +3 % of an XResNet-18 epoch, statistics or histograms; on fastbook
ch. 13's tiny ``simple_cnn`` (a few multiply-adds per activation, so reading every output four times weighs)
about +12 %, and a few percent more with histograms (+40 % counting every activation). ``every=n`` records one training batch
in ``n`` and divides the cost by about ``n``.

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

import math
from typing import Any

import torch
from torch import nn

from .hooks import HookCallback

__all__ = ["ActivationStats"]

_STATS = ("mean", "std", "near_zero")
_BINS = 40        # fastai's histogram: 40 bins of width 0.25 over [0, 10]
_CODES = _BINS + 2  # per layer: below 0, the 40 bins, 10 and above
_NEAR_ZERO = 0.05   # fastai's "near zero": at most 0.05


def _flat(o: torch.Tensor) -> torch.Tensor:
    """``o`` as one flat float32 vector, without a copy when it is contiguous in some layout (channels-last
    included) and already float32."""
    if o.dtype != torch.float32:
        o = o.float()
    if o.ndim == 4 and not o.is_contiguous() and o.is_contiguous(memory_format=torch.channels_last):
        return o.permute(0, 2, 3, 1).reshape(-1)
    return o.reshape(-1)


def _moments(f: torch.Tensor, scratch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sum, sum of squares, count of values above 0.05)`` of the flat float32 vector ``f``, 0-d tensors on its
    device (`_finish` turns them into mean, std and near-zero fraction, once, on the CPU); ``scratch`` is a float32
    vector of at least ``f.numel()`` on the same device. Four ops, no host sync: a sum, a dot product, a comparison
    written as floats and its sum — several times cheaper on a CPU than ``torch.std_mean``, or than a comparison's
    bool tensor counted.

    >>> f = torch.tensor([0.0, 0.05, 1.0, 3.0])
    >>> raw = torch.stack(_moments(f, torch.empty(4)))
    >>> [round(v, 4) for v in _finish(raw[None], torch.tensor([4.0])).flatten().tolist()]
    [1.0125, 1.4026, 0.5]
    """
    return f.sum(), torch.dot(f, f), torch.gt(f, _NEAR_ZERO, out=scratch[:f.numel()]).sum()


def _finish(raw: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` raw sums (`_moments`) over ``n`` values each to ``[..., 3]`` mean, std (unbiased) and
    near-zero fraction (the values ``<= 0.05``), computed in float64. ``n == 0`` (a layer that did not run)
    gives NaN."""
    raw, n = raw.double(), n.double()
    s, ss, above = raw.unbind(-1)
    mean = s / n
    var = ((ss - s * mean) / (n - 1).clamp_min(1)).clamp_min(0)
    return torch.stack([mean, var.sqrt(), (n - above) / n], -1).float()


def _spread_index(numel: int, m: int, device: torch.device) -> torch.Tensor:
    """``m`` distinct positions in ``range(numel)`` (``m <= numel``), sorted and spread evenly, without a period
    that could line up with channels or rows: runs of 16 neighbours (one 64-byte cache line of float32, so a
    gather reads ``m / 16`` lines, not ``m``) starting at ``16 (k p mod numel // 16)``, for a ``p`` coprime with
    ``numel // 16`` near ``0.618`` of it (the golden ratio's low-discrepancy sequence); single positions when
    ``m`` is not a multiple of 16. Computed on ``device``: no transfer.

    >>> _spread_index(10, 4, torch.device("cpu")).tolist()
    [0, 1, 4, 7]
    >>> _spread_index(100, 32, torch.device("cpu")).view(2, 16)[:, 0].tolist()   # 2 runs among 6 of 16
    [0, 80]
    """
    run = 16 if m % 16 == 0 else 1
    slots = numel // run
    p = max(1, round(slots * (math.sqrt(5) - 1) / 2))
    while math.gcd(p, slots) != 1:
        p += 1
    starts = (torch.arange(m // run, device=device, dtype=torch.int64) * p % slots).sort().values * run
    return (starts[:, None] + torch.arange(run, device=device, dtype=torch.int64)).view(-1)


class ActivationStats(HookCallback):
    """Record activation statistics of ``modules`` (default: every leaf layer with parameters) at each training
    batch (``every=n``: every ``n``-th), available as ``learn.activation_stats``.

    Per layer and batch: ``mean``, ``std`` and ``near_zero`` (the fraction of activations ``<= 0.05``), exact;
    with ``with_hist=True`` also a 40-bin histogram of the values in ``[0, 10]`` (fastai's), counted on an evenly
    spread sample of ``hist_sample`` activations of the layer (the same positions every batch) and scaled to
    its size; ``hist_sample=None`` counts them all, as fastai does, at several times the cost. Read them with
    ``layer_stats(idx)``, ``hist(idx)`` and ``stats`` (fastai's list, per batch, of a dict per layer); draw them
    with ``plot_layer_stats(idx)`` and ``color_dim(idx)`` (``idx`` counts layers, negative from the end). A layer
    that did not run in a batch (a frozen body whose features `FrozenFeatureCache` serves) has NaN there.

    >>> cb = ActivationStats(with_hist=True, every=2)
    >>> cb.name, cb.order, cb.hist_sample
    ('activation_stats', -20, 4096)
    """

    order = -20

    def __init__(self, with_hist: bool = False, every: int | None = None, modules: Any = None,
                 hist_sample: int | None = 4096, **kwargs: Any):
        if hist_sample is not None and (not isinstance(hist_sample, int) or hist_sample < 1):
            raise ValueError(f"hist_sample must be a positive number of activations per layer, or None for all "
                             f"of them; got {hist_sample!r}")
        kwargs.setdefault("detach", False)  # the hook detaches the output itself, and never reads the input
        super().__init__(modules=modules, every=every, **kwargs)
        self.with_hist, self.hist_sample = bool(with_hist), hist_sample
        self._reset()

    def _reset(self) -> None:
        self._recorded: list[torch.Tensor] = []       # per batch: [layers, 3] raw sums, on the device
        self._numels: list[list[int]] = []            # per batch: the activations each layer had (0: did not run)
        self._hists: list[torch.Tensor] = []          # per batch: [layers, 40] counts of the sample, on the device
        self._widths: list[int | None] = []           # per batch: the sample buffer's width (None: no sample)
        self._cache: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._sample: torch.Tensor | None = None      # [layers, width]: this batch's sampled activations, -1 padded
        self._plans: dict[int, tuple[int, torch.device, Any]] = {}  # per layer: how to copy its sample
        self._zero: torch.Tensor | None = None
        self._scratch: torch.Tensor | None = None     # the comparison's output (reused: no allocation per layer)
        self._zero_hist: torch.Tensor | None = None

    def before_fit(self) -> None:
        super().before_fit()
        self._reset()
        self._layer = {id(m): k for k, m in enumerate(self._mods)}

    def hook(self, m: nn.Module, i: Any, o: Any) -> Any:
        if not self.learn.training:
            return None  # only training batches are recorded: no work in validation
        if not isinstance(o, torch.Tensor):  # a module with several outputs: its first tensor
            o = next((t for t in o if isinstance(t, torch.Tensor)), None) if isinstance(o, (list, tuple)) else None
            if o is None:
                return None
        f = _flat(o.detach())
        if self.with_hist:
            if self.hist_sample is None:  # every activation: this layer's counts now (a padded buffer would waste)
                return (*self._layer_moments(f), f.numel(), self._histograms(f.view(1, -1))[0])
            self._keep_sample(self._layer[id(m)], f)
        return (*self._layer_moments(f), f.numel())

    def _layer_moments(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scratch = self._scratch
        if scratch is None or scratch.device != f.device or scratch.numel() < f.numel():
            with torch.inference_mode(False):  # a normal tensor, also when a cached frozen body runs in inference mode
                scratch = self._scratch = f.new_empty(f.numel())
        return _moments(f, scratch)

    def _keep_sample(self, layer: int, f: torch.Tensor) -> None:
        """Copy layer ``layer``'s sample of ``f`` into its row of the batch's sample buffer: one device op, planned
        once per layer and size (`_plan`)."""
        plan = self._plans.get(layer)
        if plan is None or plan[0] != f.numel() or plan[1] != f.device:
            with torch.inference_mode(False):  # normal tensors: written in and out of inference mode
                plan = self._plans[layer] = self._plan(layer, f)
        plan[2](f)

    def _plan(self, layer: int, f: torch.Tensor) -> tuple[int, torch.device, Any]:
        """``(numel, device, copy)``: the op that puts the sample of a flat ``f`` of this size in the layer's row
        (all of it, the rest of the row at -1, when it fits; else `_spread_index` positions)."""
        n, width = f.numel(), self.hist_sample or f.numel()
        if self._sample is None or self._sample.device != f.device or self._sample.shape[1] < min(n, width):
            old = self._sample
            self._sample = f.new_full((len(self._mods), max(min(n, width), old.shape[1] if old is not None else 0)),
                                      -1.0)
            if old is not None and old.device == f.device:  # a larger layer after smaller ones: keep their rows
                self._sample[:, :old.shape[1]] = old
            self._plans = {}  # the other layers' plans wrote into the old buffer
        row = self._sample[layer]
        if n <= row.shape[0]:
            row[n:].fill_(-1.0)  # below the histogram's range: not counted
            return n, f.device, row[:n].copy_
        idx = _spread_index(n, row.shape[0], f.device)
        return n, f.device, lambda v: torch.index_select(v, 0, idx, out=row)

    def after_fit(self) -> None:
        super().after_fit()
        self._scratch = self._sample = None  # working memory only; the recorded statistics stay

    def after_fit_exception(self) -> None:
        super().after_fit_exception()
        self._scratch = self._sample = None

    def _record_now(self) -> bool:
        return self.learn.training and (self.every is None or self._train_iter % self.every == 0)

    def after_batch(self) -> None:
        if self._record_now() and self.hooks is not None:
            stored = self.hooks.stored
            ref = next((s for s in stored if s is not None), None)
            if ref is not None:  # a layer that did not run this batch (e.g. a cached frozen body) records NaN
                if self._zero is None or self._zero.device != ref[0].device:
                    self._zero = torch.zeros_like(ref[0])
                zeros = (self._zero,) * 3
                raw = [t for s in stored for t in (s[:3] if s is not None else zeros)]
                self._recorded.append(torch.stack(raw).view(-1, 3))  # [layers, 3]: one op for all layers
                self._numels.append([s[3] if s is not None else 0 for s in stored])
                if self.with_hist and self.hist_sample is None:
                    if self._zero_hist is None or self._zero_hist.device != ref[0].device:
                        self._zero_hist = ref[0].new_zeros(_BINS)
                    self._hists.append(torch.stack([s[4] if s is not None else self._zero_hist for s in stored]))
                    self._widths.append(None)  # every activation counted
                elif self.with_hist and self._sample is not None:
                    for k, s in enumerate(stored):
                        if s is None:
                            self._sample[k].fill_(-1.0)
                    self._hists.append(self._histograms(self._sample))
                    self._widths.append(self._sample.shape[1])
            for h in self.hooks:
                h.stored = None  # a layer skipped next batch must not repeat this batch's values
        super().after_batch()

    @staticmethod
    def _histograms(sample: torch.Tensor) -> torch.Tensor:
        """``[layers, 40]`` counts of ``sample`` (``[layers, width]``) in fastai's bins (width 0.25 over [0, 10]),
        all layers in one count: each value's code is its bin plus ``42 *`` its layer. On a GPU a scatter, not
        ``bincount``, which would read the largest code on the host (a sync)."""
        n_layers, width = sample.shape
        offsets = torch.arange(1, _CODES * n_layers, _CODES, device=sample.device, dtype=sample.dtype)[:, None]
        codes = sample.nan_to_num(-1.0).mul_(_BINS / 10).floor_().clamp_(-1, _BINS).add_(offsets).view(-1)
        if sample.device.type == "cpu":  # bincount is the faster count on a CPU, where it cannot make anyone wait
            counts = torch.bincount(codes.int(), minlength=n_layers * _CODES)
        else:
            counts = sample.new_zeros(n_layers * _CODES).scatter_add_(0, codes.long(),
                                                                      sample.new_ones(1).expand(codes.numel()))
        return counts.view(n_layers, _CODES)[:, 1:_BINS + 1].to(sample.dtype)

    # --- reading -------------------------------------------------------------------------------------
    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``([batches, layers, 3] mean/std/near-zero, [batches, layers, 40] or None)`` on the CPU (one transfer,
        then cached)."""
        if self._cache is None or self._cache[0].shape[0] != len(self._recorded):
            if not self._recorded:
                raise ValueError("no activation statistics recorded yet: train with this callback first "
                                 "(learn.fit(1, cbs=ActivationStats()))")
            n = torch.tensor(self._numels, dtype=torch.float64)
            stats = _finish(torch.stack(self._recorded).cpu(), n)
            hists = None
            if self._hists:  # the sample's counts scaled to the layer's size (0 activations: NaN)
                widths = [float("inf") if w is None else w for w in self._widths]
                counted = torch.minimum(n, torch.tensor(widths, dtype=torch.float64)[:, None])
                scale = torch.where(n > 0, n / counted.clamp_min(1), torch.full_like(n, float("nan")))
                hists = (torch.stack(self._hists).cpu().double() * scale[..., None]).float()
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
        return f"ActivationStats(with_hist={self.with_hist}, every={self.every}, hist_sample={self.hist_sample})"
