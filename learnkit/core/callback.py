"""The callback contract: the events a `Learner` fires, their order, and the cancellation exceptions.

A callback is a class with methods named after events. Every method receives nothing: it reads and may
replace the learner's state (``self.learn.xb``, ``.yb``, ``.pred``, ``.loss``...). Raising one of the
``Cancel*Exception`` skips the rest of that step; the learner then fires ``after_cancel_<step>`` and
carries on with the step after it.

>>> class PrintLoss(Callback):
...     order = 65  # after the Recorder (50) has written this epoch's values
...     def after_epoch(self):
...         print(self.learn.recorder.values[-1])
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = [
    "EVENTS", "Callback", "CallbacksMixin", "check_hook_names", "describe_training_loop", "refuse_nested_fit",
    "fitting",
    "CancelFitException", "CancelEpochException", "CancelTrainException", "CancelValidException",
    "CancelBatchException", "CancelBackwardException", "CancelStepException",
]

#: Events in the order they fire during ``fit``. ``before_batch`` ... ``after_batch`` run once per batch,
#: in training (with backward/step) and in validation (without). ``after_fit_exception`` fires instead of
#: ``after_fit`` when an error (not a ``Cancel*Exception``) escapes ``fit``; ``learn.fit_exception`` holds it
#: and it is raised again afterwards (trackers use it to close their run as failed).
EVENTS = (
    "before_fit", "before_epoch", "before_train", "before_batch", "after_pred", "after_loss",
    "before_backward", "after_backward", "before_step", "after_step", "after_batch", "after_train",
    "before_validate", "after_validate", "after_epoch", "after_fit",
    "after_cancel_fit", "after_cancel_epoch", "after_cancel_train", "after_cancel_validate",
    "after_cancel_batch", "after_cancel_backward", "after_cancel_step", "after_fit_exception",
)


_BATCH_EVENTS = frozenset((
    "before_batch", "after_pred", "after_loss", "before_backward", "after_backward", "before_step", "after_step",
    "after_batch", "after_cancel_batch", "after_cancel_backward", "after_cancel_step",
))


class CancelFitException(Exception):
    """Stop training now; ``after_cancel_fit`` then ``after_fit`` run."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch (training and validation); the next epoch starts."""


class CancelTrainException(Exception):
    """Skip the rest of this epoch's training phase; validation still runs."""


class CancelValidException(Exception):
    """Skip the rest of this epoch's validation phase."""


class CancelBatchException(Exception):
    """Skip the rest of this batch (no loss, backward or step after the point it is raised)."""


class CancelBackwardException(Exception):
    """Skip the backward pass of this batch (and so its step)."""


class CancelStepException(Exception):
    """Skip the optimizer step and the zeroing of gradients (used by gradient accumulation)."""


class Callback:
    """Base class: override any event method. ``order`` sets the run order (low first, ties by name).

    Attributes the learner sets: ``learn``. ``run_train``/``run_valid`` say whether the callback's batch
    events run in the training and in the validation phase (both by default).

    >>> import torch
    >>> class CountBatches(Callback):
    ...     run_valid = False  # its batch events run in training only
    ...     def before_fit(self): self.n = 0
    ...     def after_batch(self): self.n += 1
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> cb = CountBatches()
    >>> learn.fit(3, cbs=cb)  # cbs=: for this fit only; learn.add_cb(cb): for every fit
    >>> cb.n, cb.name
    (6, 'count_batches')
    """

    order: int = 0
    run_train: bool = True
    run_valid: bool = True
    learn: "Learner"

    @property
    def name(self) -> str:
        """snake_case of the class name without a trailing 'Callback': ``EarlyStoppingCallback`` → ``early_stopping``."""
        cls = type(self).__name__
        if cls.endswith("Callback") and cls != "Callback":
            cls = cls[: -len("Callback")]
        out = []
        for i, ch in enumerate(cls):
            if ch.isupper() and i and (not cls[i - 1].isupper() or (i + 1 < len(cls) and cls[i + 1].islower())):
                out.append("_")
            out.append(ch.lower())
        return "".join(out)

    def __call__(self, event: str) -> None:
        if event in _BATCH_EVENTS:
            training = self.learn.training
            if (training and not self.run_train) or (not training and not self.run_valid):
                return
        method = getattr(self, event, None)
        if method is not None:
            method()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_LOOP = (
    ("before_fit", 0), ("before_epoch", 1), ("before_train", 2), ("before_batch", 3), ("after_pred", 3),
    ("after_loss", 3), ("before_backward", 3), ("after_backward", 3), ("before_step", 3), ("after_step", 3),
    ("after_cancel_batch", 3), ("after_batch", 3), ("after_cancel_train", 2), ("after_train", 2),
    ("before_validate", 2), ("before_batch", 3), ("after_pred", 3), ("after_loss", 3), ("after_batch", 3),
    ("after_cancel_validate", 2), ("after_validate", 2), ("after_cancel_epoch", 1), ("after_epoch", 1),
    ("after_cancel_fit", 0), ("after_fit", 0),
)


