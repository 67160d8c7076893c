"""Tiny generated problems for the core tests."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from learnkit import DataLoaders


def regression_data(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3
    return x, y


def two_class_data(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def make_dls(x, y, bs: int = 16, valid: bool = True) -> DataLoaders:
    n_valid = len(x) // 5
    tr = TensorDataset(x[n_valid:], y[n_valid:])
    va = TensorDataset(x[:n_valid], y[:n_valid]) if valid else None
    return DataLoaders.from_dsets(tr, va, bs=bs, device="cpu")


class BodyHead(nn.Module):
    """A two-group model: body (no BN) then head."""

    def __init__(self, n_in: int = 2, n_out: int = 2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, n_out)

    def forward(self, x):
        return self.head(self.body(x))


def body_head_splitter(m: BodyHead):
    return [list(m.body.parameters()), list(m.head.parameters())]


def write_two_class_images(folder, n: int = 12, size: int = 16, spread: int = 30) -> list:
    """``n`` noisy PNGs in ``folder``: ``a_<i>.png`` bright, ``b_<i>.png`` dark (label = first letter)."""
    from PIL import Image

    from learnkit.vision import get_image_files
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        base = 60 if i % 2 else 190
        img = (base + torch.randint(-spread, spread, (3, size, size), generator=g)).clamp(0, 255).to(torch.uint8)
        Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy()).save(folder / f"{'ab'[i % 2]}_{i}.png")
    return get_image_files(folder)
