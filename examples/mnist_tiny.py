"""3 or 7? Handwritten digits from train/ and valid/ folders (fastai's MNIST_TINY), in three lines.

    python examples/mnist_tiny.py                # EfficientNet-Lite0 (offline ImageNet weights), fine_tune(1)
    python examples/mnist_tiny.py --arch resnet18 --no-pretrained
    python examples/mnist_tiny.py --fast         # a tiny run for CI

The digits come from ``--data`` (a data root holding ``mnist_tiny``, or that folder itself), else
``$LEARNKIT_DATA/mnist_tiny``, else ``untar_data(URLs.MNIST_TINY)`` downloads them. The label is the parent
folder (``3`` or ``7``). Prints the validation error rate and the wall time.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from learnkit import set_seed
from learnkit.datasets import URLs, find_data
from learnkit.vision import ImageDataLoaders, Resize, error_rate, vision_learner


def find_mnist(data: str | None) -> Path:
    """``--data`` (``mnist_tiny/`` or the folder holding it), else ``$LEARNKIT_DATA/mnist_tiny``, else a download."""
    path = find_data(URLs.MNIST_TINY, data, marker="train")
    if not (path / "valid").is_dir():
        raise FileNotFoundError(f"no valid/ folder in {path}; pass --data PATH or set LEARNKIT_DATA")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root (with mnist_tiny) or the mnist_tiny folder")
    parser.add_argument("--epochs", type=int, default=1, help="fine_tune epochs after the frozen epoch")
    parser.add_argument("--arch", default="efficientnet_lite0", help="timm model name")
    parser.add_argument("--size", type=int, default=64, help="image size (the digits are 28 px)")
    parser.add_argument("--bs", type=int, default=64, help="batch size")
    parser.add_argument("--fast", action="store_true", help="a tiny CI run at 32 px")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation, dropout and augmentation")
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false", help="random init")
    args = parser.parse_args()
    set_seed(args.seed)

    start = time.perf_counter()
    size = min(args.size, 32) if args.fast else args.size

    dls = ImageDataLoaders.from_folder(find_mnist(args.data), train="train", valid="valid", item_tfms=Resize(size),
                                      bs=args.bs)
    learn = vision_learner(dls, args.arch, pretrained=args.pretrained, metrics=error_rate)
    learn.fine_tune(args.epochs)

    err = learn.recorder.final_record()["error_rate"]
    n_valid = len(dls.valid.dataset)
    print(f"arch {args.arch} (pretrained={args.pretrained}), size {size}, {n_valid} digits in validation")
    print(f"error_rate {err:.4f} ({round(err * n_valid)}/{n_valid} wrong)")
    print(f"wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
