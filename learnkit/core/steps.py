"""`StepsLoader`: any loader seen as epochs of a fixed number of steps.

The loop, the progress bars and the schedules count an epoch in batches (``len(dl)``). A stream of unknown
length (an ``IterableDataset``) or a run that validates every N steps (``fit(..., validate_every=N)``) needs an
epoch of exactly N batches instead: `StepsLoader` yields the next ``steps`` batches of the loader it wraps,
continuing where the previous epoch stopped and starting the wrapped loader again (a new shuffle, ``set_epoch``)
when it runs out. Its ``state_dict`` (the wrapped loader's state when its current pass started and the batches
read since) lets a checkpoint put it back where it was.

>>> sl = StepsLoader(list(range(5)), steps=3)  # any iterable of batches
>>> len(sl), list(sl), list(sl)
(3, [0, 1, 2], [3, 4, 0])
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .loader_state import SkipBatches, epoch_loader, loader_snapshot, restore_snapshot
from .validation import check_int

__all__ = ["StepsLoader"]


class StepsLoader:
    """``steps`` batches of ``dl`` per epoch, the stream continuing across epochs (see the module docstring).

    Args:
        dl: any loader (a torch DataLoader, over a map-style or an iterable dataset, or any iterable of batches).
        steps: batches per epoch.
        first_epoch: what the wrapped loader's ``set_epoch`` (if it has one: a DDP shard, a stream) is told
            at the first pass; each later pass tells it one more (a new shuffle, the same on every rank).

    >>> from torch.utils.data import DataLoader
    >>> sl = StepsLoader(DataLoader(range(6), batch_size=2), steps=2)
    >>> [[b.tolist() for b in sl] for _ in range(2)]  # 3 batches in the wrapped loader: it starts again
    [[[0, 1], [2, 3]], [[4, 5], [0, 1]]]
    """

    def __init__(self, dl: Any, steps: int, first_epoch: int = 0):
        check_int("steps", steps, what="(batches per epoch)")
        check_int("first_epoch", first_epoch, low=0)
        self.dl, self.steps, self.first_epoch = epoch_loader(dl), steps, first_epoch
        self.passes = 0  # how many times the wrapped loader was started
        self._it: Iterator | None = None
        self._pos = 0  # batches read in the wrapped loader's current pass
        self._pass_start: dict[str, Any] | None = None
        self._resume_at: int | None = None

    def __len__(self) -> int:
        return self.steps

    def __getattr__(self, name: str) -> Any:  # dataset, batch_size... of the wrapped loader
        if name == "dl":
            raise AttributeError(name)
        return getattr(self.dl, name)

    def _start_pass(self) -> None:
        set_epoch = getattr(self.dl, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.first_epoch + self.passes)
        self._pass_start = loader_snapshot(self.dl)
        self._it, self._pos = iter(self.dl), 0
        self.passes += 1

    def __iter__(self) -> Iterator[Any]:
        if self._resume_at is not None:  # put back by load_state_dict: the same pass, after its first batches
            self._it, self._pos, self._resume_at = iter(SkipBatches(self.dl, self._resume_at)), self._resume_at, None
        for _ in range(self.steps):
            if self._it is None:
                self._start_pass()
            batch = next(self._it, StopIteration)
            if batch is StopIteration:
                self._start_pass()
                batch = next(self._it, StopIteration)
                if batch is StopIteration:
                    raise ValueError("the loader wrapped by StepsLoader yields no batch: its data is empty")
            self._pos += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is: the wrapped loader's state when its current pass started, and the batches read since."""
        if self._pass_start is None:
            return {"pass_start": loader_snapshot(self.dl), "pos": 0, "passes": self.passes}
        return {"pass_start": self._pass_start, "pos": self._pos, "passes": self.passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_snapshot(self.dl, state["pass_start"])
        self.passes = int(state["passes"])
        self._pass_start, self._it = state["pass_start"], None
        if self.passes:  # in the middle of a pass: draw that pass again and skip what was read
            self.passes -= 1
            set_epoch = getattr(self.dl, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(self.first_epoch + self.passes)
            self.passes += 1
            self._resume_at = int(state["pos"])
