"""Metrics accumulated over unequal batches equal the metric computed on the whole set."""
import functools
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from learnkit import (AvgMetric, Dice, DiceMulti, F1Score, JaccardCoeff, JaccardMulti, Precision, Recall, RocAuc,
                      accuracy, as_metric, error_rate, exp_rmspe, foreground_acc, mae, mse, rmse)
from learnkit.core.segmetrics import ForegroundAcc

SIZES = [1, 7, 32, 3, 57]  # unequal batches, 100 items


def _batches(pred, targ):
    i = 0
    for n in SIZES:
        yield pred[i:i + n], targ[i:i + n]
        i += n


def _accumulate(metric, pred, targ):
    m = as_metric(metric)
    m.reset()
    for p, t in _batches(pred, targ):
        m.accumulate(p, t)
    return m.value


@pytest.fixture
def cls_data():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(100, 3, generator=g)
    targ = torch.randint(0, 3, (100,), generator=g)
    return pred, targ


def test_accuracy_and_error_rate_exact(cls_data):
    pred, targ = cls_data
    whole = float((pred.argmax(1) == targ).float().mean())
    assert _accumulate(accuracy, pred, targ) == pytest.approx(whole, abs=1e-6)
    assert _accumulate(error_rate, pred, targ) == pytest.approx(1 - whole, abs=1e-6)
    # the naive mean of batch means is different here, which is why we weight by batch size
    naive = np.mean([float(accuracy(p, t)) for p, t in _batches(pred, targ)])
    assert abs(naive - whole) > 1e-3


def test_regression_metrics_exact():
    g = torch.Generator().manual_seed(1)
    pred, targ = torch.randn(100, 1, generator=g), torch.randn(100, generator=g)
    err = pred.squeeze() - targ
    assert _accumulate(mse, pred, targ) == pytest.approx(float((err ** 2).mean()), rel=1e-6)
    assert _accumulate(mae, pred, targ) == pytest.approx(float(err.abs().mean()), rel=1e-6)
    assert _accumulate(as_metric(rmse), pred, targ) == pytest.approx(math.sqrt(float((err ** 2).mean())), rel=1e-6)
    assert mse.higher_is_better is False


def test_sklearn_metrics_exact(cls_data):
    pred, targ = cls_data
    p2, t2 = pred[:, :2], (targ > 0).long()
    y, yhat = t2.numpy(), p2.argmax(1).numpy()
    assert _accumulate(F1Score(), p2, t2) == pytest.approx(skm.f1_score(y, yhat))
    assert _accumulate(Precision(), p2, t2) == pytest.approx(skm.precision_score(y, yhat))
    assert _accumulate(Recall(), p2, t2) == pytest.approx(skm.recall_score(y, yhat))
    assert _accumulate(RocAuc(), p2, t2) == pytest.approx(skm.roc_auc_score(y, p2.softmax(1)[:, 1].numpy()))
    assert _accumulate(F1Score(average="macro"), pred, targ) == pytest.approx(
        skm.f1_score(targ.numpy(), pred.argmax(1).numpy(), average="macro"))


def test_segmentation_metrics_exact_with_void():
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(100, 3, 4, 4, generator=g)
    targ = torch.randint(0, 4, (100, 4, 4), generator=g)  # 3 = void
    p, t = pred.argmax(1), targ
    keep = t != 3
    assert _accumulate(foreground_acc(ignore_index=3), pred, targ) == pytest.approx(
        float((p[keep] == t[keep]).float().mean()))
    ious, dices = [], []
    for c in range(3):
        pc, tc = (p == c) & keep, (t == c)
        inter, union = (pc & tc).sum().item(), (pc | tc).sum().item()
        ious.append(inter / union)
        dices.append(2 * inter / (pc.sum().item() + tc.sum().item()))
    assert _accumulate(JaccardMulti(ignore_index=3), pred, targ) == pytest.approx(np.mean(ious))
    assert _accumulate(DiceMulti(ignore_index=3), pred, targ) == pytest.approx(np.mean(dices))
    bt = (targ == 1).long()
    bp = torch.stack([-pred[:, 1], pred[:, 1]], 1)
    bpp = bp.argmax(1)
    inter = ((bpp == 1) & (bt == 1)).sum().item()
    assert _accumulate(Dice(), bp, bt) == pytest.approx(2 * inter / ((bpp == 1).sum().item() + bt.sum().item()))
    assert _accumulate(JaccardCoeff(), bp, bt) == pytest.approx(inter / ((bpp == 1) | (bt == 1)).sum().item())


def test_as_metric_rejects_bad_metrics():
    with pytest.raises(TypeError, match="instance"):
        as_metric(F1Score)
    with pytest.raises(TypeError, match="Metric"):
        as_metric(3)
    assert isinstance(as_metric(accuracy), AvgMetric)
    assert math.isnan(AvgMetric(accuracy).value)


# --- one calling convention: functions (whole_set when not a mean) and classes ----------------------------
def test_function_metrics_with_options_stay_exact_over_the_set():
    g = torch.Generator().manual_seed(3)
    pred, targ = torch.randn(100, 1, generator=g), torch.randn(100, generator=g)
    whole = math.sqrt(float(((pred.squeeze() - targ) ** 2).mean()))
    assert _accumulate(rmse, pred, targ) == pytest.approx(whole, rel=1e-6)
    assert _accumulate(functools.partial(rmse), pred, targ) == pytest.approx(whole, rel=1e-6)  # not a batch mean
    assert as_metric(functools.partial(rmse)).higher_is_better is False
    p, t = torch.exp(pred.squeeze().double()), torch.exp(targ.double())
    assert _accumulate(exp_rmspe, pred, targ) == pytest.approx(math.sqrt(float((((t - p) / t) ** 2).mean())), rel=1e-5)


def test_foreground_acc_is_a_function_and_every_way_of_passing_it_agrees():
    g = torch.Generator().manual_seed(4)
    pred, targ = torch.randn(100, 3, 4, 4, generator=g), torch.randint(0, 4, (100, 4, 4), generator=g)
    keep = targ != 3
    whole = float((pred.argmax(1)[keep] == targ[keep]).float().mean())
    assert float(foreground_acc(pred, targ, ignore_index=3)) == pytest.approx(whole)
    for m in (foreground_acc(ignore_index=3), functools.partial(foreground_acc, ignore_index=3), ForegroundAcc(3)):
        assert _accumulate(m, pred, targ) == pytest.approx(whole)
        assert as_metric(m).name == "foreground_acc"
    assert _accumulate(foreground_acc, pred, targ) == pytest.approx(float((pred.argmax(1) == targ).float().mean()))
    with pytest.raises(TypeError, match="ignore"):
        foreground_acc(ignore=3)  # a typo is an error, not a silently ignored option
