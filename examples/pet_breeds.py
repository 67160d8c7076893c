"""Which of 37 breeds? fastbook chapter 5's pet breeds DataBlock with presizing, ported to learnkit.

    python examples/pet_breeds.py                 # EfficientNet-Lite0 (offline ImageNet weights), fine_tune(2)
    python examples/pet_breeds.py --fast          # a tiny CI run: 3 breeds, every 5th photo, 128 px

The lesson's code, with only the import and the arch name changed (fastbook uses ``resnet34``)::

    pets = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, splitter=RandomSplitter(seed=42),
                     get_y=using_attr(RegexLabeller(r'(.+)_\\d+.jpg$'), 'name'),
                     item_tfms=Resize(460), batch_tfms=aug_transforms(size=224, min_scale=0.75))
    dls = pets.dataloaders(path/"images")
    learn = vision_learner(dls, 'efficientnet_lite0', metrics=error_rate)
    learn.fine_tune(2)

The photos come from ``--data`` (a data root holding ``pets/images``, or the images folder itself), else
``$LEARNKIT_DATA/pets``. The shared subset has 37 breeds: 34 with 10 photos, 3 with 200. Prints the validation
error rate (the seeded 20 % split) and the wall time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from learnkit import set_seed
from learnkit.datasets import URLs, find_data
from learnkit.vision import (CategoryBlock, DataBlock, ImageBlock, RandomSplitter, RegexLabeller, Resize,
                             aug_transforms, error_rate, get_image_files, using_attr, vision_learner)


def find_images(data: str | None) -> Path:
    """The photos: ``--data`` (``pets/``, its ``images/``, or the folder holding ``pets/``), else
    ``$LEARNKIT_DATA/pets``, never downloaded here."""
    root = find_data(URLs.PETS, data, download=False)
    for cand in (root / "images", root):
        if any(cand.glob("*.jpg")):
            return cand
    raise FileNotFoundError(f"no pet photos (*.jpg) in {root} or {root / 'images'}; pass --data PATH or set "
                            "LEARNKIT_DATA")


def fast_subset(path: Path) -> list[Path]:
    """Every 5th photo of the three breeds with 200 photos (so every breed is in both sets)."""
    big = ("Abyssinian_", "Bengal_", "american_bulldog_")
    return [p for p in get_image_files(path) if p.name.startswith(big)][::5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root (with pets/images) or the images folder")
    parser.add_argument("--epochs", type=int, default=2, help="fine_tune epochs after the frozen epoch")
    parser.add_argument("--arch", default="efficientnet_lite0", help="timm model name")
    parser.add_argument("--fast", action="store_true", help="a tiny CI run: 3 breeds, every 5th photo, 128 px")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation, dropout and augmentation")
    args = parser.parse_args()
    set_seed(args.seed)

    start = time.perf_counter()
    path = find_images(args.data)
    presize, size = (160, 128) if args.fast else (460, 224)
    pets = DataBlock(blocks=(ImageBlock, CategoryBlock),
                     get_items=fast_subset if args.fast else get_image_files,
                     splitter=RandomSplitter(seed=42),
                     get_y=using_attr(RegexLabeller(r'(.+)_\d+.jpg$'), 'name'),
                     item_tfms=Resize(presize),
                     batch_tfms=aug_transforms(size=size, min_scale=0.75))
    dls = pets.dataloaders(path)
    learn = vision_learner(dls, args.arch, metrics=error_rate)
    learn.fine_tune(args.epochs)

    err = learn.recorder.final_record()["error_rate"]
    n_valid = len(dls.valid.dataset)
    print(f"arch {args.arch}, {len(dls.vocab)} breeds, {len(dls.train.dataset)} training and {n_valid} validation "
          f"photos, presize {presize} -> {size} px, {dls.train.num_workers} loader workers")
    print(f"error_rate {err:.4f} ({round(err * n_valid)}/{n_valid} wrong)")
    print(f"wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
