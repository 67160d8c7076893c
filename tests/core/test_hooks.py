"""Hooks (`learnkit.core.hooks`), `ActivationStats` and fastai's building blocks (`learnkit.core.layers`)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from learnkit import (ActivationStats, ConvLayer, CrossEntropyLossFlat, DataLoaders, Flatten, Hook, HookCallback,
                      Hooks, Learner, ResBlock, TensorLoader, hook_output, hook_outputs, model_sizes,
                      num_features_model, sequential)


def _n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(getattr(m, "_forward_pre_hooks", {}))
               for m in model.modules())


def _cnn() -> nn.Module:
    def conv(ni, nf, act=True):
        layers = [nn.Conv2d(ni, nf, 3, stride=2, padding=1), nn.BatchNorm2d(nf)]
        return nn.Sequential(*layers, *([nn.ReLU()] if act else []))
    return sequential(conv(1, 4), conv(4, 8), conv(8, 2, act=False), nn.AdaptiveAvgPool2d(1), Flatten())


def _image_dls(n: int = 32, bs: int = 8, seed: int = 0) -> DataLoaders:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 12, 12, generator=g) + y.view(-1, 1, 1, 1).float()
    return DataLoaders(TensorLoader(x, y, bs=bs, shuffle=True), TensorLoader(x, y, bs=bs), device="cpu")


# --- Hook / hook_output --------------------------------------------------------------------------------
def test_hook_output_stores_the_detached_output_and_removes_itself():
    model = _cnn()
    x = torch.randn(2, 1, 12, 12)
    with hook_output(model[1]) as h:
        out = model(x)
        assert _n_hooks(model) == 1
    assert _n_hooks(model) == 0 and h.removed
    assert h.stored.shape == (2, 8, 3, 3) and not h.stored.requires_grad
    assert torch.equal(h.stored, model[1](model[0](x)).detach())
    assert out.shape == (2, 2)
    h.remove()  # idempotent


def test_hook_output_detach_false_keeps_the_graph():
    lin = nn.Linear(3, 2)
    with hook_output(lin, detach=False) as h:
        lin(torch.randn(4, 3))
    assert h.stored.requires_grad


def test_grad_hook_stores_the_gradient_of_the_output_even_with_an_inplace_relu_after_it():
    conv = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    x = torch.randn(2, 3, 8, 8)
    with hook_output(conv) as act, hook_output(conv, grad=True) as grad:
        model(x).sum().backward()
    # reference: d out / d conv-output, computed by hand
    o = conv(x).detach().requires_grad_()
    model[3](F.relu(o).flatten(1)).sum().backward()
    assert torch.allclose(grad.stored, o.grad) and act.stored.shape == o.shape
    assert _n_hooks(model) == 0


def test_grad_hook_on_a_frozen_module_reaches_it_when_the_input_asks_for_gradients():
    conv = nn.Conv2d(3, 4, 3).requires_grad_(False)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    with hook_output(conv, grad=True) as g:
        conv(x).pow(2).sum().backward()
    assert g.stored is not None and g.stored.shape == (1, 4, 6, 6)


def test_hook_custom_function_and_cpu():
    lin = nn.Linear(3, 2)
    with Hook(lin, lambda m, i, o: (type(m).__name__, i[0].shape, o.device.type), cpu=True) as h:
        lin(torch.randn(5, 3))
    assert h.stored == ("Linear", torch.Size([5, 3]), "cpu")


def test_hook_refuses_a_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        Hook(lambda x: x, lambda m, i, o: o)


def test_hook_is_removed_when_the_block_raises():
    model = _cnn()
    with pytest.raises(RuntimeError, match="boom"):
        with hook_outputs(model) as hooks:
            model(torch.randn(1, 1, 12, 12))
            raise RuntimeError("boom")
    assert all(h.removed for h in hooks) and _n_hooks(model) == 0


# --- Hooks / hook_outputs ------------------------------------------------------------------------------
def test_hook_outputs_over_children_and_lists():
    model = _cnn()
    with hook_outputs(model) as hooks:
        model(torch.randn(3, 1, 12, 12))
    assert len(hooks) == 5 and [tuple(s.shape) for s in hooks.stored][:3] == [(3, 4, 6, 6), (3, 8, 3, 3), (3, 2, 2, 2)]
    with hook_outputs([model[0], model[2]], grad=True) as grads:
        model(torch.randn(3, 1, 12, 12)).sum().backward()
    assert [tuple(g.shape) for g in grads.stored] == [(3, 4, 6, 6), (3, 2, 2, 2)]
    assert isinstance(grads[0], Hook) and _n_hooks(model) == 0


def test_hooks_with_a_bad_module_leave_none_behind():
    model = _cnn()
    with pytest.raises(TypeError):
        Hooks([model[0], "not a module"], lambda m, i, o: o)
    assert _n_hooks(model) == 0


def test_model_sizes_and_num_features_model():
    model = _cnn()
    sizes = model_sizes(model, (12, 12))
    assert [tuple(s) for s in sizes] == [(1, 4, 6, 6), (1, 8, 3, 3), (1, 2, 2, 2), (1, 2, 1, 1), (1, 2)]
    assert num_features_model(model[:3]) == 2
    assert model.training and _n_hooks(model) == 0  # mode restored, no hook left
    body = nn.Sequential(nn.Conv2d(3, 16, 7, stride=4), nn.Conv2d(16, 24, 7, stride=4))  # needs > 32 pixels
    assert num_features_model(body) == 24


# --- HookCallback --------------------------------------------------------------------------------------
class _Shapes(HookCallback):
    def hook(self, m, i, o):
        return tuple(o.shape)


def test_hook_callback_hooks_leaf_layers_with_params_and_removes_after_fit():
    model = _cnn()
    learn = Learner(_image_dls(), model, loss_func=CrossEntropyLossFlat(), progress=False)
    cb = _Shapes()
    learn.fit(1, cbs=cb)
    assert len(cb.hooks) == 6  # 3 convs + 3 batch norms
    assert cb.hooks.stored[0][1:] == (4, 6, 6)
    assert _n_hooks(model) == 0


def test_a_hook_is_removed_when_fit_raises():
    model = _cnn()

    class Boom(HookCallback):
        def hook(self, m, i, o):
            if self.learn.iter == 1:
                raise RuntimeError("boom in a hook")
            return o.shape
    learn = Learner(_image_dls(), model, loss_func=CrossEntropyLossFlat(), progress=False)
    cb = Boom()
    with pytest.raises(RuntimeError, match="boom in a hook"):
        learn.fit(1, cbs=cb)
    assert _n_hooks(model) == 0

    class Fail(nn.Module):  # the error comes from the model, after the hooks ran
        def __init__(self):
            super().__init__()
            self.net = _cnn()

        def forward(self, x):
            out = self.net(x)
            raise ValueError("bad model")
    failing = Fail()
    learn = Learner(_image_dls(), failing, loss_func=CrossEntropyLossFlat(), progress=False)
    with pytest.raises(ValueError, match="bad model"):
        learn.fit(1, cbs=_Shapes())
    assert _n_hooks(failing) == 0
    with pytest.raises(ValueError, match="bad model"):  # ActivationStats too
        learn.fit(1, cbs=ActivationStats(with_hist=True))
    assert _n_hooks(failing) == 0


def test_hook_callback_every_hooks_only_some_training_batches():
    model = _cnn()
    seen = []

    class Count(HookCallback):
        def hook(self, m, i, o):
            seen.append((self.learn.training, self.learn.iter))
    learn = Learner(_image_dls(), model, loss_func=CrossEntropyLossFlat(), progress=False)
    learn.fit(1, cbs=Count(modules=[model[0]], every=2))
    assert seen == [(True, 0), (True, 2)] and _n_hooks(model) == 0
    with pytest.raises(ValueError, match="every"):
        HookCallback(every=0)


def test_hook_callback_modules_and_hook_argument():
    model = _cnn()
    cb = HookCallback(modules=[model[2]], hook=lambda m, i, o: o.mean())
    learn = Learner(_image_dls(), model, loss_func=CrossEntropyLossFlat(), progress=False)
    learn.fit(1, cbs=cb)
    assert len(cb.hooks) == 1 and cb.hooks.stored[0].ndim == 0


# --- ActivationStats -----------------------------------------------------------------------------------
def test_activation_stats_records_per_layer_and_batch():
    model = _cnn()
    learn = Learner(_image_dls(), model, loss_func=CrossEntropyLossFlat(), progress=False,
                    cbs=ActivationStats(with_hist=True))
    learn.fit(2)
    st = learn.activation_stats
    means, stds, nz = st.layer_stats(0)
    assert len(means) == 8 and bool((stds > 0).all()) and bool(((nz >= 0) & (nz <= 1)).all())
    # the first conv's statistics of the last training batch, recomputed by hand
    assert st.hist(-2).shape == (40, 8)
    stats = st.stats
    assert len(stats) == 8 and len(stats[0]) == 6 and set(stats[0][0]) == {"mean", "std", "near_zero", "hist"}
    fig = st.plot_layer_stats(0)
    assert [ax.get_title() for ax in fig.axes] == ["mean", "std", "% near zero"]
    ax = st.color_dim(-2)
    assert ax.images and ax.images[0].get_array().shape == (40, 8)
    assert _n_hooks(model) == 0
    assert [a.get_ylabel() for a in learn.recorder.plot_sched().axes] == ["lr", "mom"]  # fastbook ch. 13


def test_activation_stats_values_match_the_activations():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    dls = DataLoaders(TensorLoader(x, y, bs=16), None, device="cpu")
    a = model[0](x).detach()  # the one batch is recorded before the optimizer step
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), progress=False)
    cb = ActivationStats()
    learn.fit(1, cbs=cb)
    means, stds, nz = cb.layer_stats(0)
    assert torch.allclose(means[0], a.mean(), atol=1e-6) and torch.allclose(stds[0], a.std(), atol=1e-6)
    assert float(nz[0]) == pytest.approx(float((a <= 0.05).float().mean()))
    with pytest.raises(ValueError, match="with_hist"):
        cb.hist(0)


def test_activation_stats_every_and_modules():
    model = _cnn()
    learn = Learner(_image_dls(), model, loss_func=CrossEntropyLossFlat(), progress=False)
    cb = ActivationStats(every=3, modules=[model[0][0], model[1][0]])
    learn.fit(2, cbs=cb)
    assert len(cb.layer_stats(1)[0]) == 3  # training batches 0, 3 and 6 of the fit (fastai's train_iter)
    with pytest.raises(ValueError, match="no activation statistics"):
        ActivationStats().layer_stats(0)


def test_activation_stats_makes_no_host_sync_per_batch(monkeypatch):
    """No ``.item()``/``float()``/``.cpu()`` on a tensor during fit: the statistics stay where they are computed."""
    model = _cnn()
    learn = Learner(_image_dls(), model, loss_func=CrossEntropyLossFlat(), progress=False)
    cb = ActivationStats(with_hist=True)
    calls = []
    for name in ("item", "cpu", "tolist", "__float__"):
        orig = getattr(torch.Tensor, name)
        def spy(self, *a, _orig=orig, _name=name, **k):
            calls.append(_name)
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, spy)
    baseline = []
    learn.fit(1)
    baseline, calls[:] = list(calls), []
    learn.fit(1, cbs=cb)
    assert len(calls) == len(baseline), "ActivationStats added host transfers during fit"
    monkeypatch.undo()
    assert len(cb.layer_stats(0)[0]) == 4


# --- building blocks -----------------------------------------------------------------------------------
def test_conv_layer_options():
    layer = ConvLayer(3, 8, ks=5, stride=2, norm_type=None, act_cls=None)
    assert len(layer) == 1 and layer[0].bias is not None and layer[0].padding == (2, 2)
    zero = ConvLayer(3, 8, norm_type="BatchZero")
    assert not zero[1].weight.detach().any()
    after = ConvLayer(3, 8, bn_1st=False, act_cls=nn.LeakyReLU)
    assert isinstance(after[1], nn.LeakyReLU) and isinstance(after[2], nn.BatchNorm2d)
    assert ConvLayer(2, 4, ndim=1)(torch.zeros(1, 2, 10)).shape == (1, 4, 10)
    with pytest.raises(ValueError, match="norm_type"):
        ConvLayer(3, 8, norm_type="Layer")


def test_res_block_starts_as_its_shortcut():
    block = ResBlock(1, 8, 8).eval()
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(block(x), F.relu(x + 1e-3), atol=1e-5)  # fastai's norm bias starts at 1e-3
    se = ResBlock(4, 8, 4, stride=2, reduction=4)
    assert se(torch.randn(1, 32, 8, 8)).shape == (1, 16, 4, 4)
