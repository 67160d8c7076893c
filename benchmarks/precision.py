"""Training throughput (images/s) of one conv net in fp32, bf16 and fp16 (CUDA), eager and ``learn.compile()``.

The same model and in-memory data for every mode; each mode has its own Learner (same initial weights),
one untimed warm-up epoch (which includes compiling), then timed epochs interleaved across modes.
On CUDA conv nets go channels-last with ``to_fp16``/``to_bf16``; on the CPU fp16 is skipped (learnkit
keeps fp32 there) and bf16 only pays off on CPUs with native bfloat16 (AMX / AVX512-BF16).

    python benchmarks/precision.py [--arch resnet18] [--size 128] [--n 512] [--bs 64] [--epochs 3] [--no-compile]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine  # noqa: E402

from learnkit import CrossEntropyLossFlat, DataLoaders, Learner  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18", help="a timm model name (random init)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=512, help="training images per epoch")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per mode")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    modes = ["fp32", "bf16"] + (["fp16"] if cuda else [])
    if not args.no_compile:
        modes += [f"{m}+compile" for m in modes]
    torch.manual_seed(0)
    init = timm.create_model(args.arch, pretrained=False, num_classes=10).state_dict()
    learners = {}
    for mode in modes:
        model = timm.create_model(args.arch, pretrained=False, num_classes=10)
        model.load_state_dict(init)
        dls = DataLoaders.from_dsets(TensorDataset(x, y), None, bs=args.bs, device=dev)
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), progress=False)
        prec = mode.split("+")[0]
        if prec != "fp32":
            getattr(learn, f"to_{prec}")()
        if mode.endswith("+compile"):
            learn.compile()
        learners[mode] = learn
    print(f"machine: {machine()}")
    print(f"{args.arch} at {args.size}px, bs={args.bs}, {args.n} images/epoch, {torch.get_num_threads()} threads, "
          f"{args.epochs} timed epochs per mode "
          f"(interleaved, after one warm-up epoch each)", flush=True)
    warm = {}
    for mode, learn in learners.items():
        t0 = time.perf_counter()
        learn.fit(1)
        if cuda:
            torch.cuda.synchronize()
        warm[mode] = time.perf_counter() - t0
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.epochs):
        for mode, learn in learners.items():
            t0 = time.perf_counter()
            learn.fit(1)
            if cuda:
                torch.cuda.synchronize()
            times[mode].append(time.perf_counter() - t0)
    base = args.n / statistics.median(times["fp32"])
    for mode in modes:
        ips = args.n / statistics.median(times[mode])
        print(f"{mode:14s} {ips:9.1f} images/s  ({ips / base:.2f}x fp32 eager; warm-up epoch {warm[mode]:.1f}s; "
              f"epochs {', '.join(f'{t:.2f}' for t in times[mode])}s; final loss {learners[mode].recorder.values[-1][0]:.3f})")


if __name__ == "__main__":
    main()
