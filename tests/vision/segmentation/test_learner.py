"""unet_learner end to end on tiny painted images: it learns, predicts, shows, exports and reloads."""
from __future__ import annotations

import matplotlib
import pytest
import timm
import torch

from learnkit.core.export import load_learner
from learnkit.core.segmetrics import JaccardMulti, foreground_acc
from learnkit.vision.io import get_image_files
from learnkit.core.callback import Callback
from learnkit.core.learner import Learner
from learnkit.core.optim import n_splitter_groups
from learnkit.vision.segmentation import SegmentationDataLoaders, SegmentationLearner, unet_learner
from learnkit.vision.segmentation.learner import SEG_BASE_LR
from learnkit.vision.segmentation.losses import FocalLossFlat
from learnkit.vision.transforms import Resize


@pytest.fixture
def dls(seg, tmp_path):
    seg.write_pairs(tmp_path, n=20, h=32, w=32)
    files = get_image_files(tmp_path / "images")
    return SegmentationDataLoaders.from_label_func(tmp_path, files, seg.label_func_for(tmp_path), codes=seg.CODES,
                                                   void_code="void", bs=4, device="cpu")


def _learner(dls, **kw):
    kw.setdefault("pretrained", False)
    kw.setdefault("decoder_channels", (32, 16, 16, 16))
    kw.setdefault("progress", False)
    return unet_learner(dls, "efficientnet_lite0", metrics=[foreground_acc(ignore_index=dls.void_code),
                                                            JaccardMulti(ignore_index=dls.void_code)], **kw)


def test_unet_learner_setup(dls):
    learn = _learner(dls)
    assert isinstance(learn, SegmentationLearner)
    assert learn.model_spec == {"builder": "vision.unet", "kwargs": {
        "arch": "efficientnet_lite0", "n_out": 5, "decoder_channels": [32, 16, 16, 16], "block": "dynamic",
        "blur": True, "blur_final": True, "self_attention": True, "last_cross": False}}
    assert dls.normalize.mean == (0.5, 0.5, 0.5)  # the encoder's own statistics
    assert learn.loss_func.ignore_index == 4
    learn.freeze()
    assert not any(p.requires_grad for p in learn.model.encoder.parameters())
    assert all(p.requires_grad for p in learn.model.decoder.parameters())


def test_unet_learner_rejects_other_loaders_and_archs(dls):
    with pytest.raises(TypeError, match="SegmentationDataLoaders"):
        unet_learner(object(), "efficientnet_lite0")
    with pytest.raises(ValueError, match="unknown architecture"):
        unet_learner(dls, "efficientnet_lite9", pretrained=False)


# From a random encoder the plain decoder learns this toy faster: after 8 epochs 0.92 pixel accuracy, the
# dynamic one (middle block, self-attention: more to train) 0.87; on real images with a pretrained encoder
# the dynamic one is the better (camvid_tiny, see unet.py).
@pytest.mark.parametrize("block, min_acc", [("dynamic", 0.8), ("plain", 0.9)])
def test_it_learns_and_predicts(dls, tmp_path, block, min_acc):
    torch.manual_seed(0)
    learn = _learner(dls, lr=1e-2, block=block)
    before = learn.validate()
    learn.fit_one_cycle(8, 1e-2)
    loss, acc, miou = learn.validate()
    assert acc > min_acc and acc > before[1] + 0.2 and miou > 0.5, (before, loss, acc, miou)
    # predict one image: the class map at the model's input size, and probabilities
    img = dls.valid.dataset.items[0]
    mask, same, probs = learn.predict(img)
    assert mask is same and mask.shape == (32, 32) and mask.dtype == torch.long
    assert probs.shape == (5, 32, 32) and torch.allclose(probs.sum(0), torch.ones(32, 32), atol=1e-5)
    assert torch.equal(mask, probs.argmax(0))
    preds, targs = learn.get_preds()[:2]
    assert preds.shape == (len(dls.valid.dataset), 5, 32, 32) and targs.shape == (len(dls.valid.dataset), 32, 32)
    # export, reload in the same process and predict the same
    fname = learn.export(tmp_path / "unet.safetensors")
    new = load_learner(fname, device="cpu")
    mask2, _, probs2 = new.predict(img)
    assert torch.equal(mask2, mask) and torch.allclose(probs2, probs, atol=1e-5)
    assert new.dls.codes == dls.codes and new.dls.void_code == 4 and new.loss_func.ignore_index == 4


