"""Cat or dog? The three-line image classifier on Oxford-IIIT Pet photos.

    python examples/pets.py                      # EfficientNet-Lite0 (offline ImageNet weights), fine_tune(1)
    python examples/pets.py --arch resnet18 --no-pretrained
    python examples/pets.py --fast               # a tiny run for CI

The photos come from ``--data`` (a data root holding ``pets/images``, or the images folder itself), else
``$LEARNKIT_DATA/pets``, else ``untar_data(URLs.PETS)`` downloads them. A cat's file name starts with an
upper-case letter. Prints the validation error rate (automatic 20 % split, seed 42) and the wall time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from learnkit import reuse_cpu_memory, set_seed
from learnkit.datasets import URLs, find_data
from learnkit.vision import ImageDataLoaders, Resize, error_rate, get_image_files, vision_learner


def is_cat(name: str) -> bool:
    return name[0].isupper()


def find_images(data: str | None) -> Path:
    """The photos: ``--data`` (``pets/``, its ``images/``, or the folder holding ``pets/``), else
    ``$LEARNKIT_DATA/pets``, else a download."""
    root = find_data(URLs.PETS, data)
    for cand in (root / "images", root):
        if any(cand.glob("*.jpg")):
            return cand
    raise FileNotFoundError(f"no pet photos (*.jpg) in {root} or {root / 'images'}; pass --data PATH or set "
                            "LEARNKIT_DATA")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root (with pets/images) or the images folder")
    parser.add_argument("--epochs", type=int, default=1, help="fine_tune epochs after the frozen epoch")
    parser.add_argument("--arch", default="efficientnet_lite0", help="timm model name")
    parser.add_argument("--size", type=int, default=224, help="image size")
    parser.add_argument("--bs", type=int, default=64, help="batch size")
    parser.add_argument("--fast", action="store_true", help="a tiny CI run: every 5th photo at 128 px")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation, dropout and augmentation")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random init")
    args = parser.parse_args()
    set_seed(args.seed)
    reuse_cpu_memory()  # keep freed memory for the next batch (no page fault per 4 KB of each new activation)

    start = time.perf_counter()
    path = find_images(args.data)
    files = get_image_files(path)
    size = args.size
    if args.fast:
        files, size = files[::5], min(size, 128)

    dls = ImageDataLoaders.from_name_func(path, files, label_func=is_cat, item_tfms=Resize(size), bs=args.bs)
    learn = vision_learner(dls, args.arch, pretrained=args.pretrained, metrics=error_rate)
    learn.fine_tune(args.epochs)

    err = learn.recorder.final_record()["error_rate"]
    n_valid = len(dls.valid.dataset)
    print(f"arch {args.arch} (pretrained={args.pretrained}), size {size}, {len(files)} photos, {n_valid} in validation")
    print(f"error_rate {err:.4f} ({round(err * n_valid)}/{n_valid} wrong)")
    print(f"wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
