"""Built-in callbacks, one concept per module."""
from .checkpoint import CheckpointCallback
from .ema import EMACallback
from .experiment import ExperimentCallback
from .logging import CSVLogger
from .mixup import CutMix, MixUp
from .mlflow import MLflowCallback
from .profiler import ProfileReport, ProfilerCallback
from .progress import ProgressCallback
from .recorder import NonFiniteLossWarning, Recorder
from .lr_finder import LRFinder, SuggestedLRs, minimum, slide, steep, valley
from .schedule import (OneCycleScheduler, ParamScheduler, combine_scheds, flat_cos_scheduler, sched_const, sched_cos,
                       sched_exp, sched_lin, sgdr_scheduler)
from .show_graph import ShowGraphCallback
from .steps import ShortEpochCallback, StepLimitCallback, ValidateEveryCallback
from .tensorboard import TensorBoardCallback
from .tracking import (EarlyStoppingCallback, ReduceLROnPlateau, SaveModelCallback, TerminateOnNaNCallback,
                       TrackerCallback)
from .training import GradientAccumulation, GradientClip
from .wandb import WandbCallback

__all__ = [
    "CheckpointCallback", "CSVLogger", "ProgressCallback", "NonFiniteLossWarning", "Recorder", "LRFinder", "OneCycleScheduler", "ParamScheduler", "SuggestedLRs",
    "combine_scheds", "sched_cos", "sched_exp", "sched_lin", "EarlyStoppingCallback", "SaveModelCallback",
    "TerminateOnNaNCallback", "TrackerCallback", "GradientAccumulation", "GradientClip", "MixUp", "CutMix",
    "flat_cos_scheduler", "sgdr_scheduler", "sched_const", "minimum", "steep", "valley", "slide", "ShowGraphCallback",
    "ReduceLROnPlateau", "ExperimentCallback", "TensorBoardCallback", "MLflowCallback", "WandbCallback",
    "ShortEpochCallback", "StepLimitCallback", "ValidateEveryCallback", "EMACallback",
    "ProfilerCallback", "ProfileReport",
]
