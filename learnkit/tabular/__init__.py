"""Tables: procs fitted on the training rows, entity embeddings, fast tensor batches.

>>> from learnkit.tabular import *
>>> TabularDataLoaders.from_csv, tabular_learner, Categorify, accuracy   # doctest: +ELLIPSIS
(<bound method ...>, <function tabular_learner ...>, <class ...Categorify'>, <function accuracy ...>)
"""
from ..core import *  # noqa: F403 - a task package re-exports the core names
from ..datasets import URLs, untar_data
from ..core import __all__ as _core_all
from .data import TabularDataLoaders, rows_to_df
from .learner import TabularLearner, fused_adamw, tabular_learner
from .model import TabularModel, tabular_config, tabular_model
from .processor import TabularProcessor
from .procs import (NA_CLASS, Categorify, Discretize, FillMissing, Normalize, TabularProc, UnseenCategoryWarning,
                    register_proc)
from .show import display_df
from .table import TabularLoader, TabularTensors
from .tabular_pandas import TabularPandas, TabularSplit
from .utils import add_datepart, cont_cat_split, range_of

__all__ = [
    "URLs", "untar_data",
    "TabularDataLoaders", "rows_to_df", "TabularLearner", "tabular_learner", "fused_adamw", "TabularModel",
    "tabular_model", "TabularProcessor", "NA_CLASS", "Categorify", "Discretize",
    "FillMissing", "Normalize", "TabularProc", "UnseenCategoryWarning", "register_proc", "display_df", "TabularLoader",
    "TabularTensors", "TabularPandas", "TabularSplit", "add_datepart", "cont_cat_split", "range_of",
    "tabular_config",
    *_core_all,
]
