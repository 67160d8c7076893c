"""Where a training loader stands in its epoch, so that a killed run continues in the middle of one.

A loader's order for an epoch is fixed by the state of its ``torch.Generator``s when the epoch starts (or of
the process' torch stream, for a DataLoader without a generator). A mid-epoch checkpoint (`CheckpointCallback`
with ``every_batches``) keeps those epoch-start states and the number of batches already trained; on resume
`SkipBatches` draws the very same order again and starts after them:

- a torch ``DataLoader`` over a map-style dataset skips the trained batches' *indices* (nothing is read)
  when it has no workers;
- with workers (or any other loader) the trained batches are read again and dropped, without training,
  so that each worker's random stream (item augmentation) is where it was: the rest of the epoch is then
  bit-identical to the uninterrupted run.

Worker processes kept alive across epochs (``persistent_workers``) carry their random state from epoch to
epoch, which a fresh process cannot recreate; `epoch_loader` gives a twin of such a loader that starts its
workers each epoch (same dataset, sampler, generator and collation), seeded from the loader's generator
alone. `CheckpointCallback` iterates the training and the validation loaders through such twins, so that the
validation workers' random draws also follow from the generator state a checkpoint holds.

>>> import torch
>>> from torch.utils.data import DataLoader
>>> g = torch.Generator().manual_seed(0)
>>> dl = DataLoader(list(range(8)), batch_size=2, shuffle=True, generator=g)
>>> snap = loader_snapshot(dl)  # at the start of the epoch
>>> full = [b.tolist() for b in dl]
>>> restore_snapshot(dl, snap)
>>> [b.tolist() for b in SkipBatches(dl, 3)] == full[3:]  # the same order, after the 3 trained batches
True
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

__all__ = ["loader_snapshot", "restore_snapshot", "epoch_loader", "SkipBatches"]


def _generators(dl: Any) -> list[torch.Generator]:
    """The distinct torch.Generators that drive a loader's order (DataLoader, its sampler, batch sampler)."""
    found: list[torch.Generator] = []
    batch_sampler = getattr(dl, "batch_sampler", None)
    for owner in (dl, getattr(dl, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


def loader_snapshot(dl: Any) -> dict[str, Any]:
    """The state that fixes ``dl``'s next epoch: its ``state_dict()`` if it has one, else its generators'.

    >>> snap = loader_snapshot(DataLoader(range(4), batch_size=2, generator=torch.Generator()))
    >>> list(snap), len(snap["generators"])
    (['generators'], 1)
    """
    if hasattr(dl, "state_dict") and hasattr(dl, "load_state_dict"):
        return {"state": dl.state_dict()}
    return {"generators": [g.get_state() for g in _generators(dl)]}


def restore_snapshot(dl: Any, snap: dict[str, Any], where: str = "the checkpoint") -> None:
    """Put back a `loader_snapshot`.

    >>> dl = DataLoader(range(6), batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(3))
    >>> snap = loader_snapshot(dl); first = [b.tolist() for b in dl]
    >>> restore_snapshot(dl, snap); [b.tolist() for b in dl] == first
    True
    """
    if "state" in snap:
        dl.load_state_dict(snap["state"])
        return
    gens = _generators(dl)
    if len(gens) != len(snap["generators"]):
        raise ValueError(f"{where}: the loader had {len(snap['generators'])} random generators, now {len(gens)}; "
                         "resume with the same DataLoaders")
    for g, state in zip(gens, snap["generators"]):
        g.set_state(state)


def _map_style(dl: Any) -> bool:
    ds = getattr(dl, "dataset", None)
    return isinstance(dl, DataLoader) and ds is not None and not isinstance(ds, IterableDataset)


def _copy_loader(dl: DataLoader, batch_sampler: Any, persistent: bool) -> DataLoader:
    kw: dict[str, Any] = dict(batch_sampler=batch_sampler, collate_fn=dl.collate_fn, num_workers=dl.num_workers,
                              pin_memory=dl.pin_memory, timeout=dl.timeout, worker_init_fn=dl.worker_init_fn,
                              multiprocessing_context=dl.multiprocessing_context, generator=dl.generator,
                              persistent_workers=persistent and dl.num_workers > 0)
    if dl.num_workers > 0:
        kw["prefetch_factor"] = dl.prefetch_factor
    return DataLoader(dl.dataset, **kw)


def epoch_loader(dl: Any) -> Any:
    """``dl`` itself, or for a torch DataLoader with ``persistent_workers`` a twin that starts its workers every
    epoch (sharing the dataset, batch sampler and generator, so the order is the same): worker random
    streams then depend on the generator only, which a checkpoint restores.

    >>> dl = DataLoader(range(8), batch_size=2, num_workers=1, persistent_workers=True)
    >>> twin = epoch_loader(dl)
    >>> twin.persistent_workers, twin.batch_sampler is dl.batch_sampler, epoch_loader(twin) is twin
    (False, True, True)
    """
    if not (_map_style(dl) and dl.persistent_workers and dl.batch_sampler is not None):
        return dl
    return _copy_loader(dl, dl.batch_sampler, persistent=False)


class _SkippedBatchSampler:
    """A batch sampler without its first ``k`` batches (the skipped ones are drawn, not read). ``start()`` draws
    them at once (a sampler without a generator of its own draws its order from the process' streams then)."""

    def __init__(self, batch_sampler: Any, k: int):
        self.batch_sampler, self.k = batch_sampler, k
        self._it: Iterator[list[int]] | None = None

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.k)

    def start(self) -> None:
        it = iter(self.batch_sampler)
        for _ in range(self.k):
            if next(it, None) is None:
                break
        self._it = it

    def __iter__(self) -> Iterator[list[int]]:
        if self._it is None:
            self.start()
        it, self._it = self._it, None
        yield from it


class SkipBatches:
    """One pass over ``dl`` without its first ``k`` batches, in the order ``dl`` draws now; ``on_start()`` runs
    after the skipping, just before the first kept batch is read (the checkpoint restores the random state
    of the process there).

    ``replay=None`` (the default) reads and drops the skipped batches only where it matters for the random
    streams: loaders with workers, and loaders that are not torch DataLoaders over a map-style dataset.
    ``len()`` is the full epoch's, as the loop counts the batches from ``k``.

    >>> [b.tolist() for b in SkipBatches(DataLoader(range(6), batch_size=2), 2)]
    [[4, 5]]
    """

    def __init__(self, dl: Any, k: int, on_start: Callable[[], None] | None = None, replay: bool | None = None):
        self.dl, self.k, self.on_start = dl, k, on_start
        index_skip = _map_style(dl) and dl.batch_sampler is not None and dl.num_workers == 0
        self.replay = (not index_skip) if replay is None else (replay or not index_skip)

    def __len__(self) -> int:
        return len(self.dl)

    def __getattr__(self, name: str) -> Any:  # batch_size, dataset, sampler... of the wrapped loader
        if name == "dl":
            raise AttributeError(name)
        return getattr(self.dl, name)

    def __iter__(self) -> Iterator[Any]:
        if self.replay:
            it = iter(self.dl)
            for _ in range(self.k):
                if next(it, None) is None:
                    break
        else:
            skipped = _SkippedBatchSampler(self.dl.batch_sampler, self.k)
            it = iter(_copy_loader(self.dl, skipped, persistent=False))
            skipped.start()  # the order is drawn here, as the uninterrupted run drew it at its first batch
        if self.on_start is not None:
            self.on_start()
        yield from it
