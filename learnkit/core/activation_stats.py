"""`ActivationStats`: the mean, standard deviation, near-zero fraction (and histogram) of every layer's
activations at each training batch, to see whether a network trains well (fastbook ch. 13).

The statistics stay on the device while training: each batch adds one small tensor per kind of statistic,
with no ``.item()`` and so no wait for the GPU; they come to the CPU once, when first read after ``fit``.

What it costs (``benchmarks/activation_stats.py``, benchmarks/RESULTS.md): each layer copies an evenly spread
sample of ``sample`` of its activations (default 4096; all of them in a smaller layer) into one buffer, and
after the batch three ops compute every layer's mean, standard deviation and near-zero fraction from it (and
one count its histograms): a few ops per batch instead of four or more per layer, which is what an epoch of a
tiny CNN feels. The sample is the same positions every batch; on fastbook ch. 13's ``simple_cnn`` (mnist_tiny,
layers of 16k-100k activations, 22 batches) its mean and std stay within 6 % of the exact std of the batch and
the near-zero fraction within 0.02 (``sample=8192``: 3 % and 0.01). ``sample=None`` reads every activation (exact
statistics and histograms, fastai's way; on fastbook ch. 13's ``simple_cnn`` about +12 %, +40 % with
histograms, on one CPU thread). ``every=n`` records one training batch in ``n``.

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
_CHUNK_BYTES = 16 << 20  # the sample buffer holds up to 16 batches within this size (then one flush for them all)


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

    Per layer and batch: ``mean``, ``std`` and ``near_zero`` (the fraction of activations ``<= 0.05``); with
    ``with_hist=True`` also a 40-bin histogram of the values in ``[0, 10]`` (fastai's). They are computed from an
    evenly spread sample of ``sample`` activations of the layer (the same positions every batch; every activation
    of a layer that has no more), the histograms scaled to the layer's size; ``sample=None`` reads every
    activation, exactly, as fastai does, at several times the cost. Read them with ``layer_stats(idx)``,
    ``hist(idx)`` and ``stats`` (fastai's list, per batch, of a dict per layer); draw them with
    ``plot_layer_stats(idx)`` and ``color_dim(idx)`` (``idx`` counts layers, negative from the end). A layer
    that did not run in a batch (a frozen body whose features `FrozenFeatureCache` serves) has NaN there.

    >>> cb = ActivationStats(with_hist=True, every=2)
    >>> cb.name, cb.order, cb.sample
    ('activation_stats', -20, 4096)
    """

    order = -20

    def __init__(self, with_hist: bool = False, every: int | None = None, modules: Any = None,
                 sample: int | None = 4096, **kwargs: Any):
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            raise ValueError(f"sample must be a positive number of activations per layer, or None for all of "
                             f"them; got {sample!r}")
        kwargs.setdefault("detach", False)  # the hook detaches the output itself, and never reads the input
        super().__init__(modules=modules, every=every, **kwargs)
        self.with_hist, self.sample = bool(with_hist), sample
        self._reset()

    def _reset(self) -> None:
        self._recorded: list[torch.Tensor] = []       # per chunk of batches: [batches, layers, 3] raw sums (device)
        self._numels: list[list[int]] = []            # per batch: the activations each layer had (0: did not run)
        self._hists: list[torch.Tensor] = []          # per chunk: [batches, layers, 40] counts, on the device
        self._widths: list[int | None] = []           # per batch: the sample buffer's width (None: every activation)
        self._cache: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._buf: torch.Tensor | None = None         # [slots, 3, layers, width]: samples (-1 padded), squares, flags
        self._rows: list[list[torch.Tensor]] = []     # per slot and layer: its sample row (views of _buf)
        self._slot = 0                                # the slot this batch's samples go to (earlier ones: pending)
        self._ones: torch.Tensor | None = None        # [width] ones: the sums of the three rows in one product
        self._plans: dict[nn.Module, tuple[int, torch.device, torch.Tensor | None, int]] = {}  # per module: `_plan`
        self._zero: torch.Tensor | None = None
        self._scratch: torch.Tensor | None = None     # sample=None: the comparison's output (reused)
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
        if self.sample is None:  # every activation, exactly: this layer's sums (and counts) now
            f = _flat(o.detach())
            moments = self._layer_moments(f)
            return (*moments, f.numel(), self._histograms(f.view(1, -1))[0]) if self.with_hist else (*moments, f.numel())
        # the sample only, copied into this layer's row of this batch's slot in one op (the statistics of every
        # layer come after the batch); kept short: it runs for every hooked layer at every training batch
        n = o.numel()
        plan = self._plans.get(m)
        if plan is None or plan[0] != n or plan[1] != o.device:
            with torch.inference_mode(False):  # normal tensors: written in and out of inference mode
                plan = self._plans[m] = self._plan(_flat(o.detach()), self._layer[id(m)])
        f = o.detach()
        f = f.view(-1) if f.dtype is torch.float32 and f.is_contiguous() else _flat(f)
        row = self._rows[self._slot][plan[3]]
        if plan[2] is None:
            row[:n].copy_(f)  # all of it; the rest of the row stays -1 (the buffer is reset after each flush)
        else:
            torch.index_select(f, 0, plan[2], out=row)
        return n

    def _layer_moments(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scratch = self._scratch
        if scratch is None or scratch.device != f.device or scratch.numel() < f.numel():
            with torch.inference_mode(False):  # a normal tensor, also when a cached frozen body runs in inference mode
                scratch = self._scratch = f.new_empty(f.numel())
        return _moments(f, scratch)

    def _plan(self, f: torch.Tensor, layer: int) -> tuple[int, torch.device, torch.Tensor | None, int]:
        """``(numel, device, positions, layer)``: the `_spread_index` positions of a flat ``f`` of this size
        (``None``: all of it fits in a row), after growing the buffer to the sample's width if it is wider."""
        n = f.numel()
        width = min(n, self.sample or n)
        old = self._buf
        if old is None or old.device != f.device or old.shape[3] < width:
            width = max(width, old.shape[3] if old is not None else 0)
            n_layers = len(self._mods)
            slots = max(1, min(16, _CHUNK_BYTES // (12 * n_layers * max(self.sample or 1, width))))
            buf = f.new_full((slots, 3, n_layers, width), -1.0)
            if old is not None:  # a larger layer after smaller ones: keep the pending samples
                buf[:, 0, :, :old.shape[3]] = old[:, 0].to(buf.device)
            self._buf, self._ones = buf, f.new_ones(width)
            self._rows = [list(buf[k, 0].unbind(0)) for k in range(slots)]
            self._plans = {}  # positions were drawn for the old width
        return n, f.device, None if n <= width else _spread_index(n, width, f.device), layer

    def after_fit(self) -> None:
        self._flush()
        super().after_fit()
        self._scratch = self._buf = self._ones = None  # working memory only; the recorded statistics stay
        self._rows = []

    def after_fit_exception(self) -> None:
        self._flush()
        super().after_fit_exception()
        self._scratch = self._buf = self._ones = None
        self._rows = []

    def _record_now(self) -> bool:
        return self.learn.training and (self.every is None or self._train_iter % self.every == 0)

    def after_batch(self) -> None:
        if self._record_now() and self.hooks is not None:
            stored = self.hooks.stored
            if any(s is not None for s in stored):
                if self.sample is None:
                    self._record_exact(stored)
                elif self._buf is not None:  # this batch's samples stay in their slot until the chunk is full
                    self._numels.append([s if s is not None else 0 for s in stored])
                    self._slot += 1
                    if self._slot == self._buf.shape[0]:
                        self._flush()
            for h in self.hooks:
                h.stored = None  # a layer skipped next batch must not repeat this batch's values
        super().after_batch()

    def _flush(self) -> None:
        """The raw sums of the pending slots' samples, every layer at once, in three device ops (squares,
        comparisons, and one matrix-vector product summing the three rows; `_finish` corrects the -1
        padding), and their histograms in one count; then the slots are reset to -1."""
        k, buf = self._slot, self._buf
        if k == 0 or buf is None:
            return
        part = buf[:k]
        sample = part[:, 0]
        torch.mul(sample, sample, out=part[:, 1])
        torch.gt(sample, _NEAR_ZERO, out=part[:, 2])
        _, _, n_layers, width = part.shape
        raw = torch.mv(part.view(-1, width), self._ones).view(k, 3, n_layers)
        self._recorded.append(raw.transpose(1, 2))
        self._widths.extend([width] * k)
        if self.with_hist:
            self._hists.append(self._histograms(sample))
        sample.fill_(-1.0)
        self._slot = 0

    def _record_exact(self, stored: list[Any]) -> None:
        ref = next(s for s in stored if s is not None)
        if self._zero is None or self._zero.device != ref[0].device:
            self._zero = torch.zeros_like(ref[0])
        zeros = (self._zero,) * 3
        raw = [t for s in stored for t in (s[:3] if s is not None else zeros)]
        self._recorded.append(torch.stack(raw).view(1, -1, 3))  # [1, layers, 3]: one op for all layers
        self._numels.append([s[3] if s is not None else 0 for s in stored])
        self._widths.append(None)
        if self.with_hist:
            if self._zero_hist is None or self._zero_hist.device != ref[0].device:
                self._zero_hist = ref[0].new_zeros(_BINS)
            self._hists.append(torch.stack([s[4] if s is not None else self._zero_hist for s in stored])[None])

    @staticmethod
    def _histograms(sample: torch.Tensor) -> torch.Tensor:
        """``[..., layers, 40]`` counts of ``sample`` (``[..., layers, width]``) in fastai's bins (width 0.25 over
        [0, 10]), all in one count: each value's code is its bin plus ``42 *`` its row. On a GPU a scatter, not
        ``bincount``, which would read the largest code on the host (a sync)."""
        *lead, width = sample.shape
        rows = sample.numel() // width
        offsets = torch.arange(1, _CODES * rows, _CODES, device=sample.device, dtype=sample.dtype).view(*lead, 1)
        codes = sample.nan_to_num(-1.0).mul_(_BINS / 10).floor_().clamp_(-1, _BINS).add_(offsets).view(-1)
        if sample.device.type == "cpu":  # bincount is the faster count on a CPU, where it cannot make anyone wait
            counts = torch.bincount(codes.int(), minlength=rows * _CODES)
        else:
            counts = sample.new_zeros(rows * _CODES).scatter_add_(0, codes.long(),
                                                                  sample.new_ones(1).expand(codes.numel()))
        return counts.view(*lead, _CODES)[..., 1:_BINS + 1].to(sample.dtype)

    # --- reading -------------------------------------------------------------------------------------
    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``([batches, layers, 3] mean/std/near-zero, [batches, layers, 40] or None)`` on the CPU (one transfer,
        then cached)."""
        self._flush()  # batches still in the sample buffer (read during fit)
        if self._cache is None or self._cache[0].shape[0] != len(self._numels):
            if not self._recorded:
                raise ValueError("no activation statistics recorded yet: train with this callback first "
                                 "(learn.fit(1, cbs=ActivationStats()))")
            n = torch.tensor(self._numels, dtype=torch.float64)
            widths = torch.tensor([float("inf") if w is None else w for w in self._widths], dtype=torch.float64)
            counted = torch.minimum(n, widths[:, None])  # the activations each statistic was computed from
            pad = torch.where(torch.isinf(widths)[:, None], 0.0, widths[:, None] - counted)  # the sample's -1s
            raw = torch.cat(self._recorded).cpu().double()
            raw = raw + torch.stack([pad, -pad, torch.zeros_like(pad)], -1)  # sums of -1 and of its square out
            stats = _finish(raw, counted)
            hists = None
            if self._hists:  # the sample's counts scaled to the layer's size (0 activations: NaN)
                scale = torch.where(n > 0, n / counted.clamp_min(1), torch.full_like(n, float("nan")))
                hists = (torch.cat(self._hists).cpu().double() * scale[..., None]).float()
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
        return f"ActivationStats(with_hist={self.with_hist}, every={self.every}, sample={self.sample})"
