"""Loading images at scale: learnkit (`ImageDataLoaders.from_folder` and a `DataBlock`) against torchvision
`ImageFolder` + transforms v2, same folder, same workers, side by side in one run.

    python benchmarks/image_scale.py                       # 20,000 and 2,000 photos, 2 workers, 30 batches
    python benchmarks/image_scale.py --sizes 2000 --batches 10

The photos are generated once (in parallel) under ``--cache`` (default ``/tmp/learnkit-image-scale``) from the
pets photos in ``$LEARNKIT_DATA/pets``: every output is a distinct 500x375 JPEG (a random crop of a source
photo, maybe flipped, with a colour shift), in one folder per breed. The folder is reused between runs.

Each side runs in its own fresh process (``--one``), so its memory is its own. Measured per side:
- first batch: from the call that builds the loaders to the first batch out of the training loader (the
  imports, timed apart, are not included: learnkit.vision imports timm, pandas and more);
- warm images/s: over the next ``--batches`` batches of 64 (uint8 224x224, the batch transforms excluded);
- CPU ms per image: the CPU time (user + system) of the process and its workers over those warm batches (the
  memory sampler's own excluded), per image: what loading costs, whatever else the machine is doing (the
  wall-clock rate is not, on a shared machine);
- peak memory: the largest sum of PSS (proportional set size: shared pages counted once) over the process
  and its worker processes, sampled every 50 ms with psutil.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIDES = ("learnkit from_folder", "learnkit DataBlock", "torchvision ImageFolder")


# --- the generated folder -----------------------------------------------------------------------------
def _make(args: tuple[str, str, int]) -> None:
    src, dst, k = args
    from PIL import Image, ImageEnhance, ImageOps
    rng = random.Random(k)
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = rng.uniform(0.6, 1.0)
        cw, ch = max(8, int(w * s)), max(8, int(h * s))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
        im = im.resize((500, 375), Image.BICUBIC)
        im.save(dst, quality=90)


def generate(pets: Path, root: Path, n: int, workers: int) -> Path:
    """``root/n`` with ``n`` distinct JPEGs in breed folders (reused when complete)."""
    out = root / str(n)
    done = out / ".complete"
    if done.exists():
        return out
    srcs = sorted(pets.glob("*.jpg"))
    if not srcs:
        sys.exit(f"no pets photos in {pets}; pass --data or set LEARNKIT_DATA")
    jobs = []
    for k in range(n):
        src = srcs[k % len(srcs)]
        breed = src.stem.rsplit("_", 1)[0]
        (out / breed).mkdir(parents=True, exist_ok=True)
        dst = out / breed / f"{k:06d}.jpg"
        if not dst.exists():
            jobs.append((str(src), str(dst), k))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(_make, jobs, chunksize=64))
    done.write_text(str(n))
    print(f"generated {len(jobs)} photos in {out} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


# --- one side, in its own process ---------------------------------------------------------------------
class PeakMemory:
    """The largest total PSS of this process and its children, sampled in a thread."""

    def __init__(self, interval: float = 0.05):
        import psutil
        self.proc, self.interval, self.peak, self._stop, self.own_cpu = psutil.Process(), interval, 0, False, 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except Exception:  # noqa: BLE001 - a worker that just exited
                pass
        return total

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self._sample())
            self.own_cpu = time.thread_time()  # reading the PSS costs CPU too (kernel time): not the loader's
            time.sleep(self.interval)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by this process and its live children (the workers), less this
        sampler's own (reading /proc/PID/smaps for 3 processes 20 times a second cost 0.12-0.19 CPU s a
        second: counted, it added more CPU per image to the slower loader)."""
        total = -self.own_cpu
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:  # noqa: BLE001
                pass
        return total

    def stop(self) -> int:
        self._stop = True
        self.thread.join()
        return self.peak


def run_one(side: str, folder: Path, workers: int, batches: int, bs: int) -> dict:
    mem = PeakMemory()
    t_import = time.perf_counter()
    import torch
    if side == "torchvision ImageFolder":
        from torchvision import datasets
        from torchvision.transforms import v2
    else:
        sys.path.insert(0, str(REPO))
        from learnkit.vision import (CategoryBlock, DataBlock, ImageBlock, ImageDataLoaders, RandomSplitter, Resize,
                                     get_image_files, parent_label)
    t0 = time.perf_counter()
    if side == "torchvision ImageFolder":
        # torchvision's usual pipeline (bilinear, its default; learnkit's Resize is bicubic, slightly slower)
        tfm = v2.Compose([v2.ToImage(), v2.Resize(224, antialias=True), v2.CenterCrop(224)])
        ds = datasets.ImageFolder(str(folder), transform=tfm)
        g = torch.Generator().manual_seed(42)
        dl = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, generator=g,
                                         persistent_workers=workers > 0, drop_last=True)
    elif side == "learnkit from_folder":
        dl = ImageDataLoaders.from_folder(folder, item_tfms=Resize(224), bs=bs, num_workers=workers, device="cpu").train
    else:
        dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                           splitter=RandomSplitter(0.2, seed=42), item_tfms=Resize(224))
        dl = dblock.dataloaders(folder, bs=bs, num_workers=workers, device="cpu").train
    it = iter(dl)
    x = next(it)[0]
    first = time.perf_counter() - t0
    t1, n, cpu0 = time.perf_counter(), 0, mem.cpu_seconds()
    for _ in range(batches):
        try:
            x = next(it)[0]
        except StopIteration:  # a small folder: the next epoch (the workers stay up)
            it = iter(dl)
            x = next(it)[0]
        n += len(x)
    warm = n / (time.perf_counter() - t1)
    cpu_ms = (mem.cpu_seconds() - cpu0) / n * 1000
    peak = mem.stop()
    assert tuple(x.shape[1:]) == (3, 224, 224) and str(x.dtype) == "torch.uint8", (x.shape, x.dtype)
    return {"side": side, "import_s": t0 - t_import, "first_batch_s": first, "images_per_s": warm,
            "cpu_ms_per_image": cpu_ms, "peak_mib": peak / 2**20}


