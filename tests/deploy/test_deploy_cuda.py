"""Trackers and ONNX export from a learner on CUDA (marked ``gpu``: skipped without one)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from learnkit import ExperimentCallback

pytestmark = pytest.mark.gpu


class Logged(ExperimentCallback):
    def __init__(self):
        super().__init__(log_every=2)
        self.rows = []

    def open_run(self): pass
    def log_params(self, params): self.params = params
    def log_metrics(self, metrics, step, epoch=None): self.rows.append((step, epoch, dict(metrics)))
    def close_run(self, failed): self.failed = failed


def test_tracker_and_onnx_from_cuda(tmp_path):
    from learnkit.vision import ImageDataLoaders, Resize, error_rate, get_image_files, vision_learner
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(8):
        for label, color in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
            a = np.clip(np.array(color) + rng.integers(-20, 21, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / f"{label}_{i}.png")
    dls = ImageDataLoaders.from_name_re(tmp_path, get_image_files(tmp_path), r"^(\w+)_\d+", item_tfms=Resize(32),
                                        bs=4, device="cuda")
    learn = vision_learner(dls, "resnet10t", pretrained=False, metrics=error_rate, progress=False, path=tmp_path)
    learn.to_bf16()
    cb = Logged()
    learn.fit(2, cbs=cb)
    assert cb.failed is False and [s for s, e, _ in cb.rows if e is None] == [1, 2, 4, 6]
    assert all(np.isfinite(list(m.values())).all() for _, _, m in cb.rows)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    learn.to_fp32()
    dl = dls.test_dl(get_image_files(tmp_path)[:6], bs=6)
    x = next(iter(dl))[0]
    probs = learn.get_preds(dl=dl)[0]
    path = learn.export_onnx(tmp_path / "m.onnx")
    assert next(learn.model.parameters()).device.type == "cuda"  # the learner is back where it was
    conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # and in its layout
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(out, probs.numpy(), atol=2e-3)  # CUDA convolutions (TF32) vs onnxruntime on the CPU
