"""Run the lesson notebooks and store their outputs: the example gallery of the documentation site.

    export LEARNKIT_DATA=/path/to/data
    python docs/build_gallery.py                        # every notebook, full runs (minutes); outputs stored in place
    python docs/build_gallery.py pets adult             # some of them (the gallery page is rewritten for all)
    python docs/build_gallery.py --no-run               # thumbnails, gallery page, README rows from the stored outputs
    python docs/build_gallery.py --fast --out /tmp/nbs  # a quick check of this script: fast runs, written elsewhere

Each notebook of ``examples/notebooks`` runs top to bottom in a fresh kernel (nbclient), in full mode
(``LEARNKIT_FAST=0``, the seed its first cell sets), in a temporary working directory, with learnkit imported
from this checkout. Progress bars are dropped (widget bars and text bars on stderr); the per-epoch tables and
the summaries stay. Plots are PNGs drawn at ``DPI`` dots per inch (a ``matplotlibrc`` in the kernel's
environment, not code in the notebook) and quantised to 256 colours when that makes them smaller.

The notebook's metadata ``learnkit`` records the SHA-256 of its code cells (``code_sha256``: a code edit
without a rerun fails ``tests/test_gallery.py``), the run time and the metrics its last cell prints as
``name value`` lines. Then the script writes one thumbnail per notebook to ``docs/img/gallery/`` (the first
image of the cell tagged ``gallery-thumbnail``), the card grid of ``docs/gallery/index.md``, the metric and
time of the README rows that name a notebook, and the README picture ``docs/img/gallery-strip.png``.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "examples" / "notebooks"
IMG = REPO / "docs" / "img"
THUMBS = IMG / "gallery"
INDEX = REPO / "docs" / "gallery" / "index.md"
README = REPO / "README.md"
STRIP = IMG / "gallery-strip.png"

DPI = 80                    # plots' dots per inch: sharp enough on a page, small enough in the repository
THUMB_SIZE = (480, 300)     # every card's picture, the image letterboxed on white
SHRINK_FROM = 40_000        # PNG outputs larger than this many bytes are tried with a 256-colour palette
MAX_BYTES = 900_000         # a notebook above this gets fewer colours in its largest plots (tests allow 1 MB)
THUMB_TAG = "gallery-thumbnail"
START, END = "<!-- gallery:start", "<!-- gallery:end -->"
METRIC_LINE = re.compile(r"^([a-z][a-z0-9_]*) (-?\d+(?:\.\d+)?)(?:\s|$)", re.M)


@dataclass(frozen=True)
class Example:
    title: str
    task: str
    data: str
    short: str  # the caption of its tile in the README picture


#: The gallery, in the order of its cards. Every notebook needs an entry.
EXAMPLES: dict[str, Example] = {
    "pets": Example("Cat or dog?", "image classification", "Oxford-IIIT Pet, 940 photos", "cat or dog"),
    "pet_breeds": Example("37 breeds: DataBlock and presizing", "image classification",
                          "Oxford-IIIT Pet, 940 photos of 37 breeds", "37 pet breeds"),
    "camvid_tiny": Example("A class for every pixel", "segmentation (U-Net)", "CamVid tiny, 100 frames, 32 classes",
                           "segmentation"),
    "mnist_tiny": Example("A 3 or a 7?", "image classification", "MNIST tiny, 1,408 digits in folders", "3 or 7"),
    "imdb_sample": Example("Positive or negative?", "text classification (MiniLM)", "IMDB sample, 1,000 reviews",
                           "review sentiment"),
    "imdb_lm": Example("A language model, then a classifier (ULMFiT)", "language model + text classification",
                       "IMDB folders, 1,500 reviews", "ULMFiT"),
    "adult": Example("Who earns more than $50k?", "tabular classification", "Adult census, 32,561 rows",
                     "tabular: income"),
    "movielens": Example("What will this user think of that movie?", "collaborative filtering",
                         "MovieLens 100K ratings", "movie ratings"),
}
#: The six thumbnails of the README picture: one per task, and the DataBlock lesson.
STRIP_EXAMPLES = ["pets", "camvid_tiny", "pet_breeds", "imdb_sample", "adult", "movielens"]
METRIC_NAMES = {"error_rate": "error rate", "foreground_acc": "pixel accuracy", "mean_iou": "mean IoU",
                "mse": "MSE", "rmse": "RMSE"}


class GalleryError(RuntimeError):
    """A notebook cannot go into the gallery as it is (no metric line, no thumbnail, stale outputs...)."""


# --- what a notebook is and what it printed --------------------------------------------------------
def code_sha256(nb) -> str:
    """SHA-256 of the code cells' sources, in order (markdown, outputs and metadata do not count)."""
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources, ensure_ascii=False).encode("utf-8")).hexdigest()


