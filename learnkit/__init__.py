"""learnkit: strong models in three lines, every part replaceable.

>>> from learnkit import Learner, DataLoaders   # the core
>>> from learnkit.vision import *               # a task: ImageDataLoaders, vision_learner, ...
"""
__version__ = "0.1.0"

# the core names (see learnkit.core.__all__), re-exported through __all__
from .core import (AvgMetric, BCEWithLogitsLossFlat, BalancedAccuracy, BlockDataLoaders, CSVLogger, Callback,
                   CancelBackwardException, CancelBatchException, CancelEpochException, CancelFitException,
                   CancelStepException, CancelTrainException, CancelValidException, CategoryBlock, CategoryMap,
                   CheckpointCallback, ClassificationInterpretation, ColReader, ColSplitter, CrossEntropyLossFlat,
                   CutMix, DataBlock, DataBlockError, DataLoaders, Datasets, Dice, DiceMulti, DistributedDL,
                   DistributedTrainer, EVENTS, EarlyStoppingCallback, EndSplitter, ExperimentCallback, ExportError,
                   F1Score, F1ScoreMulti, FolderSplitter, ForegroundAcc, FrozenFeatureCache, FuncSplitter,
                   GradientAccumulation, GradientClip, GrandparentSplitter, IndexSplitter, JaccardCoeff, JaccardMulti,
                   L1LossFlat, LRFinder, LabelSmoothingCrossEntropy, LabelSmoothingCrossEntropyFlat, Learner,
                   MLflowCallback, MSELossFlat, Metric, MixUp, MultiCategoryBlock, NonFiniteLossWarning,
                   NotRegisteredError, OneCycleScheduler, ParamScheduler, Perplexity, Precision, ProgressCallback,
                   R2Score, RandomSplitter, Recall, Recorder, ReduceLROnPlateau, RegexLabeller, Registry,
                   RegressionBlock, RocAuc, RocAucBinary, SaveModelCallback, ShowGraphCallback, SigmoidRange,
                   SuggestedLRs, TensorBoardCallback, TensorLoader, TerminateOnNaNCallback, TorchMetric,
                   TrackerCallback, TrainTestSplitter, TransformBlock, WandbCallback, accuracy, accuracy_multi,
                   as_metric, atomic_torch_save, atomic_write, batch_size, check_split, combine_scheds, default_device,
                   default_num_workers, default_splitter, describe_training_loop, distrib_barrier, emb_sizes,
                   emb_sz_rule, error_rate, exp_rmspe, flat_cos_scheduler, foreground_acc, get_dls_class, get_emb_sz,
                   get_files, get_loss_class, get_model_builder, get_text_files, is_rank0, load_learner, mae,
                   make_loader, minimum, mse, msle, num_distrib, parent_label, rank_distrib, register_dls,
                   register_learner, register_loss, register_model, register_tokenizer, register_transform, rmse,
                   sched_const, sched_cos, sched_exp, sched_lin, set_seed, native_bf16, reuse_cpu_memory, sgdr_scheduler, sigmoid_range, slide,
                   spread_lr, steep, to_cpu, to_device, top_k_accuracy, trainable_params, Adam, HeadFit, SmallDataWarning, using_attr, valley, whole_set)
from .core import EMACallback, ProfileReport, ProfilerCallback, ShortEpochCallback, StepLimitCallback, StepsLoader, ValidateEveryCallback  # issue 27
from .core import __all__ as _core_all
from .core import (ActivationStats, ConvLayer, Flatten, Hook, HookCallback, Hooks, NormType, ResBlock, SEModule,  # hooks
                   init_cnn, hook_output, hook_outputs, model_sizes, num_features_model, sequential)
from .datasets import URLs, find_data, untar_data

from .core import (DataLoader, F, Image, Path, Tensor, array, first, math, nn, noop, np, os, partial, pd, random, re,  # lesson names
                   tensor, torch)
from .core.lesson_names import lesson_attr as _lesson_attr
from .core import DeviceLoader, Module, SGD  # dls.train's type; fastai's Module (no super().__init__()) and SGD
__all__ = ["__version__", "URLs", "untar_data", "find_data", *_core_all]


def __getattr__(name: str):
    """Serve ``plt`` on first use (see learnkit.core.lesson_names)."""
    return _lesson_attr(name, __name__)
