"""Text generation: one sampling loop for every language model (`AWD_LSTM`, a Hugging Face causal LM).

`sample_next` picks the next token from a vector of logits: ``temperature=0`` is greedy (the arg-max, so
deterministic); otherwise the logits are divided by ``temperature``, cut to the ``top_k`` most likely tokens
and to the smallest set whose probabilities add up to ``top_p`` (nucleus sampling), and a token is drawn.
`generate` runs it ``n_words`` times through a ``step`` function that takes the new ids and returns the logits
of the token after them (the model keeps its own state: an LSTM's hidden state, a transformer's cache).

>>> logits = torch.tensor([0.0, 3.0, 1.0, 2.0])
>>> int(sample_next(logits, temperature=0))                        # greedy: the arg-max
1
>>> g = torch.Generator().manual_seed(0)
>>> sorted({int(sample_next(logits, top_k=2, generator=g)) for _ in range(200)})    # only the 2 most likely
[1, 3]
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..core.validation import check_int, check_number

__all__ = ["sample_next", "generate", "check_sampling"]


def check_sampling(n_words: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Clear errors for generation arguments that cannot work.

    >>> check_sampling(0, 1.0, None, None)
    Traceback (most recent call last):
    ValueError: n_words must be at least 1 (the number of tokens to generate), got 0
    """
    if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 1:
        raise ValueError(f"n_words must be at least 1 (the number of tokens to generate), got {n_words!r}")
    check_number("temperature", temperature, low=0)
    if top_k is not None:
        check_int("top_k", top_k)
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] (the probability mass kept), got {top_p!r}")


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The id of the next token given its ``logits`` ``[V]`` (see the module docstring).

    >>> probs = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    >>> g = torch.Generator().manual_seed(0)
    >>> sorted({int(sample_next(probs, top_p=0.7, generator=g)) for _ in range(200)})   # 0.5 + 0.3 >= 0.7
    [0, 1]
    """
    logits = logits.detach().float().reshape(-1)
    if temperature == 0:
        return logits.argmax()
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, idx = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # tokens after the mass is already reached
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, idx, drop), float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).reshape(()).to(logits.device)


@torch.no_grad()
def generate(step: Callable[[torch.Tensor], torch.Tensor], prompt: Sequence[int], n_words: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             banned: Sequence[int] = (), generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> list[int]:
    """``n_words`` new token ids after ``prompt``. ``step(ids [1, n])`` feeds the model the new ids and returns
    the logits ``[V]`` of the next token; ``banned`` ids (unknown word, padding) are never drawn.

    >>> table = torch.tensor([[0., 5., 0.], [0., 0., 5.], [5., 0., 0.]])    # after token i comes (i + 1) % 3
    >>> state = {}
    >>> def step(ids): state["last"] = int(ids[0, -1]); return table[state["last"]]
    >>> generate(step, [0], n_words=4, temperature=0)
    [1, 2, 0, 1]
    """
    check_sampling(n_words, temperature, top_k, top_p)
    if not len(prompt):
        raise ValueError("the prompt has no tokens: give at least one word to continue")
    out: list[int] = []
    new = torch.tensor([list(prompt)], dtype=torch.long, device=device)
    banned = [int(b) for b in banned]
    for _ in range(n_words):
        logits = step(new).detach().float().reshape(-1)
        if banned:
            logits[banned] = float("-inf")
        tok = int(sample_next(logits, temperature, top_k, top_p, generator))
        out.append(tok)
        new = torch.tensor([[tok]], dtype=torch.long, device=device)
    return out
