"""`TabularModel`: entity embeddings for categorical columns, batch-norm on continuous ones, an MLP.

Embedding sizes (`emb_sz_rule`)
-------------------------------
A column with ``n`` codes (its categories plus the ``#na#`` slot) gets an embedding of

    ``min(600, round(1.6 * n ** 0.56))``

dimensions — the empirical rule fastai found across many tables (rich columns get wider vectors, with
diminishing returns, and never more than 600). For example: 3 codes → 3, 10 → 6, 17 → 8, 43 → 13,
100 → 21, 1,000 → 77, 10,000 → 278. Override any column with ``emb_szs={"col": dim}`` in
`tabular_learner`.

>>> [emb_sz_rule(n) for n in (3, 10, 17, 43, 100, 1000, 10000)]
[3, 6, 8, 13, 21, 77, 278]
>>> import torch
>>> m = TabularModel([(10, 6), (3, 3)], n_cont=2, out_sz=2, layers=[8])
>>> m(torch.tensor([[1, 2], [3, 0]]), torch.randn(2, 2)).shape
torch.Size([2, 2])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core.layers import SigmoidRange
from ..core.registry import register_model
from ..core.vocab import emb_sz_rule  # noqa: F401 - used by the module doctest

__all__ = ["tabular_config", "TabularModel", "tabular_model"]


def tabular_config(ps: float | Sequence[float] | None = None, embed_p: float = 0.0,
                   y_range: tuple[float, float] | None = None, use_bn: bool = True, bn_final: bool = False,
                   bn_cont: bool = True) -> dict[str, Any]:
    """The `TabularModel` options as a dict, for ``tabular_learner(dls, config=tabular_config(...))``
    (fastai's helper; ``act_cls`` and ``lin_first`` are not supported: the blocks are Linear → ReLU → BN).

    >>> tabular_config(ps=[0.001, 0.01], embed_p=0.04)
    {'ps': [0.001, 0.01], 'embed_p': 0.04, 'y_range': None, 'use_bn': True, 'bn_final': False, 'bn_cont': True}
    """
    return {"ps": ps, "embed_p": embed_p, "y_range": y_range, "use_bn": use_bn, "bn_final": bn_final,
            "bn_cont": bn_cont}


class TabularModel(nn.Module):
    """Embeddings + batch-normed continuous inputs → ``[Linear → ReLU → BatchNorm → Dropout] × len(layers)``
    → ``Linear(out_sz)`` (→ `SigmoidRange` when ``y_range``).

    Args:
        emb_szs: ``(n_codes, width)`` per categorical column, in ``cat_names`` order.
        n_cont: number of continuous columns.
        out_sz: outputs (classes, or regression targets).
        layers: hidden layer widths.
        ps: dropout per hidden layer (one float for all, or a list); ``embed_p``: dropout on embeddings.
        y_range: ``(low, high)`` for regression outputs.
        use_bn: batch-norm after each hidden layer; ``bn_final``: also on the output; ``bn_cont``:
            batch-norm on the continuous inputs.

    >>> m = TabularModel([(10, 6), (3, 3)], n_cont=2, out_sz=1, layers=[8], y_range=(0, 5)).eval()
    >>> out = m(torch.tensor([[1, 2], [3, 0]]), torch.randn(2, 2))    # 2 rows: cat codes, continuous values
    >>> m.n_emb, out.shape, bool(((out > 0) & (out < 5)).all())
    (9, torch.Size([2, 1]), True)
    """

    def __init__(self, emb_szs: Sequence[tuple[int, int]], n_cont: int, out_sz: int,
                 layers: Sequence[int] = (200, 100), ps: float | Sequence[float] = 0.0, embed_p: float = 0.0,
                 y_range: tuple[float, float] | None = None, use_bn: bool = True, bn_final: bool = False,
                 bn_cont: bool = True):
        super().__init__()
        layers = list(layers)
        ps = [float(ps)] * len(layers) if isinstance(ps, (int, float)) else [float(p) for p in ps]
        if len(ps) != len(layers):
            raise ValueError(f"ps has {len(ps)} dropout values for {len(layers)} layers")
        if out_sz < 1:
            raise ValueError(f"out_sz must be at least 1, got {out_sz}")
        self.embeds = nn.ModuleList(nn.Embedding(n, w) for n, w in emb_szs)
        for e in self.embeds:
            nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)
        self.emb_drop = nn.Dropout(embed_p)
        self.bn_cont = nn.BatchNorm1d(n_cont) if bn_cont and n_cont > 0 else None
        self.n_emb, self.n_cont = sum(w for _, w in emb_szs), n_cont
        sizes = [self.n_emb + n_cont] + layers
        if sizes[0] == 0:
            raise ValueError("the model has no inputs: give at least one categorical or continuous column")
        blocks: list[nn.Module] = []
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], ps):
            blocks += [nn.Linear(n_in, n_out, bias=not use_bn), nn.ReLU(inplace=True)]
            if use_bn:
                blocks.append(nn.BatchNorm1d(n_out))
            if p:
                blocks.append(nn.Dropout(p))
        blocks.append(nn.Linear(sizes[-1], out_sz))
        if bn_final:
            blocks.append(nn.BatchNorm1d(out_sz))
        if y_range is not None:
            blocks.append(SigmoidRange(*y_range))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        parts = []
        if len(self.embeds):
            parts.append(self.emb_drop(torch.cat([e(x_cat[:, i]) for i, e in enumerate(self.embeds)], dim=1)))
        if self.n_cont:
            parts.append(self.bn_cont(x_cont) if self.bn_cont is not None else x_cont)
        return self.layers(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])


@register_model("tabular.mlp")
def tabular_model(emb_szs: Sequence[Sequence[int]], n_cont: int, out_sz: int, layers: Sequence[int] = (200, 100),
                  ps: float | Sequence[float] = 0.0, embed_p: float = 0.0,
                  y_range: Sequence[float] | None = None, use_bn: bool = True, bn_final: bool = False,
                  bn_cont: bool = True) -> TabularModel:
    """Build a `TabularModel` from JSON-able arguments (what `learn.model_spec` records).

    >>> m = tabular_model(emb_szs=[[10, 6]], n_cont=1, out_sz=2, layers=[8])     # lists, as JSON gives them back
    >>> m.embeds[0], m.layers[-1], get_model_builder("tabular.mlp") is tabular_model
    (Embedding(10, 6), Linear(in_features=8, out_features=2, bias=True), True)
    """
    return TabularModel([tuple(e) for e in emb_szs], n_cont, out_sz, layers, ps, embed_p,
                        tuple(y_range) if y_range is not None else None, use_bn, bn_final, bn_cont)
