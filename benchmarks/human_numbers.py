"""fastbook ch. 12's data and first model, shared by ``benchmarks/vs_fastai.py`` (task ``lmmodel1``) and
``tests/text/test_text_fastbook_ch12.py``: plain Python and torch, so both frameworks' workers can import it.

fastai's ``URLs.HUMAN_NUMBERS`` is "one", "two"... "nine thousand nine hundred ninety nine", one per line (train
1-7999, valid 8000-9999); it is generated here instead of downloaded. ``LMModel1`` is the chapter's model with
``Module`` written as ``nn.Module``.

>>> vocab, nums = human_numbers()
>>> len(vocab), vocab[:4], words(2024)
(30, ['one', '.', 'two', 'three'], 'two thousand twenty four')
>>> seqs, cut = lm_sequences(nums)
>>> len(seqs), cut
(21032, 16825)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["words", "human_numbers", "lm_sequences", "LMModel1"]

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def words(n: int) -> str:
    """English words of ``1 <= n < 10000``, as in fastai's human numbers ('one hundred one', no 'and')."""
    parts = []
    if n >= 1000:
        parts += [_ONES[n // 1000], "thousand"]
        n %= 1000
    if n >= 100:
        parts += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        parts.append(_TENS[n // 10])
        n %= 10
    if n:
        parts.append(_ONES[n])
    return " ".join(parts)


def human_numbers() -> tuple[list[str], list[int]]:
    """The chapter's ``vocab`` and ``nums``: every number's words joined with " . ", as token ids."""
    lines = [words(i) + " \n" for i in range(1, 10000)]  # train.txt then valid.txt, as the chapter reads them
    text = " . ".join([line.strip() for line in lines])
    tokens = text.split(" ")
    vocab = list(dict.fromkeys(tokens))  # L(*tokens).unique()
    word2idx = {w: i for i, w in enumerate(vocab)}
    return vocab, [word2idx[t] for t in tokens]


def lm_sequences(nums: list[int]) -> tuple[list[tuple[torch.Tensor, int]], int]:
    """The chapter's ``seqs`` (three tokens -> the next one) and its 80% train/valid ``cut``."""
    seqs = [(torch.tensor(nums[i:i + 3]), nums[i + 3]) for i in range(0, len(nums) - 4, 3)]
    return seqs, int(len(seqs) * 0.8)


class LMModel1(nn.Module):
    """The chapter's first language model: three tokens through one shared hidden layer."""

    def __init__(self, vocab_sz: int, n_hidden: int):
        super().__init__()
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.h_h = nn.Linear(n_hidden, n_hidden)
        self.h_o = nn.Linear(n_hidden, vocab_sz)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.h_h(self.i_h(x[:, 0])))
        h = h + self.i_h(x[:, 1])
        h = F.relu(self.h_h(h))
        h = h + self.i_h(x[:, 2])
        h = F.relu(self.h_h(h))
        return self.h_o(h)
