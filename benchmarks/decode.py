"""Image decoders side by side: decode + resize, images/s on one core, JPEG and PNG.

    python benchmarks/decode.py                     # pets photos + 300 generated photos, 5 rounds
    python benchmarks/decode.py --n-gen 100 --rounds 3

Two sets, each held in memory as encoded bytes (reading the files is not timed):
- **pets**: the Oxford-IIIT Pet photos in ``$LEARNKIT_DATA/pets/images`` as they are (JPEG, about 500x375), and
  the first ``--n-png`` of them re-encoded as PNG (Pillow, default compression);
- **generated**: ``--n-gen`` distinct 500x375 photos made from random crops of the pets photos (colour shift,
  mirror: as `benchmarks/image_scale.py` makes its 20 k set), encoded as JPEG (quality 90) and as PNG.

Each decoder turns the bytes into a ``uint8`` RGB tensor ``[3, H, W]`` (EXIF orientation applied where it can),
then every side resizes the same way (``torchvision.transforms.v2.functional.resize`` to 224x224, bilinear,
antialiased): the resize is part of the job but not of the comparison. One thread (``torch.set_num_threads(1)``),
so the rates are images/s per core; by default the clock is the process' CPU time (``--clock cpu``), which a
machine shared with other work does not inflate the way it does elapsed time. The sides run interleaved within each round (the order rotates), so
machine noise hits all alike; the table gives the median round.

The sides:
- ``torchvision``: ``torchvision.io.decode_image`` (deprecated since 0.29): the baseline;
- ``torchcodec``: ``torchcodec.decoders.decode_image`` (its own libjpeg-turbo/libpng; no FFmpeg needed), no EXIF;
- ``pillow``: ``Image.open`` + ``ImageOps.exif_transpose`` + ``convert("RGB")`` + ``np.asarray``;
- ``simplejpeg``: ``simplejpeg.decode_jpeg`` (libjpeg-turbo), JPEG only, no EXIF;
- ``learnkit``: ``learnkit.vision.decode_image_bytes`` as this checkout has it (the pixel-limit check included);
- ``learnkit before (torchvision)``: the same pixel-limit check, then torchvision: learnkit's path before.
A side whose package is not installed is left out (and said so).
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

SIZE = (224, 224)


def decoders() -> dict:
    """name -> ``(bytes, fmt) -> uint8 [3, H, W]`` (``None`` where the side cannot read ``fmt``), for the
    installed sides."""
    import warnings
    out, missing = {}, []
    try:
        from torchvision.io import ImageReadMode, decode_image

        def tv(b, fmt):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its deprecation, and torch.frombuffer on read-only bytes
                return decode_image(torch.frombuffer(b, dtype=torch.uint8), mode=ImageReadMode.RGB,
                                    apply_exif_orientation=True)
        out["torchvision"] = tv
    except ImportError:
        missing.append("torchvision")
    try:
        from torchcodec.decoders import decode_image as tc_decode
        out["torchcodec"] = lambda b, fmt: tc_decode(torch.frombuffer(b, dtype=torch.uint8), mode="RGB")
    except (ImportError, RuntimeError, OSError) as e:
        missing.append(f"torchcodec ({type(e).__name__})")

    def pil(b, fmt):
        with Image.open(io.BytesIO(b)) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode != "RGB":
                im = im.convert("RGB")
            return torch.from_numpy(np.asarray(im)).permute(2, 0, 1)
    out["pillow"] = pil
    try:
        import simplejpeg
        out["simplejpeg"] = lambda b, fmt: (torch.from_numpy(simplejpeg.decode_jpeg(b, colorspace="RGB"))
                                            .permute(2, 0, 1) if fmt == "JPEG" else None)
    except ImportError:
        missing.append("simplejpeg")
    from learnkit.vision.io import _check_pixels, decode_image_bytes
    out["learnkit"] = lambda b, fmt: decode_image_bytes(b)
    if "torchvision" in out:  # learnkit's path before issue 29: the pixel-limit check, then torchvision
        out["learnkit before (torchvision)"] = lambda b, fmt: (_check_pixels(b, "x"), tv(bytearray(b), fmt))[1]
    if missing:
        print("not installed, left out:", ", ".join(missing))
    return out


def generated(srcs: list[Path], n: int) -> list[Image.Image]:
    """``n`` distinct 500x375 photos from random crops of ``srcs`` (as `benchmarks/image_scale.py` makes them)."""
    out = []
    for k in range(n):
        rng = random.Random(k)
        with Image.open(srcs[k % len(srcs)]) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = rng.uniform(0.6, 1.0)
            cw, ch = max(8, int(w * s)), max(8, int(h * s))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            im = im.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                im = ImageOps.mirror(im)
            im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
            out.append(im.resize((500, 375), Image.BICUBIC))
    return out


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def run(fn, blobs: list[bytes], fmt: str, clock) -> float | None:
    """Images/s of decode + resize over ``blobs``; ``None`` if the side cannot read ``fmt``."""
    from torchvision.transforms.v2.functional import resize
    t0 = clock()
    for b in blobs:
        x = fn(b, fmt)
        if x is None:
            return None
        resize(x, list(SIZE), antialias=True)
    return len(blobs) / (clock() - t0)


def check(decs: dict, blobs: list[bytes], fmt: str) -> dict[str, float]:
    """Each side's mean absolute difference from the baseline's pixels (0 for PNG: lossless), on a few images."""
    ref = decs["torchvision"]
    diffs = {}
    for name, fn in decs.items():
        d = []
        for b in blobs[:10]:
            x = fn(b, fmt)
            if x is None:
                break
            y = ref(b, fmt)
            assert x.shape == y.shape, (name, x.shape, y.shape)
            d.append(float((x.float() - y.float()).abs().mean()))
        diffs[name] = statistics.fmean(d) if d else float("nan")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("LEARNKIT_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--n-gen", type=int, default=300, help="generated photos (each as JPEG and as PNG)")
    ap.add_argument("--n-png", type=int, default=300, help="pets photos re-encoded as PNG")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this process' CPU time (one thread, so time on one core, whatever else the machine "
                         "runs); wall: elapsed time")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(1)
    import warnings  # torch.from_numpy on Pillow's read-only arrays: the sides only read their pixels
    warnings.filterwarnings("ignore", "The given (NumPy array|buffer) is not writable", UserWarning)
    srcs = sorted((Path(args.data) / "pets" / "images").glob("*.jpg"))
    if not srcs:
        sys.exit(f"no pets photos under {args.data}/pets/images: pass --data or set LEARNKIT_DATA")
    gen = generated(srcs, args.n_gen)
    sets = {("JPEG", "pets"): [p.read_bytes() for p in srcs],
            ("PNG", "pets"): [encode(Image.open(p).convert("RGB"), "PNG") for p in srcs[: args.n_png]],
            ("JPEG", "generated"): [encode(im, "JPEG") for im in gen],
            ("PNG", "generated"): [encode(im, "PNG") for im in gen]}
    decs = decoders()
    import torchvision
    import PIL
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__}
    for mod in ("torchcodec", "simplejpeg"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in versions.items())
          + f"; load average {os.getloadavg()[0]:.1f} at start")
    print("sets: " + ", ".join(f"{fmt}/{name}: {len(b)} images, {sum(map(len, b)) / len(b) / 1024:.0f} KB each"
                               for (fmt, name), b in sets.items()))
    rates: dict[tuple, list[float]] = {}
    names = list(decs)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for key, blobs in sets.items():
            for name in order:
                ips = run(decs[name], blobs, key[0], clock)
                if ips is not None:
                    rates.setdefault((key, name), []).append(ips)
        print(f"round {r + 1}/{args.rounds} done (load {os.getloadavg()[0]:.1f})", flush=True)
    for fmt in ("JPEG", "PNG"):
        diffs = check(decs, sets[(fmt, "generated")], fmt)
        print(f"\n### {fmt}: decode + resize to 224x224, images/s on one core ({args.clock} clock, median of "
              f"{args.rounds} rounds)\n")
        print("| decoder | pets | ratio | generated 500x375 | ratio | mean abs. pixel diff. vs torchvision |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name in names:
            cells = []
            for set_name in ("pets", "generated"):
                got = rates.get(((fmt, set_name), name))
                base = statistics.median(rates[((fmt, set_name), "torchvision")])
                cells += ["-", "-"] if not got else [f"{statistics.median(got):.0f}",
                                                     f"{statistics.median(got) / base:.2f}x"]
            if cells[0] == "-" and cells[2] == "-":
                cells = ["cannot decode " + fmt] + [""] * 3
            print(f"| {name} | " + " | ".join(cells) + f" | {diffs[name]:.3f} |")


if __name__ == "__main__":
    main()