def describe_training_loop(cbs: list[Callback]) -> str:
    """The events of ``fit`` in order, indented by loop level: each phase, the method a callback defines to run
    there (``after_batch``), and the callbacks that implement it.

    >>> class Hello(Callback):
    ...     def before_fit(self): pass
    >>> describe_training_loop([Hello()]).splitlines()[1:3]
    ['Start Fit (before_fit): Hello', '   Start Epoch (before_epoch)']
    """
    lines = ["(each phase of fit, the Callback method that runs there, and the callbacks that define it, in order)"]
    for event, depth in _LOOP:
        names = [type(cb).__name__ for cb in cbs if callable(getattr(cb, event, None))]
        label = event.replace("_", " ").title()
        if event.startswith("before_"):
            label = "Start " + label[len("Before "):]
        elif event.startswith("after_cancel"):
            label = "Cancelled " + label[len("After Cancel "):]
        elif event.startswith("after_"):
            label = "End " + label[len("After "):]
        lines.append("   " * depth + f"{label} ({event})" + (f": {', '.join(names)}" if names else ""))
    return "\n".join(lines)


def check_hook_names(cb: Callback) -> None:
    """Raise ``ValueError`` if ``cb`` has a public method named like an event (``before_*``, ``after_*``) that is
    not one of `EVENTS`: a misspelt hook would otherwise never run, silently. Helpers take another name (or a
    leading ``_``).

    >>> class Typo(Callback):
    ...     def after_epcoh(self): pass
    >>> check_hook_names(Typo())
    Traceback (most recent call last):
    ...
    ValueError: Typo.after_epcoh is not an event, so it would never run: did you mean 'after_epoch'? ...
    """
    for name in sorted(set(dir(type(cb))) | set(vars(cb))):
        if not name.startswith(("before_", "after_")) or name in EVENTS:
            continue
        if not callable(inspect.getattr_static(cb, name)):  # a plain attribute, or a property, is no hook
            continue
        close = difflib.get_close_matches(name, EVENTS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"{type(cb).__name__}.{name} is not an event, so it would never run: {hint}(the events are "
                         "learnkit.core.callback.EVENTS; give a helper method a name that does not start with "
                         "before_/after_, or a leading underscore)")


def _calling_callback() -> str | None:
    """``"Class.event"`` of the nearest callback method on the call stack, if any."""
    frame = sys._getframe(2)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Callback):
            return f"{type(owner).__name__}.{frame.f_code.co_name}"
        frame = frame.f_back
    return None


