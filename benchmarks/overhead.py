"""learnkit's `fit` vs a hand-written PyTorch loop: same CNN, same in-memory data, same optimizer.

Epochs are interleaved (learnkit, loop, learnkit, loop, ...) so that machine noise hits both alike; the
ratio of median epoch times is printed. Both do a training pass and a validation pass with accuracy.

    python benchmarks/overhead.py [--epochs 6] [--n 4096] [--bs 64] [--progress]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import CrossEntropyLossFlat, DataLoaders, Learner, accuracy


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--progress", action="store_true", help="show learnkit's progress bars (default: off)")
    args = ap.parse_args()

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    n_valid = args.n // 5
    train_ds, valid_ds = TensorDataset(x[n_valid:], y[n_valid:]), TensorDataset(x[:n_valid], y[:n_valid])

    def loaders():
        return (DataLoader(train_ds, batch_size=args.bs, shuffle=True, generator=torch.Generator().manual_seed(1)),
                DataLoader(valid_ds, batch_size=args.bs * 2))

    torch.manual_seed(0)
    model_lk, model_loop = make_cnn(), make_cnn()
    model_loop.load_state_dict(model_lk.state_dict())
    train_dl, valid_dl = loaders()
    learn = Learner(DataLoaders(*loaders(), device="cpu"), model_lk, loss_func=CrossEntropyLossFlat(),
                    opt_func=torch.optim.AdamW, lr=1e-3, metrics=accuracy, progress=args.progress)
    opt = torch.optim.AdamW(model_loop.parameters(), lr=1e-3)

    def loop_epoch() -> float:
        model_loop.train()
        for xb, yb in train_dl:
            loss = nn.functional.cross_entropy(model_loop(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        model_loop.eval()
        correct = total = 0
        loss_sum = 0.0
        with torch.no_grad():
            for xb, yb in valid_dl:
                out = model_loop(xb)
                loss_sum += float(nn.functional.cross_entropy(out, yb)) * len(yb)
                correct += int((out.argmax(1) == yb).sum())
                total += len(yb)
        return correct / total

    # one warm-up epoch each (allocator, thread pools), not timed
    learn.fit(1)
    loop_epoch()
    t_lk, t_loop = [], []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        learn.fit(1)
        t_lk.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop_epoch()
        t_loop.append(time.perf_counter() - t0)
    lk, lp = statistics.median(t_lk), statistics.median(t_loop)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n={args.n}, bs={args.bs}, "
          f"epochs={args.epochs} (interleaved, after 1 warm-up each)")
    print(f"learnkit fit   median epoch {lk:.3f}s  (all: {', '.join(f'{t:.3f}' for t in t_lk)})")
    print(f"hand-written   median epoch {lp:.3f}s  (all: {', '.join(f'{t:.3f}' for t in t_loop)})")
    print(f"overhead ratio learnkit / hand-written = {lk / lp:.3f}  (target <= 1.03)")


if __name__ == "__main__":
    main()
