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

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .learner import Learner

__all__ = [
    "EVENTS", "Callback", "describe_training_loop",
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
    """The events of ``fit`` in order, indented by loop level, each with the callbacks that implement it.

    >>> class Hello(Callback):
    ...     def before_fit(self): pass
    >>> describe_training_loop([Hello()]).splitlines()[1]
    'Start Fit: Hello'
    """
    lines = ["(the callbacks that run at each event, in order)"]
    for event, depth in _LOOP:
        names = [type(cb).__name__ for cb in cbs if callable(getattr(cb, event, None))]
        label = event.replace("_", " ").title()
        if event.startswith("before_"):
            label = "Start " + label[len("Before "):]
        elif event.startswith("after_cancel"):
            label = "Cancelled " + label[len("After Cancel "):]
        elif event.startswith("after_"):
            label = "End " + label[len("After "):]
        lines.append("   " * depth + label + (f": {', '.join(names)}" if names else ""))
    return "\n".join(lines)
