"""Built-in callbacks, one concept per module."""
from .checkpoint import CheckpointCallback
from .logging import CSVLogger
from .progress import ProgressCallback
from .recorder import Recorder
from .schedule import (LRFinder, OneCycleScheduler, ParamScheduler, SuggestedLRs, combine_scheds, sched_cos,
                       sched_exp, sched_lin)
from .tracking import EarlyStoppingCallback, SaveModelCallback, TerminateOnNaNCallback, TrackerCallback
from .training import GradientAccumulation, GradientClip

__all__ = [
    "CheckpointCallback", "CSVLogger", "ProgressCallback", "Recorder", "LRFinder", "OneCycleScheduler", "ParamScheduler", "SuggestedLRs",
    "combine_scheds", "sched_cos", "sched_exp", "sched_lin", "EarlyStoppingCallback", "SaveModelCallback",
    "TerminateOnNaNCallback", "TrackerCallback", "GradientAccumulation", "GradientClip",
]
