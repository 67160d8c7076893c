"""Where the time of ``examples/imdb.py`` (MiniLM) goes: tokenising, the caching pass, each epoch's training and
validation, wall and CPU seconds, with the recipe's knobs (precision, attention dropout, length, layers).

    python benchmarks/imdb_phases.py                                  # the example's recipe (512 tokens, lr 2e-3)
    python benchmarks/imdb_phases.py --max-len 256 --lr 1e-3          # the recipe before (RESULTS.md)
    python benchmarks/imdb_phases.py --fp32 --attn-dropout 0.1        # the recipe before bf16 / fused attention
    python benchmarks/imdb_phases.py --n-train 600 --n-valid 200      # a subset, for quick speed checks

Each row is one event span of a fit (``fit k``: the caching pass falls in the first epoch of the first fit,
before its training batches; ``train``/``valid``: an epoch's batches). CPU seconds are this process's
(``time.process_time``), the number to compare on a shared machine; on an idle 2-core machine wall ~ CPU / 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from imdb import find_imdb  # noqa: E402

from learnkit import Callback, set_seed  # noqa: E402
from learnkit.text import TextDataLoaders, accuracy, read_text, text_classifier_learner  # noqa: E402


class PhaseTimer(Callback):
    """Wall and CPU seconds of each fit's setup (before its first batch: the caching pass), training and
    validation, per epoch."""

    order = -100

    def __init__(self):
        self.rows: list[tuple[str, float, float]] = []
        self.n_fit = 0

    def _mark(self) -> None:
        self._t = (time.perf_counter(), time.process_time())

    def _add(self, name: str) -> None:
        w, c = time.perf_counter() - self._t[0], time.process_time() - self._t[1]
        self.rows.append((name, w, c))
        self._mark()

    def before_fit(self) -> None:
        self.n_fit += 1
        self.epoch_i = 0
        self._mark()

    def before_epoch(self) -> None:
        self._add(f"fit {self.n_fit} setup" if self.epoch_i == 0 else f"fit {self.n_fit} between epochs")

    def before_train(self) -> None:
        self._first = True

    def before_batch(self) -> None:
        if self.learn.training and self._first:  # the cache fills when the training loader is first iterated
            self._first = False
            self._add(f"fit {self.n_fit} epoch {self.epoch_i} caching / loader start")

    def after_train(self) -> None:
        self._add(f"fit {self.n_fit} epoch {self.epoch_i} train")

    def after_validate(self) -> None:
        self._add(f"fit {self.n_fit} epoch {self.epoch_i} valid")

    def after_epoch(self) -> None:
        self.epoch_i += 1


def subset_dls(path: Path, n_train: int, n_valid: int, max_len: int) -> TextDataLoaders:
    """The first ``n`` reviews per class of each split (sorted by file name)."""
    texts, labels, train_idx, valid_idx = [], [], [], []
    for split, count in (("train", n_train // 2), ("valid", n_valid // 2)):
        for label in ("neg", "pos"):
            for f in sorted((path / split / label).glob("*.txt"))[:count]:
                (valid_idx if split == "valid" else train_idx).append(len(texts))
                texts.append(read_text(f))
                labels.append(label)
    return TextDataLoaders.from_texts(texts, labels, train_idx, valid_idx, tok="minilm", max_len=max_len, bs=32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--unfreeze", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--head-lr", type=float, default=1e-2, help="learning rate of the frozen-body head epochs")
    ap.add_argument("--lr-mult", type=float, default=100, help="fine_tune's lr_mult (spread of the layers' rates)")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--attn-dropout", type=float, default=0.0)
    ap.add_argument("--n-train", type=int, default=None, help="a subset: this many training reviews")
    ap.add_argument("--n-valid", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    set_seed(args.seed)
    path = find_imdb(args.data)
    print(f"{args} load average {os.getloadavg()}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if args.n_train:
        dls = subset_dls(path, args.n_train, args.n_valid or args.n_train // 3, args.max_len)
    else:
        dls = TextDataLoaders.from_folder(path, tok="minilm", max_len=args.max_len, bs=32)
    timer = PhaseTimer()
    timer.rows.append(("reading + tokenising", time.perf_counter() - t0, time.process_time() - c0))
    learn = text_classifier_learner(dls, "minilm", metrics=accuracy, config={"attn_dropout": args.attn_dropout},
                                    cbs=timer)
    if not args.fp32:
        learn.to_bf16()
    t1, c1 = time.perf_counter(), time.process_time()
    timer.rows.append(("building the learner", t1 - t0 - timer.rows[0][1], c1 - c0 - timer.rows[0][2]))
    learn.fine_tune(args.epochs, args.lr, freeze_epochs=5, unfreeze_to=-(args.unfreeze + 1), head_lr=args.head_lr,
                    lr_mult=args.lr_mult)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{'phase':45s} {'wall s':>8s} {'CPU s':>8s}")
    for name, w, c in timer.rows:
        print(f"{name:45s} {w:8.1f} {c:8.1f}")
    print("epoch values (train loss, valid loss, accuracy):")
    for i, v in enumerate(learn.recorder.values):
        print(f"  {i}: " + " ".join(f"{x:.4f}" for x in v))
    acc = learn.recorder.values[-1][2]
    print(f"accuracy {acc:.4f}; total {wall:.0f} s wall, {cpu:.0f} s CPU; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
