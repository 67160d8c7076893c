"""What `ActivationStats` adds to an epoch of a small CNN (the issue's bound: at most 5 %).

fastbook ch. 13's ``simple_cnn`` (five stride-2 conv + batch-norm blocks; ``--model xresnet18``: fastai's
XResNet-18, 1 channel in) on MNIST-sized generated images (``[1, 28, 28]``), in memory: the worst case, where
nothing but the model's arithmetic fills the epoch. ``--data mnist_tiny``: fastbook ch. 13's own pipeline on
``$LEARNKIT_DATA/mnist_tiny`` instead (PNG files, ``PILImageBW``, ``GrandparentSplitter``, ``Normalize()``,
loaded in the main process so that ``--clock cpu`` sees all of it). Epochs are interleaved (plain, stats, stats with histograms, plain, ...) so that
machine noise hits every variant alike, and the median epoch time of each is printed with its overhead over
the plain fit. One epoch is a training and a validation pass.

    python benchmarks/activation_stats.py [--epochs 7] [--n 8192] [--bs 64] [--threads N] [--device cpu|cuda]
                                          [--clock wall|cpu] [--model simple_cnn|xresnet18] [--exact]
                                          [--every N] [--data generated|mnist_tiny]

The statistics and histograms are computed from a sample of ``ActivationStats.sample`` activations per layer
(4096 by default); ``--exact`` adds the variants that read them all (``sample=None``, fastai's way); ``--every N``
adds variants that record one training batch in ``N``.

``--clock cpu`` times the process's CPU time (all threads) instead of the wall clock: on a shared, busy machine
it measures the work each variant does rather than how long it waited for a core. On a GPU use the wall clock.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from learnkit import ActivationStats, DataLoaders, Flatten, Learner, TensorLoader, accuracy, sequential
from learnkit.vision import xresnet18


def conv(ni, nf, ks=3, act=True):
    layers = [nn.Conv2d(ni, nf, stride=2, kernel_size=ks, padding=ks // 2), nn.BatchNorm2d(nf)]
    return nn.Sequential(*layers, *([nn.ReLU()] if act else []))


def simple_cnn():
    return sequential(conv(1, 8, ks=5), conv(8, 16), conv(16, 32), conv(32, 64), conv(64, 10, act=False), Flatten())


def generated_dls(args) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (args.n,), generator=g)
    x = torch.randn(args.n, 1, 28, 28, generator=g) + y.view(-1, 1, 1, 1) / 5
    n_valid = args.n // 8
    return DataLoaders(TensorLoader(x[n_valid:], y[n_valid:], bs=args.bs, shuffle=True),
                       TensorLoader(x[:n_valid], y[:n_valid], bs=2 * args.bs), device=args.device)


def mnist_tiny_dls(bs: int, device: str) -> DataLoaders:
    from learnkit.datasets import find_data
    from learnkit.vision import (CategoryBlock, DataBlock, GrandparentSplitter, ImageBlock, Normalize, PILImageBW,
                                 get_image_files, parent_label)
    path = find_data("mnist_tiny", None, marker="train", download=False)
    block = DataBlock((ImageBlock(cls=PILImageBW), CategoryBlock), get_items=get_image_files,
                      splitter=GrandparentSplitter("train", "valid"), get_y=parent_label, batch_tfms=Normalize())
    return block.dataloaders(path, bs=bs, num_workers=0, device=device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--model", choices=("simple_cnn", "xresnet18"), default="simple_cnn")
    ap.add_argument("--exact", action="store_true", help="also time exact statistics (and histograms) of every "
                                                           "activation: sample=None")
    ap.add_argument("--every", type=int, default=None, help="also time ActivationStats(every=N)")
    ap.add_argument("--data", choices=("generated", "mnist_tiny"), default="generated")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dls = mnist_tiny_dls(args.bs, args.device) if args.data == "mnist_tiny" else generated_dls(args)
    n_train, n_valid = len(dls.train.dataset), len(dls.valid.dataset)
    variants = {"plain": lambda: [], "stats": lambda: [ActivationStats()],
                "stats+hist": lambda: [ActivationStats(with_hist=True)]}
    if args.exact:
        variants["stats (all)"] = lambda: [ActivationStats(sample=None)]
        variants["hist (all)"] = lambda: [ActivationStats(with_hist=True, sample=None)]
    if args.every:
        variants[f"stats/{args.every}"] = lambda: [ActivationStats(every=args.every)]
        variants[f"hist/{args.every}"] = lambda: [ActivationStats(with_hist=True, every=args.every)]
    make = simple_cnn if args.model == "simple_cnn" else (lambda: xresnet18(n_out=10, c_in=1))
    learners = {k: Learner(dls, make(), loss_func=F.cross_entropy, metrics=accuracy, progress=False)
                for k in variants}
    times: dict[str, list[float]] = {k: [] for k in variants}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for learn in learners.values():  # warm-up epoch, not timed
        learn.fit(1)
    for epoch in range(args.epochs):
        order = list(variants) if epoch % 2 == 0 else list(variants)[::-1]
        for k in order:
            sync()
            t0 = clock()
            learners[k].fit(1, cbs=variants[k]())
            sync()
            times[k].append(clock() - t0)
    base, base_min = statistics.median(times["plain"]), min(times["plain"])
    print(f"{args.model}, {args.data}: {n_train} training / {n_valid} validation images [1, 28, 28], bs {args.bs}, "
          f"{args.device}, {torch.get_num_threads()} threads, {args.clock} clock, {args.epochs} epochs each "
          f"(median; and the fastest epoch, which a busy machine disturbs least)")
    for k, ts in times.items():
        med, best = statistics.median(ts), min(ts)
        print(f"{k:>11}: {med:.3f} s/epoch ({100 * (med / base - 1):+.1f} %), fastest {best:.3f} s "
              f"({100 * (best / base_min - 1):+.1f} %)")


if __name__ == "__main__":
    main()
