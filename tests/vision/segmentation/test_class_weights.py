"""`class_weights` / `median_frequency_weights`: the weighted cross-entropy of examples/camvid.py, in the library."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit.core import CrossEntropyLossFlat
from learnkit.vision.segmentation import (FuncSplitter, Resize, SegmentationDataLoaders, class_weights, get_image_files,
                                          median_frequency_weights)

from .conftest import CODES, label_func_for


def test_median_frequency_weights_by_hand():
    # frequencies 0.5, 0.25, 0.125, 0.125 over the classes kept; median (lower middle) 0.125
    w = median_frequency_weights([400, 200, 100, 100, 999], power=1.0, ignore_index=4)
    assert w.tolist() == [0.25, 0.5, 1.0, 1.0, 1.0] and w.dtype == torch.float32
    assert median_frequency_weights([400, 200, 100, 100], power=0.5)[0].item() == pytest.approx(0.5)
    assert median_frequency_weights([1000, 1, 100], max_weight=3.0).tolist() == pytest.approx([0.3162278, 3.0, 1.0])
    assert median_frequency_weights([5, 0, 50], power=0.0).tolist() == [1.0, 1.0, 1.0]
    assert median_frequency_weights([5, 0, 20]).tolist()[1] == 1.0          # absent class: weight 1, not inf


def test_median_frequency_weights_errors():
    with pytest.raises(ValueError, match="no class has any pixel"):
        median_frequency_weights([0, 0, 7], ignore_index=2)
    with pytest.raises(ValueError, match="power"):
        median_frequency_weights([1, 2], power=-1)
    with pytest.raises(TypeError, match="SegmentationDataLoaders"):
        class_weights(object())


def _dls(root: Path, **kw) -> SegmentationDataLoaders:
    return SegmentationDataLoaders.from_label_func(
        root, get_image_files(root / "images"), label_func_for(root), codes=CODES, void_code="void", bs=4,
        splitter=FuncSplitter(lambda o: Path(o).stem in {"f008", "f009"}), device="cpu", **kw)


def test_class_weights_count_the_training_masks_only(seg_folder: Path):
    counts = np.zeros(len(CODES))
    for i in range(8):                                   # the training masks, read here independently
        m = np.asarray(Image.open(seg_folder / "labels" / f"f{i:03d}_P.png"))
        counts += np.bincount(m.ravel(), minlength=len(CODES))
    freq = counts[:4] / counts[:4].sum()
    med = np.sort(freq)[1]                                # torch's median of 4 values: the lower middle one
    expected = np.append(np.minimum(np.sqrt(med / freq), 10.0), 1.0)  # void (never painted here): 1
    dls = _dls(seg_folder)
    w = class_weights(dls)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    assert w[0] < 1 < w[1:4].max()                       # the background dominates: weighed down
    cached = class_weights(_dls(seg_folder, cache=True, item_tfms=Resize((32, 48))))  # the same, cached
    torch.testing.assert_close(cached, w)


def test_class_weights_feed_a_weighted_cross_entropy(seg_folder: Path):
    dls = _dls(seg_folder)
    w = class_weights(dls, power=1.0)
    loss = CrossEntropyLossFlat(w, ignore_index=dls.ignore_index)
    pred, targ = torch.zeros(2, len(CODES), 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    targ[:, 0] = 1
    pred[:, 1] = 5.0                                     # right on class 1, wrong on class 0
    plain = CrossEntropyLossFlat(ignore_index=dls.ignore_index)
    assert loss(pred, targ).item() != pytest.approx(plain(pred, targ).item())
    ref = torch.nn.functional.cross_entropy(pred, targ, weight=w)
    assert loss(pred, targ).item() == pytest.approx(ref.item(), rel=1e-5)


def test_camvid_example_uses_the_library_function():
    source = (Path(__file__).resolve().parents[3] / "examples" / "camvid.py").read_text(encoding="utf-8")
    assert "def class_weights" not in source and "class_weights(dls)" in source
