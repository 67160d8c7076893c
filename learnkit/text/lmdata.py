"""`LMDataLoader`: batches for a language model, as in fastai.

Every epoch the documents are shuffled (training only) and concatenated into one stream of token ids; the
stream is cut into ``bs`` contiguous rows, and a batch is the next ``seq_len`` columns of every row, with the
targets shifted by one token. Row ``r`` of batch ``i + 1`` continues row ``r`` of batch ``i``, so a model that
keeps its hidden state between batches (`AWD_LSTM` with `ModelResetter`) reads each row as one long text.

>>> dl = LMDataLoader([[1, 2, 3], [4, 5, 6, 7], [8, 9]], bs=2, seq_len=2, shuffle=False)
>>> [(x.tolist(), y.tolist()) for x, y in dl]    # stream 1..9: rows [1 2 3 4] and [5 6 7 8]
[([[1, 2], [5, 6]], [[2, 3], [6, 7]]), ([[3, 4], [7, 8]], [[4, 5], [8, 9]])]
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..core.validation import check_batch_size, check_int
from .tokenize import WordTokenizer
from .vocab import BOS, Vocab

__all__ = ["LMDataLoader", "lm_loaders", "token_list"]

#: the ``max_len`` of a language model's word tokenizer: documents are never truncated
LM_MAX_LEN = 2**31 - 1


class LMDataLoader:
    """Language-model batches ``(x [bs, seq_len], y [bs, seq_len])`` over tokenised documents ``docs``.

    Args:
        docs: the token ids of each document (lists or 1-d tensors).
        bs: the number of contiguous rows the stream is cut into (the batch size).
        seq_len: the columns per batch (the last batch of an epoch may be shorter).
        shuffle: shuffle the documents before concatenating them, anew every epoch (training).
        seed: the seed of that shuffling (a private generator; the global RNG does not matter).
        rank, world_size: under DDP, the stream is cut into ``world_size * bs`` rows and this loader reads rows
            ``rank * bs`` to ``(rank + 1) * bs - 1`` (`for_rank`; `DistributedTrainer` does it for training).

    Each row holds ``(n - 1) // bs`` tokens (``n``: all the tokens) cut down to a multiple of ``seq_len``, so
    that every batch has the same shape (`Learner.get_preds` concatenates them; a compiled model sees one
    shape); fastai keeps a shorter last batch instead. The few tokens left over wait for another epoch's
    order. A corpus shorter than ``bs * seq_len`` gives one batch of shorter rows.

    >>> dl = LMDataLoader([list(range(100))], bs=4, seq_len=10, shuffle=False)
    >>> len(dl), [x.shape[1] for x, _ in dl]          # rows of 24 tokens: 2 batches of 10
    (2, [10, 10])
    """

    def __init__(self, docs: Sequence[Sequence[int]], bs: int = 64, seq_len: int = 72, shuffle: bool = False,
                 seed: int | None = 42, rank: int = 0, world_size: int = 1):
        check_batch_size(bs)
        check_int("seq_len", seq_len)
        check_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is not one of the {world_size} ranks (0 to {world_size - 1})")
        self.docs = [torch.as_tensor(d, dtype=torch.long).reshape(-1) for d in docs]
        self.bs, self.seq_len, self.shuffle = bs, seq_len, shuffle
        self.rank, self.world_size = rank, world_size
        self.n_tokens = sum(len(d) for d in self.docs)
        n_rows = bs * world_size
        if self.n_tokens - 1 < n_rows:
            across = f" ({world_size} ranks of {bs})" if world_size > 1 else ""
            raise ValueError(f"a language-model loader of {n_rows} rows{across} needs more than {n_rows} tokens, but "
                             f"the {len(self.docs)} document(s) hold {self.n_tokens}: lower bs or add text")
        self.seed = seed if seed is not None else int(torch.seed() % 2**62)
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed)
        row_len = (self.n_tokens - 1) // n_rows
        self.row_len = row_len if row_len < seq_len else row_len - row_len % seq_len

    def for_rank(self, rank: int, world_size: int, seed: int | None = None) -> "LMDataLoader":
        """This loader as rank ``rank`` of ``world_size`` reads it under DDP: every rank draws the same document
        order (``seed``, the same on every rank; default this loader's, then ``seed + epoch`` after
        `set_epoch`), cuts the stream into ``world_size * bs`` rows and keeps rows ``rank * bs`` to
        ``(rank + 1) * bs - 1``. Every rank has as many batches, and together they read the stream once.

        >>> dl = LMDataLoader([list(range(9))], bs=1, seq_len=2)
        >>> [x.tolist() for x, _ in dl.for_rank(1, 2)]    # rows [0 1 2 3] and [4 5 6 7]: rank 1 reads the second
        [[[4, 5]], [[6, 7]]]
        """
        return LMDataLoader(self.docs, bs=self.bs, seq_len=self.seq_len, shuffle=self.shuffle,
                            seed=self.seed if seed is None else seed, rank=rank, world_size=world_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s document order (``seed + epoch``): the same on every rank under DDP."""
        self.generator.manual_seed(self.seed + epoch)

    def __len__(self) -> int:
        return -(-self.row_len // self.seq_len)

    @property
    def n_docs(self) -> int:
        return len(self.docs)

    def stream(self) -> torch.Tensor:
        """This epoch's concatenated documents (in a new random order when shuffling)."""
        order = (torch.randperm(len(self.docs), generator=self.generator).tolist() if self.shuffle
                 else range(len(self.docs)))
        return torch.cat([self.docs[i] for i in order])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        s, n_rows = self.stream(), self.bs * self.world_size
        n, mine = n_rows * self.row_len, slice(self.rank * self.bs, (self.rank + 1) * self.bs)
        x, y = s[:n].view(n_rows, self.row_len)[mine], s[1: n + 1].view(n_rows, self.row_len)[mine]
        for i in range(0, self.row_len, self.seq_len):
            yield x[:, i: i + self.seq_len].contiguous(), y[:, i: i + self.seq_len].contiguous()

    def __repr__(self) -> str:
        ranks = f", rank {self.rank}/{self.world_size}" if self.world_size > 1 else ""
        return (f"LMDataLoader({self.n_docs} documents, {self.n_tokens} tokens, bs={self.bs}, "
                f"seq_len={self.seq_len}, shuffle={self.shuffle}{ranks})")


def lm_loaders(texts: Sequence[str], train_idx: Sequence[int], valid_idx: Sequence[int],
               sources: Sequence[Any] | None, tok: Any, min_freq: int, max_vocab: int, bs: int, seed: int | None,
               seq_len: int, text_vocab: Sequence[str] | None) -> tuple[LMDataLoader, LMDataLoader | None, Any]:
    """The training and validation `LMDataLoader` of cleaned ``texts`` and their tokenizer: ``tok="words"``
    learns a vocabulary on the training texts (or takes ``text_vocab``) and puts ``xxbos`` before each text;
    a folder is a causal language model's tokenizer (`learnkit.text.causal.CausalTokenizer`).

    >>> train, valid, tok = lm_loaders(["a b a", "b a b", "a a"], [0, 1], [2], None, "words", 1, 100, 2, 0, 2, None)
    >>> tok.vocab.itos, train.n_tokens, valid.n_tokens
    (['xxpad', 'xxunk', 'a', 'b', 'xxbos'], 8, 3)
    """
    sources = list(sources) if sources is not None else list(range(len(texts)))
    keep = {i for i, t in enumerate(texts) if t}
    if len(keep) < len(texts):
        first = next(i for i, t in enumerate(texts) if not t)
        warnings.warn(f"skipping {len(texts) - len(keep)} empty text(s), e.g. {sources[first]}", stacklevel=5)
    train_idx, valid_idx = [i for i in train_idx if i in keep], [i for i in valid_idx if i in keep]
    if not train_idx:
        raise ValueError("a language model needs training texts, and the training split has none")
    if isinstance(tok, str) and tok == "words":
        tokens = [[BOS, *t] for t in WordTokenizer.split_batch(texts)]
        vocab = (_as_vocab(text_vocab) if text_vocab is not None else
                 Vocab.build([tokens[i] for i in train_idx], min_freq=min_freq, max_vocab=max_vocab))
        tokenizer = WordTokenizer(vocab, max_len=LM_MAX_LEN)
        ids = tokenizer.encode_tokens(tokens)
    else:
        if isinstance(tok, (str, os.PathLike)):  # the folder of a causal language model (GPT-2 style)
            from .causal import CausalTokenizer
            tokenizer = CausalTokenizer(tok)
        else:
            tokenizer = tok
        if not hasattr(tokenizer, "encode_docs"):
            raise TypeError(f"the tokenizer {tokenizer!r} cannot tokenise whole documents for a language model: "
                            "use tok='words' or the folder of a causal language model (GPT-2 style)")
        ids = tokenizer.encode_docs(texts)
    train = LMDataLoader([ids[i] for i in train_idx], bs=bs, seq_len=seq_len, shuffle=True, seed=seed)
    valid = None
    if valid_idx:  # a small validation set gets fewer rows rather than an error
        n_valid = sum(len(ids[i]) for i in valid_idx)
        if n_valid < 2:
            raise ValueError(f"the validation texts hold {n_valid} token(s); a language model needs at least 2")
        valid = LMDataLoader([ids[i] for i in valid_idx], bs=min(bs, n_valid - 1), seq_len=seq_len)
    return train, valid, tokenizer


def token_list(tokenizer: Any) -> list[str]:
    """The tokens of a tokenizer by id (a language model's ``dls.vocab``).

    >>> token_list(WordTokenizer(Vocab(["xxpad", "xxunk", "xxbos", "film"])))
    ['xxpad', 'xxunk', 'xxbos', 'film']
    """
    if isinstance(getattr(tokenizer, "vocab", None), Vocab):
        return list(tokenizer.vocab.itos)
    if hasattr(tokenizer, "tokens"):
        return list(tokenizer.tokens())
    raise TypeError(f"cannot list the tokens of {tokenizer!r}: give it a tokens() method")


def _as_vocab(text_vocab: Any) -> Vocab:
    if isinstance(text_vocab, Vocab):
        return text_vocab
    if isinstance(text_vocab, str) or not isinstance(text_vocab, Sequence):
        raise TypeError(f"text_vocab must be a token list (a language model's dls_lm.vocab), got {text_vocab!r}")
    return Vocab(text_vocab)
