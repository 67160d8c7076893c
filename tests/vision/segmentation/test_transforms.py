"""Image and mask move together: a painted image whose class is readable from its pixels must still agree
with its mask after every random flip/rotate/zoom/warp/crop."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from learnkit.vision.segmentation.transforms import apply_paired, apply_seg_batch_tfms, is_random_tfm
from learnkit.vision.transforms import GeometricAug, LightingAug, Normalize, RandomResizedCrop, aug_transforms


def _painted_batch(seg, n=6, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    masks = torch.stack([torch.from_numpy(seg.blocky_mask(h, w, rng)) for _ in range(n)]).long()
    images = torch.from_numpy(seg.PALETTE)[masks].permute(0, 3, 1, 2).float() / 255
    return images, masks


def _agreement(seg, images, masks, ignore=-100):
    keep = masks != ignore
    derived = torch.stack([seg.classes_from_pixels(x) for x in images])
    return float((derived[keep] == masks[keep]).float().mean())


@pytest.mark.parametrize("tfm", [
    GeometricAug(max_rotate=30, max_zoom=1.5, max_warp=0.3, p_affine=1.0),
    GeometricAug(do_flip=True, flip_vert=True, max_rotate=0, max_zoom=1.0, max_warp=0, p_affine=0),
], ids=["rotate-zoom-warp", "flips"])
def test_learnkit_geometric_aug_moves_mask_with_image(seg, tfm):
    torch.manual_seed(1)
    images, masks = _painted_batch(seg)
    out_img, out_mask = apply_seg_batch_tfms([tfm], images, masks, training=True)
    assert out_mask.shape == masks.shape and out_mask.dtype == torch.long
    assert not torch.equal(out_mask, masks), "the transform must actually move something"
    # bilinear blending makes a thin band at class borders ambiguous; everything else must agree
    assert _agreement(seg, out_img, out_mask) > 0.97
    # a transform applied to the image only would break the agreement: check the test can fail
    assert _agreement(seg, out_img, masks) < 0.9


@pytest.mark.parametrize("tfm", [
    v2.RandomAffine(degrees=(20, 40), scale=(1.1, 1.3)),
    v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.RandomVerticalFlip(p=1.0)]),
    v2.RandomResizedCrop((48, 64), scale=(0.3, 0.6), antialias=True),
    v2.RandomPerspective(distortion_scale=0.5, p=1.0),
], ids=["affine", "flips", "resized-crop", "perspective"])
def test_torchvision_v2_transforms_move_mask_with_image(seg, tfm):
    torch.manual_seed(2)
    images, masks = _painted_batch(seg)
    out_img, out_mask = apply_seg_batch_tfms([tfm], images, masks, training=True, ignore_index=4)
    assert not torch.equal(out_mask, masks)
    assert _agreement(seg, out_img, out_mask, ignore=4) > 0.97
    assert _agreement(seg, out_img, masks, ignore=4) < 0.9


def test_pixels_from_outside_the_image_get_the_ignore_index(seg):
    images, masks = _painted_batch(seg, n=1)
    img, mask = apply_paired(v2.RandomAffine(degrees=(45, 45)), images[0], masks[0], ignore_index=11)
    assert mask[0, 0] == 11 and mask[-1, -1] == 11  # the corners come from outside after a 45° rotation
    assert (img[:, 0, 0] == 0).all()
    assert set(mask.unique().tolist()) - {11} <= set(masks.unique().tolist())


def test_random_item_crop_moves_mask_with_image(seg):
    torch.manual_seed(3)
    images, masks = _painted_batch(seg, n=4)
    rrc = RandomResizedCrop((32, 40), min_scale=0.3)
    outs = [rrc((x * 255).round().to(torch.uint8), m.to(torch.uint8), training=True) for x, m in zip(images, masks)]
    out_img = torch.stack([o[0] for o in outs]).float() / 255
    out_mask = torch.stack([o[1] for o in outs]).long()
    assert out_img.shape[-2:] == out_mask.shape[-2:] == (32, 40)
    assert _agreement(seg, out_img, out_mask) > 0.93  # bicubic upsampling widens the blended borders
    assert _agreement(seg, out_img, out_mask.flip(-1)) < 0.85


def test_photometric_and_normalize_leave_masks_alone(seg):
    images, masks = _painted_batch(seg, n=3)
    tfms = [LightingAug(max_lighting=0.5, p_lighting=1.0), v2.ColorJitter(brightness=0.5), Normalize((0.5,) * 3, (0.5,) * 3)]
    out_img, out_mask = apply_seg_batch_tfms(tfms, images, masks, training=True)
    assert torch.equal(out_mask, masks)
    assert not torch.allclose(out_img, images)


def test_random_transforms_skipped_in_validation(seg):
    images, masks = _painted_batch(seg, n=2)
    tfms = aug_transforms(p_affine=1.0) + [v2.RandomHorizontalFlip(p=1.0)]
    out_img, out_mask = apply_seg_batch_tfms(tfms, images, masks, training=False)
    assert torch.equal(out_img, images) and torch.equal(out_mask, masks)
    assert all(is_random_tfm(t) for t in tfms) and not is_random_tfm(Normalize((0.5,) * 3, (0.5,) * 3))


def test_images_without_masks(seg):
    images, _ = _painted_batch(seg, n=2)
    out_img, out_mask = apply_seg_batch_tfms([v2.RandomHorizontalFlip(p=1.0)], images, None, training=True)
    assert out_mask is None and torch.equal(out_img, images.flip(-1))
