"""Built-in callbacks, one concept per module."""
from .checkpoint import CheckpointCallback
from .experiment import ExperimentCallback
from .logging import CSVLogger
from .mlflow import MLflowCallback
from .progress import ProgressCallback
from .recorder import Recorder
from .schedule import (LRFinder, OneCycleScheduler, ParamScheduler, SuggestedLRs, combine_scheds, sched_cos,
                       sched_exp, sched_lin)
from .tracking import EarlyStoppingCallback, SaveModelCallback, TerminateOnNaNCallback, TrackerCallback
from .tensorboard import TensorBoardCallback
from .training import GradientAccumulation, GradientClip
from .wandb import WandbCallback

__all__ = [
    "CheckpointCallback", "CSVLogger", "ProgressCallback", "Recorder", "LRFinder", "OneCycleScheduler", "ParamScheduler", "SuggestedLRs",
    "combine_scheds", "sched_cos", "sched_exp", "sched_lin", "EarlyStoppingCallback", "SaveModelCallback",
    "TerminateOnNaNCallback", "TrackerCallback", "GradientAccumulation", "GradientClip",
    "ExperimentCallback", "TensorBoardCallback", "MLflowCallback", "WandbCallback",
]
