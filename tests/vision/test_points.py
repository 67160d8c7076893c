"""PointBlock: key-point targets that move with their images (fastbook ch. 6, BIWI head pose)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit.core.cache import presized_cache
from learnkit.vision import (DataBlock, DataBlockError, FuncSplitter, ImageBlock, MSELossFlat, PointBlock,
                             RandomResizedCrop, Resize, aug_transforms, get_image_files, load_learner, show_results,
                             vision_learner)
from learnkit.vision.points import scale_points, unscale_points

torch.set_num_threads(1)

H, W = 24, 32


def blob(x: int, y: int, h: int = H, w: int = W) -> np.ndarray:
    """A dark image with a bright Gaussian blob centred on pixel (x, y)."""
    yy, xx = np.mgrid[:h, :w]
    g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2 ** 2))
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2)


def get_ctr(o: Path) -> list[list[float]]:
    """The point of ``<x>_<y>.png``."""
    x, y = o.stem.split("_")
    return [[float(x), float(y)]]


@pytest.fixture(scope="module")
def biwi(tmp_path_factory) -> Path:
    """Two folders like BIWI's: '01' (training) and '13' (validation), a bright blob at the labelled point."""
    root = tmp_path_factory.mktemp("biwi")
    rng = np.random.default_rng(0)
    for folder, n in (("01", 8), ("13", 4)):
        (root / folder).mkdir()
        for _ in range(n):
            x, y = int(rng.integers(8, W - 8)), int(rng.integers(7, H - 7))
            Image.fromarray(blob(x, y)).save(root / folder / f"{x}_{y}.png")
    return root


def biwi_block(batch_tfms, item_tfms=None, get_y=get_ctr) -> DataBlock:
    return DataBlock(blocks=(ImageBlock, PointBlock), get_items=get_image_files, get_y=get_y,
                     splitter=FuncSplitter(lambda o: o.parent.name == "13"), item_tfms=item_tfms,
                     batch_tfms=batch_tfms)


