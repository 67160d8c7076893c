"""`ProfilerCallback` and `profile_learner` (``learn.profile(n_batches=50)``): where each training step's time goes.

Every event of the loop is bracketed by two markers (a first and a last callback), and the training loader is
wrapped so that the moment each batch arrives is marked too. Each interval between two marks belongs to one
part of the step:

==================  =========================================================================
data wait           from the end of the previous batch until the loader hands over the next
host→device         the copy to the device and the on-device batch transforms (``on_device``)
forward             the model's forward pass
loss                the loss function
backward            the backward pass
optimizer step      ``opt.step()`` and zeroing the gradients (and the loss scaler)
callbacks           every callback's work at every event (recorder, progress bar, schedules...)
validation          the validation passes, pro rata to the training batches profiled
==================  =========================================================================

On CUDA the marks are CUDA events (no synchronisation on the timing path; they are read back when they have
completed), so a gap is time the GPU spent waiting; on the CPU they are ``time.perf_counter()``. The fractions
sum to 1 by construction. `ProfileReport` prints the table and one sentence naming the bottleneck and the knob
for it. ``trace=path`` also records a ``torch.profiler`` Chrome trace. With ``LEARNKIT_PROFILE=1`` in the
environment every ``fit`` carries a profiler that prints its table at the end. Without it the loop has no
profiler at all: no overhead.
"""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..callback import Callback, CancelValidException

if TYPE_CHECKING:  # pragma: no cover
    from ..learner import Learner

__all__ = ["ProfilerCallback", "ProfileReport", "profile_learner", "PARTS"]

PARTS = ("data wait", "host→device", "forward", "loss", "backward", "optimizer step", "callbacks", "validation")

_KNOBS = {
    "data wait": "raise num_workers (now {workers}) or cache presized images (a smaller item_tfms Resize, or "
                 "FrozenFeatureCache while the body is frozen)",
    "host→device": "keep batches uint8 until they are on the device, pin memory, and make batch_tfms lighter",
    "forward": "use mixed precision (learn.to_bf16() / to_fp16()), channels_last, learn.compile() or a smaller model",
    "loss": "compute the loss on the device in one vectorised call (no per-item Python) or in mixed precision",
    "backward": "use mixed precision (learn.to_bf16() / to_fp16()), learn.compile(), or freeze more of the body",
    "optimizer step": "use a fused or foreach optimizer (opt_func=partial(torch.optim.AdamW, fused=True)) or "
                      "GradientAccumulation to step less often",
    "callbacks": "remove per-batch callbacks that read values back from the device (TerminateOnNaNCallback, "
                 "custom after_batch hooks) or make them run less often",
    "validation": "validate less often (fit(..., validate_every=N) with a larger N) or on a smaller validation set, "
                  "at a larger batch size",
}


class ProfileReport:
    """Seconds per part of the training step (`PARTS`), their fractions, and the bottleneck.

    >>> r = ProfileReport({"data wait": 6.2, "forward": 2.0, "backward": 1.8}, n_batches=50, num_workers=0)
    >>> round(sum(r.fractions.values()), 6), r.bottleneck
    (1.0, 'data wait')
    >>> r.advice
    'data wait is 62 % of the time: raise num_workers (now 0) or cache presized images ...'
    """

    def __init__(self, seconds: dict[str, float], n_batches: int, num_workers: int | None = None,
                 device: str = "cpu"):
        self.seconds = {p: float(seconds.get(p, 0.0)) for p in PARTS}
        self.n_batches, self.num_workers, self.device = n_batches, num_workers, device

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def fractions(self) -> dict[str, float]:
        total = self.total
        return {p: (s / total if total > 0 else 0.0) for p, s in self.seconds.items()}

    @property
    def bottleneck(self) -> str:
        return max(self.seconds, key=self.seconds.get)

    @property
    def advice(self) -> str:
        part = self.bottleneck
        knob = _KNOBS[part].format(workers="?" if self.num_workers is None else self.num_workers)
        return f"{part} is {self.fractions[part]:.0%} of the time: {knob}".replace("%", " %")

    def __str__(self) -> str:
        lines = [f"time per training step over {self.n_batches} batches on {self.device}:",
                 f"{'part':<16}{'seconds':>10}{'per step ms':>13}{'fraction':>10}"]
        per = max(1, self.n_batches)
        for p in PARTS:
            s = self.seconds[p]
            lines.append(f"{p:<16}{s:>10.3f}{1000 * s / per:>13.2f}{self.fractions[p]:>10.1%}")
        lines.append(f"{'total':<16}{self.total:>10.3f}{1000 * self.total / per:>13.2f}{1:>10.1%}")
        lines.append(self.advice)
        return "\n".join(lines)

    __repr__ = __str__


