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
histograms, on one CPU thread). ``every=n`` records one training batch in ``n``. Two hooked layers that are
neighbours in an ``nn.Sequential`` (a convolution and its batch norm) share one hook once the first recorded
batch has shown that the second is called with the first's output, unchanged: the second's hook samples its
input too, so a conv-BN network pays PyTorch's hook dispatch half as often (`_chained`).

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

from .activation_sampling import (_BINS, _CHUNK_BYTES, _NEAR_ZERO, _STATS, _chained, _finish, _flat, _moments,
                                  _positions, histograms)
from .hooks import HookCallback, Hooks

__all__ = ["ActivationStats"]


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
        self._now: list[int] = []                     # this batch: the activations each layer had (0: did not run)
        self._feeds: dict[nn.Module, nn.Module] = {}  # B -> A: B's hook also samples its input, A's output (`_pair`)
        self._seen: dict[int, tuple[nn.Module, torch.Tensor, int]] | None = None  # calibrating: outputs of the batch
        self._candidates: dict[nn.Module, nn.Module] = {}   # B -> A: `_chained`, to confirm in the first batch
        self._confirmed: dict[nn.Module, nn.Module] = {}
        self._calls: dict[nn.Module, int] = {}

    def before_fit(self) -> None:
        self._reset()  # before the hooks are registered (`_register` reads the pairs)
        super().before_fit()
        self._layer = {id(m): k for k, m in enumerate(self._mods)}
        self._now = [0] * len(self._mods)
        if self.sample is not None:  # the first recorded batch hooks every layer and finds the pairs
            self._candidates = _chained(self.learn.model, self._mods)
            self._seen = {} if self._candidates else None

    def _register(self) -> None:
        """Hook every layer, except the ``A`` of each confirmed pair (its output is sampled by ``B``'s hook)."""
        if not self._feeds:
            super()._register()
            return
        self._remove()
        fed = set(self._feeds.values())
        self.hooks = Hooks([m for m in self._mods if m not in fed], self.hook, self.is_forward, self.detach, self.cpu)

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
            return (*moments, f.numel(), histograms(f.view(1, -1))[0]) if self.with_hist else (*moments, f.numel())
        # the sample only, copied into this layer's row of this batch's slot in one op (the statistics of every
        # layer come after the batch); kept short: it runs for every hooked layer at every training batch
        n = self._sample(m, o)
        a = self._feeds.get(m)
        if a is not None:  # this layer's input is the output of layer `a`, which has no hook of its own
            self._sample(a, i[0])
        elif self._seen is not None:
            self._calibrate(m, i, o)
        return n

    def _sample(self, m: nn.Module, o: torch.Tensor) -> int:
        """Copy the sample of ``o``, the output of layer ``m``, into its row of this batch's slot."""
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
        self._now[plan[3]] = n
        return n

    def _calibrate(self, m: nn.Module, i: Any, o: torch.Tensor) -> None:
        """During the first recorded batch: note each output (object, version) and each call, and confirm a
        candidate pair ``A -> B`` when ``B``'s input is ``A``'s output object, unchanged (same version)."""
        self._calls[m] = self._calls.get(m, 0) + 1
        x = i[0] if isinstance(i, tuple) and i and isinstance(i[0], torch.Tensor) else None
        a = self._candidates.get(m)
        if x is not None and a is not None:
            seen = self._seen.get(id(x))
            if seen is not None and seen[0] is a and seen[1] is x and seen[2] == x._version:
                self._confirmed[m] = a
        if not o.is_inference():  # an inference tensor has no version counter: its layer is never paired
            self._seen[id(o)] = (m, o, o._version)

    def _pair(self) -> None:
        """After the first recorded batch: keep the confirmed pairs whose layers ran exactly once, and re-hook."""
        confirmed, calls = self._confirmed, self._calls
        self._feeds = {b: a for b, a in confirmed.items() if calls.get(a) == 1 and calls.get(b) == 1}
        self._seen, self._confirmed, self._calls = None, {}, {}
        if self._feeds and self.every is None:
            self._register()  # `every=n` registers its hooks at each recorded batch: the pairs apply from the next

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
        return n, f.device, None if n <= width else _positions(n, width, f.device), layer

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
                    self._numels.append(self._now)
                    self._now = [0] * len(self._mods)
                    self._slot += 1
                    if self._slot == self._buf.shape[0]:
                        self._flush()
                if self._seen is not None:
                    self._pair()
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
        if self.with_hist:  # last: it overwrites the samples with their codes
            self._hists.append(histograms(sample, scratch=True))
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