def last_cell_metrics(nb) -> dict[str, float]:
    """The ``name value`` lines that the last code cell printed on stdout."""
    last = [cell for cell in nb.cells if cell.cell_type == "code"][-1]
    text = "".join(out.get("text", "") for out in last.get("outputs", [])
                   if out.get("output_type") == "stream" and out.get("name") == "stdout")
    return {name: float(value) for name, value in METRIC_LINE.findall(text)}


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{METRIC_NAMES.get(k, k.replace('_', ' '))} {v:.4f}" for k, v in metrics.items())


def format_seconds(seconds: float) -> str:
    s = round(seconds)
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60} s"


def images(cell) -> list[bytes]:
    return [base64.b64decode(out["data"]["image/png"]) for out in cell.get("outputs", [])
            if "image/png" in out.get("data", {})]


def meta(nb, name: str) -> dict:
    info = nb.metadata.get("learnkit")
    if not info:
        raise GalleryError(f"{name}: no learnkit metadata; run python docs/build_gallery.py {name}")
    return info


# --- running --------------------------------------------------------------------------------------
def kernel_env(data: Path, fast: bool, rc_dir: Path, threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, as in Jupyter
    env.update(LEARNKIT_DATA=str(data), LEARNKIT_FAST="1" if fast else "0", LEARNKIT_PROGRESS="1",
               HF_HUB_OFFLINE="1", MATPLOTLIBRC=str(rc_dir), OMP_WAIT_POLICY="PASSIVE", PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])]))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def execute(path: Path, data: Path, fast: bool = False, timeout: int = 1800, threads: int | None = None):
    """Run a copy of the notebook at ``path`` top to bottom; return it and the seconds it took."""
    import nbclient  # the dev extra; only needed to run

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    with tempfile.TemporaryDirectory(prefix=f"gallery-{path.stem}-") as tmp:
        rc_dir, work = Path(tmp, "mplrc"), Path(tmp, "work")
        rc_dir.mkdir()
        work.mkdir()
        (rc_dir / "matplotlibrc").write_text(f"figure.dpi: {DPI}\nfigure.facecolor: white\n")
        client = nbclient.NotebookClient(nb, timeout=timeout, startup_timeout=120, kernel_name="python3",
                                         record_timing=False, resources={"metadata": {"path": str(work)}})
        start = time.perf_counter()
        client.execute(env=kernel_env(data, fast, rc_dir, threads))
        seconds = time.perf_counter() - start
    return nb, seconds


def _is_progress_bar(out: dict) -> bool:
    if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
        return True
    text = out.get("text", "")
    return out.get("output_type") == "stream" and out.get("name") == "stderr" and ("\r" in text or "%|" in text)


def shrink_png(data: str, colors: int = 256) -> str:
    """The base64 PNG ``data``, re-encoded with a palette of ``colors`` colours when that is smaller."""
    raw = base64.b64decode(data)
    if len(raw) < SHRINK_FROM:
        return data
    img = Image.open(io.BytesIO(raw))
    flat = Image.new("RGB", img.size, "white")
    flat.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
    buf = io.BytesIO()
    flat.quantize(colors=colors, dither=Image.Dither.FLOYDSTEINBERG).save(buf, "PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii") if buf.tell() < len(raw) else data


