"""Presizing (one fused interpolation), key points through every geometric transform, item transforms with
points and all pad modes, and export of the deterministic transforms."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torchvision.transforms import v2

from learnkit.vision.augment import (BatchResize, BatchTransform, GeometricAug, LightingAug, apply_batch_tfms,
                                     aug_transforms, validation_tfms)
from learnkit.vision.normalize import Normalize
from learnkit.vision.transforms import RandomResizedCrop, Resize, apply_item_tfms, transform_from_config


class CountResampling(TorchFunctionMode):
    """Counts calls of the resampling functions (a torch function mode: no library code is patched)."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (F.grid_sample, F.interpolate, F.affine_grid):
            self.calls.append(func.__name__)
        return func(*args, **(kwargs or {}))


# --- presizing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_hw", [(17, 23), (64, 64), (100, 40), (300, 500), (1, 1)])
@pytest.mark.parametrize("size", [32, (24, 40)])
def test_presizing_outputs_size_for_any_input(in_hw, size):
    torch.manual_seed(0)
    tfms = aug_transforms(size=size, min_scale=0.35)
    x = torch.rand(3, 3, *in_hw)
    masks = torch.randint(0, 4, (3, *in_hw))
    pts = torch.rand(3, 5, 2) * torch.tensor([in_hw[1] - 1, in_hw[0] - 1])
    want = (size, size) if isinstance(size, int) else size
    for training in (True, False):
        out, out_masks, out_pts = apply_batch_tfms(tfms, x, masks, training=training, points=pts)
        assert out.shape == (3, 3, *want) and out_masks.shape == (3, *want) and out_pts.shape == pts.shape
        assert out_masks.dtype == masks.dtype and torch.isfinite(out_pts).all()


@pytest.mark.parametrize("align_corners", [True, False])
def test_validation_is_a_deterministic_centre_crop(align_corners):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 80)
    tfms = aug_transforms(size=20, min_scale=0.5, align_corners=align_corners)
    val1 = apply_batch_tfms(tfms, x, training=False)
    val2 = apply_batch_tfms(tfms, x, training=False)
    assert torch.equal(val1, val2)
    # the centre 40x40 square, resized 40 -> 20 in one bilinear interpolation
    ref = F.interpolate(x[..., 20:60], size=(20, 20), mode="bilinear", align_corners=align_corners)
    assert torch.allclose(val1, ref, atol=1e-5)
    assert not torch.allclose(val1, F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=align_corners),
                              atol=1e-2)  # not a squish
    train = apply_batch_tfms(tfms, x, training=True)
    assert train.shape == val1.shape and not torch.allclose(train, val1, atol=1e-3)
    assert [type(t).__name__ for t in validation_tfms(tfms)] == ["BatchResize"]


def test_batch_resize_same_size_is_identity_and_moves_points_through_centre():
    x = torch.rand(2, 3, 30, 30)
    assert torch.equal(BatchResize(30)(x), x)
    pts = torch.tensor([[[14.5, 14.5]], [[0.0, 0.0]]])
    _, out = BatchResize(60, align_corners=False)(x, points=pts)
    assert torch.allclose(out[0], torch.tensor([[29.5, 29.5]]), atol=1e-4)  # the centre stays the centre
    assert torch.allclose(out[1], torch.tensor([[0.5, 0.5]]), atol=1e-4)  # pixel 0 covers output pixels 0..1


@pytest.mark.parametrize("with_masks", [False, True])
def test_presizing_interpolates_once(with_masks):
    x = torch.rand(4, 3, 50, 70)
    masks = torch.randint(0, 3, (4, 50, 70)) if with_masks else None
    aug = GeometricAug(max_rotate=20, max_zoom=1.3, p_affine=1.0, size=32, min_scale=0.5)
    for training in (True, False):
        with CountResampling() as counter:
            apply_batch_tfms([aug], x, masks, training=training)
        assert counter.calls == ["grid_sample"] * (2 if with_masks else 1)  # images (and masks): one each


