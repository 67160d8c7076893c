"""Streaming shards against a folder: the generated photo set as WebDataset tar shards
(`ImageDataLoaders.from_shards`) and as a folder (`ImageDataLoaders.from_folder`), same photos, same workers,
side by side in one run.

    python benchmarks/shards.py                        # 20,000 photos, 20 shards, 2 workers, 30 batches
    python benchmarks/shards.py --n 2000 --shards 4 --batches 10
    python benchmarks/shards.py --part read            # reading alone: a shard's tar members against files
    python examples/pets_shards.py                     # pets from shards: fine_tune(1), error rate

The photos are `benchmarks/image_scale.py`'s (generated once under ``--cache`` from the pets photos); the shards
are written once beside them with `write_image_shards` (``learnkit shards make``). Each side runs in its own
fresh process; measured as in image_scale.py: first batch (from building the loaders to the first batch out of
the training loader, imports apart), warm images/s over ``--batches`` batches of 64 (uint8 224x224) after
``--skip`` more (by default the batches it takes the shards' shuffle buffers, 1000 samples a worker, to fill:
while they fill, each sample out is two read in, so the first ~2,000 images read twice the tar members of the
steady state), CPU ms per image (process and workers, the memory sampler's own CPU excluded), and peak memory
(PSS of the process and its workers). Targets (issue 27): shards >= 1.0x the folder's warm throughput with the
same workers, first batch <= 5 s. Shards written by an older learnkit (a PAX header per tar member) are
written again.

``--part read`` times reading alone (no decoding), in this process, best of 3: the samples of the first shard
through ``webdataset.WebDataset`` (Python's tarfile) and through what ``from_shards`` reads with (webdataset's
opener, `learnkit.core.tarstream.tar_samples`), the same shard rewritten with a PAX header per member (as
webdataset's writer made them, a float mtime), and the same photos read as files.

``--stub-decode`` replaces the image decoder of both sides by a constant 224x224 image, which Resize(224)
leaves as it is (in the measuring process and its workers): what each path costs beyond decoding and resizing
(reading, the loader, collation).
``--workers 0`` measures without worker processes (one process: the least noise on a loaded machine).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
SIDES = ("folder (from_folder)", "shards (from_shards)")


def run_one(side: str, folder: Path, shards: Path, workers: int, batches: int, skip: int, bs: int,
            stub_decode: bool = False) -> dict:
    from image_scale import PeakMemory
    mem = PeakMemory()
    t_import = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from learnkit.vision import ImageDataLoaders, Resize
    if stub_decode:  # a measurement stub, never library code: both paths decode through io._decode
        import torch

        import learnkit.vision.io as lio
        image = torch.zeros(3, 224, 224, dtype=torch.uint8)  # Resize(224) leaves it as it is
        lio._decode = lambda raw, what, fix: image
    t0 = time.perf_counter()
    if side == SIDES[0]:
        dl = ImageDataLoaders.from_folder(folder, item_tfms=Resize(224), bs=bs, num_workers=workers, device="cpu").train
    else:
        urls = [str(p) for p in sorted(shards.glob("shard-*.tar"))]
        dl = ImageDataLoaders.from_shards(urls, item_tfms=Resize(224), bs=bs, num_workers=workers, device="cpu").train
    it = iter(dl)
    x = next(it)[0]
    first = time.perf_counter() - t0
    for _ in range(skip):
        x = next(it)[0]
    t1, n, cpu0, own0 = time.perf_counter(), 0, mem.cpu_seconds(), mem.own_cpu
    for _ in range(batches):
        try:
            x = next(it)[0]
        except StopIteration:
            it = iter(dl)
            x = next(it)[0]
        n += len(x)
    wall = time.perf_counter() - t1
    warm = n / wall
    cpu_ms = (mem.cpu_seconds() - cpu0) / n * 1000
    sampler = (mem.own_cpu - own0) / wall  # the PSS sampler's CPU seconds per second (excluded above)
    peak = mem.stop()
    assert tuple(x.shape[1:]) == (3, 224, 224) and str(x.dtype) == "torch.uint8", (x.shape, x.dtype)
    return {"side": side, "import_s": t0 - t_import, "first_batch_s": first, "images_per_s": warm,
            "cpu_ms_per_image": cpu_ms, "peak_mib": peak / 2**20, "sampler_cpu_per_s": sampler}


def read_costs(folder: Path, shard_dir: Path) -> None:
    """CPU ms per sample to read one shard (plain and with PAX headers) and the same photos as files."""
    import tarfile
    import tempfile

    import webdataset as wds
    shard = sorted(shard_dir.glob("shard-*.tar"))[0]
    names = sorted(folder.rglob("*.jpg"))  # write_image_shards' order: the first shard holds the first photos
    with tarfile.open(shard) as t:
        n = len(t.getnames()) // 2
    pax = Path(tempfile.mkdtemp()) / "pax.tar"
    with tarfile.open(shard) as t, tarfile.open(pax, "w", format=tarfile.PAX_FORMAT) as out:
        for m in t:
            m.mtime = m.mtime + 0.5  # a float mtime: what costs webdataset's own writer a PAX header per member
            out.addfile(m, t.extractfile(m))

    sys.path.insert(0, str(REPO))
    from webdataset.cache import StreamingOpen

    from learnkit.core.tarstream import tar_samples

    def shard_reader(path: Path):  # webdataset's own reader: Python's tarfile (what from_shards used before)
        return lambda: sum(1 for _ in wds.WebDataset(str(path), shardshuffle=False, empty_check=False))

    def learnkit_reader(path: Path):  # what from_shards reads with: webdataset's opener, learnkit's tar_samples
        return lambda: sum(1 for _ in wds.DataPipeline(wds.SimpleShardList([str(path)]), StreamingOpen(), tar_samples))

    def files() -> int:
        for f in names[:n]:
            f.read_bytes()
        return n

    for what, f in (("shard, webdataset (tarfile)", shard_reader(shard)),
                    ("shard + PAX headers, webdataset", shard_reader(pax)),
                    ("shard, learnkit tar_samples", learnkit_reader(shard)),
                    ("shard + PAX headers, tar_samples", learnkit_reader(pax)), ("files", files)):
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            count = f()
            best = min(best, time.process_time() - t0)
        print(f"{what:<34} {best / count * 1000:.3f} CPU ms per sample ({count} samples)")
    pax.unlink()


def _pax_headers(shard_dir: Path) -> bool:
    """Whether the shards there carry a PAX header per member (written before learnkit wrote whole-second mtimes)."""
    import tarfile
    first = sorted(shard_dir.glob("shard-*.tar"))
    if not first:
        return False
    with tarfile.open(first[0]) as t:
        m = t.next()
    return m is not None and bool(m.pax_headers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="data root holding pets/ (default $LEARNKIT_DATA)")
    ap.add_argument("--cache", default="/tmp/learnkit-image-scale", help="where the generated photos are kept")
    ap.add_argument("--n", type=int, default=20000, help="photos")
    ap.add_argument("--shards", type=int, default=20, help="number of shards to write")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for both sides")
    ap.add_argument("--batches", type=int, default=30, help="warm batches timed after the first")
    ap.add_argument("--skip", type=int, default=None, help="batches after the first not timed (default: "
                    "the shuffle buffers' fill, workers x 1000 / bs)")
    ap.add_argument("--rounds", type=int, default=2, help="runs per side (order alternates); median kept")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--gen-workers", type=int, default=os.cpu_count() or 2, help="processes generating photos")
    ap.add_argument("--part", choices=("loaders", "read"), default="loaders", help="what to measure")
    ap.add_argument("--stub-decode", action="store_true", help="a constant image instead of decoding (both sides)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shard-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        r = run_one(args.one, Path(args.folder), Path(args.shard_dir), args.workers, args.batches, args.skip, args.bs,
                    args.stub_decode)
        print("@@" + json.dumps(r))
        return
    from image_scale import generate
    data = Path(args.data or os.environ.get("LEARNKIT_DATA") or REPO.parent / "shared" / "data")
    pets = data / "pets" / "images" if (data / "pets" / "images").is_dir() else data / "pets"
    folder = generate(pets, Path(args.cache), args.n, args.gen_workers)
    shard_dir = Path(args.cache) / f"{args.n}-shards{args.shards}"
    if not (shard_dir / "counts.json").exists() or _pax_headers(shard_dir):
        sys.path.insert(0, str(REPO))
        from learnkit.vision.shards import write_image_shards
        t = time.perf_counter()
        write_image_shards(folder, shard_dir, per_shard=-(-args.n // args.shards))
        print(f"wrote {args.shards} shards in {time.perf_counter() - t:.0f} s", flush=True)
    if args.part == "read":
        read_costs(folder, shard_dir)
        return
    skip = args.skip if args.skip is not None else -(-max(1, args.workers) * 1000 // args.bs)
    env = {**os.environ, "LEARNKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    env.pop("LEARNKIT_NUM_WORKERS", None)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for rnd in range(args.rounds):
        for side in (SIDES if rnd % 2 == 0 else SIDES[::-1]):
            cmd = [sys.executable, __file__, "--one", side, "--folder", str(folder), "--shard-dir", str(shard_dir),
                   "--workers", str(args.workers), "--batches", str(args.batches), "--skip", str(skip),
                   "--bs", str(args.bs)] + (["--stub-decode"] if args.stub_decode else [])
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")]
            if out.returncode or not line:
                sys.exit(f"{side} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
            r = json.loads(line[-1][2:])
            runs[side].append(r)
            print(f"{side:<22} first batch {r['first_batch_s']:6.2f} s  warm {r['images_per_s']:6.0f} img/s  "
                  f"{r['cpu_ms_per_image']:6.3f} CPU ms/img  peak {r['peak_mib']:6.0f} MiB  (PSS sampler "
                  f"{r['sampler_cpu_per_s']:.3f} CPU s/s, excluded)", flush=True)
    rows = {side: {k: statistics.median(r[k] for r in runs[side])
                   for k in ("import_s", "first_batch_s", "images_per_s", "cpu_ms_per_image", "peak_mib")}
            for side in SIDES}
    print(f"\n{args.n:,} photos, {args.shards} shards, medians of {args.rounds} runs, {args.workers} workers, "
          f"bs {args.bs}, {args.batches} warm batches after {skip} untimed"
          f"{', decoding stubbed' if args.stub_decode else ''}; load average {os.getloadavg()[0]:.1f}\n")
    print("| loader | first batch | warm images/s | CPU ms per image | peak memory (PSS, workers incl.) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for side, r in rows.items():
        print(f"| {side} | {r['first_batch_s']:.2f} s | {r['images_per_s']:,.0f} | {r['cpu_ms_per_image']:.3f} | "
              f"{r['peak_mib']:,.0f} MiB |")
    f, s = rows[SIDES[0]], rows[SIDES[1]]
    print(f"\nshards / folder: warm throughput {s['images_per_s'] / f['images_per_s']:.2f}x (wall clock), "
          f"{f['cpu_ms_per_image'] / s['cpu_ms_per_image']:.2f}x (images per CPU second); "
          f"first batch {s['first_batch_s']:.2f} s vs {f['first_batch_s']:.2f} s")


if __name__ == "__main__":
    main()
