"""What a `CheckpointCallback` costs a validation pass with loader workers: it iterates the validation loader
through `epoch_loader`'s twin, which starts its workers at every pass (so that a resumed run replays random
validation draws), instead of the loader's persistent workers.

Passes over the same small validation loader are interleaved (persistent, twin, persistent, ...) so that machine
noise hits both alike; the median seconds per pass and their difference (the worker start-up) are printed.

    python benchmarks/valid_worker_restart.py [--workers 2] [--n 2048] [--bs 64] [--passes 15]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import TensorDataset

from learnkit import make_loader
from learnkit.core.loader_state import epoch_loader


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--passes", type=int, default=15)
    args = p.parse_args()
    ds = TensorDataset(torch.randn(args.n, 3, 32, 32), torch.randint(0, 10, (args.n,)))
    persistent = make_loader(ds, bs=args.bs, num_workers=args.workers, device="cpu")
    twin = epoch_loader(persistent)
    assert persistent.persistent_workers and not twin.persistent_workers
    for _ in persistent:  # start the persistent workers once, as the first validation of a fit does
        pass
    times: dict[str, list[float]] = {"persistent": [], "twin": []}
    for _ in range(args.passes):
        for name, dl in (("persistent", persistent), ("twin", twin)):
            t0 = time.perf_counter()
            for _batch in dl:
                pass
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.n} items, bs {args.bs}, {args.workers} workers, {args.passes} passes each (median s/pass): "
          f"persistent {med['persistent']:.3f}, twin {med['twin']:.3f}, worker start-up "
          f"{med['twin'] - med['persistent']:+.3f} s per validation")


if __name__ == "__main__":
    main()