def test_presizing_output_is_one_grid_sample_of_the_input():
    # the whole augmentation is one resampling of the original pixels with the drawn grid
    from learnkit.vision.augment import _grid
    x = torch.rand(5, 3, 45, 60)
    aug = GeometricAug(max_rotate=30, max_zoom=1.5, max_warp=0.3, p_affine=1.0, size=(24, 36), min_scale=0.3,
                       mode="bicubic")
    torch.manual_seed(3)
    matrix, warp = aug.draw(5, (45, 60))
    grid = _grid(matrix, warp, (24, 36), True)
    torch.manual_seed(3)
    out = aug(x)
    assert torch.allclose(out, F.grid_sample(x, grid, mode="bicubic", padding_mode="reflection", align_corners=True),
                          atol=1e-6)
    # and it is sharper than resampling twice (augment at full size, then resize): closer to a
    # checkerboard's exact values, which bilinear blends a little more at each pass
    board = ((torch.arange(45)[:, None] // 3 + torch.arange(60)[None] // 3) % 2).float().expand(1, 3, 45, 60)
    rot = GeometricAug(do_flip=False, max_rotate=7, max_zoom=1.0, max_warp=0, p_affine=1.0, size=(90, 120))
    torch.manual_seed(0)
    one_step = rot(board)
    torch.manual_seed(0)
    full = GeometricAug(do_flip=False, max_rotate=7, max_zoom=1.0, max_warp=0, p_affine=1.0)(board)
    two_step = F.interpolate(full, size=(90, 120), mode="bilinear", align_corners=True)
    # the one-step result keeps more extreme (0 or 1) pixels than rotate-then-resize
    def crisp(im):
        return ((im < 0.05) | (im > 0.95)).float().mean()
    assert crisp(one_step) > crisp(two_step) + 0.05


def test_presizing_training_crop_is_random_and_covers_min_scale():
    torch.manual_seed(0)
    x = torch.arange(100.0).repeat(100, 1).expand(1, 3, 100, 100).contiguous()  # pixel value = column
    aug = GeometricAug(do_flip=False, max_rotate=0, max_zoom=1.0, max_warp=0, size=10, min_scale=0.25)
    widths = []
    for _ in range(40):
        out = aug(x)[0, 0]
        widths.append(float(out[0, -1] - out[0, 0]))
    assert min(widths) >= 0.5 * 99 - 1e-3 and max(widths) <= 99 + 1e-3  # side = sqrt(area) >= sqrt(0.25)
    assert max(widths) - min(widths) > 20  # the scale varies between draws


def test_batch_true_draws_once_for_the_batch():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 30, 40).expand(6, -1, -1, -1).contiguous()
    for tfm in (GeometricAug(max_rotate=30, p_affine=1.0, size=20, min_scale=0.3, batch=True),
                LightingAug(0.5, 1.0, batch=True)):
        out = tfm(x)
        assert all(torch.allclose(o, out[0], atol=1e-6) for o in out)
    per_item = GeometricAug(max_rotate=30, p_affine=1.0, size=20, min_scale=0.3)(x)
    assert not all(torch.allclose(o, per_item[0], atol=1e-3) for o in per_item)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_presizing_masks_stay_nearest_and_aligned(mode):
    torch.manual_seed(0)
    masks = torch.zeros(8, 40, 56, dtype=torch.long)
    masks[:, 8:30, 4:28] = 3
    masks[:, 20:, 30:] = 7
    images = (masks.float() / 7)[:, None].expand(-1, 3, -1, -1).contiguous()
    tfms = aug_transforms(max_rotate=30, max_zoom=1.3, max_warp=0.3, p_affine=1.0, size=(32, 48), min_scale=0.4,
                          mode=mode, max_lighting=0)
    for training in (True, False):
        out, out_masks = apply_batch_tfms(tfms, images, masks, training=training)
        assert set(out_masks.unique().tolist()) <= {0, 3, 7}
        classes = torch.tensor([0, 3, 7])
        nearest_class = classes[((out[:, 0, ..., None] * 7) - classes).abs().argmin(-1)]
        assert (nearest_class == out_masks).float().mean() > 0.95
        assert (nearest_class == out_masks.flip(-1)).float().mean() < 0.8  # (the check can fail)


# --- key points --------------------------------------------------------------------------------------

def _bright_pixels(b: int, h: int, w: int, margin: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One bright pixel per black image; its key point ``(x, y)`` = ``(column, row)``."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(margin, h - margin, (b,), generator=g)
    cols = torch.randint(margin, w - margin, (b,), generator=g)
    x = torch.zeros(b, 3, h, w)
    x[torch.arange(b), :, rows, cols] = 1.0
    return x, torch.stack([cols, rows], -1).float()[:, None]


def _check_point_marks_pixel(out: torch.Tensor, pts: torch.Tensor) -> int:
    """For items whose point lands inside the output: the brightest pixel is within 1 px of it. For points
    well outside (more than the 10 px an upscaled bilinear footprint reaches; zero padding), nothing bright
    remains. Returns how many were inside."""
    b, _, h, w = out.shape
    inside = 0
    for img, (px, py) in zip(out[:, 0], pts[:, 0].tolist()):
        if 0.5 <= px <= w - 1.5 and 0.5 <= py <= h - 1.5:
            idx = int(img.argmax())
            r, c = divmod(idx, w)
            assert abs(c - px) <= 1 and abs(r - py) <= 1, (c, r, px, py)
            assert img.max() > 0.05
            inside += 1
        elif px < -10 or py < -10 or px > w + 9 or py > h + 9:
            assert img.abs().max() < 1e-6, (px, py)
    return inside


GEOMETRIC = {
    "flip": dict(do_flip=True, flip_vert=True, max_rotate=0, max_zoom=1.0, max_warp=0),
    "rotate": dict(do_flip=False, max_rotate=45, max_zoom=1.0, max_warp=0, p_affine=1.0),
    "zoom": dict(do_flip=False, max_rotate=0, min_zoom=1.0, max_zoom=2.0, max_warp=0, p_affine=1.0),
    # zoomed in enough that the sampling grid never steps over the bright pixel
    "warp": dict(do_flip=False, max_rotate=0, min_zoom=1.8, max_zoom=1.8, max_warp=0.4, p_affine=1.0),
    "all": dict(do_flip=True, flip_vert=True, max_rotate=30, min_zoom=1.8, max_zoom=2.2, max_warp=0.3, p_affine=1.0),
    "presize-crop": dict(do_flip=False, max_rotate=0, max_zoom=1.0, max_warp=0, size=(70, 90), min_scale=0.3),
    "presize-all": dict(do_flip=True, max_rotate=30, max_zoom=1.5, max_warp=0.2, p_affine=1.0, size=(70, 90),
                        min_scale=0.3),
    "presize-zoom-out": dict(do_flip=False, max_rotate=10, min_zoom=0.7, max_zoom=0.9, max_warp=0.0,
                             p_affine=1.0, size=(100, 120)),
}


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("name", list(GEOMETRIC))
def test_key_point_follows_a_bright_pixel(name, align_corners):
    aug = GeometricAug(pad_mode="zeros", align_corners=align_corners, **GEOMETRIC[name])
    torch.manual_seed(0)
    total = 0
    for seed in range(8):
        x, pts = _bright_pixels(32, 36, 44, margin=0, seed=seed)
        out, out_pts = aug(x, points=pts)
        assert out_pts.shape == pts.shape
        total += _check_point_marks_pixel(out, out_pts)
    assert total > 48  # many of the 256 draws are checked, not skipped


def test_key_points_with_masks_and_lighting_keep_the_structure():
    torch.manual_seed(0)
    x, pts = _bright_pixels(6, 30, 30, margin=2, seed=0)
    masks = torch.zeros(6, 30, 30, dtype=torch.long)
    tfms = aug_transforms(size=40, min_scale=0.5, pad_mode="zeros") + [Normalize((0.0,) * 3, (1.0,) * 3)]
    out, out_masks, out_pts = apply_batch_tfms(tfms, x, masks, points=pts)
    assert out.shape == (6, 3, 40, 40) and out_masks.shape == (6, 40, 40) and out_pts.shape == (6, 1, 2)
    out2, out_pts2 = apply_batch_tfms(tfms, x, training=False, points=pts)
    assert _check_point_marks_pixel(out2, out_pts2) == 6  # the centre crop of a square keeps every point
    assert torch.allclose(out_pts2, pts * 39 / 29, atol=1e-4)  # align_corners=True: corner centres fixed


def test_points_that_leave_the_image_keep_outside_coordinates():
    x = torch.zeros(1, 3, 20, 20)
    pts = torch.tensor([[[0.0, 10.0], [19.0, 10.0]]])
    aug = GeometricAug(do_flip=False, max_rotate=0, min_zoom=2.0, max_zoom=2.0, max_warp=0, p_affine=1.0)
    torch.manual_seed(0)
    _, out = aug(x, points=pts)
    assert out[0, 0, 0] < 0 or out[0, 1, 0] > 19  # zoomed x2: at least one edge point is now outside
    assert torch.isfinite(out).all()


def test_points_api_errors_and_backward_compatibility():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="points"):
        apply_batch_tfms(aug_transforms(), x, points=torch.zeros(2, 3))
    with pytest.raises(TypeError, match="key points"):
        apply_batch_tfms([lambda im: im * 2], x, points=torch.zeros(2, 1, 2))
    # without points: plain callables and the old return structure, exactly as before
    assert torch.equal(apply_batch_tfms([lambda im: im * 2], x), x * 2)
    m = torch.zeros(2, 8, 8, dtype=torch.long)
    out = apply_batch_tfms([Normalize((0.5,) * 3, (0.5,) * 3)], x, m)
    assert isinstance(out, tuple) and len(out) == 2 and out[1] is m
    assert isinstance(apply_batch_tfms([BatchResize(4)], x), torch.Tensor)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="lanczos"), "mode"), (dict(pad_mode="wrap"), "pad_mode"), (dict(min_scale=0.0), "min_scale"),
    (dict(max_warp=1.5), "max_warp"), (dict(min_zoom=2.0, max_zoom=1.0), "min_zoom"), (dict(size=(1, 2, 3)), "size"),
])
def test_geometric_aug_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeometricAug(**kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda: RandomResizedCrop(10, ratio=(2.0, 1.0)), "ratio"), (lambda: RandomResizedCrop(10, val_xtra=-1), "val_xtra"),
    (lambda: RandomResizedCrop(10, min_scale=1.5), "min_scale"), (lambda: BatchResize(10, mode="area"), "mode"),
    (lambda: BatchResize(10, pad_mode="wrap"), "pad_mode"), (lambda: LightingAug(0.2, p_lighting=2), "p_lighting"),
    (lambda: aug_transforms(mult=-1), "mult"), (lambda: aug_transforms(size=0), "size"),
])
def test_other_errors_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_aug_transforms_signature_and_xtra_tfms():
    extra = Normalize((0.5,) * 3, (0.5,) * 3)
    tfms = aug_transforms(mult=2.0, max_rotate=10, max_warp=0.2, max_lighting=0.3, xtra_tfms=[extra])
    assert tfms[-1] is extra and tfms[0].max_rotate == 20 and abs(tfms[0].max_warp - 0.4) < 1e-9
    assert abs(tfms[1].max_lighting - 0.6) < 1e-9
    assert aug_transforms(xtra_tfms=extra)[-1] is extra
    assert all(isinstance(t, BatchTransform) for t in aug_transforms())


