"""The from-scratch LSTM and the staged transformer classifier (on a tiny random BERT)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from learnkit.core.registry import get_model_builder
from learnkit.text import LSTMClassifier, TransformerClassifier, lstm_splitter, staged_splitter
from learnkit.text.models import masked_max, masked_mean


def test_masked_pooling_ignores_padding():
    h = torch.tensor([[[1.0], [3.0], [100.0]]])
    m = torch.tensor([[True, True, False]])
    assert masked_mean(h, m).item() == 2.0 and masked_max(h, m).item() == 3.0


def test_reverse_padded_reverses_within_each_length_and_is_its_own_inverse():
    from learnkit.text.models import reverse_padded
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    r = reverse_padded(x, torch.tensor([3, 2]))
    assert r.tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]
    assert torch.equal(reverse_padded(r, torch.tensor([3, 2])), x)
    h = torch.arange(16.0).reshape(2, 4, 2)
    assert torch.equal(reverse_padded(h, torch.tensor([4, 1]))[0], h[0].flip(0))


def test_lstm_output_does_not_depend_on_padding():
    m = LSTMClassifier(vocab_size=50, n_out=3, emb_dim=8, hidden=6, n_layers=2).eval()
    a = m(torch.tensor([[5, 6, 7, 8]]))
    b = m(torch.tensor([[5, 6, 7, 8, 0, 0, 0], [9, 10, 0, 0, 0, 0, 0]]))[:1]
    assert a.shape == (1, 3) and torch.allclose(a, b, atol=1e-6)


def test_lstm_validates_and_splits_into_body_and_head():
    with pytest.raises(ValueError, match="vocab_size"):
        LSTMClassifier(vocab_size=0, n_out=2)
    with pytest.raises(ValueError, match="pad_id"):
        LSTMClassifier(vocab_size=5, n_out=2, pad_id=7)
    m = LSTMClassifier(vocab_size=20, n_out=2, emb_dim=4, hidden=4)
    body, head = lstm_splitter(m)
    assert {id(p) for p in body + head} == {id(p) for p in m.parameters()} and len(head) > 0
    built = get_model_builder("text.lstm")(vocab_size=20, n_out=2, emb_dim=4, hidden=4)
    assert sum(p.numel() for p in built.parameters()) == sum(p.numel() for p in m.parameters())


@pytest.fixture
def tiny_clf(tiny_bert):
    return get_model_builder("text.transformer")(n_out=2, source=str(tiny_bert), pretrained=True).eval()


def test_staged_forward_equals_the_hugging_face_forward(tiny_clf):
    ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 14, 15, 3, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        ref = tiny_clf.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        state = tiny_clf.run_stages({"ids": ids}, 0, tiny_clf.n_stages - 2)
        assert torch.allclose(state["hidden"][mask], ref[mask], atol=1e-5)
        full = tiny_clf(ids)
        pooled = tiny_clf.run_stages({"ids": ids}, 0, tiny_clf.n_stages - 1)
        assert torch.allclose(full, tiny_clf.head(pooled["hidden"]), atol=1e-6)
        mid = tiny_clf.run_stages({"ids": ids}, 0, 2)  # embeddings + first layer
        assert torch.allclose(tiny_clf({**mid, "stage": 2}), full, atol=1e-5)  # resume from a cached stage


def test_transformer_output_does_not_depend_on_padding(tiny_clf):
    with torch.no_grad():
        alone = tiny_clf(torch.tensor([[2, 14, 15, 3]]))
        padded = tiny_clf(torch.tensor([[2, 14, 15, 3, 0, 0, 0], [2, 10, 11, 12, 13, 16, 3]]))[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_staged_splitter_gives_embeddings_each_layer_then_head(tiny_clf):
    groups = staged_splitter(tiny_clf)
    assert len(groups) == 4 and tiny_clf.n_stages == 5  # embeddings, 2 layers, (pooling), head
    assert groups[-1] == list(tiny_clf.head.parameters())
    assert {id(p) for g in groups for p in g} == {id(p) for p in tiny_clf.parameters()}


def test_builder_loads_pretrained_weights_or_builds_from_config_alone(tiny_bert, tiny_clf):
    from safetensors.torch import load_file
    saved = load_file(str(tiny_bert / "model.safetensors"))
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    emb = tiny_clf.encoder.embeddings.word_embeddings.weight
    assert torch.equal(emb, saved[key])
    fresh = get_model_builder("text.transformer")(n_out=2, source=str(tiny_bert), pretrained=False)
    assert fresh.encoder.embeddings.word_embeddings.weight.shape == emb.shape
    assert not torch.equal(fresh.encoder.embeddings.word_embeddings.weight, emb)
    assert set(fresh.state_dict()) == set(tiny_clf.state_dict())  # exported weights load strictly


def test_non_bert_encoder_is_a_single_stage():
    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"hidden_size": 4})()
            self.emb = nn.Embedding(10, 4)

        def forward(self, input_ids, attention_mask):
            return type("O", (), {"last_hidden_state": self.emb(input_ids)})()

    m = TransformerClassifier(Enc(), n_out=2)
    assert m.n_stages == 3 and len(staged_splitter(m)) == 2
    assert m(torch.tensor([[1, 2, 0]])).shape == (1, 2)
    with pytest.raises(ValueError, match="n_out"):
        TransformerClassifier(Enc(), n_out=0)
