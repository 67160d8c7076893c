"""`Vocab`: the word list of a from-scratch text model, built from the training texts only.

Words seen fewer than ``min_freq`` times, or beyond the ``max_vocab`` most frequent, map to ``xxunk``.
Index 0 is ``xxpad`` (padding) and index 1 is ``xxunk`` (unknown word), so a vocabulary always has them.

>>> v = Vocab.build([["a", "good", "film"], ["a", "bad", "film"]], min_freq=2)
>>> v.itos
['xxpad', 'xxunk', 'a', 'film']
>>> v.numericalize(["a", "great", "film"])
[2, 1, 3]
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from ..core.validation import check_int

__all__ = ["Vocab", "PAD", "UNK", "BOS", "SPECIALS"]

PAD, UNK = "xxpad", "xxunk"
#: the token a language model's word tokenizer puts before each document (an ordinary vocabulary entry)
BOS = "xxbos"
SPECIALS = (PAD, UNK)


class Vocab:
    """A fixed list of tokens (``itos``) and its inverse (``stoi``); unknown tokens map to ``xxunk``.

    Build it with `Vocab.build` from tokenised *training* texts; rebuild an exported one with ``Vocab(itos)``.

    >>> v = Vocab(["xxpad", "xxunk", "film", "good"])
    >>> len(v), v.numericalize(["good", "bad"]), v.textify([3, 2, 0, 0]), "film" in v
    (4, [3, 1], ['good', 'film'], True)
    """

    def __init__(self, itos: Sequence[str]):
        itos = list(itos)
        if itos[: len(SPECIALS)] != list(SPECIALS):
            raise ValueError(f"a vocabulary must start with the special tokens {list(SPECIALS)}, got {itos[:2]}")
        if len(set(itos)) != len(itos):
            dup = next(t for t, n in Counter(itos).items() if n > 1)
            raise ValueError(f"the vocabulary lists the token {dup!r} more than once")
        self.itos = itos
        self.stoi = {t: i for i, t in enumerate(itos)}
        self.pad_id, self.unk_id = self.stoi[PAD], self.stoi[UNK]

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 3, max_vocab: int = 30_000) -> "Vocab":
        """The specials, then every token seen at least ``min_freq`` times, most frequent first (ties in
        alphabetical order, so the same texts always give the same vocabulary), at most ``max_vocab`` in all."""
        check_int("min_freq", min_freq)
        check_int("max_vocab", max_vocab, low=len(SPECIALS) + 1, what="(the special tokens count)")
        counts: Counter = Counter()
        for toks in token_lists:
            counts.update(toks)
        for s in SPECIALS:
            counts.pop(s, None)
        kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + kept[: max_vocab - len(SPECIALS)])

    def numericalize(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; tokens not in the vocabulary become ``xxunk``."""
        unk = self.unk_id
        return [self.stoi.get(t, unk) for t in tokens]

    def textify(self, ids: Iterable[int], skip_pad: bool = True) -> list[str]:
        return [self.itos[int(i)] for i in ids if not (skip_pad and int(i) == self.pad_id)]

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        shown = ", ".join(self.itos[len(SPECIALS): len(SPECIALS) + 8])
        return f"Vocab({len(self)} tokens: {', '.join(SPECIALS)}, {shown}, ...)"
