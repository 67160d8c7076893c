"""`collab_learner`: a dot-product or neural recommender sized from a `CollabDataLoaders`, with
`recommend` and `similar_items`.

Weight decay is the regulariser, applied where it helps: to the embeddings and layers (``wd``), not
to the biases (``bias_wd=0``) — decaying the biases pulls every item towards the global mean and costs
about 0.02 validation MSE on MovieLens. The parameters are therefore split in two groups, weights
first and biases last, and `BiasWeightDecay` sets the biases' decay at the start of every fit.

>>> import pandas as pd
>>> df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4], "item": [10, 20, 30, 10, 20, 30, 10, 30, 20, 30],
...                    "rating": [5., 3., 1., 4., 3., 2., 5., 1., 2., 4.]})
>>> dls = CollabDataLoaders.from_df(df, bs=4, device="cpu")
>>> learn = collab_learner(dls, n_factors=4, progress=False)
>>> learn.fit_one_cycle(2)
>>> rating, _, _ = learn.predict((1, 20))
>>> 0 < rating < 5.5
True
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..core.callback import Callback
from ..core.display import display_df
from ..core.learner import Learner
from ..core.registry import register_learner
from ..core.optim import LR
from .data import CollabDataLoaders
from .loader import TensorLoader
from .model import EmbeddingDotBias, _CollabModel, collab_dot, collab_nn
from ..core.validation import check_number

__all__ = ["CollabLearner", "collab_learner", "collab_splitter", "BiasWeightDecay", "recommend", "similar_items"]


def _no_decay_params(model: nn.Module) -> list[nn.Parameter]:
    if isinstance(model, EmbeddingDotBias):
        return [model.u_bias.weight, model.i_bias.weight, model.global_bias]
    return [p for p in model.parameters() if p.ndim <= 1]  # layer biases, batch-norm, the global bias


def collab_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two parameter groups: ``[embeddings and layer weights, biases]`` (``learn.freeze()`` then trains
    the biases only).

    >>> m = EmbeddingDotBias(n_factors=4, n_users=3, n_items=5)
    >>> [[tuple(p.shape) for p in group] for group in collab_splitter(m)]     # the last bias: the global one
    [[(3, 4), (5, 4)], [(), (3, 1), (5, 1)]]
    """
    no_decay = {id(p) for p in _no_decay_params(model)}
    return [[p for p in model.parameters() if id(p) not in no_decay],
            [p for p in model.parameters() if id(p) in no_decay]]


class BiasWeightDecay(Callback):
    """Give the parameter groups that hold only biases their own weight decay (``wd``, 0 by default)
    at the start of every fit, after ``fit(wd=...)`` has set one value for all groups.

    >>> df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4], "item": [10, 20, 30, 10, 20, 30, 10, 30, 20, 30],
    ...                    "rating": [5., 3., 1., 4., 3., 2., 5., 1., 2., 4.]})
    >>> dls = CollabDataLoaders.from_df(df, bs=4, device="cpu")
    >>> learn = collab_learner(dls, n_factors=4, wd=0.5, bias_wd=0.01, progress=False)   # adds BiasWeightDecay(0.01)
    >>> learn.fit(1)
    >>> [group["weight_decay"] for group in learn.opt.param_groups]      # factors, biases
    [0.5, 0.01]
    """

    order = 0

    def __init__(self, wd: float = 0.0):
        self.wd = check_number("bias_wd", wd, low=0)

    def before_fit(self):
        no_decay = {id(p) for p in _no_decay_params(self.learn.model)}
        for pg in self.learn.opt.param_groups:
            if pg["params"] and all(id(p) in no_decay for p in pg["params"]):
                pg["weight_decay"] = self.wd


def _collab_dls(learn: Learner) -> CollabDataLoaders:
    if not isinstance(learn.dls, CollabDataLoaders):
        raise TypeError(f"this needs a learner on ratings (CollabDataLoaders), got {type(learn.dls).__name__}")
    return learn.dls


