"""SegmentationInterpretation: per-image losses, pixel confusion, plot_top_losses."""
from __future__ import annotations

import matplotlib
import pytest
import torch

from learnkit.vision.io import get_image_files
from learnkit.vision.segmentation import SegmentationDataLoaders, SegmentationInterpretation, unet_learner


def test_segmentation_interpretation_from_learner(seg, tmp_path):
    matplotlib.use("Agg")
    seg.write_pairs(tmp_path, n=10, h=32, w=32)
    files = get_image_files(tmp_path / "images")
    dls = SegmentationDataLoaders.from_label_func(tmp_path, files, seg.label_func_for(tmp_path), codes=seg.CODES,
                                                  void_code="void", bs=2, device="cpu")
    learn = unet_learner(dls, "efficientnet_lite0", pretrained=False, decoder_channels=(32, 16, 16, 16),
                         progress=False)
    interp = SegmentationInterpretation.from_learner(learn)
    n = len(dls.valid.dataset)
    losses, idx = interp.top_losses()
    assert len(losses) == n and bool((losses[:-1] >= losses[1:]).all())
    x, y = dls.valid.dataset[int(idx[0])][:2]
    assert interp.targs[int(idx[0])].shape == y.shape
    cm = interp.confusion_matrix()
    non_void = int((interp.targs != dls.void_code).sum())
    assert cm.shape == (len(seg.CODES),) * 2 and int(cm.sum()) == non_void and int(cm[dls.void_code].sum()) == 0
    assert all(0 <= v <= 1 for v in interp.per_class_iou().values())
    fig = interp.plot_top_losses(k=2)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles[0].startswith(f"#{int(idx[0])} target (loss {float(losses[0]):.3f}") and len(titles) == 4
    with pytest.raises(ValueError, match="from_learner"):
        SegmentationInterpretation(interp.decoded, interp.targs, interp.losses, seg.CODES).plot_top_losses()