def argmax_xy(img: torch.Tensor) -> torch.Tensor:
    """(x, y) of the brightest pixel of a ``[3, H, W]`` image."""
    g = img.float().sum(0)
    i = int(g.argmax())
    return torch.tensor([i % g.shape[1], i // g.shape[1]], dtype=torch.float32)


def test_scale_round_trip_and_convention():
    pts = torch.tensor([[[-0.5, -0.5], [W - 0.5, H - 0.5], [3.0, 7.0]]])
    y = scale_points(pts, (H, W))
    assert y.shape == (1, 6)
    assert y[0, :4].tolist() == [-1.0, -1.0, 1.0, 1.0]  # the outer edges of the image
    assert torch.allclose(unscale_points(y, (H, W)), pts, atol=1e-5)


def test_biwi_datablock_trains_end_to_end(biwi):
    dls = biwi_block(aug_transforms(size=(16, 20))).dataloaders(biwi, bs=4, num_workers=0, device="cpu")
    assert dls.is_points and dls.c == 2 and isinstance(dls.loss_func, MSELossFlat)
    x, y = dls.one_batch()
    assert x.shape == (4, 3, 16, 20) and y.shape == (4, 2) and y.dtype == torch.float32
    learn = vision_learner(dls, "resnet18", pretrained=False, y_range=(-1, 1))
    learn.fit(1, 1e-3)
    losses = learn.recorder.values[-1]
    assert all(np.isfinite(v) for v in losses)
    preds, targs = learn.get_preds()
    assert preds.shape == targs.shape == (4, 2)
    assert preds.min() >= -1 and preds.max() <= 1  # y_range
    fig = show_results(learn, max_n=2)
    assert len(fig.axes[0].collections) == 2  # target dots and predicted crosses
    fig = dls.show_batch(max_n=2)
    assert len(fig.axes[0].collections) == 1  # the target dots


def test_points_follow_the_image_through_training_augmentation(biwi):
    tfms = aug_transforms(size=(24, 32), max_rotate=30, min_zoom=1.0, max_zoom=1.3, max_warp=0, max_lighting=0,
                          p_affine=1.0, do_flip=True)
    dls = biwi_block(tfms).dataloaders(biwi, bs=8, num_workers=0, device="cpu", shuffle=False)
    moved, checked = 0, 0
    for seed in range(3):
        torch.manual_seed(seed)
        x, y = dls.one_batch(split=0)
        imgs = dls.decode_images(x)
        raw = torch.stack([torch.tensor(get_ctr(f)) for f in dls.train.dataset.items])
        for i in range(len(x)):
            pt = dls.decode_target(y[i], x.shape[-2:])[0]
            if not (0 <= pt[0] <= x.shape[-1] - 1 and 0 <= pt[1] <= x.shape[-2] - 1):
                continue  # moved off the image by the augmentation: kept outside, not clipped
            checked += 1
            assert (argmax_xy(imgs[i]) - pt).abs().max() <= 1.0, (i, pt, argmax_xy(imgs[i]))
            moved += bool((pt - raw[i, 0]).abs().max() > 1.0)
    assert checked >= 12 and moved >= 6  # the augmentation really moved most points


def test_validation_resize_is_exact(biwi):
    dls = biwi_block(aug_transforms(size=(12, 16))).dataloaders(biwi, bs=4, num_workers=0, device="cpu")
    x, y = dls.one_batch(split=1)
    assert x.shape[-2:] == (12, 16)
    imgs = dls.decode_images(x)
    for i, f in enumerate(dls.valid.dataset.items):
        px, py = get_ctr(f)[0]
        # the presizing's validation version: one scale about the centre, align_corners=True (s = 15 / 31)
        s = (16 - 1) / (W - 1)
        expected = torch.tensor([(px - (W - 1) / 2) * s + (16 - 1) / 2, (py - (H - 1) / 2) * s + (12 - 1) / 2])
        pt = dls.decode_target(y[i], x.shape[-2:])[0]
        assert torch.allclose(pt, expected, atol=1e-4)
        assert (argmax_xy(imgs[i]) - pt).abs().max() <= 1.0


def test_item_resize_moves_points(biwi):
    dls = biwi_block([], item_tfms=Resize((12, 16), method="squish")).dataloaders(biwi, bs=4, num_workers=0,
                                                                                  device="cpu")
    x, y = dls.one_batch(split=1)
    f = dls.valid.dataset.items[0]
    px, py = get_ctr(f)[0]
    expected = torch.tensor([(px + 0.5) / 2 - 0.5, (py + 0.5) / 2 - 0.5])  # squish 2x: pixel areas scale
    assert torch.allclose(dls.decode_target(y[0], (12, 16))[0], expected, atol=1e-4)


@pytest.mark.parametrize("get_y, match", [
    (lambda o: [[1.0, 2.0]] * (2 if o.stem.startswith("1") else 1) if o.parent.name == "13" else [[1.0, 2.0]],
     "same number of points"),
    (lambda o: [[float("nan"), 2.0]] if o.parent.name == "13" else [[1.0, 2.0]], "infinite"),
    (lambda o: [[1.0, 2.0, 3.0]] if o.parent.name == "13" else [[1.0, 2.0]], r"\[N, 2\]"),
    (lambda o: [[W + 5.0, 2.0]] if o.parent.name == "13" else [[1.0, 2.0]], "point 0 .*outside"),
])
def test_bad_points_name_the_item(biwi, get_y, match):
    dls = biwi_block([], item_tfms=Resize(16), get_y=get_y).dataloaders(biwi, bs=4, num_workers=0, device="cpu")
    bad = [f for f in dls.valid.dataset.items if get_y(f) != [[1.0, 2.0]]]
    assert bad
    with pytest.raises(DataBlockError, match=match) as e:
        for i in range(len(dls.valid.dataset)):
            dls.valid.dataset[i]
    assert any(str(f) in str(e.value) for f in bad)


def test_first_item_wrong_shape_fails_at_build(biwi):
    with pytest.raises(DataBlockError, match=r"PointBlock.*\[N, 2\]"):
        biwi_block([], get_y=lambda o: [1.0, 2.0, 3.0]).dataloaders(biwi, bs=4, num_workers=0, device="cpu")


def test_export_predict_round_trip(biwi, tmp_path):
    dls = biwi_block(aug_transforms(size=(12, 16))).dataloaders(biwi, bs=4, num_workers=0, device="cpu")
    learn = vision_learner(dls, "resnet18", pretrained=False, y_range=(-1, 1), path=tmp_path)
    f = next((biwi / "13").iterdir())
    pts, raw, _ = learn.predict(f)
    assert pts.shape == (1, 2) and raw.shape == (2,)
    assert torch.allclose(pts, unscale_points(raw, (12, 16)), atol=1e-5)  # pixels of the 12x16 model input
    loaded = load_learner(learn.export(tmp_path / "points.safetensors"), cpu=True)
    assert isinstance(loaded.dls.y_block, PointBlock) and loaded.dls.c == 2
    pts2, raw2, _ = loaded.predict(f)
    assert torch.allclose(pts2, pts, atol=1e-4) and torch.allclose(raw2, raw, atol=1e-5)


def test_cache_refuses_points(biwi):
    with pytest.raises(ValueError, match="key points"):
        biwi_block([], item_tfms=Resize(16)).dataloaders(biwi, bs=4, num_workers=0, device="cpu",
                                                     cache=presized_cache(True))


def test_point_cropped_off_by_a_fixed_item_transform_stays_outside(biwi):
    """Only the decoded image is checked: a point that a fixed crop cuts off goes on through the random item
    transforms, outside the image, instead of raising."""
    dblock = biwi_block([], item_tfms=[Resize((24, 8)), RandomResizedCrop(8, min_scale=0.9)])
    ds = dblock.dataloaders(biwi, bs=4, num_workers=0, device="cpu").train.dataset
    pts = torch.stack([ds[(i, i)][1] for i in range(len(ds))])
    assert ds.training and pts.shape == (len(ds), 1, 2)
    assert ((pts[..., 0] < -0.5) | (pts[..., 0] > 7.5)).any()
