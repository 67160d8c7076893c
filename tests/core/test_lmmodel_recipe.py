"""fastbook ch. 12's first language model (`LMModel1`) on a plain `Learner`, ported by the import change:
``fit_one_cycle(4, 1e-3)`` must train as well as in fastai (accuracy about 0.48 there, mean of 3 runs)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from learnkit import DataLoaders, Learner, accuracy, set_seed

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def words(n: int) -> str:
    """``n`` (1..9999) in English words, as fastai's human-numbers data writes it."""
    out = []
    if n >= 1000:
        out += [ONES[n // 1000], "thousand"]
        n %= 1000
    if n >= 100:
        out += [ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        out.append(TENS[n // 10])
        n %= 10
    if n or not out:
        out.append(ONES[n])
    return " ".join(out)


def human_numbers() -> tuple[list, list, int]:
    tokens = (" . ".join(words(i) for i in range(1, 10000)) + " .").split(" ")
    vocab = list(dict.fromkeys(tokens))
    index = {w: i for i, w in enumerate(vocab)}
    nums = [index[t] for t in tokens]
    seqs = [(torch.tensor(nums[i:i + 3]), nums[i + 3]) for i in range(0, len(nums) - 4, 3)]
    cut = int(len(seqs) * 0.8)
    return seqs[:cut], seqs[cut:], len(vocab)


class LMModel1(nn.Module):  # fastbook ch. 12, with nn.Module for fastai's Module
    def __init__(self, vocab_sz: int, n_hidden: int):
        super().__init__()
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.h_h = nn.Linear(n_hidden, n_hidden)
        self.h_o = nn.Linear(n_hidden, vocab_sz)

    def forward(self, x):
        h = F.relu(self.h_h(self.i_h(x[:, 0])))
        h = h + self.i_h(x[:, 1])
        h = F.relu(self.h_h(h))
        h = h + self.i_h(x[:, 2])
        h = F.relu(self.h_h(h))
        return self.h_o(h)


def test_lmmodel1_trains_as_well_as_fastai():
    train, valid, n_vocab = human_numbers()
    accs = []
    for seed in range(3):
        set_seed(seed)
        dls = DataLoaders.from_dsets(train, valid, bs=64, shuffle=False)
        learn = Learner(dls, LMModel1(n_vocab, 64), loss_func=F.cross_entropy, metrics=accuracy, progress=False)
        learn.fit_one_cycle(4, 1e-3)
        accs.append(learn.validate()[1])
    assert sum(accs) / 3 >= 0.47, accs