# --- item transforms with points -----------------------------------------------------------------

def _bright_item(h: int, w: int, r: int, c: int) -> torch.Tensor:
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    img[:, r, c] = 120  # (not 255: bicubic overshoot would saturate into ties)
    return img


def _item_point_ok(out: torch.Tensor, pt: torch.Tensor) -> bool:
    h, w = out.shape[-2:]
    r, c = divmod(int(out[0].float().argmax()), w)
    return abs(c - float(pt[0, 0])) <= 1 and abs(r - float(pt[0, 1])) <= 1 and out.max() > 0


@pytest.mark.parametrize("tfm", [
    Resize((60, 80)), Resize((60, 80), "squish"), Resize((70, 90), "pad", pad_mode="zeros"),
    Resize((70, 90), "pad", pad_mode="reflection"), Resize((70, 90), "pad", pad_mode="border"),
    Resize(20, "crop", "bilinear"), Resize((80, 100), "squish", "nearest"),
    RandomResizedCrop((64, 72), min_scale=0.3), RandomResizedCrop(24, min_scale=0.5, interpolation="bilinear"),
], ids=lambda t: repr(t))
def test_item_transforms_move_points_with_the_bright_pixel(tfm):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    checked = 0
    for _ in range(20):
        r, c = int(torch.randint(3, 37, (1,), generator=g)), int(torch.randint(3, 47, (1,), generator=g))
        img = _bright_item(40, 50, r, c)
        for training in (True, False):
            out, pts = tfm(img, training=training, points=torch.tensor([[float(c), float(r)]]))
            h, w = out.shape[-2:]
            if 2 <= float(pts[0, 0]) <= w - 3 and 2 <= float(pts[0, 1]) <= h - 3:  # (edges replicate in resizing)
                assert _item_point_ok(out, pts), (repr(tfm), training, r, c, pts)
                checked += 1
    assert checked >= 8


