"""fastbook chapter 12 (a language model from scratch), ported by the import change.

The human-numbers data is generated (fastai's ``URLs.HUMAN_NUMBERS`` is "one", "two"... "nine thousand nine
hundred ninety nine", one per line, train 1-7999 and valid 8000-9999) by ``benchmarks/human_numbers.py``, which
also holds ``LMModel1``: ``benchmarks/vs_fastai.py --tasks lmmodel1`` runs the same code on fastai. fastai's
``L`` becomes a list (``Module`` is learnkit's, no ``super().__init__()``); everything else is the
chapter's code. fastbook prints about 0.50 (LMModel1), 0.57 (LMModel3) and 0.84 (LMModel7); the accuracies
reached here are printed (``-s``) and asserted well above chance (LMModel1's against fastai's on the same
seeds).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# torch, nn and F come with the namespace, as with fastai's `from fastai.text.all import *`
from learnkit.text import (F, Module, nn, torch, CrossEntropyLossFlat, DataLoaders, Learner, ModelResetter, TextLearner, accuracy,
                           set_seed)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from human_numbers import LMModel1, human_numbers, lm_sequences  # noqa: E402

pytestmark = pytest.mark.slow


def group_chunks(ds, bs):
    m = len(ds) // bs
    new_ds = []
    for i in range(m):
        new_ds += [ds[i + m * j] for j in range(bs)]
    return new_ds


class LMModel3(Module):
    def __init__(self, vocab_sz, n_hidden):
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.h_h = nn.Linear(n_hidden, n_hidden)
        self.h_o = nn.Linear(n_hidden, vocab_sz)
        self.h = 0

    def forward(self, x):
        for i in range(3):
            self.h = self.h + self.i_h(x[:, i])
            self.h = F.relu(self.h_h(self.h))
        out = self.h_o(self.h)
        self.h = self.h.detach()
        return out

    def reset(self):
        self.h = 0


class LMModel7(Module):
    def __init__(self, vocab_sz, n_hidden, n_layers, p, bs=64):
        self.i_h = nn.Embedding(vocab_sz, n_hidden)
        self.rnn = nn.LSTM(n_hidden, n_hidden, n_layers, batch_first=True)
        self.drop = nn.Dropout(p)
        self.h_o = nn.Linear(n_hidden, vocab_sz)
        self.h_o.weight = self.i_h.weight
        self.h = [torch.zeros(n_layers, bs, n_hidden) for _ in range(2)]

    def forward(self, x):
        raw, h = self.rnn(self.i_h(x), self.h)
        out = self.drop(raw)
        self.h = [h_.detach() for h_ in h]
        return self.h_o(out), raw, out

    def reset(self):
        for h in self.h:
            h.zero_()


@pytest.fixture(scope="module")
def numbers():
    return human_numbers()


#: fastai 2.8.12's accuracy on seeds 0-2, the same code and data (same initial weights per seed):
#: ``python benchmarks/vs_fastai.py --tasks lmmodel1 --seeds 10 --threads 1`` (benchmarks/RESULTS.md, "Custom model
#: on a plain Learner vs fastai"); mean 0.4640 (seeds 0-9: 0.4647)
FASTAI_SEEDS_0_2 = [0.4550, 0.4459, 0.4911]


def test_lmmodel1_plain_learner(numbers):
    """The chapter's recipe, seeds 0-2 (issue 24: as well as fastai). The same seed gives learnkit and fastai the
    same initial weights and batches, and they then agree to float noise: learnkit 0.4547, 0.4457, 0.4904 (mean
    0.4636) against fastai's `FASTAI_SEEDS_0_2` (mean 0.4640); over seeds 0-9 learnkit 0.4664, fastai 0.4647.
    A per-seed gap of 0.01-0.02 is rounding amplified over 1000 steps (seed 0 moves between 0.447 and 0.462 with
    changes as small as decaying the biases or not), so the mean is held to fastai's less 0.005 and every
    seed to fastai's +-0.02: torch's own AdamW values (betas 0.9/0.999, eps 1e-8), the old default, gave 0.426,
    0.429, 0.491 and fail both."""
    vocab, nums = numbers
    assert len(vocab) == 30 and vocab[:4] == ["one", ".", "two", "three"]  # as fastbook shows
    seqs, cut = lm_sequences(nums)
    accs = []
    for seed in range(3):
        set_seed(seed)
        dls = DataLoaders.from_dsets(seqs[:cut], seqs[cut:], bs=64, shuffle=False, device="cpu")
        learn = Learner(dls, LMModel1(len(vocab), 64), loss_func=F.cross_entropy, metrics=accuracy, progress=False)
        learn.fit_one_cycle(4, 1e-3)
        accs.append(learn.recorder.final_record()["accuracy"])
    print(f"LMModel1 accuracy {accs} (fastai, same seeds: {FASTAI_SEEDS_0_2}; fastbook: about 0.50)")
    assert sum(accs) / 3 >= sum(FASTAI_SEEDS_0_2) / 3 - 0.005, accs
    assert all(abs(a - b) <= 0.02 for a, b in zip(accs, FASTAI_SEEDS_0_2)), accs


def test_lmmodel3_model_resetter_and_group_chunks(numbers):
    vocab, nums = numbers
    set_seed(42)
    bs = 64
    seqs = [(torch.tensor(nums[i:i + 3]), nums[i + 3]) for i in range(0, len(nums) - 4, 3)]
    cut = int(len(seqs) * 0.8)
    dls = DataLoaders.from_dsets(group_chunks(seqs[:cut], bs), group_chunks(seqs[cut:], bs), bs=bs, drop_last=True,
                                 shuffle=False, device="cpu")
    learn = Learner(dls, LMModel3(len(vocab), 64), loss_func=F.cross_entropy, metrics=accuracy, cbs=ModelResetter,
                    progress=False)
    learn.fit_one_cycle(10, 3e-3)
    acc = learn.recorder.final_record()["accuracy"]
    print(f"LMModel3 accuracy {acc:.3f} (fastbook: about 0.57)")
    assert acc > 0.45


def test_lmmodel7_text_learner(numbers):
    vocab, nums = numbers
    set_seed(42)
    bs, sl = 64, 16
    seqs = [(torch.tensor(nums[i:i + sl]), torch.tensor(nums[i + 1:i + sl + 1])) for i in range(0, len(nums) - sl - 1, sl)]
    cut = int(len(seqs) * 0.8)
    dls = DataLoaders.from_dsets(group_chunks(seqs[:cut], bs), group_chunks(seqs[cut:], bs), bs=bs, drop_last=True,
                                 shuffle=False, device="cpu")
    learn = TextLearner(dls, LMModel7(len(vocab), 64, 2, 0.4), loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                        progress=False)
    learn.fit_one_cycle(15, 1e-2, wd=0.1)
    acc = learn.recorder.final_record()["accuracy"]
    print(f"LMModel7 accuracy {acc:.3f} (fastbook: about 0.84)")
    assert acc > 0.7
    assert learn.validate()[1] == pytest.approx(acc, abs=0.02)  # validate keeps the RNN callbacks