def clean(nb, name: str) -> list[str]:
    """Drop progress bars and widget state, shrink the PNGs; return warnings (what stayed on stderr)."""
    warnings = []
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = [out for out in cell.outputs if not _is_progress_bar(out)]
        for out in cell.outputs:
            if "image/png" in out.get("data", {}):
                out["data"]["image/png"] = shrink_png(out["data"]["image/png"])
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                warnings.append(f"{name}, cell {i}: stderr: {out.get('text', '')[:200]!r}")
    for colors in (128, 64, 32):  # over budget: fewer colours in the large plots, the photo grids
        if len(nbformat.writes(nb).encode("utf-8")) <= MAX_BYTES:
            break
        warnings.append(f"{name}: over {MAX_BYTES} bytes, large plots reduced to {colors} colours")
        for cell in nb.cells:
            for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
                if "image/png" in out.get("data", {}):
                    out["data"]["image/png"] = shrink_png(out["data"]["image/png"], colors)
    return warnings


def run_one(path: Path, data: Path, fast: bool, timeout: int, threads: int | None, out_dir: Path | None) -> dict:
    name = path.stem
    print(f"[gallery] running {name} ({'fast' if fast else 'full'} mode) ...", flush=True)
    nb, seconds = execute(path, data, fast=fast, timeout=timeout, threads=threads)
    warnings = clean(nb, name)
    metrics = last_cell_metrics(nb)
    if not metrics:
        raise GalleryError(f"{name}: the last code cell printed no `name value` metric line")
    import torch

    nb.metadata["learnkit"] = {
        "code_sha256": code_sha256(nb), "fast": fast, "metrics": metrics, "seconds": round(seconds, 1),
        "executed_with": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
    }
    target = (out_dir / path.name) if out_dir else path
    nbformat.validate(nb)
    nbformat.write(nb, target)
    for w in warnings:
        print(f"[gallery] warning: {w}", file=sys.stderr)
    return {"notebook": name, "metrics": metrics, "seconds": seconds, "kb": target.stat().st_size / 1024}


