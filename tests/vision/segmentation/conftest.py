"""Tiny generated segmentation data: images whose colour says the class of each pixel."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

#: Class k is painted with PALETTE[k]; the colours are far apart so the class is readable from a pixel.
PALETTE = np.array([[20, 20, 20], [230, 40, 40], [40, 220, 40], [40, 40, 230], [230, 230, 60]], dtype=np.uint8)
CODES = ["background", "red", "green", "blue", "void"]


def blocky_mask(h: int, w: int, rng: np.random.Generator, n_classes: int = 4) -> np.ndarray:
    """A mask of a few axis-aligned rectangles of random classes over class 0."""
    m = np.zeros((h, w), dtype=np.uint8)
    for _ in range(4):
        y0, x0 = rng.integers(0, h - h // 4), rng.integers(0, w - w // 4)
        hh, ww = rng.integers(h // 6, h // 2), rng.integers(w // 6, w // 2)
        m[y0:y0 + hh, x0:x0 + ww] = rng.integers(1, n_classes)
    return m


def classes_from_pixels(img: torch.Tensor) -> torch.Tensor:
    """Recover the class map of a painted image ``[3, H, W]`` (uint8 or float in [0, 1]): nearest palette colour."""
    x = img.float()
    if not img.is_floating_point():
        x = x / 255
    pal = torch.tensor(PALETTE, dtype=torch.float32) / 255
    d = ((x.permute(1, 2, 0)[..., None, :] - pal) ** 2).sum(-1)
    return d.argmin(-1)


def write_pairs(root: Path, n: int = 10, h: int = 32, w: int = 48, seed: int = 0, img_dir: str = "images",
                mask_dir: str = "labels", mask_name=lambda stem: f"{stem}_P.png") -> list[Path]:
    """Write ``n`` painted images and their masks; returns the image paths."""
    rng = np.random.default_rng(seed)
    (root / img_dir).mkdir(parents=True, exist_ok=True)
    (root / mask_dir).mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        m = blocky_mask(h, w, rng)
        Image.fromarray(PALETTE[m]).save(root / img_dir / f"f{i:03d}.png")
        Image.fromarray(m, mode="L").save(root / mask_dir / mask_name(f"f{i:03d}"))
        files.append(root / img_dir / f"f{i:03d}.png")
    return files


@pytest.fixture
def seg_folder(tmp_path: Path) -> Path:
    """``images/fNNN.png`` + ``labels/fNNN_P.png`` (10 pairs, 32x48) and a ``codes.txt``."""
    write_pairs(tmp_path)
    (tmp_path / "codes.txt").write_text("\n".join(CODES) + "\n")
    return tmp_path


def label_func_for(root: Path):
    return lambda o: root / "labels" / f"{Path(o).stem}_P.png"


@pytest.fixture
def seg():
    """The helpers of this file, for tests (conftest modules are not importable under importlib mode)."""
    import types
    return types.SimpleNamespace(PALETTE=PALETTE, CODES=CODES, blocky_mask=blocky_mask,
                                 classes_from_pixels=classes_from_pixels, write_pairs=write_pairs,
                                 label_func_for=label_func_for)

# One intra-op thread per test comes from tests/vision/conftest.py (tiny U-Nets: 0.5 s an epoch on one thread,
# 40 s on two under load here).
