"""``Learner(..., wd_bn_bias=False)`` (the default, fastai's): no weight decay on normalisation and bias
parameters, which live in param groups of their own after the splitter's; learning rates, schedules, ``fit(wd=)``
and checkpoints still go by the splitter's groups."""
import pytest
import torch
from torch import nn

from coretools import BodyHead, body_head_splitter, make_dls, two_class_data
from learnkit import Learner, ParamScheduler, sched_const
from learnkit.core.optim import n_splitter_groups, norm_bias_params, splitter_group_of


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.body(x))


def _zero_loss(pred, y):
    return (pred * 0).sum()  # zero gradients: only weight decay moves the parameters


def _learner(model, **kwargs):
    x, y = two_class_data(64)
    return Learner(make_dls(x, y), model, loss_func=_zero_loss, lr=0.1, progress=False, **kwargs)


def test_norm_bias_params_finds_norm_layers_and_biases():
    lstm = nn.LSTM(3, 4)
    model = nn.ModuleDict({"lin": nn.Linear(2, 3), "ln": nn.LayerNorm(3), "gn": nn.GroupNorm(1, 3), "lstm": lstm,
                           "emb": nn.Embedding(5, 3), "nobias": nn.Linear(3, 3, bias=False)})
    found = {id(p) for p in norm_bias_params(model)}
    expected = [model["lin"].bias, model["ln"].weight, model["ln"].bias, model["gn"].weight, model["gn"].bias,
                lstm.bias_ih_l0, lstm.bias_hh_l0]
    assert found == {id(p) for p in expected}


@pytest.mark.parametrize("wd_bn_bias", [False, True])
def test_only_weights_are_decayed_by_default(wd_bn_bias):
    model = BNNet()
    with torch.no_grad():
        model.body[1].bias.fill_(0.5)  # not 0, which decay would leave as it is
    learn = _learner(model, wd_bn_bias=wd_bn_bias)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    learn.fit(1, wd=0.1)
    for name, p in model.named_parameters():
        undecayed = not wd_bn_bias and (name.endswith("bias") or name.startswith("body.1."))
        assert torch.equal(p, before[name]) == undecayed, name
    assert len(learn.opt.param_groups) == (1 if wd_bn_bias else 2)
    assert [pg["weight_decay"] for pg in learn.opt.param_groups] == ([0.1] if wd_bn_bias else [0.1, 0.0])


def test_learning_rates_and_schedules_follow_the_splitter_groups():
    x, y = two_class_data(200)
    learn = Learner(make_dls(x, y), BodyHead(), loss_func=nn.CrossEntropyLoss(), splitter=body_head_splitter,
                    progress=False)
    learn.fit_one_cycle(1, slice(1e-4, 1e-2))
    opt = learn.opt
    assert splitter_group_of(opt) == [0, 1, 0, 1] and n_splitter_groups(opt) == 2
    lrs = [pg["lr"] for pg in opt.param_groups]
    assert lrs[2:] == lrs[:2] and lrs[1] / lrs[0] == pytest.approx(100)
    learn.set_lr([1e-3, 2e-3])
    assert [pg["lr"] for pg in opt.param_groups] == [1e-3, 2e-3, 1e-3, 2e-3]
    learn.fit(1, cbs=ParamScheduler({"weight_decay": sched_const(0.2), "lr": [sched_const(1e-5), sched_const(1e-4)]}))
    assert [(pg["lr"], pg["weight_decay"]) for pg in opt.param_groups] == [(1e-5, 0.2), (1e-4, 0.2), (1e-5, 0.0),
                                                                           (1e-4, 0.0)]
    with pytest.raises(ValueError, match="3 schedules for 'lr' but the splitter made 2"):
        learn.fit(1, cbs=ParamScheduler({"lr": [sched_const(1e-5)] * 3}))


def test_save_load_keeps_the_split_and_names_a_mismatch(tmp_path):
    learn = _learner(BNNet(), path=tmp_path)
    learn.fit(1)
    learn.save("split")
    other = _learner(BNNet(), path=tmp_path)
    other.load("split")
    assert [len(pg["params"]) for pg in other.opt.param_groups] == [len(pg["params"]) for pg in learn.opt.param_groups]
    old_style = _learner(BNNet(), path=tmp_path, wd_bn_bias=True)
    with pytest.raises(ValueError, match="has 2 parameter groups.*has 1.*with_opt=False"):
        old_style.load("split")
    old_style.load("split", with_opt=False)  # the weights alone load
    assert torch.equal(old_style.model.head.weight, learn.model.head.weight)


def test_wd_bn_bias_must_be_a_bool():
    with pytest.raises(TypeError, match="wd_bn_bias must be True or False"):
        _learner(BNNet(), wd_bn_bias="no")


def test_the_recorder_logs_the_heads_learning_rate():
    """A head without a bias: the last param group is the body's biases, the recorder still reads the head's."""
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2, bias=False))
    x, y = two_class_data(64)
    learn = Learner(make_dls(x, y), model, loss_func=nn.CrossEntropyLoss(), progress=False,
                    splitter=lambda m: [list(m[0].parameters()), list(m[2].parameters())])
    learn.fit(1, lr=slice(1e-4, 1e-2))
    assert learn.opt.param_groups[-1]["lr"] == 1e-4 and set(learn.recorder.lrs) == {1e-2}
