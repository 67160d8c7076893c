"""Cat or dog, streamed: the pets photos written as WebDataset tar shards, then `ImageDataLoaders.from_shards`.

    python examples/pets_shards.py                 # EfficientNet-Lite0 (offline ImageNet weights), fine_tune(1)
    python examples/pets_shards.py --fast          # a tiny run for CI: every 5th photo at 128 px

The photos come from ``--data`` as in ``examples/pets.py`` (``$LEARNKIT_DATA/pets`` by default). They are split
as pets.py splits them (a seeded random 20 % for validation, seed 42), labelled cat or dog (a cat's file name
starts with an upper-case letter) and written with `write_image_shards` into ``--out/train`` and
``--out/valid`` (``--per-shard`` photos a shard; a temporary folder by default). Before training, the first validation batch is checked
against the folder path (`load_image` + the same ``Resize``): the pixels must be bit-identical. Prints the
validation error rate, what the frozen-feature cache did, and the wall time (writing the shards included).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from learnkit import RandomSplitter, set_seed
from learnkit.core.feature_cache import FrozenFeatureCache
from learnkit.vision import (ImageDataLoaders, Resize, error_rate, get_image_files, load_image, vision_learner,
                             write_image_shards)
from learnkit.vision.transforms import apply_item_tfms
from pets import find_images, is_cat  # examples/pets.py, beside this script


def cat_or_dog(f: Path) -> str:
    return "cat" if is_cat(f.name) else "dog"


def same_as_folder(dls: ImageDataLoaders, files: list[Path], size: int) -> bool:
    """Whether the first validation batch from the shards equals the folder path's decoding of the same files."""
    x, _ = next(iter(dls[1]))  # the loader itself: uint8 batches as decoded, before the batch transforms
    ref = torch.stack([apply_item_tfms([Resize(size)], load_image(f), training=False) for f in files[: len(x)]])
    return bool(torch.equal(x.cpu(), ref))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root (with pets/images) or the images folder")
    parser.add_argument("--out", default=None, help="where to write the shards (default: a temporary folder, "
                        "deleted at the end)")
    parser.add_argument("--per-shard", type=int, default=100, help="photos a shard")
    parser.add_argument("--epochs", type=int, default=1, help="fine_tune epochs after the frozen epoch")
    parser.add_argument("--arch", default="efficientnet_lite0", help="timm model name")
    parser.add_argument("--size", type=int, default=224, help="image size")
    parser.add_argument("--bs", type=int, default=64, help="batch size")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: learnkit's)")
    parser.add_argument("--fast", action="store_true", help="a tiny CI run: every 5th photo at 128 px")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation, dropout and augmentation")
    args = parser.parse_args()
    set_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="pets-shards-") as tmp:
        run(args, Path(args.out) if args.out else Path(tmp))


def run(args: argparse.Namespace, out: Path) -> None:
    start = time.perf_counter()
    files = get_image_files(find_images(args.data))
    size = args.size
    if args.fast:
        files, size = files[::5], min(size, 128)
    train_idx, valid_idx = RandomSplitter(valid_pct=0.2, seed=42)(files)  # pets.py's split
    train_files, valid_files = [files[i] for i in train_idx], [files[i] for i in valid_idx]
    vocab = ["cat", "dog"]
    train = write_image_shards(train_files, out / "train", args.per_shard, label_func=cat_or_dog, vocab=vocab)
    valid = write_image_shards(valid_files, out / "valid", args.per_shard, label_func=cat_or_dog, vocab=vocab)
    written = time.perf_counter() - start

    dls = ImageDataLoaders.from_shards([str(p) for p in train], [str(p) for p in valid], item_tfms=Resize(size),
                                       bs=args.bs, num_workers=args.workers)
    identical = same_as_folder(dls, valid_files, size)
    learn = vision_learner(dls, args.arch, metrics=error_rate)
    learn.fine_tune(args.epochs)

    err = learn.recorder.final_record()["error_rate"]
    cache = next((cb for cb in learn.cbs if isinstance(cb, FrozenFeatureCache)), None)
    print(f"arch {args.arch}, size {size}, {len(train_files)} training photos in {len(train)} shards, "
          f"{len(valid_files)} validation photos in {len(valid)} shards (written in {written:.1f} s to {out})")
    print(f"first validation batch bit-identical to the folder path: {identical}")
    print(f"frozen phase: output layer solved on cached body features: {bool(cache and cache.head_solved)} "
          f"(output bias started at the prior: {cache.bias_init if cache is not None else None})")
    print(f"error_rate {err:.4f} ({round(err * len(valid_files))}/{len(valid_files)} wrong)")
    print(f"wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
