"""Fixtures for the vision tests: tiny generated image folders."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image


def write_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (24, 20), noise: int = 20,
                seed: int = 0) -> Path:
    """An RGB JPEG/PNG of ``size`` (w, h) around ``color`` with a little noise."""
    rng = np.random.default_rng(seed)
    a = np.clip(np.array(color)[None, None] + rng.integers(-noise, noise + 1, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.astype(np.uint8)).save(path)
    return path


def make_two_class_folder(root: Path, n: int = 6, layout: str = "name", ext: str = ".png",
                          size: tuple[int, int] = (24, 20)) -> list[Path]:
    """Red 'cat' and blue 'dog' images: ``layout='name'`` → ``root/Cat_i`` / ``root/dog_i``;
    ``'folders'`` → ``root/{train,valid}/{cat,dog}/i``; ``'classes'`` → ``root/{cat,dog}/i``."""
    files = []
    for i in range(n):
        for label, color in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
            if layout == "name":
                p = root / f"{label.capitalize() if label == 'cat' else label}_{i}{ext}"
            elif layout == "folders":
                p = root / ("valid" if i % 3 == 0 else "train") / label / f"{i}{ext}"
            else:
                p = root / label / f"{i}{ext}"
            files.append(write_image(p, color, size=size, seed=i))
    return sorted(files)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time (to check nothing was written)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors run faster on one thread (a parallel region costs more than it saves, and far more on a
    busy shared machine); restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def two_class_folder(tmp_path):
    """A factory: ``two_class_folder(layout='name', n=6, ext='.png', size=(24, 20)) -> (root, files)``."""
    def make(layout: str = "name", n: int = 6, ext: str = ".png", size: tuple[int, int] = (24, 20)):
        root = tmp_path / f"data_{layout}"
        return root, make_two_class_folder(root, n=n, layout=layout, ext=ext, size=size)
    return make


@pytest.fixture
def img_tools():
    """The helper functions of this conftest (write_image, snapshot)."""
    return SimpleNamespace(write_image=write_image, snapshot=snapshot)
