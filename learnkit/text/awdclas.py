"""The ULMFiT classifier: an `AWD_LSTM` encoder read in ``seq_len`` chunks, concat pooling and a small head.

`SentenceEncoder` runs the encoder over a padded batch ``seq_len`` tokens at a time (the hidden state carries
across chunks), `PoolingLinearClassifier` pools the outputs at the real tokens — the last one, the max and
the mean, as fastai's ``masked_concat_pool`` — and applies batch-norm/dropout/linear layers. The encoder is
the language model's (`learnkit.text.TextLearner.load_encoder`), so the vocabularies must match.

Batches here are right-padded (`PadCollate`), so "the last token" is each text's own last real token.

>>> m = get_text_classifier(AWD_LSTM, vocab_sz=40, n_class=2, seq_len=4, pad_idx=0,
...                         config=dict(emb_sz=8, n_hid=12, n_layers=2)).eval()
>>> logits, raw, out = m(torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 0, 0, 0, 0]]))
>>> logits.shape
torch.Size([2, 2])
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.registry import register_model
from .awdlstm import AWD_LSTM, SequentialRNN, _config, _params, awd_lstm_clas_config, get_language_model

__all__ = ["SentenceEncoder", "PoolingLinearClassifier", "masked_concat_pool", "get_text_classifier",
           "awd_lstm_clas_split", "awd_lstm_lm", "awd_lstm_clas"]


class SentenceEncoder(nn.Module):
    """Run ``module`` (an `AWD_LSTM`) over ``[B, L]`` ids in chunks of ``bptt`` tokens, from a reset state;
    returns the outputs ``[B, L, D]`` and the padding mask ``[B, L]`` (true at padding).

    >>> enc = SentenceEncoder(3, AWD_LSTM(20, 4, 6, 1, pad_token=0), pad_idx=0)
    >>> out, mask = enc(torch.tensor([[4, 5, 6, 7, 8], [4, 5, 0, 0, 0]]))
    >>> out.shape, mask.sum().item()
    (torch.Size([2, 5, 4]), 3)
    """

    def __init__(self, bptt: int, module: nn.Module, pad_idx: int = 1):
        super().__init__()
        self.bptt, self.module, self.pad_idx = bptt, module, pad_idx

    def reset(self) -> None:
        if hasattr(self.module, "reset"):
            self.module.reset()

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.reset()
        outs = [self.module(inp[:, i: i + self.bptt]) for i in range(0, inp.shape[1], self.bptt)]
        return torch.cat(outs, dim=1), inp == self.pad_idx


def masked_concat_pool(output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[last real output, max, mean]`` over the real positions (``mask`` true at padding), ``[B, 3D]``.

    >>> out = torch.tensor([[[1.], [3.], [9.]], [[2.], [4.], [0.]]])
    >>> masked_concat_pool(out, torch.tensor([[False, False, False], [False, False, True]])).tolist()
    [[9.0, 9.0, 4.333333492279053], [4.0, 4.0, 3.0]]
    """
    real = (~mask).unsqueeze(-1)
    lens = real.sum(1).clamp_min(1)
    avg = output.masked_fill(~real, 0).sum(1) / lens.to(output.dtype)
    mx = output.masked_fill(~real, float("-inf")).max(1).values
    last = output[torch.arange(output.shape[0], device=output.device), lens.squeeze(-1) - 1]
    return torch.cat([last, mx, avg], dim=1)


