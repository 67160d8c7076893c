"""``dls.train`` / ``dls.valid`` / a vision ``dls.test_dl(...)`` iterate batches as the model sees them (fastai's
``TfmdDL``: on the device, batch transforms applied), while the Learner reads the loaders themselves and prepares
each batch exactly once."""
from __future__ import annotations

import torch
from torch import nn

from learnkit import Callback, CrossEntropyLossFlat, DataLoaders, Learner, ValidateEveryCallback, accuracy
from learnkit.core.data import DeviceLoader, raw_loader
from learnkit.vision import (DataBlock, ImageBlock, ImageDataLoaders, Normalize, PointBlock, RandomSplitter,
                             TensorImage, first, get_image_files)

from .coretools import make_dls, two_class_data, write_two_class_images


def _image_dls(tmp_path, **kw):
    files = write_two_class_images(tmp_path / "imgs", n=16)
    return ImageDataLoaders.from_name_func(tmp_path, files, label_func=lambda name: name[0], bs=4, valid_pct=0.25,
                                           seed=0, device="cpu", **kw), files


def test_iterating_dls_valid_gives_the_batch_the_model_sees(tmp_path):
    dls, _ = _image_dls(tmp_path, batch_tfms=Normalize.from_stats([0.5] * 3, [0.25] * 3))
    assert isinstance(dls.valid, DeviceLoader) and isinstance(dls.train, DeviceLoader)
    raw_x = next(iter(dls[1]))[0]
    xb, yb = first(dls.valid)
    assert raw_x.dtype == torch.uint8 and xb.dtype == torch.float32
    expected = (raw_x.float() / 255 - 0.5) / 0.25
    assert torch.allclose(xb, expected, atol=1e-5)
    assert torch.equal(dls.valid.one_batch()[0], xb) and torch.equal(dls.one_batch(1)[0], xb)
    assert len(dls.valid) == len(dls[1]) and dls.valid.dataset is dls[1].dataset and dls.valid.bs == dls[1].batch_size
    decoded = dls.valid.decode((xb, yb))  # fastbook ch. 18: TensorImage(dls.train.decode((x,))[0][0]).show(ctx=ax)
    assert torch.allclose(decoded[0], raw_x.float() / 255, atol=1e-5) and decoded[1] is yb
    ax = TensorImage(decoded[0][0]).show(title="first")
    assert ax.get_title() == "first" and ax.get_images()[0].get_array().shape == (16, 16, 3)
    assert dls.valid_ds is dls[1].dataset and dls.train_ds is dls[0].dataset and len(dls.train_ds) == 12


def test_a_prepared_batch_is_never_transformed_twice(tmp_path):
    dls, _ = _image_dls(tmp_path, batch_tfms=Normalize.from_stats([0.5] * 3, [0.25] * 3))
    prepared = first(dls.valid)
    again = dls.prepare_batch(prepared, training=False)
    assert again[0] is prepared[0]
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, progress=False)
    via_view, _ = learn.get_preds(dl=dls.valid)
    via_index, _ = learn.get_preds(ds_idx=1)
    assert torch.allclose(via_view, via_index)


def test_key_points_are_scaled_once_through_the_view(tmp_path):
    files = write_two_class_images(tmp_path / "imgs", n=8)
    block = DataBlock((ImageBlock, PointBlock), get_items=get_image_files, get_y=lambda p: torch.tensor([[8.0, 4.0]]),
                      splitter=RandomSplitter(0.25, seed=0))
    dls = block.dataloaders(tmp_path / "imgs", bs=4, device="cpu")
    xb, pts = first(dls.valid)
    raw_pts = next(iter(dls[1]))[1]
    assert torch.equal(raw_pts.reshape(-1, 2)[0], torch.tensor([8.0, 4.0]))
    # pixel (8, 4) of a 16x16 image, scaled once to [-1, 1] (pixel centres): (0.0625, -0.4375)
    assert torch.allclose(pts.reshape(-1, 2)[0], torch.tensor([0.0625, -0.4375]), atol=1e-5)
    assert torch.equal(dls.one_batch(1)[1], pts)
    assert torch.equal(dls.prepare_batch((xb, pts), training=False)[1], pts)
    assert len(files) == 8


def test_vision_test_dl_is_a_view_and_predictions_agree(tmp_path):
    dls, files = _image_dls(tmp_path)
    tdl = dls.test_dl(files[:3])
    assert isinstance(tdl, DeviceLoader) and not tdl.training
    x, = first(tdl)
    assert x.dtype == torch.float32 and x.shape == (3, 3, 16, 16)
    torch.manual_seed(0)
    learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)), loss_func=CrossEntropyLossFlat(),
                    progress=False)
    preds, _ = learn.get_preds(dl=tdl)
    with torch.no_grad():
        assert torch.allclose(preds, learn.model.eval()(x).softmax(-1), atol=1e-5)
    assert raw_loader(tdl) is tdl.raw and first(raw_loader(tdl))[0].dtype == torch.uint8


def test_the_learner_trains_on_the_loaders_themselves_and_the_views_follow_a_swap():
    x, y = two_class_data(64)
    dls = make_dls(x, y, bs=8)
    raw_train = dls[0]
    seen = []

    class Spy(Callback):
        def before_batch(self):
            seen.append(self.learn.dl)

    learn = Learner(dls, nn.Linear(2, 2), loss_func=CrossEntropyLossFlat(), metrics=accuracy, progress=False)
    learn.fit(1, cbs=[ValidateEveryCallback(3), Spy()])
    assert len(learn.recorder.values) == 3, "7 steps in rounds of 3, 3 and 1: validated three times"
    assert dls[0] is raw_train and dls.train.raw is raw_train, "the round loader is swapped back for the loader itself"
    assert not any(isinstance(dl, DeviceLoader) for dl in seen)
    other = make_dls(x[:16], y[:16], bs=4)
    dls.train = other.train  # a view is unwrapped: dls keeps the loader itself
    assert dls[0] is other[0] and dls.train.dls is dls
    dls.valid = None
    assert dls.valid is None and dls.loaders == [other[0]]


def test_plain_dataloaders_views_move_batches_to_the_device():
    dls = DataLoaders([(torch.ones(2, 3), torch.zeros(2))], device="cpu")
    xb, yb = first(dls.train)
    assert xb.device.type == "cpu" and xb.shape == (2, 3) and dls.valid is None
