"""Semantic segmentation: image + mask loaders, a U-Net on a pretrained timm encoder, losses, display.

>>> from learnkit.vision.segmentation import *
>>> dls = SegmentationDataLoaders.from_folders(path, codes=path / "codes.txt", void_code="Unlabelled",
...                                            item_tfms=Resize((288, 384)), batch_tfms=aug_transforms())  # doctest: +SKIP
>>> learn = unet_learner(dls, "efficientnet_lite0", metrics=foreground_acc(ignore_index=dls.void_code))  # doctest: +SKIP
>>> learn.fine_tune(8)  # doctest: +SKIP
"""
# Learner, metrics, callbacks for notebooks: the core names, re-exported (the core's __all__)
from ...core import (AvgMetric, BCEWithLogitsLossFlat, BalancedAccuracy, BlockDataLoaders, CSVLogger, Callback,
                     CancelBackwardException, CancelBatchException, CancelEpochException, CancelFitException,
                     CancelStepException, CancelTrainException, CancelValidException, CategoryBlock, CategoryMap,
                     CheckpointCallback, ClassificationInterpretation, ColReader, ColSplitter, CrossEntropyLossFlat,
                     CutMix, DataBlock, DataBlockError, DataLoaders, Datasets, Dice, DiceMulti, DistributedDL,
                     DistributedTrainer, EVENTS, EarlyStoppingCallback, EndSplitter, ExperimentCallback, ExportError,
                     F1Score, F1ScoreMulti, FolderSplitter, ForegroundAcc, FrozenFeatureCache, FuncSplitter,
                     GradientAccumulation, GradientClip, GrandparentSplitter, IndexSplitter, JaccardCoeff,
                     JaccardMulti, L1LossFlat, LRFinder, LabelSmoothingCrossEntropy, LabelSmoothingCrossEntropyFlat,
                     Learner, MLflowCallback, MSELossFlat, Metric, MixUp, MultiCategoryBlock, NonFiniteLossWarning,
                     NotRegisteredError, OneCycleScheduler, ParamScheduler, Perplexity, Precision, ProgressCallback,
                     R2Score, RandomSplitter, Recall, Recorder, ReduceLROnPlateau, RegexLabeller, Registry,
                     RegressionBlock, RocAuc, RocAucBinary, SaveModelCallback, ShowGraphCallback, SigmoidRange,
                     SuggestedLRs, TensorBoardCallback, TensorLoader, TerminateOnNaNCallback, TorchMetric,
                     TrackerCallback, TrainTestSplitter, TransformBlock, WandbCallback, accuracy, accuracy_multi,
                     as_metric, atomic_torch_save, atomic_write, batch_size, check_split, combine_scheds,
                     default_device, default_num_workers, default_splitter, describe_training_loop, distrib_barrier,
                     emb_sizes, emb_sz_rule, error_rate, exp_rmspe, flat_cos_scheduler, foreground_acc, get_dls_class,
                     get_emb_sz, get_files, get_loss_class, get_model_builder, get_text_files, is_rank0, load_learner,
                     mae, make_loader, minimum, mse, msle, num_distrib, parent_label, rank_distrib, register_dls,
                     register_learner, register_loss, register_model, register_tokenizer, register_transform, rmse,
                     sched_const, sched_cos, sched_exp, sched_lin, set_seed, sgdr_scheduler, sigmoid_range, slide,
                     spread_lr, steep, to_cpu, to_device, top_k_accuracy, trainable_params, Adam, HeadFit, SmallDataWarning, using_attr, valley,
                     whole_set)
from ...datasets import URLs, find_data, untar_data
from ...core import EMACallback, ProfileReport, ProfilerCallback, ShortEpochCallback, StepLimitCallback, StepsLoader, ValidateEveryCallback  # issue 27
from ...core import native_bf16, reuse_cpu_memory
from ...core import __all__ as _core_all
from ...core import (ActivationStats, ConvLayer, Flatten, Hook, HookCallback, Hooks, NormType, ResBlock, SEModule,  # hooks
                     init_cnn, hook_output, hook_outputs, model_sizes, num_features_model, sequential)
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
from .unet import EncoderMaps, UNet, UNetBlock, build_unet, unet_splitter
from .feature_cache import EncoderFeatures

from ...core import (DataLoader, F, Image, Path, Tensor, array, first, math, nn, noop, np, os, partial, pd, random, re,  # lesson names
                     tensor, torch)
from ...core.lesson_names import lesson_attr as _lesson_attr
from ...core import DeviceLoader, Module, SGD  # dls.train's type; fastai's Module (no super().__init__()) and SGD
__all__ = [
    "URLs", "untar_data", "find_data",
    "SegmentationDataLoaders", "MaskBlock", "check_masks_exist", "load_pair",
    "SegmentationLearner", "unet_learner", "SegmentationInterpretation", "UNet", "UNetBlock", "build_unet", "unet_splitter",
    "EncoderMaps", "EncoderFeatures",
    "DiceLoss", "FocalLossFlat", "CrossEntropyDiceLoss", "class_weights", "median_frequency_weights",
    "read_codes", "resolve_void_code", "load_mask", "check_mask_values",
    "code_colors", "overlay_mask", "show_segmentation", "show_seg_results",
    "apply_paired", "apply_seg_batch_tfms",
    "ImageBlock", "get_image_files", "load_image", "create_encoder", "model_meta",
    "Resize", "RandomResizedCrop", "aug_transforms", "Normalize", "imagenet_stats",
    *_core_all,
]


def __getattr__(name: str):
    """Serve ``plt`` on first use (see learnkit.core.lesson_names)."""
    return _lesson_attr(name, __name__)
