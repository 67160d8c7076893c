"""Segmentation losses: values, the ignore index, export."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from learnkit.core.registry import get_loss_class
from learnkit.vision.segmentation.losses import CrossEntropyDiceLoss, DiceLoss, FocalLossFlat


def _perfect(targ, c, scale=20.0):
    return F.one_hot(targ, c).movedim(-1, 1).float() * scale


def test_dice_is_near_zero_for_perfect_and_high_for_wrong():
    targ = torch.randint(0, 3, (2, 8, 8))
    assert float(DiceLoss()(_perfect(targ, 3), targ)) < 1e-3
    wrong = _perfect((targ + 1) % 3, 3)
    assert float(DiceLoss()(wrong, targ)) > 0.9


def test_ignored_pixels_do_not_change_any_loss():
    torch.manual_seed(0)
    pred, targ = torch.randn(2, 4, 8, 8), torch.randint(0, 3, (2, 8, 8))
    targ[:, :2] = 3  # void rows
    pred2 = pred.clone()
    pred2[:, :, :2] = torch.randn(2, 4, 2, 8) * 10
    for loss in (DiceLoss(ignore_index=3), FocalLossFlat(ignore_index=3), CrossEntropyDiceLoss(ignore_index=3)):
        assert torch.allclose(loss(pred, targ), loss(pred2, targ)), type(loss).__name__
    assert not torch.allclose(DiceLoss()(pred, targ), DiceLoss()(pred2, targ))  # not ignored: it matters


def test_focal_with_gamma_0_is_cross_entropy():
    pred, targ = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    assert torch.allclose(FocalLossFlat(gamma=0.0)(pred, targ), F.cross_entropy(pred, targ))
    assert FocalLossFlat(gamma=2.0)(pred, targ) < F.cross_entropy(pred, targ)
    with pytest.raises(ValueError, match="gamma"):
        FocalLossFlat(gamma=-1)


def test_ce_dice_is_the_sum():
    pred, targ = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    expect = F.cross_entropy(pred, targ) + 0.5 * DiceLoss()(pred, targ)
    assert torch.allclose(CrossEntropyDiceLoss(dice_weight=0.5)(pred, targ), expect)


def test_losses_train_a_pixel_classifier():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 8, 8)
    targ = (x[:, 0] > 0).long()
    for loss in (DiceLoss(), FocalLossFlat(), CrossEntropyDiceLoss()):
        conv = torch.nn.Conv2d(2, 2, 1)
        opt = torch.optim.SGD(conv.parameters(), lr=0.5)
        first = float(loss(conv(x), targ).detach())
        for _ in range(30):
            opt.zero_grad()
            loss(conv(x), targ).backward()
            opt.step()
        assert float(loss(conv(x), targ).detach()) < first * 0.7, type(loss).__name__


def test_shape_errors_and_decoding():
    with pytest.raises(ValueError, match=r"logits \[B, C, H, W\]"):
        DiceLoss()(torch.randn(2, 3, 4, 4), torch.zeros(2, 5, 5, dtype=torch.long))
    out = torch.randn(1, 3, 2, 2)
    loss = FocalLossFlat()
    assert torch.allclose(loss.activation(out).sum(1), torch.ones(1, 2, 2))
    assert torch.equal(loss.decodes(out), out.argmax(1))


@pytest.mark.parametrize("loss", [DiceLoss(ignore_index=11, smooth=0.5), FocalLossFlat(gamma=1.5, ignore_index=11),
                                  CrossEntropyDiceLoss(ignore_index=11, dice_weight=0.3)])
def test_losses_rebuild_from_export_config(loss):
    new = get_loss_class(type(loss).__name__)(**loss.export_config())
    pred, targ = torch.randn(2, 12, 4, 4), torch.randint(0, 12, (2, 4, 4))
    assert torch.allclose(new(pred, targ), loss(pred, targ))
