"""learnkit's `fit` vs a hand-written PyTorch loop: same model, same in-memory data, same optimizer (AdamW).

Two models: an MLP (3072-512-256-10 on flattened 32x32 images) and a small CNN (conv 16 and conv 32, batch
norm, max-pooling, a linear head). For each, epochs are interleaved (learnkit, loop, learnkit, loop, ...)
so that machine noise hits both alike; the ratio of median epoch times is printed. Both sides do a
training pass and a validation pass with accuracy; learnkit runs with its default callbacks (Recorder,
progress bar switched off unless ``--progress``).

    python benchmarks/overhead.py [--epochs 6] [--n 4096] [--bs 64] [--models mlp,cnn] [--clock wall|cpu]
                                  [--threads N] [--progress]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import CrossEntropyLossFlat, DataLoaders, Learner, accuracy


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10))


def bench(make_model, train_ds, valid_ds, args) -> tuple[list[float], list[float]]:
    """Median-ready epoch times of learnkit's fit and of the hand-written loop, interleaved."""
    def loaders():
        return (DataLoader(train_ds, batch_size=args.bs, shuffle=True, generator=torch.Generator().manual_seed(1)),
                DataLoader(valid_ds, batch_size=args.bs * 2))

    torch.manual_seed(0)
    model_lk, model_loop = make_model(), make_model()
    model_loop.load_state_dict(model_lk.state_dict())
    train_dl, valid_dl = loaders()
    learn = Learner(DataLoaders(*loaders(), device="cpu"), model_lk, loss_func=CrossEntropyLossFlat(),
                    opt_func=torch.optim.AdamW, lr=1e-3, metrics=accuracy, progress=args.progress)
    opt = torch.optim.AdamW(model_loop.parameters(), lr=1e-3)

    def loop_epoch() -> tuple[float, float]:
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
        return loss_sum / total, correct / total

    learn.fit(1)  # one warm-up epoch each (allocator, thread pools), not timed
    loop_epoch()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    t_lk, t_loop = [], []
    for _ in range(args.epochs):
        t0 = clock()
        learn.fit(1)
        t_lk.append(clock() - t0)
        t0 = clock()
        loop_epoch()
        t_loop.append(clock() - t0)
    return t_lk, t_loop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: elapsed time; cpu: this process' CPU time (steadier on a machine shared with other jobs)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--progress", action="store_true", help="show learnkit's progress bars (default: off)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    n_valid = args.n // 5
    train_ds, valid_ds = TensorDataset(x[n_valid:], y[n_valid:]), TensorDataset(x[:n_valid], y[:n_valid])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n={args.n}, bs={args.bs}, "
          f"epochs={args.epochs} (interleaved, after 1 warm-up each), AdamW, {args.clock} clock")
    for name in args.models.split(","):
        t_lk, t_loop = bench({"mlp": make_mlp, "cnn": make_cnn}[name], train_ds, valid_ds, args)
        lk, lp = statistics.median(t_lk), statistics.median(t_loop)
        print(f"[{name}] learnkit fit   median epoch {lk:.3f}s  (all: {', '.join(f'{t:.3f}' for t in t_lk)})")
        print(f"[{name}] hand-written   median epoch {lp:.3f}s  (all: {', '.join(f'{t:.3f}' for t in t_loop)})")
        print(f"[{name}] overhead ratio learnkit / hand-written = {lk / lp:.3f}  (target <= 1.03)")


if __name__ == "__main__":
    main()
