"""`AWD_LSTM` (Merity et al. 2017), fastai's ULMFiT architecture: an LSTM with dropout everywhere.

Embedding dropout (whole words), dropout on the LSTM's hidden-to-hidden weights (`WeightDropout`), and the
same dropout mask across time on the inputs, between layers and on the output (`RNNDropout`); every
probability is scaled by ``drop_mult``. The model is stateful: it keeps its hidden state between batches
(detached), so consecutive `LMDataLoader` batches read as one text; ``reset()`` (the `ModelResetter`
callback) starts afresh. The language model ties its decoder to the embedding.

The configs and the state-dict names are fastai's, so fastai's WT103 weights load unchanged.

>>> m = get_language_model(AWD_LSTM, vocab_sz=50, config=dict(emb_sz=8, n_hid=16, n_layers=2))
>>> logits, raw, dropped = m(torch.randint(0, 50, (3, 5)))    # the decoder returns the LSTM outputs too
>>> logits.shape, raw.shape, m[1].decoder.weight is m[0].encoder.weight
(torch.Size([3, 5, 50]), torch.Size([3, 5, 8]), True)
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AWD_LSTM", "awd_lstm_lm_config", "awd_lstm_clas_config", "dropout_mask", "RNNDropout", "WeightDropout",
           "EmbeddingDropout", "LinearDecoder", "SequentialRNN", "get_language_model", "awd_lstm_lm_split"]

#: fastai's language-model config (ULMFiT)
awd_lstm_lm_config = dict(emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, bidir=False, output_p=0.1,
                          hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2, tie_weights=True, out_bias=True)
#: fastai's classifier config (ULMFiT)
awd_lstm_clas_config = dict(emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, bidir=False, output_p=0.4,
                            hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)


def dropout_mask(x: torch.Tensor, sz: tuple[int, ...], p: float) -> torch.Tensor:
    """A dropout mask of size ``sz`` like ``x``: zeros with probability ``p``, the rest ``1/(1-p)``.

    >>> sorted(set(dropout_mask(torch.ones(1), (100,), 0.5).tolist())) in ([0.0, 2.0], [2.0], [0.0])
    True
    """
    return x.new_empty(*sz).bernoulli_(1 - p).div_(1 - p)


class RNNDropout(nn.Module):
    """Dropout of ``[B, L, D]`` activations with one mask per sequence (the same units dropped at every step).

    >>> d = RNNDropout(0.5).train(); out = d(torch.ones(2, 4, 3))
    >>> bool((out == out[:, :1]).all())        # the same mask at every position
    True
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * dropout_mask(x.data, (x.size(0), 1, *x.shape[2:]), self.p)


class WeightDropout(nn.Module):
    """Wraps ``module`` (an LSTM) and drops ``weight_p`` of its ``layer_names`` weights (DropConnect) in training.

    The raw weights are the parameters ``<name>_raw``; each forward sets the module's weights from them.

    >>> wd = WeightDropout(nn.LSTM(4, 3, batch_first=True), 0.5)
    >>> out, _ = wd(torch.randn(2, 5, 4)); out.shape, [n for n, _ in wd.named_parameters()][0]
    (torch.Size([2, 5, 3]), 'weight_hh_l0_raw')
    """

    def __init__(self, module: nn.Module, weight_p: float, layer_names: str | list[str] = "weight_hh_l0"):
        super().__init__()
        self.module, self.weight_p = module, weight_p
        self.layer_names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
        for layer in self.layer_names:
            w = getattr(self.module, layer)
            delattr(self.module, layer)
            self.register_parameter(f"{layer}_raw", nn.Parameter(w.data))
            setattr(self.module, layer, w.clone())
            if isinstance(self.module, nn.RNNBase):
                self.module.flatten_parameters = self._do_nothing

    def _setweights(self) -> None:
        for layer in self.layer_names:
            raw_w = getattr(self, f"{layer}_raw")
            setattr(self.module, layer, F.dropout(raw_w, p=self.weight_p) if self.training else raw_w.clone())

    def forward(self, *args: Any) -> Any:
        self._setweights()
        with warnings.catch_warnings():  # the weights are not one contiguous chunk: cudnn warns, harmlessly
            warnings.simplefilter("ignore", category=UserWarning)
            return self.module(*args)

    def reset(self) -> None:
        for layer in self.layer_names:
            setattr(self.module, layer, getattr(self, f"{layer}_raw").clone())
        if hasattr(self.module, "reset"):
            self.module.reset()

    def _do_nothing(self) -> None:
        pass


