"""``tensor`` and ``first``, and fastbook ch. 13's first cells run after only the import change."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from learnkit.core.lesson_names import first, tensor


def test_tensor_from_python_values():
    assert tensor([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]).float().shape == (3, 3)
    assert tensor(1, 2, 3).tolist() == [1, 2, 3]
    assert tensor(2.5).dtype == torch.float32 and tensor([1, 2]).dtype == torch.int64
    assert tensor([1, 2], dtype=torch.float16).dtype == torch.float16


def test_tensor_from_numpy_pandas_and_pil_copies_and_keeps_the_source():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = tensor(a)
    assert t.dtype == torch.float32 and t.shape == (2, 3)
    t += 1
    assert a[0, 0] == 0, "tensor() must not write into the user's array"
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    assert tensor(df).tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert tensor(df["b"]).tolist() == [3.0, 4.0]
    img = Image.fromarray(np.full((4, 5), 200, dtype=np.uint8))
    px = tensor(img)
    assert px.dtype == torch.uint8 and px.shape == (4, 5) and int(px[0, 0]) == 200
    assert tensor(Image.new("RGB", (5, 4))).shape == (4, 5, 3)


def test_tensor_names_what_it_cannot_convert():
    with pytest.raises(TypeError, match="cannot make a tensor from dict"):
        tensor({"a": 1})


def test_first():
    assert first(iter([5, 6])) == 5
    assert first([1, 3, 4, 6], lambda x: x % 2 == 0) == 4
    assert first([]) is None and first([1, 3], lambda x: x > 5) is None


def _mnist_tiny() -> Path:
    root = Path(os.environ.get("LEARNKIT_DATA", Path(__file__).parents[3] / "shared" / "data")) / "mnist_tiny"
    if not root.is_dir():
        pytest.skip(f"mnist_tiny not found at {root}")
    return root


def test_fastbook_ch13_cells_run_on_the_star_import_alone():
    """fastbook ch. 13's first cells, with only ``from learnkit.vision import *``: no other import."""
    path = _mnist_tiny()
    cells = '''
from learnkit.vision import *
top_edge = tensor([[-1,-1,-1], [ 0, 0, 0], [ 1, 1, 1]]).float()
im3 = Image.open(sorted((path/'train'/'3').iterdir())[0])
im3_t = tensor(im3)
part = im3_t[0:3, 0:3] * top_edge
edge = F.conv2d(im3_t[None, None].float(), top_edge[None, None])
mnist = DataBlock((ImageBlock(cls=PILImageBW), CategoryBlock), get_items=get_image_files,
                  splitter=GrandparentSplitter(), get_y=parent_label)
dls = mnist.dataloaders(path, bs=64)
xb, yb = dls.one_batch(1)          # fastbook: first(dls.valid) (learnkit's loaders give raw uint8 batches)
xb, yb = to_cpu(xb), to_cpu(yb)
conv = nn.Conv2d(1, 4, 3, padding=1)
out = conv(xb)
df = pd.DataFrame({"mean": out.mean((0, 2, 3)).tolist()})
'''
    ns: dict = {"path": path}
    exec(cells, ns)
    assert ns["im3_t"].shape == (28, 28) and ns["edge"].shape == (1, 1, 26, 26)
    assert ns["xb"].shape[1:] == (1, 28, 28) and ns["out"].shape[1] == 4 and len(ns["df"]) == 4