# --- the driver ---------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root holding pets/ (default $LEARNKIT_DATA)")
    ap.add_argument("--cache", default="/tmp/learnkit-image-scale", help="where the generated photos are kept")
    ap.add_argument("--sizes", default="20000,2000", help="numbers of photos, comma-separated")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for every side")
    ap.add_argument("--batches", type=int, default=30, help="warm batches timed after the first")
    ap.add_argument("--rounds", type=int, default=2, help="runs per side and size (order alternates); median kept")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--gen-workers", type=int, default=os.cpu_count() or 2, help="processes generating photos")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("@@" + json.dumps(run_one(args.one, Path(args.folder), args.workers, args.batches, args.bs)))
        return
    data = Path(args.data or os.environ.get("LEARNKIT_DATA") or REPO.parent / "shared" / "data")
    pets = data / "pets" / "images" if (data / "pets" / "images").is_dir() else data / "pets"
    sizes = [int(s) for s in args.sizes.split(",")]
    folders = {n: generate(pets, Path(args.cache), n, args.gen_workers) for n in sizes}
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    env.pop("LEARNKIT_NUM_WORKERS", None)
    rows = []
    for n in sizes:
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for rnd in range(args.rounds):
            for side in (SIDES if rnd % 2 == 0 else SIDES[::-1]):  # A B C, C B A: load drifts hit all alike
                cmd = [sys.executable, __file__, "--one", side, "--folder", str(folders[n]), "--workers",
                       str(args.workers), "--batches", str(args.batches), "--bs", str(args.bs)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")]
                if out.returncode or not line:
                    sys.exit(f"{side} at {n} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
                r = json.loads(line[-1][2:])
                runs[side].append(r)
                print(f"{n:>6} {side:<24} import {r['import_s']:5.2f} s  first batch {r['first_batch_s']:6.2f} s  "
                      f"warm {r['images_per_s']:7.0f} img/s  {r['cpu_ms_per_image']:5.2f} CPU ms/img  peak {r['peak_mib']:7.0f} MiB", flush=True)
        for side in SIDES:
            rs = runs[side]
            rows.append({"n": n, "side": side, **{k: statistics.median(r[k] for r in rs)
                                                  for k in ("import_s", "first_batch_s", "images_per_s", "cpu_ms_per_image",
                                                           "peak_mib")}})
    print(f"\nmedians of {args.rounds} runs, {args.workers} workers, bs {args.bs}, {args.batches} warm batches\n")
    print("| photos | loader | import | first batch | warm images/s | CPU ms per image | peak memory (PSS, workers incl.) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['n']:,} | {r['side']} | {r['import_s']:.1f} s | {r['first_batch_s']:.2f} s | "
              f"{r['images_per_s']:,.0f} | {r['cpu_ms_per_image']:.2f} | {r['peak_mib']:,.0f} MiB |")
    if len(sizes) >= 2:
        big, small = max(sizes), min(sizes)
        print()
        for side in SIDES:
            pb = next(r for r in rows if r["n"] == big and r["side"] == side)
            ps = next(r for r in rows if r["n"] == small and r["side"] == side)
            print(f"{side}: peak memory at {big:,} / at {small:,} = {pb['peak_mib'] / ps['peak_mib']:.2f}x")
    tv = {r["n"]: r["images_per_s"] for r in rows if r["side"] == "torchvision ImageFolder"}
    for r in rows:
        if r["side"] != "torchvision ImageFolder":
            cpu = next(t["cpu_ms_per_image"] for t in rows if t["n"] == r["n"] and t["side"] == SIDES[2])
            print(f"{r['side']} at {r['n']:,}: warm throughput {r['images_per_s'] / tv[r['n']]:.2f}x torchvision's "
                  f"(wall clock), {cpu / r['cpu_ms_per_image']:.2f}x (images per CPU second)")


if __name__ == "__main__":
    main()