def refuse_nested_fit(learn: Any) -> None:
    """Raise a ``RuntimeError`` when ``learn.fit`` is called while a fit of the same learner runs (from a
    callback): the inner fit would reset ``n_epoch``, the optimizer and the recorder under the outer one.

    >>> import torch
    >>> class Nested(Callback):
    ...     def after_epoch(self): self.learn.fit(1)
    >>> dl = TensorLoader(torch.randn(8, 2), torch.randn(8, 1), bs=4)
    >>> learn = Learner(DataLoaders(dl, dl, device="cpu"), torch.nn.Linear(2, 1), loss_func=MSELossFlat(),
    ...                 progress=False)
    >>> learn.fit(2, cbs=Nested())
    Traceback (most recent call last):
    ...
    RuntimeError: learn.fit was called while learn.fit is running (from Nested.after_epoch): ...
    """
    if getattr(learn, "_fitting", False):
        where = _calling_callback()
        raise RuntimeError(f"learn.fit was called while learn.fit is running{f' (from {where})' if where else ''}: "
                           "a nested fit would reset n_epoch, the optimizer and the recorder of the running one. "
                           "To train more, let this fit end (a callback can raise CancelFitException) and call "
                           "fit again afterwards; to train another model, give it its own Learner")


@contextlib.contextmanager
def fitting(learn: Any) -> Iterator[None]:
    """Mark ``learn`` as fitting for the ``with`` block (what `refuse_nested_fit` checks)."""
    refuse_nested_fit(learn)
    learn._fitting = True
    try:
        yield
    finally:
        learn._fitting = False


def _listify(o: Any) -> list:
    if o is None:
        return []
    if isinstance(o, (list, tuple)):
        return list(o)
    return [o]


class CallbacksMixin:
    """How a `Learner` holds its callbacks: ``add_cb``/``remove_cb``, and ``added_cbs``/``removed_cbs`` for a
    block. Each callback becomes an attribute of the learner named `Callback.name`.

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> ds = TensorDataset(torch.randn(8, 1), torch.randn(8, 1))
    >>> learn = Learner(DataLoaders.from_dsets(ds, ds, bs=4, device="cpu"), torch.nn.Linear(1, 1),
    ...                 loss_func=MSELossFlat(), progress=False)
    >>> with learn.added_cbs(EarlyStoppingCallback(patience=2)):
    ...     learn.early_stopping.patience
    2
    >>> hasattr(learn, "early_stopping")
    False
    """

    def add_cb(self: Learner, cb: Callback | type[Callback]) -> Learner:
        """Add ``cb`` (an instance, or a class to instantiate); it runs in every ``fit`` until removed."""
        if isinstance(cb, type):
            cb = cb()
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {cb!r}")
        check_hook_names(cb)
        existing = getattr(self, cb.name, None)
        if existing is not None and not isinstance(existing, Callback):
            raise ValueError(f"a callback named {cb.name!r} would hide the Learner attribute of that name; "
                             "rename the callback class")
        cb.learn = self
        setattr(self, cb.name, cb)
        self.cbs.append(cb)
        self.cbs.sort(key=lambda c: (c.order, c.name))
        return self

    def add_cbs(self: Learner, cbs: Iterable[Callback]) -> Learner:
        for cb in cbs:
            self.add_cb(cb)
        return self

    def remove_cb(self: Learner, cb: Callback) -> Learner:
        if cb in self.cbs:
            self.cbs.remove(cb)
            if getattr(self, cb.name, None) is cb:
                delattr(self, cb.name)
        return self

    @contextlib.contextmanager
    def added_cbs(self: Learner, cbs: Callback | Sequence[Callback] | None) -> Iterator[None]:
        """Add ``cbs`` for the ``with`` block only (how ``fit(cbs=...)`` adds its callbacks)."""
        cbs = [cb() if isinstance(cb, type) else cb for cb in _listify(cbs)]
        try:
            self.add_cbs(cbs)  # inside the try: a bad callback leaves none of these behind
            yield
        finally:
            for cb in cbs:
                self.remove_cb(cb)

    @contextlib.contextmanager
    def removed_cbs(self: Learner, cbs: Sequence[Callback]) -> Iterator[None]:
        """Take ``cbs`` out for the ``with`` block only."""
        cbs = [cb for cb in cbs if cb in self.cbs]
        for cb in cbs:
            self.remove_cb(cb)
        try:
            yield
        finally:
            self.add_cbs(cbs)