# --- pictures and pages ---------------------------------------------------------------------------
def thumbnail(nb, name: str) -> Image.Image:
    """The first image of the cell tagged ``gallery-thumbnail``, letterboxed on white to ``THUMB_SIZE``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and THUMB_TAG in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise GalleryError(f"{name}: {len(cells)} code cells tagged {THUMB_TAG!r}; tag exactly one")
    pngs = images(cells[0])
    if not pngs:
        raise GalleryError(f"{name}: the cell tagged {THUMB_TAG!r} has no image output; run the notebook first")
    img = Image.open(io.BytesIO(pngs[0])).convert("RGBA")
    img.thumbnail(THUMB_SIZE, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", THUMB_SIZE, "white")
    canvas.paste(img, ((THUMB_SIZE[0] - img.width) // 2, (THUMB_SIZE[1] - img.height) // 2), img)
    return canvas


def save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(path, "PNG", optimize=True)


def card(name: str, info: dict) -> str:
    ex = EXAMPLES[name]
    page = f"../notebooks/{name}.ipynb"
    return (f"-   [![{ex.title}](../img/gallery/{name}.png)]({page})\n\n"
            f"    **[{ex.title}]({page})**\n\n"
            f"    Task: {ex.task}<br>\n    Data: {ex.data}<br>\n"
            f"    Metric: {format_metrics(info['metrics'])}<br>\n"
            f"    Time: {format_seconds(info['seconds'])} (the whole notebook)\n")


def write_index(infos: dict[str, dict]) -> None:
    text = INDEX.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise GalleryError(f"{INDEX.relative_to(REPO)} lacks the {START} ... {END} markers")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    cards = "\n".join(card(name, infos[name]) for name in EXAMPLES)
    block = (f"{START} (written by docs/build_gallery.py) -->\n<div class=\"grid cards\" markdown>\n\n"
             f"{cards}\n</div>\n{END}")
    INDEX.write_text(head + block + tail, encoding="utf-8")


def update_readme(infos: dict[str, dict]) -> None:
    """Rewrite the metric and time cells of the README table rows that name a notebook."""
    lines = README.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        for name, info in infos.items():
            if line.startswith("|") and f"examples/notebooks/{name}.ipynb" in line:
                cells = line.split("|")
                if len(cells) != 7:
                    raise GalleryError(f"README.md line {i + 1}: expected 5 columns, got {len(cells) - 2}")
                cells[4], cells[5] = f" {format_metrics(info['metrics'])} ", f" {format_seconds(info['seconds'])} "
                lines[i] = "|".join(cells)
    README.write_text("\n".join(lines), encoding="utf-8")


def write_strip(thumbs: dict[str, Image.Image], infos: dict[str, dict]) -> None:
    """The README picture: six thumbnails, 3 by 2, each captioned with its task and metric."""
    import matplotlib.font_manager as fm

    font = ImageFont.truetype(fm.findfont("DejaVu Sans"), 15)
    w, h = 400, 250
    cap, gap = 26, 8
    strip = Image.new("RGB", (3 * w + 4 * gap, 2 * (h + cap) + 3 * gap), "white")
    draw = ImageDraw.Draw(strip)
    for k, name in enumerate(STRIP_EXAMPLES):
        x, y = gap + (k % 3) * (w + gap), gap + (k // 3) * (h + cap + gap)
        strip.paste(thumbs[name].resize((w, h), Image.Resampling.LANCZOS), (x, y))
        first = next(iter(infos[name]["metrics"].items()))
        text = f"{EXAMPLES[name].short}: {format_metrics(dict([first]))}"
        draw.text((x + w // 2, y + h + cap // 2), text, fill=(40, 40, 40), font=font, anchor="mm")
    save_png(strip, STRIP)


def build_pages(paths: list[Path]) -> dict[str, dict]:
    """Thumbnails, gallery page, README rows and picture from the notebooks' stored outputs."""
    infos, thumbs = {}, {}
    missing = sorted(set(EXAMPLES) - {p.stem for p in paths} | {p.stem for p in paths} - set(EXAMPLES))
    if missing:
        raise GalleryError(f"notebooks and EXAMPLES in docs/build_gallery.py differ: {missing}")
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        info = meta(nb, path.stem)
        if info.get("code_sha256") != code_sha256(nb) or info.get("fast"):
            raise GalleryError(f"{path.stem}: its outputs are stale or from a fast run; "
                               f"run python docs/build_gallery.py {path.stem}")
        infos[path.stem], thumbs[path.stem] = info, thumbnail(nb, path.stem)
        save_png(thumbs[path.stem], THUMBS / f"{path.stem}.png")
    write_index(infos)
    update_readme(infos)
    write_strip(thumbs, infos)
    return infos


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    ap.add_argument("--data", default=os.environ.get("LEARNKIT_DATA"), help="data root (default $LEARNKIT_DATA)")
    ap.add_argument("--no-run", action="store_true", help="only rebuild thumbnails and pages from stored outputs")
    ap.add_argument("--fast", action="store_true", help="LEARNKIT_FAST=1 runs, to check this script (needs --out)")
    ap.add_argument("--out", type=Path, default=None, help="write executed notebooks here, not in place")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds one cell may take")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the kernels")
    args = ap.parse_args(argv)

    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    unknown = set(args.names) - {p.stem for p in paths}
    if unknown:
        ap.error(f"no such notebook(s) in examples/notebooks: {sorted(unknown)}")
    if args.fast and not args.out:
        ap.error("--fast outputs are not the gallery's: give --out DIR")
    if not args.no_run:
        if not args.data or not Path(args.data).is_dir():
            ap.error("pass --data PATH or set LEARNKIT_DATA to the folder holding pets/, mnist_tiny/, ...")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
        started, rows = time.perf_counter(), []
        for path in paths:
            if not args.names or path.stem in args.names:
                rows.append(run_one(path, Path(args.data).resolve(), args.fast, args.timeout, args.threads, args.out))
        print(f"\n{'notebook':<14} {'seconds':>8} {'KiB':>6}  metrics")
        for r in rows:
            print(f"{r['notebook']:<14} {r['seconds']:8.1f} {r['kb']:6.0f}  "
                  + " ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items()))
        print(f"total {time.perf_counter() - started:.1f} s")
        if args.out:
            return 0
    build_pages(paths)
    print(f"[gallery] wrote {THUMBS.relative_to(REPO)}/*.png, {INDEX.relative_to(REPO)}, "
          f"{STRIP.relative_to(REPO)} and the README rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