class _BatchNorm1d(nn.BatchNorm1d):
    """Batch-norm that reads a training batch of one text with its running statistics (text loaders keep every
    text, so an epoch's last batch may hold a single one; plain batch-norm refuses it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False,
                                            0.0, self.eps)
        return super().forward(x)


class PoolingLinearClassifier(nn.Module):
    """Concat pooling, then ``BatchNorm1d → Dropout → Linear (→ ReLU)`` per layer of ``dims`` (``ps``: the
    dropouts). Returns ``(logits, outputs, outputs)`` as fastai does (`RNNRegularizer` reads them).

    >>> head = PoolingLinearClassifier([12, 5, 2], [0.1, 0.1])
    >>> head((torch.randn(3, 6, 4), torch.zeros(3, 6, dtype=torch.bool)))[0].shape
    torch.Size([3, 2])
    """

    def __init__(self, dims: list[int], ps: list[float]):
        super().__init__()
        if len(ps) != len(dims) - 1:
            raise ValueError(f"{len(dims) - 1} layers need as many dropout values, got ps={ps}")
        layers: list[nn.Module] = []
        for k, (n_in, n_out, p) in enumerate(zip(dims[:-1], dims[1:], ps)):
            layers += [_BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out, bias=False)]
            if k < len(dims) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, inp: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, mask = inp
        return self.layers(masked_concat_pool(out, mask)), out, out


def get_text_classifier(arch: type, vocab_sz: int, n_class: int, seq_len: int = 72, config: dict | None = None,
                        drop_mult: float = 1.0, lin_ftrs: list[int] | None = None, ps: list[float] | None = None,
                        pad_idx: int = 1) -> SequentialRNN:
    """fastai's ULMFiT classifier: ``SequentialRNN(SentenceEncoder(AWD_LSTM), PoolingLinearClassifier)``.
    ``config`` overrides keys of `awd_lstm_clas_config`; ``lin_ftrs`` (default ``[50]``) are the hidden layers.

    >>> m = get_text_classifier(AWD_LSTM, 30, 3, config=dict(emb_sz=8, n_hid=12, n_layers=1), pad_idx=0)
    >>> m[1].layers[2], m[0].module.encoder
    (Linear(in_features=24, out_features=50, bias=False), Embedding(30, 8, padding_idx=0))
    """
    if arch is not AWD_LSTM:
        raise ValueError(f"get_text_classifier builds AWD_LSTM models, got {arch!r}")
    config = _config(awd_lstm_clas_config, config, drop_mult)
    lin_ftrs = [50] if lin_ftrs is None else list(lin_ftrs)
    ps = [0.1] * len(lin_ftrs) if ps is None else list(ps)
    dims = [config["emb_sz"] * 3, *lin_ftrs, n_class]
    ps = [config.pop("output_p"), *ps]
    config["pad_token"] = pad_idx
    encoder = SentenceEncoder(seq_len, arch(vocab_sz, **config), pad_idx=pad_idx)
    return SequentialRNN(encoder, PoolingLinearClassifier(dims, ps))


def awd_lstm_clas_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups of the classifier: the embedding, each LSTM layer, the head (``freeze_to(-2)``...).

    >>> m = get_text_classifier(AWD_LSTM, 30, 2, config=dict(emb_sz=8, n_hid=12, n_layers=2), pad_idx=0)
    >>> [len(g) for g in awd_lstm_clas_split(m)]
    [1, 4, 4, 6]
    """
    enc = model[0].module
    groups = [_params(nn.Sequential(enc.encoder, enc.encoder_dp))]
    groups += [_params(nn.Sequential(rnn, dp)) for rnn, dp in zip(enc.rnns, enc.hidden_dps)]
    return groups + [_params(model[1])]


@register_model("text.awd_lstm_lm")
def awd_lstm_lm(vocab_sz: int, config: dict | None = None) -> SequentialRNN:
    """Registered builder of the AWD-LSTM language model (what an export records; ``config`` as used).

    >>> awd_lstm_lm(30, dict(emb_sz=8, n_hid=12, n_layers=1))[1].decoder
    Linear(in_features=8, out_features=30, bias=True)
    """
    return get_language_model(AWD_LSTM, vocab_sz, config=config)


@register_model("text.awd_lstm_clas")
def awd_lstm_clas(vocab_sz: int, n_class: int, seq_len: int = 72, config: dict | None = None,
                  lin_ftrs: list[int] | None = None, ps: list[float] | None = None, pad_idx: int = 1) -> SequentialRNN:
    """Registered builder of the AWD-LSTM classifier (what an export records).

    >>> awd_lstm_clas(30, 2, config=dict(emb_sz=8, n_hid=12, n_layers=1), pad_idx=0)[1].layers[-1]
    Linear(in_features=50, out_features=2, bias=False)
    """
    return get_text_classifier(AWD_LSTM, vocab_sz, n_class, seq_len=seq_len, config=config, lin_ftrs=lin_ftrs,
                               ps=ps, pad_idx=pad_idx)
