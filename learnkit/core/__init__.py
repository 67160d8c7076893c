"""Task-agnostic machinery: device, data, the Learner, callbacks, metrics, optimizers.

Nothing in ``learnkit.core`` imports a task folder (vision, text, tabular, collab).
"""
from .callback import (EVENTS, Callback, describe_training_loop, CancelBackwardException, CancelBatchException, CancelEpochException,
                       CancelFitException, CancelStepException, CancelTrainException, CancelValidException)
# every callback and every metric is a core name (callbacks.__all__, metrics.__all__)
from .callbacks import (CSVLogger, CheckpointCallback, CutMix, EarlyStoppingCallback, ExperimentCallback,
                        GradientAccumulation, GradientClip, LRFinder, MLflowCallback, MixUp, NonFiniteLossWarning,
                        OneCycleScheduler, ParamScheduler, ProgressCallback, Recorder, ReduceLROnPlateau,
                        SaveModelCallback, ShowGraphCallback, SuggestedLRs, TensorBoardCallback, TerminateOnNaNCallback,
                        TrackerCallback, WandbCallback, combine_scheds, flat_cos_scheduler, minimum, sched_const,
                        sched_cos, sched_exp, sched_lin, sgdr_scheduler, slide, steep, valley)
from .callbacks import __all__ as _cb_all
from .block import CategoryBlock, MultiCategoryBlock, RegressionBlock, TransformBlock
from .blockdata import DataBlockError
from .blockloader import default_num_workers
from .checkpoint import atomic_torch_save, atomic_write
from .datablock import BlockDataLoaders, DataBlock, Datasets
from .data import DataLoaders, DeviceLoader, make_loader
from .distributed import DistributedDL, DistributedTrainer, distrib_barrier, is_rank0, num_distrib, rank_distrib
from .device import batch_size, default_device, to_cpu, to_device
from .export import ExportError, load_learner
from .layers import Module, SigmoidRange, sigmoid_range
from .layers import ConvLayer, Flatten, NormType, ResBlock, SEModule, init_cnn, sequential
from .hooks import Hook, HookCallback, Hooks, hook_output, hook_outputs, model_sizes, num_features_model
from .activation_stats import ActivationStats
from .learner import Learner
from .items import ColReader, RegexLabeller, get_files, get_text_files, parent_label, using_attr
from .losses import (BCEWithLogitsLossFlat, CrossEntropyLossFlat, L1LossFlat, LabelSmoothingCrossEntropy,
                     LabelSmoothingCrossEntropyFlat, MSELossFlat)
from .metrics import (AvgMetric, BalancedAccuracy, F1Score, F1ScoreMulti, Metric, Perplexity, Precision, R2Score,
                      Recall, RocAuc, RocAucBinary, accuracy, accuracy_multi, as_metric, error_rate, exp_rmspe, mae,
                      mse, msle, rmse, top_k_accuracy, TorchMetric, whole_set)
from .metrics import __all__ as _metrics_all
from .optim import Adam, SGD, default_splitter, spread_lr, trainable_params
from .headfit import HeadFit, SmallDataWarning
from .seed import set_seed
from .precision import native_bf16, reuse_cpu_memory
from .segmetrics import Dice, DiceMulti, ForegroundAcc, JaccardCoeff, JaccardMulti, foreground_acc
from .registry import (NotRegisteredError, Registry, get_dls_class, get_loss_class, get_model_builder, register_dls,
                       register_learner, register_loss, register_model, register_tokenizer, register_transform)
from .feature_cache import FrozenFeatureCache
from .tensorloader import TensorLoader
from .interpret import ClassificationInterpretation
from .split import (ColSplitter, EndSplitter, FolderSplitter, FuncSplitter, GrandparentSplitter, IndexSplitter,
                    RandomSplitter, TrainTestSplitter, check_split)
from .vocab import CategoryMap, emb_sizes, emb_sz_rule, get_emb_sz
from .callbacks import EMACallback, ProfileReport, ProfilerCallback, ShortEpochCallback, StepLimitCallback, ValidateEveryCallback  # issue 27
from .steps import StepsLoader

#: hooks (fastbook ch. 13, 18) and fastai's building blocks (ch. 13-15)
_HOOK_NAMES = ["Module", "SGD", "Hook", "HookCallback", "Hooks", "hook_output", "hook_outputs", "model_sizes", "num_features_model",
               "ActivationStats", "ConvLayer", "Flatten", "NormType", "ResBlock", "SEModule", "init_cnn", "sequential"]

from .lesson_names import (DataLoader, F, Image, Path, Tensor, array, first, math, nn, noop, np, os, partial, pd, random, re,  # lesson names
                           tensor, torch)
from .lesson_names import lesson_attr as _lesson_attr
from .lesson_names import __all__ as _lesson_all
__all__ = [
    "EVENTS", "Callback", "describe_training_loop", "LabelSmoothingCrossEntropy", "LabelSmoothingCrossEntropyFlat",
    "CancelBackwardException", "CancelBatchException", "CancelEpochException",
    "CancelFitException", "CancelStepException", "CancelTrainException", "CancelValidException",
    "atomic_torch_save", "atomic_write", "DistributedDL", "DistributedTrainer", "distrib_barrier", "is_rank0",
    "num_distrib", "rank_distrib", "DataLoaders", "DeviceLoader", "make_loader", "batch_size", "default_device", "to_cpu",
    "to_device", "Learner", "BCEWithLogitsLossFlat", "CrossEntropyLossFlat", "L1LossFlat", "MSELossFlat",
    "Adam", "HeadFit", "SmallDataWarning", "default_splitter", "spread_lr", "trainable_params", "ColSplitter", "FolderSplitter", "FuncSplitter",
    "GrandparentSplitter", "IndexSplitter", "RandomSplitter", "check_split", "register_dls", "register_model",
    "register_loss", "Dice", "DiceMulti", "JaccardCoeff", "JaccardMulti", "foreground_acc", "SigmoidRange", "sigmoid_range", "register_learner", "Registry", "set_seed", "native_bf16", "reuse_cpu_memory", "get_dls_class", "get_model_builder", "get_loss_class", "load_learner", "ExportError",
    "TransformBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "DataBlock", "Datasets",
    "BlockDataLoaders", "DataBlockError", "default_num_workers", "ColReader", "RegexLabeller", "get_files", "get_text_files",
    "parent_label", "using_attr", "EndSplitter", "TrainTestSplitter",
    "CategoryMap", "ClassificationInterpretation", "emb_sz_rule", "emb_sizes", "get_emb_sz",
    "ForegroundAcc", "NotRegisteredError", "register_transform", "register_tokenizer", "FrozenFeatureCache",
    "TensorLoader", *_cb_all, *_metrics_all,
    "StepsLoader",
    *_HOOK_NAMES,
    *_lesson_all,  # torch, nn, F, np, pd, plt, Path, tensor, first, ... (what a fastai lesson uses unimported)
]


def __getattr__(name: str):
    """Serve ``plt`` on first use (see learnkit.core.lesson_names)."""
    return _lesson_attr(name, __name__)
