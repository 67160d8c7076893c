"""Semantic segmentation: image + mask loaders, a U-Net on a pretrained timm encoder, losses, display.

>>> from learnkit.vision.segmentation import *
>>> dls = SegmentationDataLoaders.from_folders(path, codes=path / "codes.txt", void_code="Unlabelled",
...                                            item_tfms=Resize((288, 384)), batch_tfms=aug_transforms())  # doctest: +SKIP
>>> learn = unet_learner(dls, "efficientnet_lite0", metrics=foreground_acc(ignore_index=dls.void_code))  # doctest: +SKIP
>>> learn.fine_tune(8)  # doctest: +SKIP
"""
from ...core import *  # noqa: F403 - Learner, metrics, callbacks for notebooks
from ...datasets import URLs, untar_data
from ...core import __all__ as _core_all
from ..blocks import ImageBlock
from ..io import get_image_files, load_image
from ..models import create_encoder, model_meta
from ..transforms import Normalize, RandomResizedCrop, Resize, aug_transforms, imagenet_stats
from .data import SegmentationDataLoaders
from .blocks import MaskBlock
from .dataset import check_masks_exist, load_pair
from .interpret import SegmentationInterpretation
from .learner import SegmentationLearner, unet_learner
from .losses import CrossEntropyDiceLoss, DiceLoss, FocalLossFlat, class_weights, median_frequency_weights
from .masks import check_mask_values, load_mask, read_codes, resolve_void_code
from .show import code_colors, overlay_mask, show_seg_results, show_segmentation
from .transforms import apply_paired, apply_seg_batch_tfms
from .unet import UNet, UNetBlock, build_unet, unet_splitter

__all__ = [
    "URLs", "untar_data",
    "SegmentationDataLoaders", "MaskBlock", "check_masks_exist", "load_pair",
    "SegmentationLearner", "unet_learner", "SegmentationInterpretation", "UNet", "UNetBlock", "build_unet", "unet_splitter",
    "DiceLoss", "FocalLossFlat", "CrossEntropyDiceLoss", "class_weights", "median_frequency_weights",
    "read_codes", "resolve_void_code", "load_mask", "check_mask_values",
    "code_colors", "overlay_mask", "show_segmentation", "show_seg_results",
    "apply_paired", "apply_seg_batch_tfms",
    "ImageBlock", "get_image_files", "load_image", "create_encoder", "model_meta",
    "Resize", "RandomResizedCrop", "aug_transforms", "Normalize", "imagenet_stats",
    *_core_all,
]
