"""Texts as token-id datasets, padded per batch, with batches bucketed by length.

A batch is padded to its own longest review (never to a global maximum), and the training sampler
groups reviews of similar length, so a batch costs what its longest review costs.

>>> ds = TextDataset(["a b c", "d"], [[5, 6, 7], [8]], labels=[0, 1])
>>> ids, y = PadCollate(pad_id=0)([ds[0], ds[1]])
>>> ids.tolist(), y.tolist()
([[5, 6, 7], [8, 0, 0]], [0, 1])
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler
from ..core.validation import check_batch_size

__all__ = ["TextDataset", "PadCollate", "BucketBatchSampler"]


class TextDataset(Dataset):
    """Cleaned texts, their token ids and (optionally) their class indices.

    ``sources`` says where each text came from (a file path or a DataFrame index), for error messages and
    for the interpretation tables. An item is ``(ids,)`` or ``(ids, label)`` as tensors.

    >>> ds = TextDataset(["a b c", "d"], [[5, 6, 7], [8]], labels=[0, 1], sources=["a.txt", "b.txt"])
    >>> len(ds), ds[1], ds.lengths, ds.sorted_by_length().sources
    (2, (tensor([8]), tensor(1)), [3, 1], ['a.txt', 'b.txt'])
    """

    def __init__(self, texts: Sequence[str], ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None,
                 sources: Sequence[Any] | None = None):
        if len(ids) != len(texts) or (labels is not None and len(labels) != len(texts)):
            raise ValueError(f"got {len(texts)} texts, {len(ids)} token lists and "
                             f"{'no' if labels is None else len(labels)} labels: they must match")
        self.texts, self.ids = list(texts), [list(i) for i in ids]
        self.labels = None if labels is None else [int(v) for v in labels]
        self.sources = list(sources) if sources is not None else list(range(len(texts)))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        ids = torch.tensor(self.ids[i], dtype=torch.long)
        return (ids,) if self.labels is None else (ids, torch.tensor(self.labels[i]))

    @property
    def lengths(self) -> list[int]:
        return [len(i) for i in self.ids]

    def subset(self, idx: Sequence[int]) -> "TextDataset":
        return TextDataset([self.texts[i] for i in idx], [self.ids[i] for i in idx],
                           None if self.labels is None else [self.labels[i] for i in idx],
                           [self.sources[i] for i in idx])

    def sorted_by_length(self) -> "TextDataset":
        """A copy with the longest texts first (validation: batches of similar length, largest first)."""
        return self.subset(sorted(range(len(self)), key=lambda i: -len(self.ids[i])))


class PadCollate:
    """Stack items into ``(ids [B, L], *labels)``, right-padding ids with ``pad_id`` to the batch's longest.

    >>> PadCollate(pad_id=1)([(torch.tensor([5, 6, 7]), torch.tensor(0)), (torch.tensor([8]), torch.tensor(1))])
    (tensor([[5, 6, 7],
            [8, 1, 1]]), tensor([0, 1]))
    """

    def __init__(self, pad_id: int):
        self.pad_id = int(pad_id)

    def __call__(self, items: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        seqs = [it[0] for it in items]
        ids = torch.full((len(seqs), max(1, max(len(s) for s in seqs))), self.pad_id, dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = s
        rest = [torch.stack([it[k] for it in items]) for k in range(1, len(items[0]))]
        return (ids, *rest)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices of similar length, in a random order that changes every epoch.

    Each epoch: shuffle all indices, cut them into pools of ``bs * pool_batches``, sort each pool by length
    (longest first) and cut it into batches, then shuffle the batches — so batches are random but padding is
    small. The longest batch goes first so that an out-of-memory error shows at once. ``seed`` fixes the
    sequence of epochs (the generator is private, so the global RNG does not matter).

    >>> sampler = BucketBatchSampler([5, 1, 9, 2, 8, 3], bs=2, seed=0)   # the lengths of six texts
    >>> batches = list(sampler)
    >>> len(sampler), batches[0], sorted(sorted(b) for b in batches)     # the longest batch first
    (3, [2, 4], [[0, 5], [1, 3], [2, 4]])
    """

    def __init__(self, lengths: Sequence[int], bs: int, shuffle: bool = True, seed: int | None = 42,
                 drop_last: bool = False, pool_batches: int = 50):
        check_batch_size(bs)
        self.lengths, self.bs, self.shuffle, self.drop_last = list(lengths), bs, shuffle, drop_last
        self.pool = bs * pool_batches
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**62))

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        order = torch.randperm(n, generator=self.generator).tolist() if self.shuffle else list(range(n))
        batches = []
        for p in range(0, n, self.pool):
            pool = sorted(order[p: p + self.pool], key=lambda i: -self.lengths[i])
            batches += [pool[b: b + self.bs] for b in range(0, len(pool), self.bs)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.bs]
        if self.shuffle and len(batches) > 1:
            longest = max(range(len(batches)), key=lambda k: self.lengths[batches[k][0]])
            first = batches.pop(longest)
            batches = [first] + [batches[k] for k in torch.randperm(len(batches), generator=self.generator).tolist()]
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.drop_last:
            return sum(len(range(p, min(p + self.pool, n))) // self.bs for p in range(0, n, self.pool))
        return sum(-(-len(range(p, min(p + self.pool, n))) // self.bs) for p in range(0, n, self.pool))
