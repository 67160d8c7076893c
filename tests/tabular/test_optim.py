"""fused_adamw: fastai's AdamW values, weight decay on the weights only (biases and batch-norm left out)."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from learnkit.tabular import TabularDataLoaders, TabularModel, fused_adamw, tabular_learner


def _model() -> TabularModel:
    torch.manual_seed(0)
    return TabularModel([(5, 3), (4, 2)], n_cont=2, out_sz=2, layers=[8, 4])


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.stack([torch.randint(0, 5, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)], 1),
            torch.randn(n, 2, generator=g), torch.randint(0, 2, (n,), generator=g))


@pytest.mark.parametrize("wd_bn_bias", [False, True])
def test_decay_alone_moves_the_weights_and_leaves_biases_and_batchnorm(wd_bn_bias):
    model = _model()
    opt = fused_adamw(model.parameters(), lr=0.1, weight_decay=0.5, wd_bn_bias=wd_bn_bias)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        decayed = p.ndim > 1 or wd_bn_bias
        assert torch.allclose(p, before[n] * (0.95 if decayed else 1.0)), n
    assert opt.param_groups[0]["weight_decay"] == 0.5    # the group's setting is left as it was


@pytest.mark.parametrize("found_inf", [0.0, 1.0])
def test_a_step_the_grad_scaler_skips_does_not_decay(found_inf):
    model = _model()
    opt = fused_adamw(model.parameters(), lr=0.1, weight_decay=0.5)
    w = model.layers[0].weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.found_inf, opt.grad_scale = torch.tensor(found_inf), torch.tensor(1.0)  # what GradScaler.step sets
    opt.step()
    assert torch.allclose(model.layers[0].weight, w * (1.0 if found_inf else 0.95))


def test_same_steps_as_adamw_with_a_no_decay_group_for_1d_params():
    ref_model, model = _model(), _model()
    decay = [p for p in ref_model.parameters() if p.ndim > 1]
    no_decay = [p for p in ref_model.parameters() if p.ndim <= 1]
    ref = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2,
                            betas=(0.9, 0.99), eps=1e-5, weight_decay=0.1)
    opt = fused_adamw(model.parameters(), lr=1e-2, weight_decay=0.1)
    cats, conts, y = _batch()
    for step in range(5):
        for m, o in ((ref_model, ref), (model, opt)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(cats, conts), y).backward()
            o.param_groups[0]["betas"] = (0.95 - 0.02 * step, 0.99)    # a momentum schedule, as fit_one_cycle's
            if o is ref:
                o.param_groups[1]["betas"] = (0.95 - 0.02 * step, 0.99)
            o.step()
    for (n, p), q in zip(model.named_parameters(), ref_model.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_tabular_learner_keeps_fit_wd_and_skips_batchnorm_decay():
    df = pd.DataFrame({"job": ["a", "b", "c", "a"] * 10, "age": [float(i) for i in range(40)], "y": ["no", "yes"] * 20})
    dls = TabularDataLoaders.from_df(df, cat_names="job", cont_names="age", y_names="y", bs=8, device="cpu")
    learn = tabular_learner(dls, layers=[8], progress=False)
    learn.fit(1, lr=1e-3, wd=0.25)
    assert learn.opt.param_groups[0]["weight_decay"] == 0.25          # fit's wd is kept in the group
    learn.create_opt()                                                  # fresh state: a zero-grad step only decays
    bn, emb = learn.model.bn_cont, learn.model.embeds[0]
    w_before, emb_before = bn.weight.detach().clone(), emb.weight.detach().clone()
    for p in learn.model.parameters():
        p.grad = torch.zeros_like(p)
    learn.opt.step()
    lr = learn.opt.param_groups[0]["lr"]
    assert torch.equal(bn.weight, w_before)                                        # no decay on batch-norm
    assert torch.allclose(emb.weight, emb_before * (1 - lr * 0.25)) and not torch.equal(emb.weight, emb_before)
