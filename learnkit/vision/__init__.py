"""Computer vision: image classification in three lines.

>>> from learnkit.vision import *  # ImageDataLoaders, DataBlock, ImageBlock, vision_learner, Resize, error_rate, ...

``dls = ImageDataLoaders.from_name_func(path, get_image_files(path), label_func=is_cat, item_tfms=Resize(224))``
``learn = vision_learner(dls, "efficientnet_lite0", metrics=error_rate)``
``learn.fine_tune(1)``
"""
from ..core import *  # noqa: F403 - the core defines __all__
from ..core import __all__ as _core_all
from ..datasets import URLs, untar_data
from .classifier import (AdaptiveConcatPool2d, ClassifierHead, VisionClassifier, body_from_callable,
                         build_vision_classifier, create_head, vision_splitter)
from .blocks import ImageBlock, verify_images
from .points import PointBlock
from .data import ImageDataLoaders
from .feature_cache import FrozenFeatureCache
from .interpret import ClassificationInterpretation
from .io import (IMAGE_EXTENSIONS, ImageLoadError, decode_image_bytes, get_image_files, image_to_tensor,
                 load_image)
from .labels import RegexLabeller, parent_label
from .learner import VisionLearner, vision_learner
from .models import (ARCH_ALIASES, ModelMeta, PretrainedWeightsError, create_body, create_encoder,
                     load_lite0_pretrained, model_meta, resnet18, resnet34, resnet50, timm_name)
from .segmentation import MaskBlock, SegmentationDataLoaders, SegmentationInterpretation, unet_learner
from .show import show_image, show_images, show_points, show_results
from .transforms import (BatchResize, BatchTransform, GeometricAug, ItemTransform, LightingAug, Normalize, RandomResizedCrop,
                         Resize, aug_transforms, imagenet_stats)

__all__ = [
    *_core_all,
    "AdaptiveConcatPool2d", "ClassifierHead", "VisionClassifier", "body_from_callable", "build_vision_classifier",
    "create_head", "vision_splitter", "ImageDataLoaders", "RegexLabeller", "parent_label", "ImageBlock", "PointBlock", "verify_images",
    "FrozenFeatureCache", "ClassificationInterpretation", "IMAGE_EXTENSIONS", "ImageLoadError",
    "get_image_files", "image_to_tensor", "load_image", "decode_image_bytes", "VisionLearner", "vision_learner", "ARCH_ALIASES",
    "ModelMeta", "PretrainedWeightsError", "create_body", "create_encoder", "load_lite0_pretrained", "model_meta",
    "timm_name", "show_image", "show_images", "show_points", "show_results", "BatchResize", "BatchTransform", "GeometricAug", "ItemTransform",
    "LightingAug", "Normalize", "RandomResizedCrop", "Resize", "aug_transforms", "imagenet_stats",
    "URLs", "untar_data", "SegmentationDataLoaders", "SegmentationInterpretation", "MaskBlock", "unet_learner", "resnet18", "resnet34", "resnet50",
]
