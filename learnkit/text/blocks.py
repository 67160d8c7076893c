"""`TextBlock`: texts on the `DataBlock` pipeline, batched like `TextDataLoaders` (it is what they build on).

A `DataBlock` whose input is a `TextBlock` reads the text of every item (a path: the file; a string: itself;
a data-frame row: ``text_cols``), tokenises each text once when the loaders are built (the word vocabulary
from the training texts only), and gives a `TextDataLoaders`: padded batches bucketed by length, so
`text_classifier_learner`, ``predict``, ``show_batch`` and `load_learner` work as with
`TextDataLoaders.from_df`.

>>> import pandas as pd
>>> from learnkit.core import CategoryBlock, ColReader, ColSplitter, DataBlock
>>> df = pd.DataFrame({"text": ["good film", "bad film", "great", "awful"], "label": ["pos", "neg", "pos", "neg"],
...                    "is_valid": [False, False, True, True]})
>>> dblock = DataBlock(blocks=(TextBlock.from_df("text", tok="words", min_freq=1), CategoryBlock),
...                    get_y=ColReader("label"), splitter=ColSplitter("is_valid"))
>>> dls = dblock.dataloaders(df, bs=2, device="cpu")
>>> type(dls).__name__, dls.vocab, dls.tokenizer.vocab.itos
('TextDataLoaders', ['neg', 'pos'], ['xxpad', 'xxunk', 'film', 'bad', 'good'])
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..core.block import CategoryBlock, TransformBlock
from ..core.blockdata import DataBlockError, item_name
from .data import TextDataLoaders, make_tokenizer, read_text
from .tokenize import clean_text
from ..core.paths import expand_path

__all__ = ["TextBlock"]


class TextBlock(TransformBlock):
    """A text per item, tokenised by ``tok`` (``"words"``, ``"minilm"``, a Hugging Face folder or a tokenizer
    object; see `TextDataLoaders`). ``min_freq``/``max_vocab`` shape the word vocabulary (built on the
    training split), ``max_len``/``truncation`` cut long texts, ``encoding`` reads files, ``text_cols`` are the
    columns read from a data-frame row when no ``get_x`` is given (several are joined by a newline).

    >>> block = TextBlock.from_df(["title", "review"], tok="words", min_freq=1)
    >>> block.text_of(pd.Series({"title": "Wow", "review": "Great  film!<br />Loved it."}))
    'Wow\\nGreat film!\\nLoved it.'
    """

    dls_type = TextDataLoaders

    def __init__(self, tok: Any = "minilm", max_len: int | None = None, min_freq: int = 3,
                 max_vocab: int = 30_000, truncation: str = "head_tail", encoding: str = "utf-8",
                 text_cols: str | Sequence[str] | None = None, vocab: Sequence[str] | None = None,
                 is_lm: bool = False, seq_len: int = 72):
        super().__init__()
        #: ``is_lm``: a language model's input (the only block; `LMDataLoader` batches of ``seq_len`` tokens);
        #: ``vocab``: the token list of a word tokenizer to reuse (a language model's ``dls_lm.vocab``)
        self.vocab, self.is_lm, self.seq_len = vocab, is_lm, seq_len
        self.tok, self.max_len, self.min_freq, self.max_vocab = tok, max_len, min_freq, max_vocab
        self.truncation, self.encoding = truncation, encoding
        self.text_cols = [text_cols] if isinstance(text_cols, str) else (list(text_cols) if text_cols else None)
        self.path: Path | None = None
        #: the fitted tokenizer, set when the loaders are built
        self.tokenizer: Any = None

    @classmethod
    def from_folder(cls, path: str | os.PathLike, tok: Any = "minilm", max_len: int | None = None,
                    min_freq: int = 3, max_vocab: int = 30_000, truncation: str = "head_tail",
                    encoding: str = "utf-8", vocab: Sequence[str] | None = None, is_lm: bool = False,
                    seq_len: int = 72) -> "TextBlock":
        """A block for ``.txt`` files under ``path`` (items from `get_text_files`)."""
        block = cls(tok, max_len, min_freq, max_vocab, truncation, encoding, vocab=vocab, is_lm=is_lm,
                    seq_len=seq_len)
        block.path = expand_path(path)
        return block

    @classmethod
    def from_df(cls, text_cols: str | Sequence[str], tok: Any = "minilm", max_len: int | None = None,
                min_freq: int = 3, max_vocab: int = 30_000, truncation: str = "head_tail",
                vocab: Sequence[str] | None = None, is_lm: bool = False, seq_len: int = 72) -> "TextBlock":
        """A block for the text column(s) ``text_cols`` of a data frame (its rows are the items)."""
        return cls(tok, max_len, min_freq, max_vocab, truncation, text_cols=text_cols, vocab=vocab, is_lm=is_lm,
                   seq_len=seq_len)

    # --- one value -----------------------------------------------------------------------------------
    def text_of(self, value: Any) -> str:
        """The cleaned text of a value: a file's contents (a clear error names a badly encoded file), a string,
        or the ``text_cols`` of a data-frame row; a missing value (``None``/NaN) is the empty text."""
        if isinstance(value, Path):
            return clean_text(read_text(value, self.encoding))
        if isinstance(value, str):
            return clean_text(value)
        if value is None or (isinstance(value, float) and value != value):
            return ""
        if isinstance(value, pd.Series):
            if not self.text_cols:
                raise TypeError(f"TextBlock got a data-frame row ({item_name(value)}); name its text column with "
                                "TextBlock.from_df('text') or get_x=ColReader('text')")
            missing = [c for c in self.text_cols if c not in value.index]
            if missing:
                raise KeyError(f"text column {missing[0]!r} not found; the columns are {list(value.index)}")
            return "\n".join(self.text_of(value[c]) for c in self.text_cols).strip()
        raise TypeError(f"TextBlock needs a text, a file path or a data-frame row, got {type(value).__name__} "
                        f"{item_name(value)}")

    def encode(self, value: Any) -> torch.Tensor:
        """The token ids of one value (the loaders encode all texts at once; this is for `DataBlock.summary`)."""
        if self.tokenizer is None:
            if isinstance(self.tok, str) and self.tok == "words":
                raise RuntimeError("TextBlock(tok='words') has no vocabulary yet: it is built on the training "
                                   "texts by DataBlock.dataloaders")
            self.tokenizer = make_tokenizer(self.tok, [], self.max_len, self.min_freq, self.max_vocab, self.truncation)
        return torch.tensor(self.tokenizer.encode_batch([self.text_of(value)])[0], dtype=torch.long)

    def decode(self, x: Any) -> str:
        return self.tokenizer.decode([int(i) for i in x if int(i) != self.tokenizer.pad_id])

    # --- the loaders ---------------------------------------------------------------------------------
    def dataloaders(self, dsets: Any, bs: int = 64, seed: int | None = 42,
                    device: str | torch.device | None = None) -> TextDataLoaders:
        """The `TextDataLoaders` of a DataBlock's datasets (called by `DataBlock.dataloaders`): every text read
        and tokenised once, the word vocabulary built on the training split."""
        blocks = dsets.blocks
        if self.is_lm:
            return self._lm_dataloaders(dsets, bs, seed, device)
        if len(blocks) != 2 or dsets.n_inp != 1 or not isinstance(blocks[1], CategoryBlock):
            raise DataBlockError(f"a DataBlock with a TextBlock needs blocks=(TextBlock, CategoryBlock), got "
                                 f"{[type(b).__name__ for b in blocks]}")
        parts = [d for d in (dsets.train, dsets.valid) if d is not None]
        texts, labels, sources = [], [], []
        for d in parts:
            get_x, get_y = d.getters
            for i in range(len(d)):
                o = d.item(i)
                try:
                    texts.append(self.text_of(get_x(o) if get_x is not None else o))
                    labels.append(blocks[1].decode(blocks[1].encode(get_y(o) if get_y is not None else o)))
                except (ValueError, OSError):  # read_text's message names the file
                    raise
                except Exception as e:  # noqa: BLE001 - user getters can raise anything; name the item
                    raise DataBlockError(f"reading the text of item {item_name(o)} failed: "
                                         f"{type(e).__name__}: {e}") from e
                sources.append(_source(o))
        n_train = len(dsets.train)
        dls = self.dls_type.from_texts(
            texts, labels, range(n_train), range(n_train, len(texts)), sources=sources, vocab=blocks[1].vocab,
            tok=self.tok, max_len=self.max_len, min_freq=self.min_freq, max_vocab=self.max_vocab,
            truncation=self.truncation, bs=bs, seed=seed, device=device, allow_empty_valid=dsets.valid is None,
            text_vocab=self.vocab)
        self.tokenizer = dls.tokenizer
        return dls

    def _lm_dataloaders(self, dsets: Any, bs: int, seed: int | None,
                        device: str | torch.device | None) -> TextDataLoaders:
        """A language model's loaders: the texts of both splits, no labels."""
        if len(dsets.blocks) != 1:
            raise DataBlockError(f"a language model's TextBlock(is_lm=True) is the only block (the targets are the "
                                 f"next tokens), got {[type(b).__name__ for b in dsets.blocks]}: drop the label "
                                 "block and get_y")
        texts, sources = [], []
        for d in (d for d in (dsets.train, dsets.valid) if d is not None):
            get_x = d.getters[0]
            for i in range(len(d)):
                o = d.item(i)
                texts.append(self.text_of(get_x(o) if get_x is not None else o))
                sources.append(_source(o))
        n_train = len(dsets.train)
        dls = self.dls_type.from_texts(texts, None, range(n_train), range(n_train, len(texts)), sources=sources,
                                       tok=self.tok, min_freq=self.min_freq, max_vocab=self.max_vocab, bs=bs,
                                       seed=seed, device=device, is_lm=True, seq_len=self.seq_len,
                                       text_vocab=self.vocab)
        self.tokenizer = dls.tokenizer
        return dls

    def export_config(self) -> dict:
        raise TypeError("a TextBlock is an input block; the exported TextDataLoaders holds its tokenizer")

    def __repr__(self) -> str:
        return f"TextBlock(tok={self.tok!r}, max_len={self.max_len}, min_freq={self.min_freq})"


def _source(o: Any) -> Any:
    """Where a text came from, for error messages and interpretation tables: a file, or a data-frame row."""
    if isinstance(o, pd.Series):
        return f"row {o.name}"
    return str(o) if isinstance(o, (str, Path)) else o
