"""The Learner: training, equivalence with a hand-written loop, lr_find, save/load, freezing, precision."""
import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from coretools import BodyHead, body_head_splitter, make_dls, regression_data, two_class_data
from learnkit import (CrossEntropyLossFlat, DataLoaders, GradientAccumulation, GradientClip, Learner, MSELossFlat,
                      ParamScheduler, SuggestedLRs, accuracy, combine_scheds, sched_exp, sched_lin)




def test_regression_trains_to_low_loss():
    x, y = regression_data(300)
    learn = Learner(make_dls(x, y, bs=16), nn.Linear(3, 1), loss_func=MSELossFlat(), lr=0.1, progress=False)
    learn.fit_one_cycle(8)
    assert learn.validate()[0] < 0.01


def test_two_class_trains_to_low_loss_and_high_accuracy():
    x, y = two_class_data(400)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, lr=1e-2,
                    progress=False)
    learn.fit_one_cycle(6)
    loss, acc = learn.validate()
    assert loss < 0.2 and acc > 0.95
    assert len(learn.recorder.values) == 6 and learn.recorder.values[-1][2] == acc


def test_fit_equals_hand_written_loop_bit_for_bit():
    x, y = two_class_data(100)
    ds = TensorDataset(x, y)

    def loader():
        return DataLoader(ds, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(3))

    torch.manual_seed(1)
    model_a = BodyHead()
    model_b = BodyHead()
    model_b.load_state_dict(model_a.state_dict())

    opt = torch.optim.SGD(model_a.parameters(), lr=0.1)
    dl = loader()
    for _ in range(3):
        for xb, yb in dl:
            loss = nn.functional.cross_entropy(model_a(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()

    dls = DataLoaders(loader(), None, device="cpu")
    learn = Learner(dls, model_b, loss_func=CrossEntropyLossFlat(), opt_func=torch.optim.SGD, lr=0.1, progress=False)
    learn.fit(3)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name


def test_lr_find_restores_weights_and_suggests_finite_lr():
    x, y = two_class_data(400)
    learn = Learner(make_dls(x, y, bs=8), BodyHead(), loss_func=CrossEntropyLossFlat(), progress=False)
    learn.create_opt()
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = learn.opt.state_dict()["param_groups"][0]["lr"]
    sugg = learn.lr_find(num_it=60, show_plot=False, suggest_funcs=("valley", "minimum", "steep"))
    for k, v in learn.model.state_dict().items():
        assert torch.equal(before[k], v), k
    assert learn.opt.param_groups[0]["lr"] == opt_before
    assert not learn.opt.state  # optimizer state restored (it was empty)
    for v in sugg:
        assert math.isfinite(v) and 1e-7 <= v <= 10
    assert 10 <= len(learn.recorder.lrs) <= 60
    assert isinstance(sugg, SuggestedLRs)  # the exported type, for the default suggestion functions


def test_combine_scheds_gives_python_floats_so_save_load_round_trips(tmp_path):
    """A numpy float from a schedule reached the optimizer's settings, and `load` (weights_only) refused it."""
    sched = combine_scheds([0.3, 0.7], [sched_lin(1e-3, 1e-2), sched_exp(1e-2, 1e-4)])
    assert all(type(sched(p)) is float for p in (0.0, 0.2, 0.5, 0.99))
    x, y = two_class_data(64)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), path=tmp_path, progress=False,
                    cbs=ParamScheduler({"lr": sched}))
    learn.fit(1)
    learn.load(learn.save("m"))


def test_save_load_round_trips_weights_and_optimizer(tmp_path):
    x, y = two_class_data(100)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), path=tmp_path, progress=False)
    learn.fit(2)
    path = learn.save("m")
    assert path == tmp_path / "models" / "m.pth"
    learn2 = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), path=tmp_path, progress=False)
    learn2.load("m")
    for a, b in zip(learn.model.state_dict().values(), learn2.model.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = learn.opt.state_dict(), learn2.opt.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k in sa["state"]:
        for name, t in sa["state"][k].items():
            assert torch.equal(torch.as_tensor(t), torch.as_tensor(sb["state"][k][name])), (k, name)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        learn2.load("missing")


def test_freeze_keeps_body_unchanged_and_trains_head():
    x, y = two_class_data(100)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), splitter=body_head_splitter,
                    wd=0.1, progress=False)
    learn.freeze()
    body = [p.detach().clone() for p in learn.model.body.parameters()]
    head = [p.detach().clone() for p in learn.model.head.parameters()]
    learn.fit(1, lr=1e-2)
    assert all(torch.equal(a, b) for a, b in zip(body, learn.model.body.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(head, learn.model.head.parameters()))
    learn.unfreeze()
    learn.fit(1, lr=1e-2)
    assert not all(torch.equal(a, b) for a, b in zip(body, learn.model.body.parameters()))


def test_frozen_batchnorm_is_held_in_eval_mode():
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    x, y = two_class_data(100)
    learn = Learner(make_dls(x, y), model, loss_func=CrossEntropyLossFlat(), progress=False,
                    splitter=lambda m: [list(m[:2].parameters()), list(m[3].parameters())])
    learn.freeze()
    stats = model[1].running_mean.clone()
    learn.fit(1)
    assert torch.equal(stats, model[1].running_mean)


def test_discriminative_learning_rates_and_fine_tune():
    x, y = two_class_data(200)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), splitter=body_head_splitter,
                    metrics=accuracy, progress=False)
    learn.fit(1, lr=slice(1e-5, 1e-3))
    lrs = [pg["lr"] for pg in learn.opt.param_groups]
    assert lrs[:2] == pytest.approx([1e-5, 1e-3])  # body, head; then their biases, undecayed (wd_bn_bias=False)
    assert [pg["lr"] for pg in learn.opt.param_groups[2:]] == [lrs[pg["splitter_group"]] for pg in learn.opt.param_groups[2:]]
    learn.fine_tune(2, base_lr=1e-2)
    assert learn.validate()[1] > 0.9
    assert all(p.requires_grad for p in learn.model.parameters())


