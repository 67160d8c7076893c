"""Collaborative filtering: ratings tables, dot-product and neural recommenders.

>>> from learnkit.collab import *
>>> CollabDataLoaders.from_df, collab_learner, Learner, mse   # doctest: +ELLIPSIS
(<bound method ...>, <function collab_learner ...>, <class ...Learner'>, <function mse ...>)
"""
from ..core import *  # noqa: F403 - a task package re-exports the core names
from ..datasets import URLs, untar_data
from ..core import __all__ as _core_all
from .data import CollabDataLoaders
from .ids import UNKNOWN, IdMap, UnknownIdError
from .learner import BiasWeightDecay, CollabLearner, collab_learner, collab_splitter, recommend, similar_items
from .loader import TensorLoader
from .model import EmbeddingDotBias, EmbeddingNN, sigmoid_range

__all__ = [
    "URLs", "untar_data",
    "CollabDataLoaders", "IdMap", "UNKNOWN", "UnknownIdError", "BiasWeightDecay", "CollabLearner", "collab_learner",
    "collab_splitter", "recommend", "similar_items", "TensorLoader", "EmbeddingDotBias", "EmbeddingNN",
    "sigmoid_range",
    *_core_all,
]
