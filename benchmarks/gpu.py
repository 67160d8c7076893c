"""GPU training throughput: learnkit `fit` against a hand-written PyTorch loop, fp32 vs bf16 vs fp16.

One CUDA GPU, ResNet-50 (random init, timm) at 224 px, channels-last, AdamW. Both sides train the same model
(same initial weights) on the same batches, which are made once and kept on the GPU, so the numbers measure
the training loop (forward, loss, backward, step, autocast, loss scaling, callbacks) and not the data
pipeline. ``fp32-strict`` is full fp32 (TF32 off); ``fp32`` lets matmuls and convolutions use TF32 tensor
cores, as a CUDA `Learner` does by default. Sides and precisions are interleaved (A, B, B, A, ...) after one warm-up round each, and the script
prints images/s, learnkit / hand-written ratios and each precision's speed-up over fp32.

    python benchmarks/gpu.py                         # ResNet-50, 224 px, bs 128, 3 rounds
    python benchmarks/gpu.py --arch resnet18 --bs 64 --steps 10 --rounds 2
    python benchmarks/gpu.py --pets DATA             # also: GPU utilisation while examples/pets.py trains

``--pets`` runs ``examples/pets.py --data DATA`` in a subprocess and samples ``nvidia-smi`` every 0.2 s;
it reports the mean utilisation over the samples taken while the GPU was busy and over the whole run.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine  # noqa: E402

from learnkit import CrossEntropyLossFlat, DataLoaders, Learner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class DeviceBatches:
    """``n`` fixed batches already on the GPU, repeated ``steps`` times per epoch: an iterable loader."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int):
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(self.steps):
            yield self.batches[i % len(self.batches)]


def make_model(arch: str, init: dict) -> torch.nn.Module:
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    model.load_state_dict(init)
    return model


class HandLoop:
    """The loop a PyTorch user writes by hand: autocast, GradScaler for fp16, AdamW, channels-last."""

    def __init__(self, model: torch.nn.Module, loader: DeviceBatches, precision: str, lr: float):
        self.model = model.cuda().to(memory_format=torch.channels_last)
        self.loader, self.precision = loader, precision
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def epoch(self) -> None:
        self.model.train()
        for xb, yb in self.loader:
            with torch.autocast("cuda", dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                loss = self.loss_fn(self.model(xb), yb)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()


class LearnkitLoop:
    def __init__(self, model: torch.nn.Module, loader: DeviceBatches, precision: str, lr: float):
        dls = DataLoaders(loader, None, device="cuda")
        self.learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), lr=lr, progress=False)
        if precision != "fp32":
            getattr(self.learn, f"to_{precision}")()
        else:
            self.learn.to_channels_last()

    def epoch(self) -> None:
        self.learn.fit(1)


def set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on


def timed(run, tf32: bool = True) -> float:
    set_tf32(tf32)  # "fp32-strict" runs with TF32 off; every other run with it on (learnkit's CUDA default)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    run.epoch()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def throughput(args: argparse.Namespace) -> None:
    torch.backends.cudnn.benchmark = True  # both sides alike (learnkit turns it on for CUDA learners)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.bs, 3, args.size, args.size, generator=g).cuda()
                .contiguous(memory_format=torch.channels_last),
                torch.randint(0, 10, (args.bs,), generator=g).cuda()) for _ in range(4)]
    loader = DeviceBatches(batches, args.steps)
    torch.manual_seed(0)
    init = timm.create_model(args.arch, pretrained=False, num_classes=10).state_dict()
    precisions = ["fp32-strict", "fp32", "bf16", "fp16"]
    sides = {"learnkit": LearnkitLoop, "hand": HandLoop}
    print(f"machine: {machine()}; GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    print(f"{args.arch} at {args.size} px, bs {args.bs}, {args.steps} steps per timed epoch, channels-last, AdamW; "
          f"{args.rounds} interleaved rounds after one warm-up epoch per run", flush=True)
    runs = {}
    for p in precisions:  # one run (model + optimizer) per side and precision, built once
        for s, cls in sides.items():
            runs[(s, p)] = cls(make_model(args.arch, init), loader, p.split("-")[0], args.lr)
            warm = timed(runs[(s, p)], tf32=p != "fp32-strict")  # warm-up: cudnn autotuning, allocator
            print(f"  warm-up {s:8s} {p:11s} {args.bs * args.steps / warm:7.0f} images/s", flush=True)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(list(runs)))
        for k in order:
            times[k].append(timed(runs[k], tf32=k[1] != "fp32-strict"))
            print(f"  round {r} {k[0]:8s} {k[1]:11s} {args.bs * args.steps / times[k][-1]:7.0f} images/s", flush=True)
    ips = {k: args.bs * args.steps / statistics.median(v) for k, v in times.items()}
    print("\n| precision | learnkit images/s | hand-written images/s | learnkit / hand | vs strict fp32 | vs fp32 (TF32) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for p in precisions:
        lk, hd = ips[("learnkit", p)], ips[("hand", p)]
        print(f"| {p} | {lk:.0f} | {hd:.0f} | {lk / hd:.3f} | {lk / ips[('learnkit', 'fp32-strict')]:.2f}x | "
              f"{lk / ips[('learnkit', 'fp32')]:.2f}x |")
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)


def pets_utilisation(data: str, extra: list[str]) -> None:
    """Run examples/pets.py and sample nvidia-smi's GPU utilisation every 0.2 s while it runs."""
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                samples.append((time.perf_counter(), int(out[0])))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    th.start()
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "pets.py"), "--data", data, *extra],
                          capture_output=True, text=True)
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    print(proc.stdout[-2000:], proc.stderr[-3000:] if proc.returncode else "")
    utils = [u for _, u in samples]
    busy = [u for u in utils if u > 0]
    if not utils:
        print("pets: no nvidia-smi samples (is nvidia-smi on PATH?)")
        return
    print(f"pets GPU utilisation: mean {statistics.mean(utils):.0f} % over the whole run ({len(utils)} samples, "
          f"{wall:.1f} s wall, imports and data loading included); mean {statistics.mean(busy) if busy else 0:.0f} % "
          f"over the {len(busy)} samples with the GPU busy; exit code {proc.returncode}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet50", help="a timm model name (random init)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="batches per timed epoch")
    ap.add_argument("--rounds", type=int, default=3, help="timed epochs per side and precision (interleaved)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pets", default=None, help="data root for examples/pets.py: also measure its GPU utilisation")
    ap.add_argument("--pets-args", default="", help="extra arguments for examples/pets.py, e.g. '--epochs 2'")
    ap.add_argument("--no-throughput", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA GPU")
    if not args.no_throughput:
        throughput(args)
    if args.pets:
        pets_utilisation(args.pets, args.pets_args.split())


if __name__ == "__main__":
    main()