def test_item_transforms_with_mask_and_points_return_all_three():
    mask = torch.zeros(40, 50, dtype=torch.uint8)
    mask[10:20, 10:20] = 1
    img = _bright_item(40, 50, 15, 15)
    pts = torch.tensor([[15.0, 15.0], [0, 0]])
    out = apply_item_tfms([Resize(30, "pad", pad_mode="reflection"), RandomResizedCrop(20, 0.5)], img, mask,
                          training=False, points=pts)
    assert len(out) == 3 and out[0].shape == (3, 20, 20) and out[1].shape == (20, 20) and out[2].shape == (2, 2)
    assert set(out[1].unique().tolist()) <= {0, 1}
    # a plain torchvision v2 transform moves the points as tv_tensors.KeyPoints
    img2, pts2 = apply_item_tfms([v2.RandomHorizontalFlip(p=1.0)], img, points=pts)
    assert torch.equal(img2, img.flip(-1)) and torch.allclose(pts2, torch.tensor([[34.0, 15.0], [49.0, 0.0]]))
    # without points, the structure of old calls is unchanged
    assert isinstance(apply_item_tfms([Resize(10)], img), torch.Tensor)
    assert len(apply_item_tfms([Resize(10)], img, mask)) == 2
    with pytest.raises(ValueError, match="points"):
        Resize(10)(img, points=torch.zeros(3))