def _scores(learn: Learner, x: torch.Tensor) -> torch.Tensor:
    return learn.get_preds(dl=TensorLoader(x, bs=65536))[0].reshape(-1)


def recommend(learn: Learner, user: Any, n: int = 10, exclude_seen: bool = True,
              exclude: Iterable[Any] | None = None) -> pd.DataFrame:
    """The ``n`` items with the highest predicted rating for ``user``: a DataFrame of item id and prediction.

    ``exclude_seen`` drops the items the user rated in the data (needs the training data: after
    `load_learner` pass ``exclude_seen=False`` and, if you like, ``exclude=[...]``).

    >>> df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4], "item": [10, 20, 30, 10, 20, 30, 10, 30, 20, 30],
    ...                    "rating": [5., 3., 1., 4., 3., 2., 5., 1., 2., 4.]})
    >>> dls = CollabDataLoaders.from_df(df, bs=4, device="cpu")
    >>> learn = collab_learner(dls, n_factors=4, progress=False)
    >>> recommend(learn, user=4, n=5).columns.tolist(), recommend(learn, user=4)["item"].tolist()  # 20, 30: seen
    (['item', 'prediction'], [10])
    """
    dls = _collab_dls(learn)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    u = int(dls.users.encode([user])[0])
    items = torch.arange(1, dls.n_items)
    x = torch.stack([torch.full_like(items, u), items], dim=1)
    scores = torch.cat([torch.tensor([float("-inf")]), _scores(learn, x)])  # index 0: the unknown item
    if exclude_seen:
        scores[dls.rated_items(user).cpu()] = float("-inf")
    if exclude is not None:
        scores[dls.items.encode(list(exclude), unknown="fallback")] = float("-inf")
    k = min(n, int(torch.isfinite(scores).sum()))
    top = scores.topk(k)
    return pd.DataFrame({dls.item_name: dls.items.decode(top.indices), "prediction": top.values.tolist()})


