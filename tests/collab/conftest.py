"""Fixtures for the collab tests: tiny generated ratings, and MovieLens 100K when the real data is there."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch


def low_rank_ratings(n_users: int = 40, n_items: int = 30, n_per_user: int = 20, rank: int = 2, seed: int = 0,
                     noise: float = 0.3) -> pd.DataFrame:
    """Ratings 1..5 from a rank-``rank`` model with user and item biases, ``n_per_user`` per user."""
    rng = np.random.default_rng(seed)
    u_f, i_f = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
    u_b, i_b = rng.normal(scale=0.5, size=n_users), rng.normal(scale=0.8, size=n_items)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, size=n_per_user, replace=False):
            r = 3 + u_f[u] @ i_f[i] + u_b[u] + i_b[i] + rng.normal(scale=noise)
            rows.append((u + 1, f"item{i}", float(np.clip(np.round(r), 1, 5))))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


@pytest.fixture
def ratings() -> pd.DataFrame:
    return low_rank_ratings()


@pytest.fixture
def ml100k(data_path) -> Path:
    path = data_path / "ml-100k"
    if not (path / "u.data").is_file():
        pytest.skip(f"ml-100k not found under {data_path}")
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: intra-op threads cannot split their work, and on a busy machine they only wait on
    each other (ten times slower here with two), so the collab tests run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
