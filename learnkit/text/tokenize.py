"""Cleaning raw review text, truncating token sequences, and the word tokenizer of from-scratch models.

A *tokenizer* here is any object with ``encode_batch(texts) -> list[list[int]]`` (each list already
truncated to ``max_len``), ``decode(ids) -> str``, ``pad_id``, ``vocab_size``, ``max_len`` and
``export_config() -> dict`` (its constructor's keyword arguments, JSON values). A class decorated with
``@register_tokenizer`` is exported and rebuilt by `load_learner` (`tokenizer_config` / `tokenizer_from_config`;
a ``from_config(config)`` classmethod is used when the class has one). Two ship with learnkit:
`WordTokenizer` (``"words"``: words + a `Vocab` built from the training texts, no extra dependency) and
`learnkit.text.pretrained.PretrainedTokenizer` (``"pretrained"``: the WordPiece tokenizer of a pretrained encoder).

>>> clean_text("Great film!<br /><br />Loved   it .")
'Great film!\\nLoved it .'
>>> WordTokenizer.split("Don't miss it: 10/10!")
["don't", 'miss', 'it', ':', '10', '/', '10', '!']
>>> truncate(list(range(10)), 4, "head_tail")
[0, 7, 8, 9]
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..core.paths import expand_path
from ..core.registry import TOKENIZER_REGISTRY, register_tokenizer
from .vocab import Vocab
from ..core.validation import check_int

__all__ = ["read_text", "make_tokenizer", "clean_text", "truncate", "TRUNCATIONS", "WordTokenizer", "tokenizer_from_config", "tokenizer_config",
           "register_tokenizer"]

_BR = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_SPACES = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\s*\n\s*")


def clean_text(text: str) -> str:
    """Turn HTML line breaks (``<br />``) into newlines, collapse runs of spaces and blank lines, strip.

    >>> clean_text("  A <b>great</b>   film.<BR/>\\n\\n  Loved it.  ")      # other HTML tags are kept
    'A <b>great</b> film.\\nLoved it.'
    """
    text = _BR.sub("\n", text)
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n", text).strip()


TRUNCATIONS = ("head", "tail", "head_tail")


def truncate(ids: Sequence[int], max_len: int, how: str = "head_tail") -> list[int]:
    """At most ``max_len`` ids: the first (``head``), the last (``tail``), or the first quarter and the last
    three quarters of the budget (``head_tail``: reviews tend to state their verdict at the end, and
    Sun et al. 2019, *How to Fine-Tune BERT for Text Classification*, found head+tail best on IMDB).

    >>> ids = list(range(10))
    >>> truncate(ids, 4, "head"), truncate(ids, 4, "tail"), truncate(ids, 4, "head_tail")
    ([0, 1, 2, 3], [6, 7, 8, 9], [0, 7, 8, 9])
    """
    ids = list(ids)
    if len(ids) <= max_len:
        return ids
    if how == "head":
        return ids[:max_len]
    if how == "tail":
        return ids[len(ids) - max_len:]
    if how == "head_tail":
        n_head = max_len // 4
        return ids[:n_head] + ids[len(ids) - (max_len - n_head):]
    raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {how!r}")


def _check_max_len(max_len: Any, lo: int = 1) -> int:
    return check_int("max_len", max_len, low=lo)


@register_tokenizer("words")
class WordTokenizer:
    """Lower-cased words, numbers and punctuation marks, numericalised with a `Vocab`.

    Build it from the training texts with `WordTokenizer.train` (never from validation texts: that would
    leak them into the vocabulary). Reviews longer than ``max_len`` tokens are truncated (``truncation``).

    >>> tok = WordTokenizer.train(["a good film", "a bad film"], min_freq=1)
    >>> tok.encode_batch(["A good, good film"])
    [[2, 5, 1, 5, 3]]
    >>> tok.decode([2, 5, 1, 5, 3])
    'a good xxunk good film'
    """

    _TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+|[^\w\s]")

    def __init__(self, vocab: Vocab, max_len: int = 512, truncation: str = "head_tail"):
        if not isinstance(vocab, Vocab):
            raise TypeError(f"vocab must be a learnkit Vocab, got {type(vocab).__name__}")
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        self.vocab, self.max_len, self.truncation = vocab, _check_max_len(max_len), truncation

    @classmethod
    def split(cls, text: str) -> list[str]:
        """The tokens of one text: lower-cased words (with their contraction, ``don't``), digits, punctuation."""
        return cls._TOKEN.findall(text.lower())

    @classmethod
    def split_batch(cls, texts: Sequence[str], n_workers: int | None = None) -> list[list[str]]:
        """`split` of each text. From ``PARALLEL_MIN`` texts on, chunks go to a process pool (``n_workers``,
        default the CPUs, at most 4): the regex work holds the GIL, so threads would not help; below that, or
        where worker processes cannot start, the texts are split here.

        >>> WordTokenizer.split_batch(["A b.", "c"])
        [['a', 'b', '.'], ['c']]
        """
        texts = list(texts)
        n = _n_workers(n_workers) if len(texts) >= cls.PARALLEL_MIN else 1
        if n <= 1:
            findall = cls._TOKEN.findall
            return [findall(t.lower()) for t in texts]
        from concurrent.futures import ProcessPoolExecutor
        size = -(-len(texts) // (4 * n))
        chunks = [texts[i: i + size] for i in range(0, len(texts), size)]
        with ProcessPoolExecutor(n) as pool:
            return [toks for part in pool.map(_split_chunk, chunks) for toks in part]

    #: from how many texts `split_batch` uses a process pool
    PARALLEL_MIN = 20_000

    @classmethod
    def train(cls, texts: Iterable[str], min_freq: int = 3, max_vocab: int = 30_000, max_len: int = 512,
              truncation: str = "head_tail") -> "WordTokenizer":
        """Build the vocabulary from ``texts`` (the training texts) and return the tokenizer."""
        return cls.from_tokens(cls.split_batch(list(texts)), min_freq=min_freq, max_vocab=max_vocab,
                               max_len=max_len, truncation=truncation)

    @classmethod
    def from_tokens(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 3, max_vocab: int = 30_000,
                    max_len: int = 512, truncation: str = "head_tail") -> "WordTokenizer":
        """`train` on texts already split with `split_batch` (so a corpus is split only once)."""
        return cls(Vocab.build(token_lists, min_freq=min_freq, max_vocab=max_vocab), max_len=max_len,
                   truncation=truncation)

    @property
    def pad_id(self) -> int:
        return self.vocab.pad_id

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated; a text with no token becomes ``[xxunk]`` (never empty)."""
        return self.encode_tokens(self.split_batch(texts))

    def encode_tokens(self, token_lists: Iterable[Sequence[str]]) -> list[list[int]]:
        """`encode_batch` of texts already split with `split_batch`."""
        get, unk, max_len, how = self.vocab.stoi.get, self.vocab.unk_id, self.max_len, self.truncation
        out = []
        for toks in token_lists:
            ids = [get(t, unk) for t in toks]
            out.append((truncate(ids, max_len, how) if len(ids) > max_len else ids) or [unk])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab.textify(ids))

    def export_config(self) -> dict:
        return {"type": "words", "itos": self.vocab.itos, "max_len": self.max_len, "truncation": self.truncation}

    @classmethod
    def from_config(cls, config: dict) -> "WordTokenizer":
        """The tokenizer of `export_config` (the vocabulary from its ``itos``)."""
        return cls(Vocab(config["itos"]), max_len=config["max_len"], truncation=config["truncation"])

    def __repr__(self) -> str:
        return f"WordTokenizer({len(self.vocab)} tokens, max_len={self.max_len}, truncation={self.truncation!r})"


def _split_chunk(texts: list[str]) -> list[list[str]]:
    return [WordTokenizer._TOKEN.findall(t.lower()) for t in texts]


def _n_workers(n: int | None) -> int:
    if n is not None:
        return n
    from ..core.blockloader import workers_can_start
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, cpus) if workers_can_start()[0] else 1


def tokenizer_config(tok: Any) -> dict:
    """The JSON config of a tokenizer, what an export stores; fails, naming ``@register_tokenizer``, for a
    tokenizer whose class is not registered.

    >>> tokenizer_config(WordTokenizer.train(["a b"], min_freq=1, max_len=8))["type"]
    'words'
    """
    return TOKENIZER_REGISTRY.to_config(tok)


def tokenizer_from_config(config: dict) -> Any:
    """Rebuild a tokenizer from its `tokenizer_config` (the class registered under ``config["type"]``).

    >>> tok = WordTokenizer.train(["a good film"], min_freq=1, max_len=8)
    >>> tokenizer_from_config(tokenizer_config(tok)).encode_batch(["a film"]) == tok.encode_batch(["a film"])
    True
    """
    if isinstance(config, dict) and config.get("type") == "pretrained":
        from . import pretrained  # noqa: F401  (registers "pretrained"; it needs the text extra only when used)
    return TOKENIZER_REGISTRY.from_config(config)


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The text of a file, with a clear error naming the file when its bytes are not ``encoding``.

    >>> import tempfile; from pathlib import Path
    >>> f = Path(tempfile.mkdtemp()) / "review.txt"; _ = f.write_bytes("Très bon".encode("latin-1"))
    >>> read_text(f, encoding="latin-1")
    'Très bon'
    >>> read_text(f)
    Traceback (most recent call last):
    ValueError: .../review.txt: byte 0xe8 at position 2 is not valid utf-8 text. Pass encoding='latin-1' ...
    """
    path = expand_path(path)
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: byte 0x{data[e.start]:02x} at position {e.start} is not valid {encoding} text. "
                         f"Pass encoding='latin-1' (or the file's real encoding) to read it, or fix/remove the file."
                         ) from None


def make_tokenizer(tok: Any, train_texts: Sequence[str], max_len: int | None = None, min_freq: int = 3,
                   max_vocab: int = 30_000, truncation: str = "head_tail") -> Any:
    """The tokenizer that ``tok`` names, fitted on ``train_texts`` when it learns a vocabulary.

    >>> tok = make_tokenizer("words", ["a good film", "a bad film"], min_freq=2, max_len=16)
    >>> tok, tok.encode_batch(["A great film"])       # "great" was not in the training texts
    (WordTokenizer(4 tokens, max_len=16, truncation='head_tail'), [[2, 1, 3]])
    """
    if hasattr(tok, "encode_batch"):
        return tok
    if tok == "words":
        return WordTokenizer.train(train_texts, min_freq=min_freq, max_vocab=max_vocab,
                                   max_len=512 if max_len is None else max_len, truncation=truncation)
    if isinstance(tok, (str, os.PathLike)):
        from .pretrained import PretrainedTokenizer
        return PretrainedTokenizer(tok, max_len=max_len, truncation=truncation)
    raise TypeError(f"tok must be 'words', 'minilm', a model folder or a tokenizer object, got {tok!r}")