def test_random_resized_crop_draws_like_torchvision():
    img = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    torch.manual_seed(5)
    ours = RandomResizedCrop(24, 0.3)(img)
    torch.manual_seed(5)
    theirs = v2.RandomResizedCrop((24, 24), scale=(0.3, 1.0), antialias=True,
                                  interpolation=v2.InterpolationMode.BICUBIC)(img)
    assert torch.equal(ours, theirs)


# --- pad modes ----------------------------------------------------------------------------------------

def test_resize_pad_modes_including_pads_wider_than_the_image():
    img = torch.full((3, 100, 4), 200, dtype=torch.uint8)
    img[:, :, 0] = 100  # a darker left column
    for mode in ("reflection", "border"):
        out = Resize(40, "pad", "bilinear", mode)(img)  # resized to 40 x 2, then padded 19 px a side
        assert out.shape == (3, 40, 40) and out.min() >= 90  # no zero padding anywhere
    assert Resize(40, "pad", pad_mode="zeros")(img)[:, :, 0].max() == 0
    border = Resize(40, "pad", "nearest", "border")(torch.arange(4, dtype=torch.uint8).repeat(3, 4, 1))
    assert (border[0, :, :10] == 0).all() and (border[0, :, -10:] == 3).all()  # edges repeated
    thin = Resize(40, "pad", "bilinear", "reflection")(torch.full((3, 400, 4), 50, dtype=torch.uint8))  # 1 px wide
    assert thin.shape == (3, 40, 40) and (thin == 50).all()
    with pytest.raises(ValueError, match="pad_mode"):
        Resize(10, "pad", pad_mode="wrap")


# --- export -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tfm", [
    *[Resize((12, 20), m, i, p) for m in ("crop", "pad", "squish") for i in ("nearest", "bilinear", "bicubic")
      for p in ("zeros", "reflection", "border")],
    RandomResizedCrop((16, 24), 0.3, (0.5, 2.0), "bilinear", 0.2),
    BatchResize(24), BatchResize((16, 32), "nearest", "zeros", False), Normalize((0.1, 0.2, 0.3), (1.0, 2.0, 3.0)),
])
def test_every_exported_transform_round_trips(tfm):
    back = transform_from_config(json.loads(json.dumps(tfm.export_config())))
    assert type(back) is type(tfm) and back.export_config() == tfm.export_config() and repr(back) == repr(tfm)
    img = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    x = img[None].float() / 255
    if isinstance(tfm, BatchTransform):
        assert torch.equal(back(x), tfm(x))
    else:
        assert torch.equal(back(img, training=False), tfm(img, training=False))


def test_old_configs_and_presizing_export():
    assert transform_from_config({"type": "Resize", "size": [8, 8], "method": "pad", "interpolation": "bilinear"}
                                 ).pad_mode == "zeros"
    from learnkit.vision import ImageDataLoaders
    tfms = aug_transforms(size=(24, 32), mode="bicubic") + [Normalize((0.5,) * 3, (0.5,) * 3)]
    dls = ImageDataLoaders(None, None, device="cpu", vocab=["a", "b"], batch_tfms=tfms)
    cfg = json.loads(json.dumps(dls.export_config()))
    assert [c["type"] for c in cfg["batch_tfms"]] == ["BatchResize", "Normalize"]
    back = ImageDataLoaders.from_config(cfg, device="cpu")
    x = torch.randint(0, 256, (2, 3, 50, 60), dtype=torch.uint8)
    assert torch.allclose(back.prepare_images(x, training=False), dls.prepare_images(x, training=False))
    assert back.prepare_images(x, training=False).shape == (2, 3, 24, 32)
