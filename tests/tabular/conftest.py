"""Tiny generated tables for the tabular tests."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch


def make_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A learnable table: ``y`` is ``"high"`` when ``x + 2*(color == 'red')`` is large.

    Text values carry a leading space and ``" ?"`` marks a missing colour, as in the UCI Adult file.
    """
    rng = np.random.default_rng(seed)
    color = rng.choice([" red", " blue", " green", " ?"], size=n, p=[0.3, 0.3, 0.3, 0.1])
    size = rng.choice(["S", "M", "L"], size=n)
    x = rng.normal(size=n)
    z = rng.normal(loc=50, scale=10, size=n)
    score = x + 2.0 * (color == " red") + 0.5 * (size == "L")
    df = pd.DataFrame({"color": color, "size": size, "x": x, "z": z,
                       "y": np.where(score > 0.8, "high", "low"), "target": score})
    df.loc[df.index[::17], "x"] = np.nan
    return df


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Shared by the tests of a module: copy it before changing it."""
    return make_table()


@pytest.fixture
def table_factory():
    """``make_table`` itself, for tests that need several tables."""
    return make_table


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The models here are tiny: one intra-op thread is faster, and on a shared 2-core machine two threads
    spin against the other processes (measured here: ~40x slower steps). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
