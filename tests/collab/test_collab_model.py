"""EmbeddingDotBias / EmbeddingNN: shapes, ranges, the unknown slot, lookups by id, builders."""
from __future__ import annotations

import json

import pytest
import torch

from learnkit.collab import EmbeddingDotBias, EmbeddingNN, UnknownIdError, emb_sz_rule, sigmoid_range
from learnkit.core.registry import get_model_builder


def _x(n_users: int, n_items: int, n: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.stack([torch.randint(0, n_users, (n,), generator=g), torch.randint(0, n_items, (n,), generator=g)], 1)


@pytest.mark.parametrize("make", [lambda: EmbeddingDotBias(8, 5, 7, y_range=(0, 5.5)),
                                  lambda: EmbeddingNN(5, 7, layers=[16, 8], ps=0.1, y_range=(0, 5.5))])
def test_output_shape_and_range(make):
    model = make()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=5)  # push the pre-sigmoid values far out
    model.eval()
    out = model(_x(5, 7, 64))
    assert out.shape == (64,)
    assert bool((out >= 0).all() and (out <= 5.5).all())


def test_dot_product_is_what_the_docstring_says():
    m = EmbeddingDotBias(3, 4, 4, y_range=None)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    x = torch.tensor([[1, 2], [3, 3]])
    expect = (m.u_weight.weight[x[:, 0]] * m.i_weight.weight[x[:, 1]]).sum(1) + m.u_bias.weight[x[:, 0], 0] \
        + m.i_bias.weight[x[:, 1], 0] + m.global_bias
    assert torch.allclose(m(x), expect)
    assert float(sigmoid_range(torch.tensor(0.0), 1, 5)) == 3.0


def test_unknown_index_gets_no_gradient_and_stays_zero():
    m = EmbeddingDotBias(4, 3, 3, y_range=(0, 5.5))
    m(torch.tensor([[0, 0], [1, 2]])).sum().backward()
    assert m.u_weight.weight.grad[0].abs().sum() == 0 and m.i_bias.weight.grad[0].abs().sum() == 0
    assert m.u_weight.weight.grad[1].abs().sum() > 0
    assert m.u_weight.weight[0].abs().sum() == 0


def test_init_global_bias_starts_at_the_mean_rating():
    m = EmbeddingDotBias(4, 3, 3, y_range=(0, 5.5))
    m.init_global_bias(3.6)
    assert abs(m(torch.tensor([[0, 0]])).item() - 3.6) < 1e-4
    free = EmbeddingNN(3, 3, y_range=None)
    free.init_global_bias(2.5)
    assert free.global_bias.item() == 2.5


def test_bias_and_weight_by_id():
    m = EmbeddingDotBias(4, 3, 4, users=["ann", "bob"], items=[10, 20, 30])
    with torch.no_grad():
        m.i_bias.weight[:, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert m.bias([30, 10]).tolist() == [3.0, 1.0]
    assert m.bias(20).tolist() == [2.0]
    assert m.weight(["bob"], is_item=False).shape == (1, 4)
    assert torch.equal(m.weight([20]), m.i_weight.weight[2:3])
    with pytest.raises(UnknownIdError, match="item id.*40"):
        m.bias([40])
    bare = EmbeddingDotBias(4, 3, 4)
    with pytest.raises(ValueError, match="without id maps"):
        bare.bias([1])


def test_constructor_checks():
    with pytest.raises(ValueError, match="n_users must be an int >= 2"):
        EmbeddingDotBias(4, 1, 3)
    with pytest.raises(ValueError, match="3 ids were given"):
        EmbeddingDotBias(4, 3, 3, users=[1, 2, 3])
    with pytest.raises(ValueError, match="low < high"):
        EmbeddingDotBias(4, 3, 3, y_range=(5, 0))
    with pytest.raises(ValueError, match="2 dropout values for 1 layers"):
        EmbeddingNN(3, 3, layers=[8], ps=[0.1, 0.2])


def test_nn_embedding_sizes_follow_the_rule():
    m = EmbeddingNN(944, 1650)
    assert m.u_emb.embedding_dim == emb_sz_rule(944) == 74
    assert m.i_emb.embedding_dim == emb_sz_rule(1650) == 101
    assert EmbeddingNN(10, 10, user_sz=3, item_sz=5).layers[0].in_features == 8


@pytest.mark.parametrize("name,kwargs", [
    ("collab.dot", {"n_factors": 4, "n_users": 3, "n_items": 4, "y_range": [0, 5.5], "users": [1, 2],
                    "items": ["a", "b", "c"]}),
    ("collab.nn", {"n_users": 3, "n_items": 4, "user_sz": None, "item_sz": None, "layers": [8], "ps": 0.0,
                   "embed_p": 0.0, "y_range": None, "users": [1, 2], "items": ["a", "b", "c"]}),
])
def test_registered_builders_rebuild_from_json_kwargs(name, kwargs):
    kwargs = json.loads(json.dumps(kwargs))
    a, b = get_model_builder(name)(**kwargs), get_model_builder(name)(**kwargs)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.tensor([[1, 1], [2, 3]])
    assert torch.equal(a(x), b(x))
    assert a.items.ids == ["a", "b", "c"]
