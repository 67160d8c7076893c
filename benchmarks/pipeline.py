"""Images decoded + resized + augmented per second: learnkit vs fastai vs plain torchvision ``ImageFolder``.

The pets photos (JPEG, shorter side 116-256 px), training split, batches of 64 float images of 128x128 that
are ready for a model: decoded, resized, randomly augmented (flip, rotation/zoom/warp or crop, lighting)
and normalised. Each side runs in its own worker process (fastai with bench-venv's python), interleaved.

- torchvision: ``ImageFolder`` (PIL decode) + transforms v2 (``RandomResizedCrop(128)``, flip, normalise) per
  item in a ``DataLoader``, ``num_workers`` 0 and 2;
- fastai: ``ImageDataLoaders.from_name_func(item_tfms=Resize(128), batch_tfms=[*aug_transforms(), Normalize])``
  with fastai's default workers;
- learnkit: ``ImageDataLoaders.from_name_func(item_tfms=Resize(128), batch_tfms=aug_transforms())``, the batch
  transforms run by ``on_device`` (here on the CPU), with ``cache=True`` (decoded, resized images in a
  memory-mapped file the workers share, so only the first epoch decodes) and with ``cache=False`` (the default:
  decodes every epoch, lazily, in the loader workers).

"cold" counts building the loaders plus the first epoch; "warm" is a later epoch.

    python benchmarks/pipeline.py [--rounds 2] [--bs 64] [--fastai-python bench-venv/bin/python]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import REPO, Worker, data_root, machine, median, serve  # noqa: E402

SIZE = 128


def _files(data: str) -> list[Path]:
    return sorted((Path(data) / "pets" / "images").glob("*.jpg"))


def _is_cat(name: str) -> bool:
    return name[0].isupper()


def _time_epochs(make, iterate, epochs: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    dl = make()
    setup = time.perf_counter() - t0
    times, counts = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        counts.append(iterate(dl))
        times.append(time.perf_counter() - t0)
    return {"setup_s": setup, "epoch_s": times, "images": counts,
            "cold_ips": counts[0] / (setup + times[0]), "warm_ips": median([n / t for n, t in zip(counts[1:], times[1:])])}


def tv_run(data: str, bs: int, epochs: int, num_workers: int) -> dict[str, Any]:
    import torch
    from torchvision import datasets
    from torchvision.transforms import v2
    torch.manual_seed(0)
    # ImageFolder wants class folders: a temporary tree of links (the data folder is never written to)
    tree = Path(tempfile.mkdtemp(prefix="lk-pipe-"))
    for f in _files(data)[: int(0.8 * len(_files(data)))]:
        d = tree / ("cat" if _is_cat(f.name) else "dog")
        d.mkdir(exist_ok=True)
        (d / f.name).symlink_to(f)
    tfm = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(SIZE, scale=(0.35, 1.0), antialias=True),
                      v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def make():
        ds = datasets.ImageFolder(str(tree), transform=tfm)
        return torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, num_workers=num_workers,
                                           persistent_workers=num_workers > 0)

    def iterate(dl) -> int:
        return sum(x.shape[0] for x, _ in dl)

    try:
        return _time_epochs(make, iterate, epochs)
    finally:
        shutil.rmtree(tree)  # links only


def lk_run(data: str, bs: int, epochs: int, cache: bool | None) -> dict[str, Any]:
    import torch
    from learnkit.vision import ImageDataLoaders, Normalize, Resize, aug_transforms, imagenet_stats
    torch.manual_seed(0)

    def make():
        return ImageDataLoaders.from_name_func(Path(data) / "pets", _files(data), lambda n: "cat" if _is_cat(n) else "dog",
                                               item_tfms=Resize(SIZE), batch_tfms=[*aug_transforms(), Normalize(*imagenet_stats)],
                                               bs=bs, cache=cache, device="cpu")

    def iterate(dls) -> int:
        n = 0
        for batch in dls[0]:  # the loader itself; each batch prepared as the learner does
            x = dls.prepare_batch(batch, training=True)[0]
            n += x.shape[0]
        return n

    return _time_epochs(make, iterate, epochs)


def fa_run(data: str, bs: int, epochs: int) -> dict[str, Any]:
    import torch
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, aug_transforms, imagenet_stats
    torch.manual_seed(0)

    def make():
        return ImageDataLoaders.from_name_func(Path(data) / "pets", _files(data), lambda n: "cat" if _is_cat(n) else "dog",
                                               item_tfms=Resize(SIZE), bs=bs, device="cpu",
                                               batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)])

    def iterate(dls) -> int:
        return sum(x.shape[0] for x, _ in dls.train)

    return _time_epochs(make, iterate, epochs)


def _ready(name: str) -> dict[str, Any]:
    import torch
    if name == "fastai":
        import fastai
        import fastai.vision.all  # noqa: F401
        version = f"fastai {fastai.__version__}"
    else:
        import torchvision

        import learnkit
        import learnkit.vision  # noqa: F401
        version = f"learnkit {learnkit.__version__}, torchvision {torchvision.__version__}"
    return {"version": version, "torch": torch.__version__, "threads": torch.get_num_threads()}


JOBS = {"learnkit": {"learnkit": lambda **a: lk_run(cache=True, **a), "learnkit_nocache": lambda **a: lk_run(cache=False, **a),
                     "torchvision_w0": lambda **a: tv_run(num_workers=0, **a),
                     "torchvision_w2": lambda **a: tv_run(num_workers=2, **a)},
        "fastai": {"fastai": fa_run}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per run (the first is 'cold')")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per side (default: torch's; 1 is fairer on a machine shared with other work)")
    ap.add_argument("--fastai-python", default=str(REPO / "bench-venv" / "bin" / "python"))
    args = ap.parse_args()
    root = data_root(args.data)
    print(f"machine: {machine()}")
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S')}; pets training split, {SIZE}px, bs={args.bs}, "
          f"{args.epochs} epochs per run, {args.rounds} rounds interleaved", flush=True)
    lk = Worker("learnkit", sys.executable, Path(__file__), args.threads)
    fa = Worker("fastai", args.fastai_python, Path(__file__), args.threads)
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        base = {"data": str(root), "bs": args.bs, "epochs": args.epochs}
        for r in range(args.rounds):  # every side once per round, the order rotating
            sides = [(lk, "learnkit"), (fa, "fastai"), (lk, "torchvision_w0"), (lk, "learnkit_nocache"),
                     (lk, "torchvision_w2")]
            sides = sides[r % len(sides):] + sides[: r % len(sides)]
            for w, job in sides:
                results.setdefault(job, []).append(w.call({"job": job, "args": base}))
    finally:
        lk.close()
        fa.close()
    print(f"\n{'side':18s} {'cold img/s':>11s} {'warm img/s':>11s}   (setup s; epoch s of each run)")
    for job, runs in results.items():
        print(f"{job:18s} {median([r['cold_ips'] for r in runs]):11.1f} {median([r['warm_ips'] for r in runs]):11.1f}   "
              + "; ".join(f"{r['setup_s']:.2f} / {', '.join(f'{t:.2f}' for t in r['epoch_s'])}" for r in runs))
    warm = {job: median([r["warm_ips"] for r in runs]) for job, runs in results.items()}
    cold = {job: median([r["cold_ips"] for r in runs]) for job, runs in results.items()}
    for other in ("fastai", "torchvision_w0", "torchvision_w2"):
        print(f"learnkit / {other}: warm {warm['learnkit'] / warm[other]:.2f}x, cold {cold['learnkit'] / cold[other]:.2f}x; "
              f"learnkit without cache / {other}: warm {warm['learnkit_nocache'] / warm[other]:.2f}x")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        side = sys.argv[sys.argv.index("--worker") + 1]
        serve(JOBS[side], lambda: _ready(side))
    else:
        main()
