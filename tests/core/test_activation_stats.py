"""`ActivationStats`' cheap statistics: sampled (or exact) moments and histograms, and NaN activations."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from learnkit import ActivationStats, CrossEntropyLossFlat, DataLoaders, Learner, TensorLoader
from learnkit.core.activation_sampling import _spread_index


def _fit_one_batch(model: nn.Module, x: torch.Tensor, cb: ActivationStats) -> None:
    y = torch.randint(0, 2, (len(x),))
    dls = DataLoaders(TensorLoader(x, y, bs=len(x)), None, device="cpu")
    Learner(dls, model, loss_func=CrossEntropyLossFlat(), progress=False).fit(1, cbs=cb)


def _set_first(value: float, k: int):
    """A forward hook that sets the first ``k`` outputs of training batches to ``value`` (in place)."""
    def hook(m: nn.Module, i, o: torch.Tensor) -> None:
        if m.training:
            with torch.no_grad():
                o.view(-1)[:k] = value
    return hook


def _keep(acts: list):
    """A forward hook that keeps a copy of the outputs of training batches."""
    def hook(m: nn.Module, i, o: torch.Tensor) -> None:
        if m.training:
            acts.append(o.detach().clone())
    return hook


def _fastai_hist(a: torch.Tensor) -> torch.Tensor:
    return torch.histc(a.float(), 40, 0, 10)


def test_exact_histograms_match_histc_and_near_zero_counts_0_05():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 300), nn.ReLU(), nn.Linear(300, 2))
    x = torch.randn(32, 6) * 3
    cb = ActivationStats(with_hist=True, sample=None, modules=[model[0]])
    acts = []  # hooks registered before fit run before the callback's: five values at exactly 0.05, then a copy
    model[0].register_forward_hook(_set_first(0.05, 5))
    model[0].register_forward_hook(_keep(acts))
    _fit_one_batch(model, x, cb)
    a = acts[0]
    assert torch.equal(cb._tensors()[1][0, 0], _fastai_hist(a))
    means, stds, nz = cb.layer_stats(0)
    assert float(nz[0]) == pytest.approx(float((a <= 0.05).float().mean()))
    assert float(means[0]) == pytest.approx(float(a.mean()), abs=1e-5)
    assert float(stds[0]) == pytest.approx(float(a.std()), rel=1e-4)


def test_sampled_histograms_estimate_the_exact_ones():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.Flatten(), nn.Linear(16 * 32 * 32, 2))
    x = torch.randn(16, 1, 32, 32) * 4 + 2   # 16 * 16 * 32 * 32 = 262,144 activations in the conv layer
    acts = []
    model[0].register_forward_hook(_keep(acts))
    cb = ActivationStats(with_hist=True, sample=4096, modules=[model[0]])
    _fit_one_batch(model, x, cb)
    est, exact = cb._tensors()[1][0, 0], _fastai_hist(acts[0])
    assert exact.sum() > 50_000
    assert float((est - exact).abs().sum() / exact.sum()) < 0.1   # within 10 % in total over the 40 bins
    assert float(est.sum() / exact.sum()) == pytest.approx(1.0, abs=0.06)  # a 4096 sample: about 2 % s.e.


def test_sampled_statistics_estimate_the_exact_ones_and_small_layers_are_exact():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32 * 32, 2))
    x = torch.randn(16, 1, 32, 32) * 4 + 2   # 262,144 activations in the conv layer, 32 in the last
    acts = []
    for layer in (model[0], model[3]):
        layer.register_forward_hook(_keep(acts))
    cb = ActivationStats(modules=[model[0], model[3]])   # sample=4096
    _fit_one_batch(model, x, cb)
    big, small = acts
    means, stds, nz = cb.layer_stats(0)
    assert float(means[0]) == pytest.approx(float(big.mean()), abs=0.02 * float(big.std()))
    assert float(stds[0]) == pytest.approx(float(big.std()), rel=0.02)
    assert float(nz[0]) == pytest.approx(float((big <= 0.05).float().mean()), abs=0.02)
    means, stds, nz = cb.layer_stats(1)   # 32 activations: all of them in the sample, padded: exact
    assert float(means[0]) == pytest.approx(float(small.mean()), abs=1e-5)
    assert float(stds[0]) == pytest.approx(float(small.std()), rel=1e-4)
    assert float(nz[0]) == pytest.approx(float((small <= 0.05).float().mean()))


def test_batches_held_in_chunks_match_the_exact_statistics_batch_by_batch():
    """40 batches: two full chunks of 16 and a partial one flushed at the end; the first layer (64 activations)
    runs before the wider second (4,800), so the buffer grows while samples are pending."""
    def run(sample):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 600), nn.ReLU(), nn.Linear(600, 2))
        cb = ActivationStats(with_hist=True, sample=sample, modules=[model[0], model[2]])
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(320, 4, generator=g), torch.randint(0, 2, (320,), generator=g)
        dls = DataLoaders(TensorLoader(x, y, bs=8), None, device="cpu")
        Learner(dls, model, loss_func=CrossEntropyLossFlat(), progress=False).fit(1, cbs=cb)
        return cb._tensors()
    (stats, hists), (exact, exact_hists) = run(8192), run(None)
    assert stats.shape == exact.shape == (40, 2, 3) and hists.shape == (40, 2, 40)
    assert torch.allclose(stats, exact, rtol=1e-4, atol=1e-5)
    assert torch.equal(hists, exact_hists)


def test_histograms_survive_nan_and_skip_no_layer():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model[0].register_forward_hook(_set_first(float("nan"), 3))
    cb = ActivationStats(with_hist=True)
    with pytest.warns(Warning, match="training loss is nan"):
        _fit_one_batch(model, torch.randn(8, 4), cb)  # no crash on NaN activations (a diverged model)
    hists = cb._tensors()[1]
    assert hists.shape == (1, 2, 40)
    assert bool(torch.isnan(cb.layer_stats(0)[0]).all())  # the statistics say NaN; the histograms count the rest
    assert bool(torch.isfinite(hists).all()) and 0 < float(hists[0, 0].sum()) <= 8 * 8 - 3


def test_spread_index_positions_are_distinct_sorted_and_in_range():
    for numel, m in [(10, 4), (100_352, 4096), (4097, 4096), (12, 12)]:
        idx = _spread_index(numel, m, torch.device("cpu"))
        assert len(idx) == m and len(set(idx.tolist())) == m
        assert int(idx.min()) >= 0 and int(idx.max()) < numel and bool((idx[1:] > idx[:-1]).all())
    # evenly spread: every tenth of a large layer gets about a tenth of the positions
    counts = torch.bincount(_spread_index(100_000, 4000, torch.device("cpu")) // 10_000, minlength=10)
    assert int(counts.min()) >= 368 and int(counts.max()) <= 432  # runs of 16: within two runs of 400


def test_sample_is_checked():
    with pytest.raises(ValueError, match="sample"):
        ActivationStats(with_hist=True, sample=0)
    assert "sample=None" in repr(ActivationStats(sample=None))


class _InferenceBody(nn.Module):
    """A body that runs in inference mode, as a cached frozen body does (`FrozenFeatureCache`)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 300)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            y = self.lin(x)
        return y.clone()


