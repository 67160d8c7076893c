"""Shared fixtures: where the real datasets are, and the GPU marker."""
from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with other work, spinning threads
# take the time slices the busy ones need (measured here: a tiny U-Net epoch 0.5 s on one thread, 40 s on two
# under load). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")
os.environ.setdefault("LEARNKIT_PROGRESS", "0")
# loaders in the main process unless a test asks for workers (tiny data: starting workers costs more than it saves)
os.environ.setdefault("LEARNKIT_NUM_WORKERS", "0")

REPO = Path(__file__).resolve().parents[1]


def find_data_root() -> Path | None:
    """``$LEARNKIT_DATA`` if set, else ``../shared/data`` beside the repository, else ``None``."""
    env = os.environ.get("LEARNKIT_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def data_path() -> Path:
    """The real datasets folder; tests that use it skip when it is absent."""
    root = find_data_root()
    if root is None:
        pytest.skip("real data not found: set LEARNKIT_DATA or put shared/data beside the repo")
    return root


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    torch.manual_seed(0)
    yield
    import matplotlib.pyplot as plt
    plt.close("all")
