"""Collaborative-filtering models: a biased dot product (`EmbeddingDotBias`) and an MLP over embeddings
(`EmbeddingNN`). Both take ``x = [B, 2]`` (user index, item index) and return ``[B]`` ratings.

Index 0 of every embedding is the unknown user/item: it is held at zero (``padding_idx=0``), so a new
user or item is scored from the other side's bias and the global bias alone.

>>> import torch
>>> m = EmbeddingDotBias(n_factors=4, n_users=3, n_items=5, y_range=(0, 5.5))
>>> m(torch.tensor([[1, 2], [2, 4]])).shape
torch.Size([2])
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core.layers import sigmoid_range
from ..core.registry import register_model
from ..core.vocab import emb_sz_rule
from .ids import IdMap

__all__ = ["EmbeddingDotBias", "EmbeddingNN", "sigmoid_range"]


def _check_y_range(y_range: Sequence[float] | None) -> tuple[float, float] | None:
    if y_range is None:
        return None
    lo, hi = (float(v) for v in y_range)
    if not lo < hi:
        raise ValueError(f"y_range must be (low, high) with low < high, got {tuple(y_range)!r}")
    return lo, hi


class _CollabModel(nn.Module):
    """Shared by both models: the id maps and the lookups that speak in user/item ids."""

    def _setup(self, n_users: int, n_items: int, y_range: Sequence[float] | None,
               users: Sequence[Any] | None, items: Sequence[Any] | None) -> None:
        for what, n, ids in (("n_users", n_users, users), ("n_items", n_items, items)):
            if not isinstance(n, int) or n < 2:
                raise ValueError(f"{what} must be an int >= 2 (index 0 is the unknown id), got {n!r}")
            if ids is not None and len(ids) + 1 != n:
                raise ValueError(f"{what}={n} but {len(ids)} ids were given (expected {n - 1}: index 0 is unknown)")
        self.y_range = _check_y_range(y_range)
        self.users = IdMap(users, "user") if users is not None else None
        self.items = IdMap(items, "item") if items is not None else None
        self.global_bias = nn.Parameter(torch.zeros(()))

    def _out(self, res: torch.Tensor) -> torch.Tensor:
        return sigmoid_range(res, *self.y_range) if self.y_range is not None else res

    def init_global_bias(self, mean_rating: float) -> None:
        """Start the global bias at the mean rating, so training begins from the right level."""
        if self.y_range is not None:
            lo, hi = self.y_range
            p = min(max((mean_rating - lo) / (hi - lo), 1e-3), 1 - 1e-3)
            value = math.log(p / (1 - p))
        else:
            value = mean_rating
        with torch.no_grad():
            self.global_bias.fill_(value)

    def embedding(self, is_item: bool = True) -> nn.Embedding:
        """The item (or user) embedding table."""
        raise NotImplementedError

    def _indices(self, ids: Sequence[Any], is_item: bool) -> torch.Tensor:
        idmap = self.items if is_item else self.users
        if idmap is None:
            raise ValueError("this model was built without id maps (users=/items=), so it cannot look up ids; "
                             "index the embedding directly, e.g. model.embedding(is_item=True).weight[idx]")
        if isinstance(ids, (str, int)):
            ids = [ids]
        return idmap.encode(list(ids), unknown="error").to(self.global_bias.device)

    def weight(self, ids: Sequence[Any], is_item: bool = True) -> torch.Tensor:
        """The embedding vectors of item (or user) ids, detached: ``[len(ids), n_factors]``."""
        return self.embedding(is_item).weight[self._indices(ids, is_item)].detach()


class EmbeddingDotBias(_CollabModel):
    """``rating = sigmoid_range(u·i + b_u + b_i + b, *y_range)`` — matrix factorisation with biases.

    Args:
        n_factors: the width of the user and item vectors.
        n_users / n_items: embedding rows, index 0 (unknown) included.
        y_range: ``(low, high)`` of the sigmoid; ``None`` for an unbounded output.
        users / items: the ids of rows ``1..n-1`` (for `bias`, `weight` and lookups by id).

    >>> m = EmbeddingDotBias(4, n_users=3, n_items=3, y_range=(0, 5.5), users=["amy", "bob"], items=["x", "y"])
    >>> m.init_global_bias(3.5)                # an unknown user and item (index 0) get the mean rating
    >>> round(m(torch.tensor([[0, 0]])).item(), 3), m.weight(["amy", "bob"], is_item=False).shape, m.bias(["x", "y"]).tolist()
    (3.5, torch.Size([2, 4]), [0.0, 0.0])
    """

    def __init__(self, n_factors: int, n_users: int, n_items: int, y_range: Sequence[float] | None = None,
                 users: Sequence[Any] | None = None, items: Sequence[Any] | None = None):
        super().__init__()
        if not isinstance(n_factors, int) or n_factors < 1:
            raise ValueError(f"n_factors must be a positive int, got {n_factors!r}")
        self._setup(n_users, n_items, y_range, users, items)
        self.u_weight = nn.Embedding(n_users, n_factors, padding_idx=0)
        self.i_weight = nn.Embedding(n_items, n_factors, padding_idx=0)
        self.u_bias = nn.Embedding(n_users, 1, padding_idx=0)
        self.i_bias = nn.Embedding(n_items, 1, padding_idx=0)
        with torch.no_grad():
            for e in (self.u_weight, self.i_weight):
                nn.init.trunc_normal_(e.weight, std=0.01)
                e.weight[0] = 0
            self.u_bias.weight.zero_()
            self.i_bias.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, i = x[:, 0], x[:, 1]
        dot = (self.u_weight(u) * self.i_weight(i)).sum(1)
        res = dot + self.u_bias(u).squeeze(1) + self.i_bias(i).squeeze(1) + self.global_bias
        return self._out(res)

    def embedding(self, is_item: bool = True) -> nn.Embedding:
        return self.i_weight if is_item else self.u_weight

    def bias(self, ids: Sequence[Any], is_item: bool = True) -> torch.Tensor:
        """The learned biases of item (or user) ids, detached: ``[len(ids)]``."""
        table = self.i_bias if is_item else self.u_bias
        return table.weight[self._indices(ids, is_item), 0].detach()


class EmbeddingNN(_CollabModel):
    """User and item embeddings, concatenated, through an MLP (Linear → ReLU → BatchNorm → Dropout)
    to one output, squeezed into ``y_range``.

    Args:
        n_users / n_items: embedding rows, index 0 (unknown) included.
        user_sz / item_sz: embedding widths (``None``: `emb_sz_rule`).
        layers: hidden layer widths.
        ps: dropout after each hidden layer (one float for all, or one per layer).
        embed_p: dropout on the concatenated embeddings.
        y_range, users, items: as in `EmbeddingDotBias`.

    >>> m = EmbeddingNN(n_users=10, n_items=20, layers=[16], y_range=(0, 5.5)).eval()
    >>> m.u_emb, m.i_emb, m(torch.tensor([[1, 2], [3, 4]])).shape    # widths from emb_sz_rule
    (Embedding(10, 6, padding_idx=0), Embedding(20, 9, padding_idx=0), torch.Size([2]))
    """

    def __init__(self, n_users: int, n_items: int, user_sz: int | None = None, item_sz: int | None = None,
                 layers: Sequence[int] = (100,), ps: float | Sequence[float] = 0.0, embed_p: float = 0.0,
                 y_range: Sequence[float] | None = None, users: Sequence[Any] | None = None,
                 items: Sequence[Any] | None = None):
        super().__init__()
        self._setup(n_users, n_items, y_range, users, items)
        layers = [int(n) for n in layers]
        ps = [float(ps)] * len(layers) if isinstance(ps, (int, float)) else [float(p) for p in ps]
        if len(ps) != len(layers):
            raise ValueError(f"got {len(ps)} dropout values for {len(layers)} layers")
        user_sz, item_sz = user_sz or emb_sz_rule(n_users), item_sz or emb_sz_rule(n_items)
        self.u_emb = nn.Embedding(n_users, user_sz, padding_idx=0)
        self.i_emb = nn.Embedding(n_items, item_sz, padding_idx=0)
        with torch.no_grad():
            for e in (self.u_emb, self.i_emb):
                nn.init.trunc_normal_(e.weight, std=0.01)
                e.weight[0] = 0
        self.emb_drop = nn.Dropout(embed_p)
        blocks, n_in = [], user_sz + item_sz
        for n_out, p in zip(layers, ps):
            blocks += [nn.Linear(n_in, n_out), nn.ReLU(inplace=True), nn.BatchNorm1d(n_out), nn.Dropout(p)]
            n_in = n_out
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(n_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = torch.cat([self.u_emb(x[:, 0]), self.i_emb(x[:, 1])], dim=1)
        res = self.head(self.layers(self.emb_drop(emb))).squeeze(1) + self.global_bias
        return self._out(res)

    def embedding(self, is_item: bool = True) -> nn.Embedding:
        return self.i_emb if is_item else self.u_emb


@register_model("collab.dot")
def collab_dot(n_factors: int, n_users: int, n_items: int, y_range: Sequence[float] | None = None,
               users: Sequence[Any] | None = None, items: Sequence[Any] | None = None) -> EmbeddingDotBias:
    """Builder for `load_learner`: an untrained `EmbeddingDotBias` of the recorded shape."""
    return EmbeddingDotBias(n_factors, n_users, n_items, y_range=y_range, users=users, items=items)


@register_model("collab.nn")
def collab_nn(n_users: int, n_items: int, user_sz: int | None = None, item_sz: int | None = None,
              layers: Sequence[int] = (100,), ps: float | Sequence[float] = 0.0, embed_p: float = 0.0,
              y_range: Sequence[float] | None = None, users: Sequence[Any] | None = None,
              items: Sequence[Any] | None = None) -> EmbeddingNN:
    """Builder for `load_learner`: an untrained `EmbeddingNN` of the recorded shape."""
    return EmbeddingNN(n_users, n_items, user_sz=user_sz, item_sz=item_sz, layers=layers, ps=ps, embed_p=embed_p,
                       y_range=y_range, users=users, items=items)
