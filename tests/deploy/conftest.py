"""Fixtures for the deployment tests (trackers, ONNX, uploads, CLI): tiny generated data and learners."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def write_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    a = np.clip(np.array(color)[None, None] + rng.integers(-20, 21, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.astype(np.uint8)).save(path)
    return path


def make_images(root: Path, n: int = 6, layout: str = "name") -> list[Path]:
    """Red ``cat`` and blue ``dog`` images, named ``cat_<i>.png`` (``layout='name'``) or under
    ``root/<label>/`` (``'classes'``)."""
    files = []
    for i in range(n):
        for label, color in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
            p = root / f"{label}_{i}.png" if layout == "name" else root / label / f"{i}.png"
            files.append(write_image(p, color, seed=i))
    return sorted(files)


def _image_learner(root: Path):
    from learnkit.vision import ImageDataLoaders, Resize, error_rate, get_image_files, vision_learner
    d = root / "imgs"
    make_images(d)
    dls = ImageDataLoaders.from_name_re(d, get_image_files(d), r"^(\w+)_\d+", item_tfms=Resize(32), bs=4,
                                        device="cpu")
    return vision_learner(dls, "resnet10t", pretrained=False, metrics=error_rate, progress=False, path=root,
                          lin_ftrs=[8])


@pytest.fixture
def image_learner(tmp_path):
    """A tiny resnet10t (random init) on 12 red/blue 32 px images (``tmp_path/imgs``), not trained."""
    return _image_learner(tmp_path)


@pytest.fixture(scope="module")
def module_image_learner(tmp_path_factory):
    """`image_learner`, shared by the tests of a module (they must not train it)."""
    return _image_learner(tmp_path_factory.mktemp("images"))


@pytest.fixture
def core_learner(tmp_path):
    """A linear classifier on 40 two-class points (8 training batches of 4)."""
    from torch.utils.data import TensorDataset

    from learnkit import CrossEntropyLossFlat, DataLoaders, Learner, accuracy
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=g)
    y = (x.sum(1) > 0).long()
    dls = DataLoaders.from_dsets(TensorDataset(x[8:], y[8:]), TensorDataset(x[:8], y[:8]), bs=4, device="cpu")
    return Learner(dls, torch.nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), metrics=accuracy, progress=False,
                   path=tmp_path)


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def app_server(module_image_learner):
    """The app serving an export of the tiny red/blue classifier: ``(base_url, learner, image_path)``."""
    learn = module_image_learner
    tmp_path = learn.path
    model = learn.export(tmp_path / "model.safetensors")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEARNKIT_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / "examples" / "app.py"), str(model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()  # "serving ... on http://127.0.0.1:PORT"
        assert line.startswith("serving") and "http://127.0.0.1:" in line, (line, proc.stderr.read())
        yield line.split()[-1], learn, tmp_path / "imgs" / "cat_0.png"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
