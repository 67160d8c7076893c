"""fastai lesson 4-10 training recipes: schedules, MixUp/CutMix, label smoothing, ReduceLROnPlateau, lr_find
suggestion functions, the added metrics, ShowGraphCallback and show_training_loop."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from coretools import BodyHead, body_head_splitter, make_dls, regression_data, two_class_data
from sklearn import metrics as skm
from torch import nn

from learnkit import (BalancedAccuracy, Callback, CrossEntropyLossFlat, CutMix, LabelSmoothingCrossEntropy,
                      LabelSmoothingCrossEntropyFlat, Learner, MixUp, MSELossFlat, Perplexity, R2Score,
                      ReduceLROnPlateau, ShowGraphCallback, accuracy, accuracy_multi, as_metric, exp_rmspe, minimum,
                      rmse, slide, steep, top_k_accuracy, valley)


def reg_learner(**kw) -> Learner:
    x, y = regression_data()
    return Learner(make_dls(x, y), nn.Linear(3, 1), loss_func=MSELossFlat(), progress=False, **kw)


def cls_learner(**kw) -> Learner:
    x, y = two_class_data()
    return Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), splitter=body_head_splitter,
                   progress=False, **kw)


# --- metrics -------------------------------------------------------------------------------------------------
def test_rmse_as_a_plain_metric_is_over_the_whole_set():
    learn = reg_learner(metrics=rmse, lr=1e-2)
    learn.fit(1)
    preds, targs = learn.get_preds()
    expected = float(((preds.reshape(targs.shape) - targs) ** 2).mean().sqrt())
    assert learn.recorder.metric_names[3] == "rmse"
    assert learn.recorder.values[-1][2] == pytest.approx(expected, rel=1e-5)
    assert as_metric(rmse) is not as_metric(rmse)  # one accumulator per learner


def test_metrics_can_be_assigned_and_partial_keeps_the_name():
    learn = cls_learner()
    learn.metrics = [accuracy, partial(accuracy_multi, thresh=0.2, sigmoid=False)]
    assert [m.name for m in learn.metrics] == ["accuracy", "accuracy_multi"]
    learn.metrics = partial(top_k_accuracy, k=1)
    learn.fit(1)
    assert learn.recorder.metric_names[3] == "top_k_accuracy"
    assert 0 <= learn.recorder.values[-1][2] <= 1


def test_top_k_accuracy():
    pred = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    targ = torch.tensor([2, 2, 2])
    assert float(top_k_accuracy(pred, targ, k=1)) == pytest.approx(1 / 3)
    assert float(top_k_accuracy(pred, targ, k=2)) == pytest.approx(2 / 3)
    assert float(top_k_accuracy(pred, targ, k=3)) == 1.0


def _accumulate(m, pred, targ, sizes=(3, 5, 2)):
    m.reset()
    i = 0
    for n in sizes:
        m.accumulate(pred[i:i + n], targ[i:i + n])
        i += n
    return m.value


def test_whole_set_metrics_match_sklearn():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(10, generator=g)
    p = y + 0.3 * torch.randn(10, generator=g)
    assert _accumulate(R2Score(), p, y) == pytest.approx(skm.r2_score(y.numpy(), p.numpy()), rel=1e-5)
    expected = math.sqrt(float((((y.exp() - p.exp()) / y.exp()) ** 2).mean()))
    assert _accumulate(as_metric(exp_rmspe), p, y) == pytest.approx(expected, rel=1e-5)
    logits, classes = torch.randn(10, 3, generator=g), torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 2, 2])
    assert _accumulate(BalancedAccuracy(), logits, classes) == pytest.approx(
        skm.balanced_accuracy_score(classes.numpy(), logits.argmax(1).numpy()))
    ce = float(nn.functional.cross_entropy(logits, classes))
    assert _accumulate(Perplexity(), logits, classes) == pytest.approx(math.exp(ce), rel=1e-5)


# --- losses --------------------------------------------------------------------------------------------------
def test_label_smoothing_cross_entropy_formula():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 3, 0, 1])
    eps = 0.1
    logp = out.log_softmax(1)
    expected = (1 - eps) * nn.functional.nll_loss(logp, y) + eps * (-logp.mean(1)).mean()
    assert float(LabelSmoothingCrossEntropy(eps)(out, y)) == pytest.approx(float(expected), rel=1e-5)
    assert LabelSmoothingCrossEntropyFlat is LabelSmoothingCrossEntropy
    with pytest.raises(ValueError, match="eps"):
        LabelSmoothingCrossEntropy(eps=1.5)


# --- MixUp / CutMix ------------------------------------------------------------------------------------------
class _Spy(Callback):
    order = 30  # after the mixing callbacks (20)

    def __init__(self):
        self.seen = []

    def before_batch(self):
        self.seen.append((self.learn.training, self.learn.xb[0].clone()))


def test_mixup_mixes_training_inputs_and_blends_the_loss():
    learn = cls_learner(lr=1e-2)
    x_orig = []

    class Raw(Callback):
        order = 5

        def before_batch(self):
            if self.learn.training:
                x_orig.append(self.learn.xb[0].clone())

    mix, spy = MixUp(0.4), _Spy()
    learn.fit(1, cbs=[Raw(), mix, spy])
    train_x = [x for training, x in spy.seen if training]
    valid_x = [x for training, x in spy.seen if not training]
    # the last training batch: mixed exactly as documented
    last_raw = x_orig[-1]
    expected = mix.lam * last_raw + (1 - mix.lam) * last_raw[mix.perm]
    assert torch.allclose(train_x[-1], expected, atol=1e-6)
    assert 0.5 <= mix.lam <= 1
    assert not torch.equal(train_x[-1], last_raw)
    valid_data = learn.dls.valid.dataset.tensors[0]
    assert torch.equal(torch.cat(valid_x), valid_data)  # validation is never mixed
    assert math.isfinite(learn.recorder.values[-1][0])


def test_mixup_loss_is_the_blend():
    learn = cls_learner()
    mix = MixUp(0.4)

    class Check(Callback):
        order = 30

        def after_loss(self):
            if self.learn.training:
                lf, p, y = self.learn.loss_func, self.learn.pred, self.learn.yb[0]
                expected = mix.lam * lf(p, y) + (1 - mix.lam) * lf(p, y[mix.perm])
                self.diff = float((self.learn.loss - expected).abs().detach())

    check = Check()
    learn.fit(1, cbs=[mix, check])
    assert check.diff < 1e-6


def test_cutmix_pastes_a_box_and_lam_is_the_area_left():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    learn = cls_learner()
    cb = CutMix(1.0)
    cb.learn = learn
    torch.manual_seed(3)
    learn.xb, learn.yb = (x,), (torch.tensor([0, 1]),)
    cb.before_batch()
    mixed = learn.xb[0]
    changed = (mixed != x).float().mean().item() if not torch.equal(cb.perm, torch.arange(2)) else None
    if changed is not None:
        assert changed == pytest.approx(1 - cb.lam)
    with pytest.raises(ValueError, match="CutMix mixes images"):
        learn.xb = (torch.randn(4, 3),)
        cb.before_batch()


def test_mixup_trains_a_classifier():
    torch.manual_seed(0)
    learn = cls_learner(metrics=accuracy, lr=3e-2)
    learn.fit_one_cycle(4, cbs=MixUp(0.4))
    assert learn.recorder.values[-1][2] > 0.85


# --- schedules -----------------------------------------------------------------------------------------------
def test_fit_flat_cos_schedule():
    learn = reg_learner()
    learn.fit_flat_cos(4, lr=1e-2, pct_start=0.5)
    lrs = np.array(learn.recorder.lrs)
    n = len(lrs)
    assert np.allclose(lrs[: n // 2], 1e-2)
    assert lrs[-1] == pytest.approx(1e-2 / 1e5, rel=1e-3)
    assert np.all(np.diff(lrs[n // 2:]) <= 1e-12)


def test_fit_sgdr_restarts():
    learn = reg_learner()
    learn.fit_sgdr(3, 1, lr_max=1e-2)
    assert len(learn.recorder.values) == 1 + 2 + 4
    lrs = np.array(learn.recorder.lrs)
    per_epoch = len(lrs) // 7
    starts = [0, per_epoch, 3 * per_epoch]
    for s in starts:
        assert lrs[s] == pytest.approx(1e-2, rel=1e-2)
    assert lrs[per_epoch - 1] < 1e-3 and lrs[3 * per_epoch - 1] < 1e-3  # annealed before each restart


def test_reduce_lr_on_plateau():
    learn = reg_learner(lr=1e-3)
    learn.fit(1)  # create the optimizer

    class NoStep(Callback):  # no step: the validation loss never improves after the first epoch
        def before_step(self):
            from learnkit import CancelStepException
            raise CancelStepException()

    cb = ReduceLROnPlateau(patience=1, factor=10, min_lr=1e-6)
    learn.fit(4, cbs=[NoStep(), cb])
    # epoch 0 sets the best; epochs 1, 2, 3 do not improve: lr / 10 three times, floored at 1e-6
    assert learn.opt.param_groups[0]["lr"] == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=0.5)


# --- lr_find -------------------------------------------------------------------------------------------------
def test_lr_find_suggestion_functions_unpack():
    learn = cls_learner()
    lr_min, lr_steep = learn.lr_find(suggest_funcs=(minimum, steep), show_plot=False, num_it=40)
    assert lr_min > 0 and lr_steep > 0
    res = learn.lr_find(suggest_funcs=(valley, slide, "minimum"), show_plot=False, num_it=40)
    assert res._fields == ("valley", "slide", "minimum")
    assert all(v > 0 for v in res)
    with pytest.raises(ValueError, match="unknown lr suggestion"):
        learn.lr_find(suggest_funcs=("bogus",), show_plot=False, num_it=10)


def test_slide_finds_the_end_of_the_descent():
    lrs = np.logspace(-6, 0, 100)
    losses = np.concatenate([np.full(30, 2.0), np.linspace(2.0, 0.5, 50), np.linspace(0.5, 3, 20)])
    lr, idx = slide(lrs, losses)
    assert 30 <= idx <= 80 and lr == pytest.approx(lrs[idx])


# --- display -------------------------------------------------------------------------------------------------
def test_show_graph_callback_plots_both_losses():
    cb = ShowGraphCallback()
    learn = reg_learner(lr=1e-2)
    learn.fit(3, cbs=cb)
    lines = cb.ax.get_lines()
    assert len(lines) == 2
    assert len(lines[0].get_xdata()) == len(learn.recorder.losses)
    assert list(lines[1].get_ydata()) == pytest.approx([v[1] for v in learn.recorder.values])


def test_show_training_loop(capsys):
    learn = reg_learner()
    learn.show_training_loop()
    out = capsys.readouterr().out
    assert "Start Fit (before_fit)" in out and "End Batch (after_batch): Recorder" in out.replace("ProgressCallback, ", "")
    lines = out.splitlines()
    assert "      Start Train (before_train)" in lines or any(  # indented one level under the epoch
        ln.strip().startswith("Start Train (before_train)") for ln in lines)
    # every event is named by the method a callback author overrides, beside its phase
    from learnkit.core.callback import EVENTS
    named = {ln.split("(", 1)[1].split(")", 1)[0] for ln in lines[1:]}
    assert named <= set(EVENTS) and {"before_fit", "before_batch", "after_loss", "after_batch", "after_epoch",
                                     "after_fit"} <= named


def test_mixup_turns_the_frozen_feature_cache_off(tmp_path):
    """The frozen body's features cannot be cached when the images change batch by batch (MixUp would mix the
    cached features instead of the images, and CutMix would fail on them)."""
    from PIL import Image

    from learnkit.vision import FrozenFeatureCache, ImageDataLoaders, Resize, get_image_files, vision_learner
    g = torch.Generator().manual_seed(0)
    for i in range(16):
        img = (torch.full((3, 16, 16), 60 if i % 2 else 190) + torch.randint(-30, 30, (3, 16, 16), generator=g))
        Image.fromarray(img.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).squeeze(-1).numpy()).save(tmp_path / f"{'ab'[i % 2]}_{i}.png")
    dls = ImageDataLoaders.from_name_func(tmp_path, get_image_files(tmp_path), lambda n: n[0], item_tfms=Resize(16),
                                          bs=4, device="cpu")
    learn = vision_learner(dls, "resnet18", pretrained=False, progress=False)
    learn.freeze()
    cache = next(cb for cb in learn.cbs if isinstance(cb, FrozenFeatureCache))
    learn.fit(1, cbs=CutMix())
    assert not cache.active and "CutMix changes the training inputs" in cache.reason
    learn.fit(1)
    assert cache.active
