"""learnkit: strong models in three lines, every part replaceable.

>>> from learnkit import Learner, DataLoaders   # the core
>>> from learnkit.vision import *               # a task: ImageDataLoaders, vision_learner, ...
"""
__version__ = "0.1.0"

from .core import *  # noqa: F403
from .core import __all__ as _core_all
from .datasets import URLs, untar_data

__all__ = ["__version__", "URLs", "untar_data", *_core_all]
