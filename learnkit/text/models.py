"""From-scratch text classifier: word embeddings, a bidirectional LSTM, and concat pooling.

For users without pretrained weights: it learns everything from the training texts, over the vocabulary
of a `learnkit.text.WordTokenizer` (or any tokenizer's ids). The head sees the concatenation of the
last hidden state of each direction, the max and the mean over the real (non-padding) tokens, as
fastai's ``PoolingLinearClassifier`` does.

>>> import torch
>>> m = LSTMClassifier(vocab_size=100, n_out=2, emb_dim=8, hidden=8, n_layers=1)
>>> m(torch.tensor([[5, 6, 7], [5, 6, 0]])).shape
torch.Size([2, 2])
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..core.registry import register_model

__all__ = ["LSTMClassifier", "masked_mean", "masked_max", "lstm_classifier", "lstm_splitter"]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` ``[B, L, D]`` over the positions where ``mask`` ``[B, L]`` is true."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_max(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max of ``hidden`` ``[B, L, D]`` over the positions where ``mask`` ``[B, L]`` is true."""
    return hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min).max(1).values


class LSTMClassifier(nn.Module):
    """Embedding → dropout → bidirectional LSTM → [last, max, mean] pooling → MLP head.

    Args:
        vocab_size: number of token ids; pad_id: the padding id (ignored by the LSTM and the pooling).
        emb_dim, hidden, n_layers: embedding width, LSTM width per direction, LSTM depth.
        emb_dropout: dropout on the embeddings; dropout: between LSTM layers and in the head.
    """

    def __init__(self, vocab_size: int, n_out: int, pad_id: int = 0, emb_dim: int = 200, hidden: int = 128,
                 n_layers: int = 1, emb_dropout: float = 0.3, dropout: float = 0.3, head_hidden: int = 64):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("n_out", n_out), ("emb_dim", emb_dim), ("hidden", hidden),
                        ("n_layers", n_layers), ("head_hidden", head_hidden)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id {pad_id} is outside the vocabulary (size {vocab_size})")
        self.pad_id = pad_id
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.emb_drop = nn.Dropout(emb_dropout)
        self.lstm = nn.LSTM(emb_dim, hidden, num_layers=n_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if n_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.LayerNorm(6 * hidden), nn.Dropout(dropout), nn.Linear(6 * hidden, head_hidden),
                                  nn.ReLU(), nn.Dropout(dropout), nn.Linear(head_hidden, n_out))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        lengths = mask.sum(1).clamp_min(1)
        x = self.emb_drop(self.embedding(ids))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        last = torch.cat([h[-2], h[-1]], dim=1)  # forward direction's last step, backward direction's first
        return self.head(torch.cat([last, masked_max(out, mask), masked_mean(out, mask)], dim=1))


def lstm_splitter(model: LSTMClassifier) -> list[list[nn.Parameter]]:
    """Two groups: the body (embedding + LSTM) and the head."""
    body = list(model.embedding.parameters()) + list(model.lstm.parameters())
    return [body, list(model.head.parameters())]


@register_model("text.lstm")
def lstm_classifier(vocab_size: int, n_out: int, pad_id: int = 0, emb_dim: int = 200, hidden: int = 128,
                    n_layers: int = 1, emb_dropout: float = 0.3, dropout: float = 0.3,
                    head_hidden: int = 64) -> LSTMClassifier:
    """Registered builder of `LSTMClassifier` (every argument is JSON-able)."""
    return LSTMClassifier(vocab_size, n_out, pad_id=pad_id, emb_dim=emb_dim, hidden=hidden, n_layers=n_layers,
                          emb_dropout=emb_dropout, dropout=dropout, head_hidden=head_hidden)
