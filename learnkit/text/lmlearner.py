"""`language_model_learner` and `LMLearner`: train a language model and generate text with it.

>>> import pandas as pd
>>> df = pd.DataFrame({"text": ["the cat sat on the mat . the dog sat on the log ."] * 8})
>>> dls = TextDataLoaders.from_df(df, tok="words", is_lm=True, bs=4, seq_len=8, min_freq=1, device="cpu")
>>> learn = language_model_learner(dls, AWD_LSTM, pretrained=False, metrics=[accuracy, Perplexity()],
...                                config=dict(emb_sz=16, n_hid=32, n_layers=2), progress=False)
>>> learn.fit_one_cycle(1, 1e-2)
>>> text = learn.predict("the cat", n_words=5, temperature=0.75)
>>> text.startswith("the cat "), len(text.split()) >= 5
(True, True)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.callback import Callback
from ..core.optim import LR
from ..core.registry import register_learner
from ..core.validation import check_number
from .awdclas import awd_lstm_lm
from .awdlstm import AWD_LSTM, _config, awd_lstm_lm_config, awd_lstm_lm_split
from .data import TextDataLoaders
from .lmdata import token_list
from .generate import check_sampling, generate
from .learner import TextLearner
from .vocab import BOS

__all__ = ["LMLearner", "language_model_learner", "detokenize"]

_NO_SPACE_BEFORE = set(".,!?;:)]}%'") | {"n't", "'s"}
_NO_SPACE_AFTER = set("([{$")


def detokenize(tokens: Sequence[str]) -> str:
    """Words joined into readable text: no space before punctuation or after an opening bracket.

    >>> detokenize(["it", "was", "great", "(", "really", ")", "!"])
    'it was great (really)!'
    """
    out = ""
    for t in tokens:
        if out and t not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
            out += " "
        out += t
    return out


@register_learner
class LMLearner(TextLearner):
    """A `TextLearner` for language models: ``predict(text, n_words)`` continues a text.

    >>> LMLearner.predict.__doc__.splitlines()[0]
    'The prompt ``text`` and ``n_words`` generated tokens after it, as readable text.'
    """

    def predict(self, text: str, n_words: int = 1, no_unk: bool = True, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> str:
        """The prompt ``text`` and ``n_words`` generated tokens after it, as readable text.

        ``temperature=0`` is greedy (deterministic); otherwise tokens are drawn from the softmax of the
        logits divided by ``temperature``, restricted to the ``top_k`` most likely and to the ``top_p``
        probability mass when given (`learnkit.text.generate`). ``no_unk``: never the unknown-word token.
        ``seed`` makes the draw repeatable."""
        check_sampling(n_words, temperature, top_k, top_p)
        if not isinstance(text, str):
            raise TypeError(f"predict takes the text to continue (a str), got {type(text).__name__}")
        tok = self.dls.tokenizer
        prompt = self._prompt_ids(text)
        banned = [tok.pad_id] if getattr(tok, "pad_id", None) is not None and not self._pad_is_eos() else []
        unk = getattr(getattr(tok, "vocab", None), "unk_id", None)
        if no_unk and unk is not None:
            banned.append(unk)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.model.eval()
        step = self._stepper()
        new = generate(step, prompt, n_words, temperature, top_k, top_p, banned=banned, generator=gen,
                       device=self.device)
        if hasattr(self.model, "reset"):
            self.model.reset()
        return self._decode_continuation(text, new)

    # --- the model-specific parts: an AWD-LSTM here, a Hugging Face causal LM in `causal.py` ---------
    def _prompt_ids(self, text: str) -> list[int]:
        tok = self.dls.tokenizer
        ids = tok.encode_batch([text])[0] if text.strip() else []
        vocab = getattr(tok, "vocab", None)
        if vocab is not None and BOS in vocab:
            ids = [vocab.stoi[BOS], *ids]
        if not ids:
            raise ValueError("the prompt has no tokens: give at least one word to continue")
        return ids

    def _pad_is_eos(self) -> bool:
        return False

    def _stepper(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if hasattr(self.model, "reset"):
            self.model.reset()

        def step(ids: torch.Tensor) -> torch.Tensor:
            return self.pred_from_output(self.model(ids))[0, -1]
        return step

    def _decode_continuation(self, text: str, new: list[int]) -> str:
        tok = self.dls.tokenizer
        vocab = getattr(tok, "vocab", None)
        if vocab is not None and hasattr(vocab, "itos"):
            words = [vocab.itos[i] for i in new if vocab.itos[i] != BOS]
            sep = "" if not words or words[0] in _NO_SPACE_BEFORE else " "
            return text.rstrip() + sep + detokenize(words)
        return text + tok.decode(new)


def language_model_learner(dls: TextDataLoaders, arch: Any = AWD_LSTM, config: dict | None = None,
                           drop_mult: float = 1.0, pretrained: bool = True, metrics: Any = None,
                           loss_func: Callable | None = None, opt_func: Callable | None = None, lr: LR | None = None,
                           cbs: Callback | Sequence[Callback] | None = None, wd: float | None = None,
                           path: str | Path | None = None, model_dir: str = "models", alpha: float = 2.0,
                           beta: float = 1.0, device: str | torch.device | None = None,
                           progress: bool = True) -> LMLearner:
    """An `LMLearner` on a language model's ``dls`` (``is_lm=True``).

    Args:
        arch: `AWD_LSTM` (``config`` overrides keys of `awd_lstm_lm_config`; dropouts times ``drop_mult``),
            or the folder of a Hugging Face causal language model (GPT-2 style), whose tokenizer ``dls``
            must use (``tok=folder``).
        pretrained: `AWD_LSTM`: fastai's WikiText-103 weights (downloaded once; offline: an error saying to pass
            ``pretrained=False``); a folder: its weights (``False``: its architecture with random weights).
        alpha, beta: `RNNRegularizer`'s activation and temporal activation regularisation (`AWD_LSTM`).
        The other arguments are `Learner`'s.

    A pretrained `AWD_LSTM` starts frozen but for its embedding and decoder (fastai's rule).

    >>> import pandas as pd
    >>> dls = TextDataLoaders.from_df(pd.DataFrame({"text": ["a b c d e f g h"] * 4}), tok="words", is_lm=True,
    ...                               bs=2, seq_len=4, min_freq=1, device="cpu")
    >>> learn = language_model_learner(dls, AWD_LSTM, config=dict(emb_sz=8, n_hid=8, n_layers=1), pretrained=False)
    >>> type(learn).__name__, learn.model[1].decoder.out_features == len(dls.vocab), learn.model_spec["builder"]
    ('LMLearner', True, 'text.awd_lstm_lm')
    """
    if not isinstance(dls, TextDataLoaders) or not dls.is_lm:
        raise TypeError("language_model_learner needs a language model's TextDataLoaders: build them with "
                        "is_lm=True (TextDataLoaders.from_folder(path, is_lm=True), TextBlock(is_lm=True)...)")
    check_number("drop_mult", drop_mult, low=0)
    if arch is AWD_LSTM:
        cfg = _config(awd_lstm_lm_config, config, drop_mult)
        cfg["pad_token"] = dls.tokenizer.pad_id
        kwargs = {"vocab_sz": len(dls.vocab), "config": cfg}
        model, builder, splitter = awd_lstm_lm(**kwargs), "text.awd_lstm_lm", awd_lstm_lm_split
        learner_alpha, learner_beta = alpha, beta
    elif isinstance(arch, (str, Path)):
        from .causal import causal_lm_model
        model, kwargs = causal_lm_model(arch, dls, pretrained=pretrained, config=config)
        builder, splitter = "text.causal_lm", _one_group
        learner_alpha = learner_beta = 0.0
    else:
        raise TypeError(f"arch must be AWD_LSTM or the folder of a Hugging Face causal language model, got {arch!r}")
    if arch is AWD_LSTM:
        cls = LMLearner
    else:
        from .causal import CausalLMLearner as cls  # noqa: N813
    learn = cls(dls, model, alpha=learner_alpha, beta=learner_beta, loss_func=loss_func, opt_func=opt_func, lr=lr,
                splitter=splitter, cbs=cbs, metrics=metrics, wd=wd, path=path, model_dir=model_dir, device=device,
                progress=progress)
    learn.model_spec = {"builder": builder, "kwargs": kwargs}
    if arch is AWD_LSTM and pretrained:
        from .wt103 import load_wt103
        load_wt103(learn.model, token_list(dls.tokenizer))
        learn.model.to(learn.device)
        learn.freeze()
    return learn


def _one_group(model: nn.Module) -> list[list[nn.Parameter]]:
    return [list(model.parameters())]
