"""Computer vision: image classification in three lines.

>>> from learnkit.vision import *  # ImageDataLoaders, DataBlock, ImageBlock, vision_learner, Resize, error_rate, ...

``dls = ImageDataLoaders.from_name_func(path, get_image_files(path), label_func=is_cat, item_tfms=Resize(224))``
``learn = vision_learner(dls, "efficientnet_lite0", metrics=error_rate)``
``learn.fine_tune(1)``
"""
# the core names, which a task package re-exports (the core's __all__; a name defined here wins)
from ..core import (AvgMetric, BCEWithLogitsLossFlat, BalancedAccuracy, BlockDataLoaders, CSVLogger, Callback,
                    CancelBackwardException, CancelBatchException, CancelEpochException, CancelFitException,
                    CancelStepException, CancelTrainException, CancelValidException, CategoryBlock, CategoryMap,
                    CheckpointCallback, ColReader, ColSplitter, CrossEntropyLossFlat, CutMix, DataBlock,
                    DataBlockError, DataLoaders, Datasets, Dice, DiceMulti, DistributedDL, DistributedTrainer, EVENTS,
                    EarlyStoppingCallback, EndSplitter, ExperimentCallback, ExportError, F1Score, F1ScoreMulti,
                    FolderSplitter, ForegroundAcc, FuncSplitter, GradientAccumulation, GradientClip,
                    GrandparentSplitter, IndexSplitter, JaccardCoeff, JaccardMulti, L1LossFlat, LRFinder,
                    LabelSmoothingCrossEntropy, LabelSmoothingCrossEntropyFlat, Learner, MLflowCallback, MSELossFlat,
                    Metric, MixUp, MultiCategoryBlock, NonFiniteLossWarning, NotRegisteredError, OneCycleScheduler,
                    ParamScheduler, Perplexity, Precision, ProgressCallback, R2Score, RandomSplitter, Recall, Recorder,
                    ReduceLROnPlateau, Registry, RegressionBlock, RocAuc, RocAucBinary, SaveModelCallback,
                    ShowGraphCallback, SigmoidRange, SuggestedLRs, TensorBoardCallback, TensorLoader,
                    TerminateOnNaNCallback, TorchMetric, TrackerCallback, TrainTestSplitter, TransformBlock,
                    WandbCallback, accuracy, accuracy_multi, as_metric, atomic_torch_save, atomic_write, batch_size,
                    check_split, combine_scheds, default_device, default_num_workers, default_splitter,
                    describe_training_loop, distrib_barrier, emb_sizes, emb_sz_rule, error_rate, exp_rmspe,
                    flat_cos_scheduler, foreground_acc, get_dls_class, get_emb_sz, get_files, get_loss_class,
                    get_model_builder, get_text_files, is_rank0, load_learner, mae, make_loader, minimum, mse, msle,
                    num_distrib, rank_distrib, register_dls, register_learner, register_loss, register_model,
                    register_tokenizer, register_transform, rmse, sched_const, sched_cos, sched_exp, sched_lin,
                    set_seed, sgdr_scheduler, sigmoid_range, slide, spread_lr, steep, to_cpu, to_device,
                    top_k_accuracy, trainable_params, Adam, HeadFit, SmallDataWarning, using_attr, valley, whole_set)
from ..core import EMACallback, ProfileReport, ProfilerCallback, ShortEpochCallback, StepLimitCallback, StepsLoader, ValidateEveryCallback  # issue 27
from ..core import native_bf16, reuse_cpu_memory
from ..core import __all__ as _core_all
from ..core import (ActivationStats, ConvLayer, Flatten, Hook, HookCallback, Hooks, NormType, ResBlock, SEModule,  # hooks
                    init_cnn, hook_output, hook_outputs, model_sizes, num_features_model, sequential)
from ..datasets import URLs, find_data, untar_data
from .classifier import (AdaptiveConcatPool2d, ClassifierHead, VisionClassifier, body_from_callable,
                         build_vision_classifier, create_head, vision_splitter)
from .blocks import ImageBlock, verify_images
from .points import PointBlock
from .data import ImageDataLoaders
from .feature_cache import FrozenFeatureCache
from .interpret import ClassificationInterpretation
from .io import (IMAGE_EXTENSIONS, ImageLoadError, decode_image_bytes, get_image_files, image_decoder,
                 image_to_tensor, load_image)
from .labels import RegexLabeller, parent_label
from .learner import VisionLearner, vision_learner
from .models import (ARCH_ALIASES, ModelMeta, PretrainedWeightsError, create_body, create_encoder,
                     load_lite0_pretrained, model_meta, resnet18, resnet34, resnet50, timm_name)
from .segmentation import MaskBlock, SegmentationDataLoaders, SegmentationInterpretation, unet_learner
from .shards import write_image_shards
from .show import TensorImage, show_image, show_images, show_points, show_results
from .blocks import PILImage, PILImageBW, to_grey  # greyscale images
from .models import adapt_input_channels
from .cam import CAM_METHODS, cam_layer, grad_cam
from .xresnet import XResNet, build_xresnet_classifier, xresnet18, xresnet34, xresnet50
from .transforms import (BatchResize, BatchTransform, GeometricAug, ItemTransform, LightingAug, Normalize, RandomResizedCrop,
                         Resize, aug_transforms, imagenet_stats)

from ..core import (DataLoader, F, Image, Path, Tensor, array, first, math, nn, noop, np, os, partial, pd, random, re,  # lesson names
                    tensor, torch)
from ..core.lesson_names import lesson_attr as _lesson_attr
from ..core import DeviceLoader, Module, SGD  # dls.train's type; fastai's Module (no super().__init__()) and SGD
__all__ = [
    *_core_all, "write_image_shards",
    "AdaptiveConcatPool2d", "ClassifierHead", "VisionClassifier", "body_from_callable", "build_vision_classifier",
    "create_head", "vision_splitter", "ImageDataLoaders", "RegexLabeller", "parent_label", "ImageBlock", "PointBlock", "verify_images",
    "FrozenFeatureCache", "ClassificationInterpretation", "IMAGE_EXTENSIONS", "ImageLoadError",
    "get_image_files", "image_to_tensor", "load_image", "decode_image_bytes", "image_decoder", "VisionLearner", "vision_learner", "ARCH_ALIASES",
    "ModelMeta", "PretrainedWeightsError", "create_body", "create_encoder", "load_lite0_pretrained", "model_meta",
    "timm_name", "TensorImage", "show_image", "show_images", "show_points", "show_results", "BatchResize", "BatchTransform", "GeometricAug", "ItemTransform",
    "LightingAug", "Normalize", "RandomResizedCrop", "Resize", "aug_transforms", "imagenet_stats",
    "URLs", "untar_data", "find_data", "SegmentationDataLoaders", "SegmentationInterpretation", "MaskBlock", "unet_learner", "resnet18", "resnet34", "resnet50",
    "PILImage", "PILImageBW", "to_grey", "adapt_input_channels", "XResNet", "build_xresnet_classifier", "xresnet18",
    "xresnet34", "xresnet50", "grad_cam", "cam_layer", "CAM_METHODS",
]


def __getattr__(name: str):
    """Serve ``plt`` on first use (see learnkit.core.lesson_names)."""
    return _lesson_attr(name, __name__)