class EmbeddingDropout(nn.Module):
    """Drops whole rows of the embedding ``emb`` (every occurrence of a word) with probability ``embed_p``.

    >>> enc = nn.Embedding(10, 4); dp = EmbeddingDropout(enc, 0.5).train()
    >>> out = dp(torch.tensor([[3, 3, 3]]))
    >>> bool((out[0, 0] == out[0, 1]).all())    # a word is dropped everywhere or nowhere
    True
    """

    def __init__(self, emb: nn.Embedding, embed_p: float):
        super().__init__()
        self.emb, self.embed_p = emb, embed_p

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        w = self.emb.weight
        if self.training and self.embed_p != 0:
            w = w * dropout_mask(w.data, (w.size(0), 1), self.embed_p)
        pad = self.emb.padding_idx if self.emb.padding_idx is not None else -1
        return F.embedding(words, w, pad, self.emb.max_norm, self.emb.norm_type, self.emb.scale_grad_by_freq,
                           self.emb.sparse)


class AWD_LSTM(nn.Module):  # noqa: N801 - fastai's name
    """Embedding → ``n_layers`` weight-dropped LSTMs (``n_hid`` wide, the last ``emb_sz``), fastai's arguments.

    Stateful: ``self.hidden`` carries over between calls (detached); ``reset()`` zeroes it. Returns the last
    layer's output ``[B, L, emb_sz]``; ``self.raw_outputs``/``self.outputs`` are not kept (the decoder returns
    what `RNNRegularizer` needs).

    >>> enc = AWD_LSTM(vocab_sz=30, emb_sz=8, n_hid=12, n_layers=2, pad_token=0)
    >>> enc(torch.randint(0, 30, (4, 7))).shape, [h[0].shape for h in enc.hidden]
    (torch.Size([4, 7, 8]), [torch.Size([1, 4, 12]), torch.Size([1, 4, 8])])
    """

    initrange = 0.1

    def __init__(self, vocab_sz: int, emb_sz: int, n_hid: int, n_layers: int, pad_token: int = 1,
                 hidden_p: float = 0.2, input_p: float = 0.6, embed_p: float = 0.1, weight_p: float = 0.5,
                 bidir: bool = False):
        super().__init__()
        self.emb_sz, self.n_hid, self.n_layers, self.pad_token = emb_sz, n_hid, n_layers, pad_token
        self.bs, self.n_dir = 1, 2 if bidir else 1
        self.encoder = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_token)
        self.encoder_dp = EmbeddingDropout(self.encoder, embed_p)
        self.rnns = nn.ModuleList([self._one_rnn(emb_sz if i == 0 else n_hid,
                                                 (n_hid if i != n_layers - 1 else emb_sz) // self.n_dir, bidir,
                                                 weight_p) for i in range(n_layers)])
        self.encoder.weight.data.uniform_(-self.initrange, self.initrange)
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList([RNNDropout(hidden_p) for _ in range(n_layers)])
        self.reset()

    def forward(self, inp: torch.Tensor, from_embeds: bool = False) -> torch.Tensor:
        bs = inp.shape[0]
        if bs != self.bs:
            self._change_hidden(bs)
        if self.hidden[0][0].device != inp.device:
            self.hidden = [tuple(h.to(inp.device) for h in hs) for hs in self.hidden]
        output = self.input_dp(inp if from_embeds else self.encoder_dp(inp))
        new_hidden = []
        for i, (rnn, hid_dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            output, new_h = rnn(output, self.hidden[i])
            new_hidden.append(new_h)
            if i != self.n_layers - 1:
                output = hid_dp(output)
        self.hidden = [tuple(h.detach() for h in hs) for hs in new_hidden]
        return output

    def _n_hidden(self, i: int) -> int:
        return (self.n_hid if i != self.n_layers - 1 else self.emb_sz) // self.n_dir

    def _change_hidden(self, bs: int) -> None:
        new = []
        for i, (h, c) in enumerate(self.hidden):
            if self.bs < bs:
                pad = h.new_zeros(self.n_dir, bs - self.bs, self._n_hidden(i))
                new.append((torch.cat([h, pad], dim=1), torch.cat([c, pad], dim=1)))
            else:
                new.append((h[:, :bs].contiguous(), c[:, :bs].contiguous()))
        self.hidden, self.bs = new, bs

    def _one_rnn(self, n_in: int, n_out: int, bidir: bool, weight_p: float) -> WeightDropout:
        return WeightDropout(nn.LSTM(n_in, n_out, 1, batch_first=True, bidirectional=bidir), weight_p)

    def reset(self) -> None:
        """Zero the hidden state (and reset the weight-dropped LSTMs)."""
        for r in self.rnns:
            r.reset()
        p = self.encoder.weight
        self.hidden = [(p.new_zeros(self.n_dir, self.bs, self._n_hidden(i)),
                        p.new_zeros(self.n_dir, self.bs, self._n_hidden(i))) for i in range(self.n_layers)]


class LinearDecoder(nn.Module):
    """Output dropout and a linear layer to the vocabulary, tied to ``tie_encoder``'s weights when given.
    Returns ``(logits, raw_output, dropped_output)`` for `RNNRegularizer`.

    >>> dec = LinearDecoder(n_out=20, n_hid=8)
    >>> [t.shape for t in dec(torch.randn(2, 3, 8))]
    [torch.Size([2, 3, 20]), torch.Size([2, 3, 8]), torch.Size([2, 3, 8])]
    """

    initrange = 0.1

    def __init__(self, n_out: int, n_hid: int, output_p: float = 0.1, tie_encoder: nn.Module | None = None,
                 bias: bool = True):
        super().__init__()
        self.decoder = nn.Linear(n_hid, n_out, bias=bias)
        self.decoder.weight.data.uniform_(-self.initrange, self.initrange)
        self.output_dp = RNNDropout(output_p)
        if bias:
            self.decoder.bias.data.zero_()
        if tie_encoder is not None:
            self.decoder.weight = tie_encoder.weight

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dp_inp = self.output_dp(inp)
        return self.decoder(dp_inp), inp, dp_inp


class SequentialRNN(nn.Sequential):
    """An ``nn.Sequential`` whose ``reset()`` resets every child that has one.

    >>> m = SequentialRNN(AWD_LSTM(10, 4, 6, 1, pad_token=0), LinearDecoder(10, 4)); m.reset()
    >>> [h.abs().sum().item() for h in m[0].hidden[0]]
    [0.0, 0.0]
    """

    def reset(self) -> None:
        for c in self.children():
            if hasattr(c, "reset"):
                c.reset()


def _config(default: dict, config: dict | None, drop_mult: float) -> dict:
    unknown = set(config or {}) - set(default)
    if unknown:
        raise TypeError(f"unknown AWD_LSTM config key(s) {sorted(unknown)}; the keys are {sorted(default)}")
    config = {**default, **(config or {})}
    return {k: v * drop_mult if k.endswith("_p") else v for k, v in config.items()}


def get_language_model(arch: type, vocab_sz: int, config: dict | None = None, drop_mult: float = 1.0) -> SequentialRNN:
    """``SequentialRNN(arch(vocab_sz, ...), LinearDecoder)``: fastai's language model. ``config`` overrides
    keys of `awd_lstm_lm_config` (unknown keys are an error); the dropouts are multiplied by ``drop_mult``.

    >>> m = get_language_model(AWD_LSTM, 30, config=dict(emb_sz=8, n_hid=12, n_layers=1), drop_mult=0.5)
    >>> m[0].input_dp.p, m[1].output_dp.p
    (0.125, 0.05)
    """
    if arch is not AWD_LSTM:
        raise ValueError(f"get_language_model builds AWD_LSTM models, got {arch!r}")
    config = _config(awd_lstm_lm_config, config, drop_mult)
    tie_weights, output_p, out_bias = (config.pop(k) for k in ("tie_weights", "output_p", "out_bias"))
    encoder = arch(vocab_sz, **config)
    decoder = LinearDecoder(vocab_sz, config["emb_sz"], output_p, tie_encoder=encoder.encoder if tie_weights else None,
                            bias=out_bias)
    return SequentialRNN(encoder, decoder)


def awd_lstm_lm_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups of a language model: each LSTM layer, then the embedding with the (tied) decoder.

    >>> m = get_language_model(AWD_LSTM, 30, config=dict(emb_sz=8, n_hid=12, n_layers=2))
    >>> [len(g) for g in awd_lstm_lm_split(m)]        # 2 LSTMs (4 tensors each); embedding + decoder bias
    [4, 4, 2]
    """
    groups = [_params(nn.Sequential(rnn, dp)) for rnn, dp in zip(model[0].rnns, model[0].hidden_dps)]
    return groups + [_params(nn.Sequential(model[0].encoder, model[0].encoder_dp, model[1]))]


def _params(m: nn.Module) -> list[nn.Parameter]:
    return list(m.parameters())