class _Clock:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda" and torch.cuda.is_available()

    def now(self) -> Any:
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def ready(self, stamp: Any) -> bool:
        return not self.cuda or stamp.query()

    def seconds(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1000 if self.cuda else b - a


class _Mark(Callback):
    """Marks the start (``order`` first) or the end (last) of every event for the profiler."""

    def __init__(self, prof: "ProfilerCallback", where: str):
        self.prof, self.where = prof, where

    def __call__(self, event: str) -> None:
        self.prof._mark(f"{event}:{self.where}")


class _MarkStart(_Mark):
    order = -10**6


class _MarkEnd(_Mark):
    order = 10**6


class _TimedLoader:
    """Marks the moment each batch comes out of the wrapped loader."""

    def __init__(self, dl: Any, prof: "ProfilerCallback"):
        self.dl, self.prof = dl, prof

    def __len__(self) -> int:
        return len(self.dl)

    def __getattr__(self, name: str) -> Any:
        if name == "dl":
            raise AttributeError(name)
        return getattr(self.dl, name)

    def __iter__(self):
        for batch in self.dl:
            self.prof._mark("fetched")
            yield batch


_PART_OF_NEXT = {"fetched": "data wait", "before_batch:start": "host→device", "after_pred:start": "forward",
                 "after_loss:start": "loss", "after_backward:start": "backward", "after_step:start": "optimizer step"}


class ProfilerCallback(Callback):
    """Measure where each training step's time goes (see the module docstring).

    Args:
        n_batches: training batches to profile (``None``: all of them).
        skip: the first training batches, not profiled (warm-up: workers starting, cudnn autotuning).
        trace: a path for a ``torch.profiler`` Chrome trace of the profiled batches (open it in
            ``chrome://tracing`` or Perfetto).
        schedule: a ``torch.profiler.schedule`` for the trace (default: ``skip`` batches wait, 1 warm-up, then
            ``n_batches`` active).
        print_report: print the table at the end of the fit (``LEARNKIT_PROFILE=1`` sets it).

    >>> import torch
    >>> dl = TensorLoader(torch.randn(64, 2), torch.randn(64, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> prof = ProfilerCallback(skip=2)
    >>> learn.fit(1, cbs=prof)
    >>> prof.report.n_batches, round(sum(prof.report.fractions.values()), 6)
    (14, 1.0)
    """

    order = 100  # its before_train wraps the loader after every other swap (DDP shard, mid-epoch resume)

    def __init__(self, n_batches: int | None = None, skip: int = 5, trace: str | Path | None = None,
                 schedule: Any = None, print_report: bool = False):
        self.n_batches, self.skip, self.trace, self.schedule = n_batches, skip, trace, schedule
        self.print_report = print_report
        self.report: ProfileReport | None = None

    # --- the marks ------------------------------------------------------------------------------------
    def _mark(self, label: str) -> None:
        if not getattr(self, "_on", False):
            return
        if label == "before_validate:start":
            self._in_valid = True
        stamp = self._clock.now()
        prev_label, prev = self._last
        self._last = (label, stamp)
        if prev is None:
            return
        if self._in_valid:
            part = "validation"
        elif not self._active():
            return
        elif label.endswith(":end"):
            part = "callbacks"
        else:
            part = _PART_OF_NEXT.get(label, "callbacks")
        if part == "validation" and not self._counted:
            return  # no training batch profiled yet: nothing to prorate it to
        self._pending.append((part, prev, stamp))
        if label == "after_validate:end":
            self._in_valid = False
        if len(self._pending) > 4096:
            self._harvest(block=False)

    def _active(self) -> bool:
        return self._batches >= self.skip and (self.n_batches is None or self._counted < self.n_batches)

    def _harvest(self, block: bool) -> None:
        if block and self._clock.cuda:
            torch.cuda.synchronize()
        keep = []
        for part, a, b in self._pending:
            if self._clock.ready(b):
                self._seconds[part] += self._clock.seconds(a, b)
            else:
                keep.append((part, a, b))
        self._pending = keep

    # --- events ---------------------------------------------------------------------------------------
    def before_fit(self):
        learn = self.learn
        self._clock = _Clock(learn.device)
        self._seconds = {p: 0.0 for p in PARTS}
        self._pending: list = []
        self._last: tuple[str, Any] = ("", None)
        self._batches = self._counted = self._valid_batches = 0
        self._in_valid, self._on = False, True
        self._markers = [_MarkStart(self, "start"), _MarkEnd(self, "end")]
        learn.add_cbs(self._markers)
        self._torch_prof = None
        if self.trace is not None:
            from torch.profiler import ProfilerActivity, profile, schedule
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self._clock.cuda else [])
            sched = self.schedule or schedule(wait=self.skip, warmup=1, active=self.n_batches or 20, repeat=1)
            path = str(self.trace)
            self._torch_prof = profile(activities=acts, schedule=sched,
                                       on_trace_ready=lambda p: p.export_chrome_trace(path))
            self._torch_prof.__enter__()

    def before_train(self):
        self.learn.dl = _TimedLoader(self.learn.dl, self)
        self._last = ("", None)

    def before_validate(self):
        self._valid_len = len(self.learn.dl)

    def after_batch(self):
        if self.learn.training:
            if self._active():
                self._counted += 1
            self._batches += 1
            if self._torch_prof is not None:
                self._torch_prof.step()
        elif self._in_valid:
            self._valid_batches += 1

    def _finish(self) -> None:
        if not getattr(self, "_on", False):
            return
        self._on = False
        for m in self._markers:
            self.learn.remove_cb(m)
        if self._torch_prof is not None:
            self._torch_prof.__exit__(None, None, None)
            self._torch_prof = None
        self._harvest(block=True)
        seconds = dict(self._seconds)
        n_train = len(self.learn.dls.train) if self.learn.dls.train is not None else 0
        if self._valid_batches and n_train:  # one validation pass per epoch, pro rata to the batches profiled
            per_pass = seconds["validation"] / self._valid_batches * self._valid_len
            seconds["validation"] = per_pass * self._counted / n_train
        workers = getattr(self.learn.dls.train, "num_workers", None)
        self.report = ProfileReport(seconds, self._counted, workers, str(self.learn.device))
        if self.print_report:
            from ..process_group import is_rank0
            if is_rank0():
                print(self.report)

    def after_fit(self):
        self._finish()

    def after_fit_exception(self):
        self._finish()


