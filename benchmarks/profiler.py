"""The profiler measured: its overhead, and its table on pets with 0 and 2 loader workers.

    python benchmarks/profiler.py                 # both parts
    python benchmarks/profiler.py --part overhead

- overhead: a small CNN on 32x32 tensors (bs 64, CPU), ``--steps`` training steps timed with and without a
  `ProfilerCallback`, interleaved over ``--rounds`` rounds; the median ratio. Without the callback the loop
  carries no profiling code at all (it is added only by ``cbs=``, ``learn.profile`` or ``LEARNKIT_PROFILE=1``).
- pets: ``learn.profile(n_batches)`` on a cat/dog subset of ``$LEARNKIT_DATA/pets`` (efficientnet_lite0, 128 px,
  bs 32, the body unfrozen so every step runs the whole model) with ``num_workers=0`` and then 2: the table of
  each, and the data-wait fractions side by side.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def overhead(steps: int, rounds: int) -> None:
    import torch
    from torch import nn
    from learnkit import DataLoaders, Learner, ProfilerCallback, TensorLoader, CrossEntropyLossFlat
    torch.manual_seed(0)
    x, y = torch.randn(64 * steps, 3, 32, 32), torch.randint(0, 10, (64 * steps,))
    dls = DataLoaders(TensorLoader(x, y, bs=64, shuffle=True), TensorLoader(x[:64], y[:64], bs=64), device="cpu")

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    times: dict[str, list[float]] = {"off": [], "on": []}
    for r in range(rounds):
        for side in (("off", "on") if r % 2 == 0 else ("on", "off")):
            learn = Learner(dls, model(), loss_func=CrossEntropyLossFlat(), progress=False)
            cbs = [ProfilerCallback(skip=0)] if side == "on" else []
            t = time.perf_counter()
            learn.fit(1, cbs=cbs)
            times[side].append(time.perf_counter() - t)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"overhead: {steps} steps, median of {rounds}: off {off:.3f} s, on {on:.3f} s -> {100 * (on / off - 1):+.1f} %")


def pets(n_batches: int, size: int) -> None:
    import torch
    from learnkit.vision import ImageDataLoaders, Resize, error_rate, get_image_files, vision_learner
    data = Path(os.environ.get("LEARNKIT_DATA") or REPO.parent / "shared" / "data")
    path = data / "pets" / "images"
    files = get_image_files(path)[::4]
    fracs = {}
    for workers in (0, 2):
        torch.manual_seed(0)
        dls = ImageDataLoaders.from_name_func(path, files, label_func=lambda n: n[0].isupper(), item_tfms=Resize(size),
                                              bs=32, num_workers=workers)
        learn = vision_learner(dls, "efficientnet_lite0", metrics=error_rate, progress=False)
        learn.unfreeze()
        print(f"\npets subset ({len(files)} photos), {size} px, bs 32, num_workers={workers}:")
        report = learn.profile(n_batches=n_batches, skip=3)
        fracs[workers] = report.fractions["data wait"]
    print(f"\ndata wait: {fracs[0]:.1%} with 0 workers, {fracs[2]:.1%} with 2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("overhead", "pets", "both"), default="both")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n-batches", type=int, default=15)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    os.environ.setdefault("LEARNKIT_PROGRESS", "0")
    if args.part in ("overhead", "both"):
        overhead(args.steps, args.rounds)
    if args.part in ("pets", "both"):
        pets(args.n_batches, args.size)


if __name__ == "__main__":
    main()
