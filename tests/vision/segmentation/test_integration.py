"""Segmentation on the real CamVid data in LEARNKIT_DATA (skipped when it is absent)."""
from __future__ import annotations

import pytest
import torch

from learnkit.core.export import load_learner
from learnkit.vision.segmentation import (JaccardMulti, Resize, SegmentationDataLoaders, foreground_acc,
                                          get_image_files, unet_learner)

pytestmark = pytest.mark.integration


def _camvid(data_path):
    path = data_path / "camvid"
    if not path.is_dir():
        pytest.skip("camvid/ not in the data folder")
    return path


def _camvid_tiny(data_path):
    path = data_path / "camvid_tiny"
    if not path.is_dir():
        pytest.skip("camvid_tiny/ not in the data folder")
    return path


def test_camvid_segnet_folders_load_and_check(data_path):
    path = _camvid(data_path)
    dls = SegmentationDataLoaders.from_folders(path, codes=path / "codes.txt", void_code="Unlabelled",
                                               item_tfms=Resize((96, 128)), bs=8, device="cpu")
    assert len(dls.train.dataset) == 150 and len(dls.valid.dataset) == 50
    assert dls.codes[3] == "Road" and dls.void_code == 11 and dls.loss_func.ignore_index == 11
    x, y = next(iter(dls.valid))
    assert x.shape == (16, 3, 96, 128) and y.shape == (16, 96, 128) and int(y.max()) <= 11
    # the given split: validation frames come from val/, masks from valannot/ with the same names
    assert {p.parent.name for p in dls.valid.dataset.items} == {"val"}
    assert all(m.parent.name == "valannot" and m.name == p.name
               for p, m in ((p, dls.label_func(p)) for p in dls.valid.dataset.items))


def test_camvid_tiny_learns_and_exports(data_path, tmp_path):
    path = _camvid_tiny(data_path)
    torch.manual_seed(0)
    dls = SegmentationDataLoaders.from_label_func(
        path, get_image_files(path / "images"), lambda o: path / "labels" / f"{o.stem}_P{o.suffix}",
        codes=path / "codes.txt", void_code="Void", bs=8, device="cpu")
    assert len(dls.codes) == 32 and dls.void_code == 30 and len(dls.valid.dataset) == 20
    void = dls.void_code
    learn = unet_learner(dls, "efficientnet_lite0", metrics=[foreground_acc(ignore_index=void),
                                                             JaccardMulti(ignore_index=void)], progress=False)
    learn.fine_tune(2, freeze_epochs=1)
    _, acc, miou = learn.validate()
    assert acc > 0.6 and miou > 0.05, (acc, miou)
    probs = learn.get_preds()[0]
    new = load_learner(learn.export(tmp_path / "camvid_tiny.safetensors"), device="cpu")
    mask, _, p = new.predict(dls.valid.dataset.items[0])
    assert mask.shape == (96, 128) and torch.allclose(p, probs[0], atol=1e-4)