class _ValidLimit(Callback):
    def __init__(self, n: int):
        self.n = n

    def before_batch(self):
        if not self.learn.training and self.learn.iter >= self.n:
            raise CancelValidException()


def profile_learner(learn: "Learner", n_batches: int = 50, skip: int = 5, valid_batches: int | None = None,
                    trace: str | Path | None = None, show: bool = True) -> ProfileReport:
    """``learn.profile(n_batches)``: train ``skip + n_batches`` batches (and validate up to ``valid_batches``,
    by default ``n_batches // 5``), report where the time went, then put the weights and the optimizer back.
    Checkpoint, EMA and SaveModel callbacks sit the profile out (their files and averages would outlast it).

    >>> import torch
    >>> dl = TensorLoader(torch.randn(64, 2), torch.randn(64, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> w = learn.model.weight.detach().clone()
    >>> report = learn.profile(n_batches=8, skip=2, show=False)
    >>> report.n_batches, sorted(report.fractions) == sorted(PARTS), torch.equal(learn.model.weight, w)
    (8, True, True)
    """
    from .steps import StepLimitCallback
    if learn.opt is None:
        learn.create_opt()
    model_state = copy.deepcopy(learn.model.state_dict())
    opt_state = copy.deepcopy(learn.opt.state_dict())
    scaler_state = copy.deepcopy(learn.scaler.state_dict())
    prof = ProfilerCallback(n_batches=n_batches, skip=skip, trace=trace)
    steps = skip + n_batches
    n_epoch = max(1, math.ceil(steps / max(1, len(learn.dls.train))))
    cbs = [prof, StepLimitCallback(steps), _ValidLimit(valid_batches or max(2, n_batches // 5))]
    from .checkpoint import CheckpointCallback
    from .ema import EMACallback
    from .tracking import SaveModelCallback
    lasting = [cb for cb in learn.cbs if isinstance(cb, (CheckpointCallback, EMACallback, SaveModelCallback))]
    try:  # without the callbacks whose effects outlast the fit (files, the weights' average)
        with learn.no_bar(), learn.removed_cbs(lasting):
            learn.fit(n_epoch, cbs=cbs)
    finally:
        learn.opt.zero_grad(set_to_none=True)
        learn.model.load_state_dict(model_state)
        learn.opt.load_state_dict(opt_state)
        learn.scaler.load_state_dict(scaler_state)
    if show:
        print(prof.report)
    return prof.report


def env_profiler() -> list[Callback]:
    """A printing `ProfilerCallback` when ``LEARNKIT_PROFILE=1`` is set, else nothing (no overhead)."""
    return [ProfilerCallback(print_report=True)] if os.environ.get("LEARNKIT_PROFILE", "0") == "1" else []
