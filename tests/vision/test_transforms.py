"""Item transforms (Resize, RandomResizedCrop) and batch transforms (augmentation, Normalize), with masks."""
from __future__ import annotations

import pytest
import torch

from learnkit.vision import (GeometricAug, LightingAug, Normalize, RandomResizedCrop, Resize, aug_transforms,
                             imagenet_stats)
from learnkit.vision.transforms import apply_batch_tfms, apply_item_tfms, transform_from_config


def _img(h=60, w=90):
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8)


def test_resize_crop_keeps_the_centre():
    img = torch.zeros(3, 50, 100, dtype=torch.uint8)
    img[:, :, 25:75] = 255  # a white centre square
    out = Resize(50)(img)
    assert out.shape == (3, 50, 50) and out.dtype == torch.uint8
    assert out.float().mean() > 250  # the crop is exactly the centre


def test_resize_squish_and_pad():
    img = torch.full((3, 50, 100), 200, dtype=torch.uint8)
    assert Resize((30, 40), method="squish")(img).shape == (3, 30, 40)
    padded = Resize(40, method="pad")(img)
    assert padded.shape == (3, 40, 40)
    assert padded[:, 0].max() == 0 and padded[:, 20].min() > 150  # zero bands top and bottom, image in the middle
    refl = Resize(40, method="pad", pad_mode="reflection")(img)
    assert refl[:, 0].min() > 150


def test_resize_errors():
    with pytest.raises(ValueError, match="method"):
        Resize(10, method="stretch")
    with pytest.raises(ValueError, match="size"):
        Resize((1, 2, 3))
    with pytest.raises(ValueError, match="interpolation"):
        Resize(10, interpolation="lanczos")


@pytest.mark.parametrize("tfm", [Resize(32), Resize((24, 40), "squish"), Resize(32, "pad"), RandomResizedCrop(32)])
def test_item_transforms_move_masks_with_images(tfm):
    # image = mask * 50 in every channel: after the transform the two must still agree (nearest for masks)
    mask = torch.zeros(60, 90, dtype=torch.uint8)
    mask[10:40, 20:70] = 1
    mask[40:, :30] = 2
    img = (mask * 100).expand(3, -1, -1).contiguous()
    for training in (True, False):
        out_img, out_mask = tfm(img, mask, training=training)
        assert out_img.shape[1:] == out_mask.shape and out_mask.dtype == torch.uint8
        assert set(out_mask.unique().tolist()) <= {0, 1, 2}
        agree = ((out_img[0].float() / 100).round() == out_mask.float()).float().mean()
        assert agree > 0.9


def test_random_resized_crop_random_in_training_fixed_in_validation():
    img = _img()
    rrc = RandomResizedCrop(32, min_scale=0.2)
    assert rrc.random and not Resize(32).random
    torch.manual_seed(0)
    train = [rrc(img, training=True) for _ in range(3)]
    assert not all(torch.equal(train[0], t) for t in train[1:])
    val = [rrc(img, training=False) for _ in range(2)]
    assert torch.equal(val[0], val[1]) and val[0].shape == (3, 32, 32)


def test_apply_item_tfms_with_plain_torchvision_transform():
    from torchvision.transforms import v2
    out = apply_item_tfms([Resize(40), v2.CenterCrop(20)], _img())
    assert out.shape == (3, 20, 20) and type(out) is torch.Tensor


def test_geometric_aug_disabled_is_identity_and_each_item_draws_its_own():
    x = torch.rand(6, 3, 16, 20)
    ident = GeometricAug(do_flip=False, max_rotate=0, max_zoom=1.0, max_warp=0)
    assert torch.allclose(ident(x), x, atol=1e-5)
    flip = GeometricAug(do_flip=True, max_rotate=0, max_zoom=1.0, max_warp=0)
    torch.manual_seed(1)
    same = torch.stack([x[0]] * 16)
    out = flip(same)
    flipped = [torch.allclose(o, x[0].flip(-1), atol=1e-5) for o in out]
    kept = [torch.allclose(o, x[0], atol=1e-5) for o in out]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)  # per-item random draws, not one draw for the batch


def test_geometric_aug_keeps_masks_aligned():
    torch.manual_seed(0)
    masks = torch.zeros(8, 32, 32, dtype=torch.long)
    masks[:, 8:24, 4:20] = 1
    masks[:, 20:, 20:] = 2
    images = (masks.float() / 2)[:, None].expand(-1, 3, -1, -1).contiguous()
    out, out_masks = GeometricAug(max_rotate=30, max_zoom=1.3, max_warp=0.3, p_affine=1.0)(images, masks)
    assert out.shape == images.shape and out_masks.shape == masks.shape and out_masks.dtype == masks.dtype
    assert set(out_masks.unique().tolist()) <= {0, 1, 2}
    agree = ((out[:, 0] * 2).round().long() == out_masks).float().mean()
    assert agree > 0.95
    assert not torch.equal(out_masks, masks)


def test_lighting_aug_stays_in_range_and_leaves_masks():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    m = torch.randint(0, 3, (16, 8, 8))
    out, out_m = LightingAug(0.5, p_lighting=1.0)(x, m)
    assert out.min() >= 0 and out.max() <= 1 and torch.equal(out_m, m)
    assert not torch.allclose(out, x, atol=1e-3)
    assert torch.allclose(LightingAug(0.0, 1.0)(x), x, atol=1e-3)


def test_aug_transforms_are_random_and_skipped_in_validation():
    tfms = aug_transforms() + [Normalize.from_stats(*imagenet_stats)]
    assert [t.random for t in tfms] == [True, True, False]
    x = torch.rand(4, 3, 16, 16)
    val = apply_batch_tfms(tfms, x, training=False)
    assert torch.allclose(val, tfms[-1](x))
    torch.manual_seed(0)
    train = apply_batch_tfms(tfms, x, training=True)
    assert not torch.allclose(train, val)
    assert aug_transforms(max_lighting=0)[-1].__class__ is GeometricAug


def test_normalize_roundtrip_and_errors():
    n = Normalize.from_stats((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(n(x), x * 2 - 1)
    assert torch.allclose(n.decode(n(x)), x)
    with pytest.raises(ValueError, match="std"):
        Normalize((0.5,), (0.0,))


@pytest.mark.parametrize("tfm", [Resize(20, "pad", "bilinear", "reflection"), RandomResizedCrop((16, 24), 0.3),
                                 Normalize((0.1, 0.2, 0.3), (1.0, 2.0, 3.0))])
def test_transform_config_roundtrip(tfm):
    import json
    cfg = json.loads(json.dumps(tfm.export_config()))
    back = transform_from_config(cfg)
    assert type(back) is type(tfm) and back.export_config() == tfm.export_config()
    with pytest.raises(ValueError, match="unknown transform 'Nope'.*@register_transform"):
        transform_from_config({"type": "Nope"})