def test_export_keeps_item_size_and_custom_loss(seg, tmp_path):
    seg.write_pairs(tmp_path, n=5, h=40, w=56)
    dls = SegmentationDataLoaders.from_label_func(tmp_path, get_image_files(tmp_path / "images"),
                                                  seg.label_func_for(tmp_path), codes=seg.CODES,
                                                  item_tfms=Resize((32, 64)), bs=2, device="cpu")
    learn = _learner(dls, loss_func=FocalLossFlat(gamma=1.0))
    new = load_learner(learn.export(tmp_path / "e.safetensors"), device="cpu")
    mask, _, probs = new.predict(dls.valid.dataset.items[0])
    assert mask.shape == (32, 64) and isinstance(new.loss_func, FocalLossFlat) and new.loss_func.gamma == 1.0


def test_show_results_target_and_prediction(dls):
    matplotlib.use("Agg")
    learn = _learner(dls)
    fig = learn.show_results(max_n=2)
    titled = [a.get_title() for a in fig.axes if a.get_title()]
    assert titled == ["target", "prediction"] and len([a for a in fig.axes if a.images]) == 4
    assert fig.legends


def test_callable_arch(dls):
    learn = unet_learner(dls, lambda pretrained: timm.create_model("resnet18", pretrained=pretrained,
                                                                    features_only=True),
                         pretrained=False, decoder_channels=(16, 16), progress=False)
    assert not hasattr(learn, "model_spec")
    x, _ = dls.one_batch(1)
    assert learn.model(x).shape[1:] == (5, 32, 32)


class _PeakLRs(Callback):
    """The highest learning rate of each parameter group of the splitter in each fit (the optimizer's first
    param groups; the undecayed biases' groups follow them with the same rates)."""

    def before_fit(self):
        self.fits = getattr(self, "fits", []) + [[0.0] * n_splitter_groups(self.learn.opt)]

    def after_batch(self):
        self.fits[-1] = [max(a, pg["lr"]) for a, pg in zip(self.fits[-1], self.learn.opt.param_groups)]


def test_fine_tune_defaults_to_the_segmentation_learning_rate(dls, monkeypatch):
    """``fine_tune(n)`` peaks at SEG_BASE_LR for the decoder with the encoder frozen, then at half of it
    (encoder: a hundredth of that) unfrozen; fastai's 2e-3 left camvid_tiny's decoder underfitting."""
    monkeypatch.setenv("LEARNKIT_SMALL_DATA_WARNINGS", "0")  # 16 items: a few steps per phase, on purpose
    assert SEG_BASE_LR == 1e-2 and Learner.fine_tune.__defaults__[0] == 2e-3
    learn, peaks = _learner(dls), _PeakLRs()
    learn.fine_tune(1, cbs=peaks)
    (frozen_enc, frozen_dec), (enc, dec) = peaks.fits
    assert SEG_BASE_LR / 2 < frozen_dec <= SEG_BASE_LR            # 4 batches: the warm-up ends at the last
    assert dec == pytest.approx(SEG_BASE_LR / 2, rel=0.05) and enc == pytest.approx(SEG_BASE_LR / 200, rel=0.05)
    learn.fine_tune(0, base_lr=1e-3, cbs=peaks)                     # an explicit base_lr still wins
    assert len(peaks.fits) == 3 and 5e-4 < peaks.fits[-1][1] <= 1e-3
