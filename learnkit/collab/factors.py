"""The learned factors as a picture: `factor_pca` projects the item (or user) vectors of a collab model on their
principal components, `plot_factors` draws the labelled map of fastbook chapter 8 (movies that the same people
like end up close together).

>>> import pandas as pd
>>> df = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4], "item": [10, 20, 30, 10, 20, 30, 10, 30, 20, 30],
...                    "rating": [5., 3., 1., 4., 3., 2., 5., 1., 2., 4.]})
>>> learn = collab_learner(CollabDataLoaders.from_df(df, bs=4, device="cpu"), n_factors=4, progress=False)
>>> factor_pca(learn, [10, 20, 30], n_components=2).shape
(3, 2)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..core.learner import Learner
from .model import _CollabModel

__all__ = ["factor_pca", "plot_factors"]


def _collab_model(learn: Learner, what: str) -> _CollabModel:
    model = learn.model
    if not isinstance(model, _CollabModel):
        raise TypeError(f"{what} needs a collab model (EmbeddingDotBias, EmbeddingNN), got {type(model).__name__}")
    return model


def factor_pca(learn: Learner, ids: Sequence[Any], n_components: int = 3, is_item: bool = True) -> pd.DataFrame:
    """The factors of ``ids`` (items, or users with ``is_item=False``) projected on their first ``n_components``
    principal components (scikit-learn's PCA, fitted on these ids' vectors): one row per id, columns
    ``pc0, pc1, ...``, and the share of the variance each explains in ``df.attrs["explained_variance_ratio"]``.
    fastbook's ``movie_w.pca(3)``.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": ["a", "b", "a", "c", "b", "c"], "rating": [5., 1, 4, 2, 1, 3]})
    >>> learn = collab_learner(CollabDataLoaders.from_df(df, bs=2, device="cpu"), n_factors=3, progress=False)
    >>> pcs = factor_pca(learn, ["a", "b", "c"], n_components=2)
    >>> pcs.index.tolist(), pcs.columns.tolist(), len(pcs.attrs["explained_variance_ratio"])
    (['a', 'b', 'c'], ['pc0', 'pc1'], 2)
    """
    from sklearn.decomposition import PCA
    model = _collab_model(learn, "factor_pca")
    ids = list(ids)
    if not isinstance(n_components, int) or not 1 <= n_components <= min(len(ids), model.embedding(is_item).weight.shape[1]):
        raise ValueError(f"n_components must be an int from 1 to min(len(ids), n_factors), got {n_components!r} "
                         f"with {len(ids)} ids and {model.embedding(is_item).weight.shape[1]} factors")
    w = model.weight(ids, is_item=is_item).float().cpu().numpy()
    pca = PCA(n_components=n_components, random_state=0)
    df = pd.DataFrame(pca.fit_transform(w), index=pd.Index(ids), columns=[f"pc{i}" for i in range(n_components)])
    df.attrs["explained_variance_ratio"] = pca.explained_variance_ratio_.tolist()
    return df


def plot_factors(learn: Learner, ids: Sequence[Any], n_labels: int = 50, components: tuple[int, int] = (0, 1),
                 is_item: bool = True, ax: Any = None, figsize: tuple[float, float] = (10, 10)) -> Any:
    """fastbook chapter 8's map of the movies: the principal components of the factors of all ``ids`` (say the
    1,000 most-rated movies), and the first ``n_labels`` of them drawn at their ``components`` (two of
    ``pc0``, ``pc1``, ``pc2``), each labelled with its id. Returns the matplotlib ``Axes``.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": ["a", "b", "a", "c", "b", "c"], "rating": [5., 1, 4, 2, 1, 3]})
    >>> learn = collab_learner(CollabDataLoaders.from_df(df, bs=2, device="cpu"), n_factors=3, progress=False)
    >>> ax = plot_factors(learn, ["a", "b", "c"], n_labels=2, figsize=(3, 3))
    >>> [t.get_text() for t in ax.texts], ax.get_xlabel()
    (['a', 'b'], 'pc0 (variance explained: ...)')
    """
    import matplotlib.pyplot as plt
    if len(components) != 2 or any(not isinstance(c, int) or c < 0 for c in components):
        raise ValueError(f"components must be two component numbers such as (0, 1) or (0, 2), got {components!r}")
    if not isinstance(n_labels, int) or n_labels < 1:
        raise ValueError(f"n_labels must be a positive int, got {n_labels!r}")
    pcs = factor_pca(learn, ids, n_components=max(components) + 1, is_item=is_item)
    shown = pcs.iloc[:n_labels]
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    cx, cy = (f"pc{c}" for c in components)
    ax.scatter(shown[cx], shown[cy], s=12)
    colors = np.random.default_rng(0).random((len(shown), 3)) * 0.7  # dark, distinct label colours (as fastbook)
    for (label, row), color in zip(shown.iterrows(), colors):
        ax.text(row[cx], row[cy], str(label), color=color, fontsize=9)
    ratios = pcs.attrs["explained_variance_ratio"]
    ax.set_xlabel(f"{cx} (variance explained: {ratios[components[0]]:.0%})")
    ax.set_ylabel(f"{cy} (variance explained: {ratios[components[1]]:.0%})")
    return ax