def test_one_cycle_schedule_shape():
    x, y = two_class_data(200)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), progress=False)
    learn.fit_one_cycle(2, 1e-2, pct_start=0.25)
    lrs = learn.recorder.lrs
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(1e-2 / 25)
    assert abs(peak - 0.25 * len(lrs)) <= 1
    assert lrs[-1] < 1e-3 * lrs[peak]
    assert min(learn.recorder.moms) == pytest.approx(0.85, abs=1e-3)


def test_gradient_accumulation_matches_large_batch():
    x, y = regression_data(64)
    ds = TensorDataset(x, y)

    def run(bs, cbs):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        dls = DataLoaders(DataLoader(ds, batch_size=bs), None, device="cpu")
        learn = Learner(dls, model, loss_func=MSELossFlat(), opt_func=torch.optim.SGD, lr=0.1, cbs=cbs,
                        progress=False)
        learn.fit(2)
        return model.weight.detach()

    assert torch.allclose(run(32, []), run(8, [GradientAccumulation(32)]), atol=1e-6)


def test_gradient_clip_limits_update():
    x, y = regression_data(32)
    y = y * 1000
    dls = DataLoaders(DataLoader(TensorDataset(x, y), batch_size=32), None, device="cpu")
    model = nn.Linear(3, 1)
    w = model.weight.detach().clone()
    learn = Learner(dls, model, loss_func=MSELossFlat(), opt_func=torch.optim.SGD, lr=1.0,
                    cbs=[GradientClip(0.5)], progress=False)
    learn.fit(1)
    assert (model.weight.detach() - w).norm() <= 0.5 + 1e-5


def test_bf16_on_cpu_trains_and_fp16_warns():
    x, y = two_class_data(200)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, lr=1e-2,
                    progress=False)
    with pytest.warns(UserWarning, match="fp16 mixed precision needs CUDA"):
        learn.to_fp16()
    assert learn.precision == "fp32"
    learn.to_bf16()
    learn.fit_one_cycle(4)
    assert learn.validate()[1] > 0.85
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.to_fp32()


def test_get_preds_and_predict_shapes():
    x, y = two_class_data(100)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=CrossEntropyLossFlat(), progress=False)
    probs, targs, dec, losses, inp = learn.get_preds(with_decoded=True, with_loss=True, with_input=True)
    assert probs.shape == (20, 2) and torch.allclose(probs.sum(1), torch.ones(20))
    assert torch.equal(targs, y[:20]) and torch.equal(dec, probs.argmax(1))
    assert losses.shape == (20,) and torch.equal(inp, x[:20])
    assert torch.allclose(losses.mean(), torch.tensor(learn.validate()[0]), atol=1e-5)


def test_bad_arguments_are_reported():
    x, y = two_class_data(40)
    dls = make_dls(x, y)
    with pytest.raises(TypeError, match="DataLoaders"):
        Learner([1, 2], BodyHead())
    with pytest.raises(TypeError, match="nn.Module"):
        Learner(dls, lambda x: x, loss_func=CrossEntropyLossFlat())
    with pytest.raises(ValueError, match="learning rate"):
        Learner(dls, BodyHead(), loss_func=CrossEntropyLossFlat(), lr=-1)
    learn = Learner(dls, BodyHead(), loss_func=CrossEntropyLossFlat(), progress=False)
    with pytest.raises(ValueError, match="learning rate"):
        learn.fit(1, lr=0)
    with pytest.raises(ValueError, match="n_epoch"):
        learn.fit(1.5)
    with pytest.raises(ValueError, match="no loss_func"):
        Learner(dls, BodyHead())