def similar_items(learn: Learner, item: Any, n: int = 10) -> pd.DataFrame:
    """The ``n`` items whose embeddings are closest (cosine similarity) to ``item``'s.

    >>> df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4], "item": [10, 20, 30, 10, 20, 30, 10, 30, 20, 30],
    ...                    "rating": [5., 3., 1., 4., 3., 2., 5., 1., 2., 4.]})
    >>> dls = CollabDataLoaders.from_df(df, bs=4, device="cpu")
    >>> learn = collab_learner(dls, n_factors=4, progress=False)
    >>> sim = similar_items(learn, 10, n=2)
    >>> sim.columns.tolist(), sorted(sim["item"]), bool(sim["similarity"].is_monotonic_decreasing)
    (['item', 'similarity'], [20, 30], True)
    """
    dls, model = _collab_dls(learn), learn.model
    if not isinstance(model, _CollabModel):
        raise TypeError(f"similar_items needs a collab model (EmbeddingDotBias, EmbeddingNN), got {type(model).__name__}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    i = int(dls.items.encode([item])[0])
    w = model.embedding(is_item=True).weight.detach().float().cpu()
    sims = torch.nn.functional.cosine_similarity(w, w[i: i + 1], dim=1)
    sims[[0, i]] = float("-inf")
    top = sims.topk(min(n, len(sims) - 2))
    return pd.DataFrame({dls.item_name: dls.items.decode(top.indices), "similarity": top.values.tolist()})


@register_learner
class CollabLearner(Learner):
    """A `Learner` for ratings, with `recommend` and `similar_items` (also available as functions of
    any learner whose data is a `CollabDataLoaders`, e.g. one from `load_learner`).

    >>> df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4], "item": [10, 20, 30, 10, 20, 30, 10, 30, 20, 30],
    ...                    "rating": [5., 3., 1., 4., 3., 2., 5., 1., 2., 4.]})
    >>> dls = CollabDataLoaders.from_df(df, bs=4, device="cpu")
    >>> learn = collab_learner(dls, n_factors=4, progress=False)
    >>> type(learn).__name__, learn.show_results(show=False).columns.tolist()    # the validation ratings
    ('CollabLearner', ['user', 'item', 'rating', 'rating_pred'])
    """

    def recommend(self, user: Any, n: int = 10, exclude_seen: bool = True,
                  exclude: Iterable[Any] | None = None) -> pd.DataFrame:
        """See `learnkit.collab.learner.recommend`."""
        return recommend(self, user, n=n, exclude_seen=exclude_seen, exclude=exclude)

    def similar_items(self, item: Any, n: int = 10) -> pd.DataFrame:
        """See `learnkit.collab.learner.similar_items`."""
        return similar_items(self, item, n=n)

    def show_results(self, max_n: int = 10, ds_idx: int = 1, show: bool = True) -> pd.DataFrame:
        """The first ``max_n`` ratings of a split (validation by default) with the model's prediction beside
        each, under ``<rating_name>_pred`` as fastai. Shows (HTML in a notebook) and returns the frame."""
        dls = _collab_dls(self)
        dl = dls[ds_idx]
        if dl is None:
            raise ValueError(f"split {ds_idx} has no ratings (no validation set?); pass ds_idx=0 for the training rows")
        x, y = dl.tensors[0][:max_n], dl.tensors[1][:max_n]
        preds = _scores(self, x).cpu()
        x = x.cpu()
        df = pd.DataFrame({dls.user_name: dls.users.decode(x[:, 0]), dls.item_name: dls.items.decode(x[:, 1]),
                           dls.rating_name: y.float().cpu().tolist(), f"{dls.rating_name}_pred": preds.tolist()})
        return display_df(df, show=show)


def collab_learner(dls: CollabDataLoaders, n_factors: int = 50, y_range: Sequence[float] | None = (0, 5.5),
                   use_nn: bool = False, layers: Sequence[int] = (100,), emb_szs: Sequence[int] | None = None,
                   ps: float | Sequence[float] = 0.0, embed_p: float = 0.0, loss_func: Callable | None = None,
                   metrics: Any = None, opt_func: Callable = torch.optim.AdamW, lr: LR = 1e-2, wd: float = 0.5,
                   bias_wd: float = 0.0, cbs: Callback | Sequence[Callback] | None = None,
                   path: str | Path | None = None, model_dir: str = "models", device: str | torch.device | None = None,
                   progress: bool = True) -> CollabLearner:
    """A `CollabLearner` on ``dls``: `EmbeddingDotBias` (``use_nn=False``) or `EmbeddingNN`.

    Args:
        n_factors: width of the user/item vectors of the dot-product model.
        y_range: ``(low, high)`` of the output sigmoid; every rating must lie inside it (``None``: no sigmoid).
        use_nn / layers / emb_szs / ps / embed_p: the neural model, its hidden widths, its ``(user, item)``
            embedding widths (default: `emb_sz_rule`), its dropout and embedding dropout.
        wd: decoupled (AdamW) weight decay of the embeddings and layers — the main regulariser. Its effect
            grows with the number of steps: 0.5 suits the default batch size (256) and 5-8 epochs at
            ``lr=1e-2`` (MovieLens 100K); about 1.0 for batches of 512, 0.3 for batches of 64. Raise it
            when the validation loss climbs while the training loss falls.
        bias_wd: weight decay of the biases (0: see the module docstring).
        The rest goes to `Learner` unchanged; the loss defaults to the data's (MSE).

    Defaults that differ from fastai's ``collab_learner`` (chosen for MovieLens-size data; pass fastai's
    values to get its behaviour):

    | argument | learnkit | fastai | why |
    | --- | --- | --- | --- |
    | ``y_range`` | ``(0, 5.5)`` | ``None`` | star ratings; ch. 8 passes ``(0, 5.5)`` itself |
    | ``lr`` | ``1e-2`` | ``1e-3`` | ``fit_one_cycle(n)`` without an lr trains well |
    | ``wd`` | ``0.5`` on factors and layers | ``None`` (the optimizer's 0.01, on every parameter) | the main regulariser: 0.1 under-regularises at bs 256 |
    | ``bias_wd`` | ``0`` (biases not decayed) | biases decayed like the factors | decaying biases costs ~0.02 MSE |
    | ``opt_func`` | ``torch.optim.AdamW`` (torch's betas and eps) | fastai ``Adam`` (decoupled wd) | the same update rule; ``wd=0.5`` was tuned with torch's values (`Adam`'s miss the test suite's bar) |

    Ch. 8's ``learn.fit_one_cycle(5, 5e-3, wd=0.1)`` runs unchanged (``wd=`` of ``fit`` overrides the default).

    >>> df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4], "item": [10, 20, 30, 10, 20, 30, 10, 30, 20, 30],
    ...                    "rating": [5., 3., 1., 4., 3., 2., 5., 1., 2., 4.]})
    >>> dls = CollabDataLoaders.from_df(df, bs=4, device="cpu")
    >>> learn = collab_learner(dls, use_nn=True, layers=[8], progress=False)
    >>> type(learn.model).__name__, learn.model_spec["builder"], learn.model.u_emb
    ('EmbeddingNN', 'collab.nn', Embedding(5, 4, padding_idx=0))
    """
    if not isinstance(dls, CollabDataLoaders):
        raise TypeError(f"collab_learner needs a CollabDataLoaders, got {type(dls).__name__}; "
                        "build one with CollabDataLoaders.from_df(ratings)")
    if y_range is not None:
        lo, hi = (float(v) for v in y_range)
        rr = dls.rating_range
        if rr is not None and (rr[0] < lo or rr[1] > hi):
            raise ValueError(f"ratings in column {dls.rating_name!r} run from {rr[0]:g} to {rr[1]:g}, outside "
                             f"y_range=({lo:g}, {hi:g}), so the model could never predict them. Pass a y_range a "
                             f"little wider than the ratings, e.g. y_range=({min(lo, rr[0]):g}, "
                             f"{rr[1] + 0.1 * (rr[1] - rr[0]):g}), or y_range=None for an unbounded output.")
        y_range = [lo, hi]
    ids = {"users": list(dls.users.ids), "items": list(dls.items.ids)}
    if use_nn:
        user_sz, item_sz = (None, None) if emb_szs is None else (int(emb_szs[0]), int(emb_szs[1]))
        kwargs = {"n_users": dls.n_users, "n_items": dls.n_items, "user_sz": user_sz, "item_sz": item_sz,
                  "layers": [int(n) for n in layers], "ps": ps if isinstance(ps, (int, float)) else list(ps),
                  "embed_p": embed_p, "y_range": y_range, **ids}
        model: _CollabModel = collab_nn(**kwargs)
        builder = "collab.nn"
    else:
        kwargs = {"n_factors": n_factors, "n_users": dls.n_users, "n_items": dls.n_items, "y_range": y_range, **ids}
        model = collab_dot(**kwargs)
        builder = "collab.dot"
    if dls.train is not None:
        model.init_global_bias(float(dls.train.tensors[1].float().mean()))
    cbs = [BiasWeightDecay(bias_wd)] + ([] if cbs is None else [cbs] if isinstance(cbs, Callback) else list(cbs))
    # wd_bn_bias=True: the splitter already puts the biases in a group of their own, decayed by bias_wd
    learn = CollabLearner(dls, model, loss_func=loss_func, opt_func=opt_func, lr=lr, splitter=collab_splitter,
                          cbs=cbs, metrics=metrics, wd=wd, path=path, model_dir=model_dir, device=device,
                          progress=progress, wd_bn_bias=True)
    learn.model_spec = {"builder": builder, "kwargs": kwargs}
    return learn
