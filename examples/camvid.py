"""Street-scene segmentation: a U-Net on EfficientNet-Lite0, trained on SegNet's 11-class CamVid.

    python examples/camvid.py                     # 288x384, 200 decoder steps + 11 unfrozen epochs, class-weighted CE
    python examples/camvid.py --size 192 256 --epochs 12
    python examples/camvid.py --decoder-steps 0   # the frozen phase as 3 augmented epochs instead (the old recipe)
    python examples/camvid.py --fast              # a tiny run for CI

The data come from ``--data`` (a data root holding ``camvid/``, or the camvid folder itself), else
``$LEARNKIT_DATA/camvid``: ``train``/``trainannot`` and ``val``/``valannot`` folders of 480x360 PNGs and
``codes.txt`` (index 11, ``Unlabelled``, is void). Images and masks are decoded once, resized to
``--size`` and kept in memory. The default loss is cross-entropy with the class weights
``sqrt(median frequency / frequency)`` of the training masks (``class_weights(dls)``), which lift the small
classes (pole, sign, fence, pedestrian, bicyclist) off zero IoU; ``--loss`` picks another. Prints pixel accuracy without void,
mean IoU over the 11 classes, the IoU of each class and the wall time, on the given validation split.

The frozen phase trains the decoder alone for ``--decoder-steps`` optimizer steps on encoder maps computed
once from the un-augmented frames (`unet_learner`'s frozen-feature cache, ``fine_tune(head_fit=HeadFit(...))``),
and everything trains in bf16 autocast where the CPU computes bfloat16 natively (``native_bf16()``; ``--fp32``
to opt out): seeds 0-2 mean IoU 0.654 against 0.622 for 3 augmented frozen epochs and 12 unfrozen ones in
fp32, in 0.94x their time on a 2-core AVX512-BF16 CPU (benchmarks/RESULTS.md, "camvid.py: decoder steps in bf16").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from learnkit import HeadFit, native_bf16, set_seed
from learnkit.datasets import URLs, find_data
from learnkit.core import CrossEntropyLossFlat
from learnkit.vision.segmentation import (CrossEntropyDiceLoss, DiceLoss, FocalLossFlat, FuncSplitter, JaccardMulti,
                                          Resize, SegmentationDataLoaders, aug_transforms, class_weights,
                                          foreground_acc, get_image_files, unet_learner)


def find_camvid(data: str | None) -> Path:
    """``--data`` (``camvid/`` or the folder holding it), else ``$LEARNKIT_DATA/camvid``: never downloaded here."""
    return find_data(URLs.CAMVID, data, marker="trainannot", download=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root (with camvid/) or the camvid folder")
    parser.add_argument("--epochs", type=int, default=11, help="epochs with the encoder unfrozen")
    parser.add_argument("--freeze-epochs", type=int, default=3, help="epochs training the decoder alone first")
    parser.add_argument("--size", type=int, nargs=2, default=(288, 384), metavar=("H", "W"),
                        help="image height and width (multiples of 32)")
    parser.add_argument("--bs", type=int, default=8, help="batch size")
    parser.add_argument("--lr", type=float, default=None,
                        help="base learning rate of fine_tune (default: the segmentation learner's, 1e-2)")
    parser.add_argument("--lr-mult", type=float, default=10, help="decoder lr / encoder lr when unfrozen")
    parser.add_argument("--loss", choices=("ce", "wce", "dice", "focal", "ce+dice"), default="wce",
                        help="cross-entropy, class-weighted cross-entropy, soft Dice, focal, or cross-entropy + "
                             "Dice (all skip void)")
    parser.add_argument("--arch", default="efficientnet_lite0", help="timm encoder name")
    parser.add_argument("--decoder-steps", type=int, default=200,
                        help="decoder steps on cached encoder maps of the un-augmented frames in the frozen phase "
                             "(0: --freeze-epochs epochs on augmented frames instead, no cache)")
    parser.add_argument("--fp32", action="store_true",
                        help="no bf16 autocast (the default where the CPU has no native bfloat16: AVX512-BF16 or AMX)")
    parser.add_argument("--fast", action="store_true", help="a tiny CI run: every 10th train / 6th val frame at 96x128, 1 + 1 epochs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation, dropout and augmentation")
    args = parser.parse_args()
    set_seed(args.seed)

    start = time.perf_counter()
    path = find_camvid(args.data)
    if args.decoder_steps < 0:
        parser.error(f"--decoder-steps must be 0 (no cache) or a number of steps, got {args.decoder_steps}")
    size, epochs, freeze_epochs, decoder_steps = tuple(args.size), args.epochs, args.freeze_epochs, args.decoder_steps
    if args.fast:
        size, epochs, freeze_epochs, decoder_steps = (96, 128), 1, 1, min(decoder_steps, 20)

    common = dict(codes=path / "codes.txt", void_code="Unlabelled", item_tfms=Resize(size), bs=args.bs, cache=True,
                batch_tfms=aug_transforms(max_rotate=5.0, max_warp=0.0, max_zoom=1.2))
    if args.fast:  # every 10th training frame and every 6th validation frame
        files = get_image_files(path / "train")[::10] + get_image_files(path / "val")[::6]
        dls = SegmentationDataLoaders.from_label_func(
            path, files, label_func=lambda o: path / f"{o.parent.name}annot" / o.name,
            splitter=FuncSplitter(lambda o: o.parent.name == "val"), **common)
    else:
        dls = SegmentationDataLoaders.from_folders(path, images="train", masks="trainannot", valid_images="val",
                                                   valid_masks="valannot", **common)
    void = dls.void_code
    acc, iou = foreground_acc(ignore_index=void), JaccardMulti(ignore_index=void)
    ignore = dls.ignore_index
    loss_func = {"ce": lambda: None,  # the dls' default: cross-entropy skipping void
                 "wce": lambda: CrossEntropyLossFlat(class_weights(dls), ignore_index=ignore),
                 "dice": lambda: DiceLoss(ignore_index=ignore), "focal": lambda: FocalLossFlat(ignore_index=ignore),
                 "ce+dice": lambda: CrossEntropyDiceLoss(ignore_index=ignore)}[args.loss]()
    learn = unet_learner(dls, args.arch, metrics=[acc, iou], loss_func=loss_func,
                         cache_frozen_features=decoder_steps > 0)
    if not args.fp32 and native_bf16():
        learn.to_bf16()
    print(f"data ready in {time.perf_counter() - start:.1f} s: {len(dls.train.dataset)} train / "
          f"{len(dls.valid.dataset)} valid frames at {size[0]}x{size[1]}, {len(dls.codes)} codes, void = {void}")
    lr = {} if args.lr is None else {"base_lr": args.lr}
    head_fit = HeadFit(min_steps=decoder_steps) if decoder_steps > 0 else None
    learn.fine_tune(epochs, freeze_epochs=freeze_epochs, lr_mult=args.lr_mult, head_fit=head_fit, **lr)

    # the metrics hold the counts of the last validation pass (the whole validation set)
    per_class = iou.per_class()
    names = [c for i, c in enumerate(dls.codes) if i != void]
    classes = torch.tensor([i for i in range(len(dls.codes)) if i != void])
    print("IoU per class: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(names, per_class[classes].tolist())))
    print(f"pixel accuracy (void excluded) {acc.value:.4f}")
    print(f"mean IoU ({len(names)} classes) {per_class[classes].nanmean().item():.4f}")
    print(f"wall time {time.perf_counter() - start:.1f} s (threads: {torch.get_num_threads()}, {learn.precision})")


if __name__ == "__main__":
    main()