@pytest.mark.parametrize("with_hist,sample", [(False, 4096), (True, 4096), (True, 64), (True, None)])
def test_layers_run_in_and_out_of_inference_mode(with_hist, sample):
    torch.manual_seed(0)
    model = nn.Sequential(_InferenceBody(), nn.ReLU(), nn.Linear(300, 2))
    cb = ActivationStats(with_hist=with_hist, sample=sample, modules=[model[0].lin, model[2]])
    y = torch.randint(0, 2, (32,))
    dls = DataLoaders(TensorLoader(torch.randn(32, 4), y, bs=8), None, device="cpu")
    Learner(dls, model, loss_func=CrossEntropyLossFlat(), progress=False).fit(1, cbs=cb)
    means = cb.layer_stats(0)[0]
    assert len(means) == 4 and bool(torch.isfinite(means).all())
    if with_hist:
        assert cb.hist(0).shape == (40, 4) and float(cb._tensors()[1][:, 0].sum()) > 0


def _conv_bn_fit(cb: ActivationStats, batches: int = 6) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(4, 4, 3, stride=2), nn.BatchNorm2d(4)), nn.Flatten(),
                          nn.Linear(4 * 7 * 7, 2))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8 * batches, 1, 16, 16, generator=g), torch.randint(0, 2, (8 * batches,), generator=g)
    Learner(DataLoaders(TensorLoader(x, y, bs=8), None, device="cpu"), model, loss_func=CrossEntropyLossFlat(),
            progress=False).fit(1, cbs=cb)


@pytest.mark.parametrize("every", [None, 2])
def test_a_batch_norm_samples_its_convolution_and_the_statistics_stay_exact(every):
    """Conv -> BN neighbours in a Sequential: after the first recorded batch the BN's hook also samples its input
    (the conv's output), so two of the five layers lose their hooks; every statistic still equals the exact one."""
    cb = ActivationStats(with_hist=True, sample=8192, every=every)  # >= every layer's 8 * 4 * 16 * 16 values
    _conv_bn_fit(cb)
    exact = ActivationStats(with_hist=True, sample=None, every=every)
    _conv_bn_fit(exact)
    assert cb.n_layers == 5 and len(cb._feeds) == 2 and len(cb.hooks) == 3 and exact._feeds == {}
    (stats, hists), (exact_stats, exact_hists) = cb._tensors(), exact._tensors()
    assert stats.shape == (6 if every is None else 3, 5, 3)
    assert torch.allclose(stats, exact_stats, rtol=1e-4, atol=1e-4) and torch.equal(hists, exact_hists)


class _DoubleInPlace(nn.Module):
    """Doubles its input in place (then adds a bias): its input is not the output its neighbour produced."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(2.0) + self.bias


def test_no_pair_when_the_next_layer_changes_its_input_or_a_layer_runs_twice():
    torch.manual_seed(0)
    shared = nn.Linear(8, 8)
    model = nn.Sequential(nn.Linear(4, 8), _DoubleInPlace(), nn.ReLU(), shared, shared, nn.Linear(8, 2))
    acts = []
    model[0].register_forward_hook(_keep(acts))  # the first layer's output before its neighbour doubles it
    cb = ActivationStats()
    x = torch.randn(8, 4)
    _fit_one_batch(model, x, cb)
    _fit_one_batch(model, x, cb)  # a second fit: calibrated afresh, nothing paired either
    assert cb._feeds == {} and len(cb.hooks) == cb.n_layers == 4
    means = cb.layer_stats(0)[0]
    assert float(means[0]) == pytest.approx(float(acts[-1].mean()), abs=1e-5)
