"""fastbook ch. 8's PCA map of the learned movie factors (issue 29): `factor_pca` and `plot_factors`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from learnkit.collab import CollabDataLoaders, collab_learner, factor_pca, plot_factors


@pytest.fixture
def learn():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 30, 600), "item": [f"m{i}" for i in rng.integers(0, 20, 600)],
                       "rating": rng.integers(1, 6, 600).astype(float)}).drop_duplicates(["user", "item"])
    return collab_learner(CollabDataLoaders.from_df(df, bs=64, device="cpu", seed=0), n_factors=8, progress=False)


def test_factor_pca_is_the_pca_of_the_factors(learn):
    ids = [f"m{i}" for i in range(12)]
    pcs = factor_pca(learn, ids, n_components=3)
    assert pcs.index.tolist() == ids and pcs.columns.tolist() == ["pc0", "pc1", "pc2"]
    w = learn.model.weight(ids).numpy().astype(np.float64)
    centred = w - w.mean(0)
    # the components are orthogonal projections of the centred factors: their variances are the top eigenvalues
    eig = np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1][:3]
    assert np.allclose(pcs.var(ddof=1).to_numpy(), eig, rtol=1e-4)
    ratios = pcs.attrs["explained_variance_ratio"]
    assert ratios == sorted(ratios, reverse=True) and 0 < sum(ratios) <= 1 + 1e-6
    users = factor_pca(learn, [1, 2, 3, 4], n_components=2, is_item=False)
    assert users.shape == (4, 2)


def test_plot_factors_labels_the_first_ids(learn):
    ids = [f"m{i}" for i in range(15)]
    ax = plot_factors(learn, ids, n_labels=5, components=(0, 2), figsize=(4, 4))
    assert [t.get_text() for t in ax.texts] == ids[:5]
    pcs = factor_pca(learn, ids, n_components=3)
    xy = np.array([t.get_position() for t in ax.texts])
    assert np.allclose(xy, pcs[["pc0", "pc2"]].to_numpy()[:5], atol=1e-6)  # placed on pc0 and pc2 of all 15
    assert ax.get_xlabel().startswith("pc0") and ax.get_ylabel().startswith("pc2")


def test_bad_arguments_are_named(learn):
    with pytest.raises(ValueError, match="n_components"):
        factor_pca(learn, ["m1", "m2"], n_components=3)
    with pytest.raises(ValueError, match="components"):
        plot_factors(learn, ["m1", "m2", "m3"], components=(0,))
    with pytest.raises(KeyError):
        factor_pca(learn, ["not a movie", "m1"], n_components=1)
    learn.model = torch.nn.Linear(2, 1)
    with pytest.raises(TypeError, match="collab model"):
        factor_pca(learn, ["m1"])
