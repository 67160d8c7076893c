"""`text_classifier_learner`: a pretrained encoder or a from-scratch LSTM on `TextDataLoaders`.

>>> # learn = text_classifier_learner(dls, "minilm", metrics=accuracy)   # pretrained, offline
>>> # learn.fine_tune(2, 1e-4, freeze_epochs=8)
>>> # learn.predict("This movie was wonderful")   # ('pos', 1, tensor([0.02, 0.98]))

While the first stages of a staged model are frozen, training runs on their cached output
(`FrozenFeatureCache` with `StageStates`, `learnkit.text.cache`): with the body frozen, each epoch costs
only the head.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from torch import nn

from ..core.callback import Callback, CancelValidException, _listify
from ..core.callbacks.recorder import Recorder
from ..core.checkpoint import atomic_torch_save
from ..core.headfit import HeadFit
from ..core.data import DataLoaders, raw_loader
from ..core.display import display_df
from ..core.learner import Learner
from ..core.registry import register_learner
from ..core.optim import LR, Adam, check_lr, default_splitter
from ..core.sharding import unshuffled
from ..core.validation import check_fine_tune
from .awdclas import awd_lstm_clas, awd_lstm_clas_split
from .awdlstm import AWD_LSTM
from .callbacks import ModelResetter, RNNRegularizer
from .lmdata import token_list
from .cache import FrozenFeatureCache, StageStates, cache_start
from .data import TextDataLoaders
from .models import lstm_classifier, lstm_splitter
from .transformer import staged_splitter, transformer_classifier
from ..core.validation import check_number

__all__ = ["TextLearner", "text_classifier_learner", "TEXT_ARCHS"]

#: Architectures by name: ``minilm`` (pretrained, offline) and ``lstm`` (from scratch).
TEXT_ARCHS = ("minilm", "lstm")


@register_learner
class TextLearner(Learner):
    """A `Learner` for text classification: ``show_results``, and a ``fine_tune`` that can unfreeze only the
    top layers.

    With a `FrozenFeatureCache` (`text_classifier_learner` adds one), the output of a frozen model prefix is
    computed once and kept between epochs and fits: ``cache_frozen=False`` turns it off, ``max_cache_mb``
    bounds its memory (above it, training runs the whole model, with a warning).

    >>> df = pd.DataFrame({"text": ["good film", "bad film", "great", "awful"], "label": ["pos", "neg", "pos", "neg"],
    ...                    "is_valid": [False, False, True, True]})
    >>> dls = TextDataLoaders.from_df(df, valid_col="is_valid", tok="words", min_freq=1, device="cpu")
    >>> learn = text_classifier_learner(dls, "lstm", config={"emb_dim": 8, "hidden": 8}, progress=False)
    >>> type(learn).__name__, learn.show_results(show=False).columns.tolist()   # untrained: any prediction
    ('TextLearner', ['text', 'label', 'prediction'])
    """

    cache_frozen: bool = True
    max_cache_mb: float = 2048
    _cache_keep: tuple[int, ...] = ()

    def __init__(self, dls: DataLoaders, model: nn.Module, alpha: float = 2.0, beta: float = 1.0,
                 loss_func: Callable | None = None, opt_func: Callable | None = None, lr: LR | None = None,
                 splitter: Callable = default_splitter, cbs: Callback | Sequence[Callback] | None = None,
                 metrics: Any = None, wd: float | None = None, path: str | Path | None = None,
                 model_dir: str = "models", train_bn: bool = False, device: str | torch.device | None = None,
                 progress: bool = True, wd_bn_bias: bool = False):
        """fastai's ``TextLearner(dls, model, alpha=2., beta=1.)``: a `Learner` with `ModelResetter` and
        `RNNRegularizer(alpha, beta)` (both do nothing for a model without ``reset()`` or hidden outputs).
        ``opt_func``/``lr``: `Learner`'s defaults when not given."""
        defaults = inspect.signature(Learner.__init__).parameters
        super().__init__(dls, model, loss_func=loss_func,
                         opt_func=defaults["opt_func"].default if opt_func is None else opt_func,
                         lr=defaults["lr"].default if lr is None else lr, splitter=splitter,
                         cbs=[ModelResetter(), RNNRegularizer(alpha, beta), *_listify(cbs)], metrics=metrics, wd=wd,
                         path=path, model_dir=model_dir, train_bn=train_bn, device=device, progress=progress,
                         wd_bn_bias=wd_bn_bias)

    def pred_from_output(self, out: Any) -> Any:
        """The scores of a model that returns ``(scores, raw, dropped)`` (as `RNNRegularizer` reads them)."""
        return out[0] if isinstance(out, (tuple, list)) and len(out) == 3 else out

    def validate(self, ds_idx: int = 1, dl: Any = None) -> list[float]:
        """`Learner.validate`, keeping the callbacks a recurrent model needs (`ModelResetter`, `RNNRegularizer`)."""
        rec = self.recorder
        dl = unshuffled(self.dls[ds_idx]) if dl is None else raw_loader(dl)
        drop = [cb for cb in self.cbs if not isinstance(cb, Recorder) and not getattr(cb, "keep_in_validate", False)]
        with self.removed_cbs(drop):
            self._set_phase(dl, training=False)
            self._with_events(self._do_validate, "validate", CancelValidException)
        return rec.valid_summary()

    # --- encoders (ULMFiT: a language model's encoder in a classifier) -------------------------------
    def encoder(self) -> nn.Module:
        """The part of the model that `save_encoder`/`load_encoder` move: the `AWD_LSTM` of a language model
        (``model[0]``) or of a classifier (``model[0].module``)."""
        first = self.model[0] if isinstance(self.model, nn.Sequential) else None
        enc = getattr(first, "module", first)
        if not isinstance(enc, AWD_LSTM):
            raise TypeError(f"save_encoder/load_encoder work with AWD_LSTM models; this learner's model is "
                            f"{type(self.model).__name__}")
        return enc

    def save_encoder(self, name: str | Path) -> Path:
        """Save the encoder's weights and the token list to ``path/model_dir/name.pth`` (fastai's method).

        >>> # learn_lm.save_encoder("finetuned"); learn_clas.load_encoder("finetuned")
        """
        path = self._ckpt_path(name)
        atomic_torch_save({"encoder": self.encoder().state_dict(), "vocab": token_list(self.dls.tokenizer)}, path)
        return path

    def load_encoder(self, name: str | Path) -> "TextLearner":
        """Load an encoder saved by `save_encoder` into this model, then `freeze` (fastai's rule). Refuses
        another vocabulary or a parameter of another shape, naming it."""
        path = self._ckpt_path(name)
        if not path.exists():
            raise FileNotFoundError(f"no encoder at {path}: save one with learn_lm.save_encoder({str(name)!r})")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if not isinstance(state, dict) or "encoder" not in state:
            raise ValueError(f"{path} was not written by save_encoder (no 'encoder' entry)")
        mine, theirs = token_list(self.dls.tokenizer), list(state.get("vocab", []))
        if mine != theirs:
            diff = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
            at = lambda v: repr(v[diff]) if diff < len(v) else "nothing"  # noqa: E731
            raise ValueError(f"the encoder in {path} was trained with another vocabulary ({len(theirs)} tokens, this "
                             f"learner's has {len(mine)}; token {diff} is {at(theirs)} there and {at(mine)} here): "
                             "build the classifier's loaders with text_vocab=dls_lm.vocab")
        enc = self.encoder()
        own = enc.state_dict()
        for k, v in state["encoder"].items():
            if k not in own:
                raise ValueError(f"the encoder in {path} has a parameter {k!r} this model lacks: another architecture")
            if own[k].shape != v.shape:
                raise ValueError(f"the encoder in {path} does not fit this model: {k!r} is {tuple(v.shape)} there and "
                                 f"{tuple(own[k].shape)} here (use the language model's config)")
        missing = sorted(set(own) - set(state["encoder"]))
        if missing:
            raise ValueError(f"the encoder in {path} lacks the parameter(s) {missing}: another architecture")
        enc.load_state_dict(state["encoder"])
        enc.reset()
        self.freeze()
        return self

    def show_results(self, ds_idx: int = 1, max_n: int = 10, max_chars: int = 300, show: bool = True) -> pd.DataFrame:
        """The first ``max_n`` texts of a split (validation by default, in loader order) with their label and
        the model's prediction. Shown as a table (HTML in a notebook) and returned."""
        dl = self.dls[ds_idx]
        ds = getattr(dl, "dataset", None)
        if ds is None or not hasattr(ds, "texts") or getattr(ds, "labels", None) is None:
            raise ValueError(f"split {ds_idx} has no labelled texts to show")
        sub = ds.subset(range(min(max_n, len(ds))))
        _, targs, dec = self.get_preds(dl=DataLoader(sub, batch_size=len(sub), collate_fn=dl.collate_fn),
                                       with_decoded=True)
        vocab = self.dls.vocab
        cut = [t if len(t) <= max_chars else t[: max_chars - 1] + "…" for t in sub.texts]
        df = pd.DataFrame({"text": cut, "label": [vocab[int(i)] for i in targs],
                           "prediction": [vocab[int(i)] for i in dec]})
        return display_df(df, show=show, max_colwidth=max_chars)

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100,
                  pct_start: float = 0.3, div: float = 5.0, wd: float | None = None,
                  cbs: Callback | Sequence[Callback] | None = None, unfreeze_to: int = 0,
                  head_lr: float | None = None, head_fit: HeadFit | None = None) -> None:
        """`Learner.fine_tune` — the head alone for ``freeze_epochs`` (at ``head_lr``, default ``base_lr``),
        then more of the model for ``epochs`` with learning rates from ``base_lr/2/lr_mult`` to ``base_lr/2`` —
        where the second phase trains the parameter groups from ``unfreeze_to`` on: ``0`` everything (fastai's
        rule), ``-3`` the last two transformer layers and the head (several times cheaper on a CPU: the frozen
        layers' output is computed once, in the same pass as the head phase's features)."""
        check_fine_tune(epochs, base_lr, freeze_epochs, lr_mult, pct_start, div, wd)
        if head_lr is not None:
            check_lr(head_lr)
        if isinstance(unfreeze_to, bool) or not isinstance(unfreeze_to, int):
            raise TypeError(f"unfreeze_to must be an int (a parameter group index), got {unfreeze_to!r}")
        self.freeze_to(unfreeze_to)
        next_start = cache_start(self.model) if self.cache_frozen else 0
        self.freeze()
        if freeze_epochs:
            self._cache_keep = (next_start,) if next_start else ()
            try:
                self.fit_frozen_head(freeze_epochs, base_lr if head_lr is None else head_lr, wd=wd, cbs=cbs,
                                     plan=head_fit)
            finally:
                self._cache_keep = ()
        base_lr /= 2
        self.freeze_to(unfreeze_to)
        if epochs:
            self.fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start, div=div, wd=wd,
                               cbs=cbs, reset_opt=True)
            self._warn_short_phase("unfrozen", epochs)

    def clear_cache(self) -> None:
        """Free the cached activations (they are rebuilt when needed)."""
        for cb in self.cbs:
            if isinstance(cb, FrozenFeatureCache) and isinstance(cb.source, StageStates):
                cb.source.cache.clear()


def _check_arch(arch: Any, dls: TextDataLoaders) -> Any:
    from .tokenize import WordTokenizer
    if arch is AWD_LSTM:
        return arch
    if not isinstance(arch, (str, Path)):
        raise TypeError(f"arch must be one of {TEXT_ARCHS} or the folder of a pretrained encoder, got {arch!r}")
    arch = str(arch)
    if arch == "lstm":
        return arch
    if isinstance(dls.tokenizer, WordTokenizer):
        raise ValueError(f"arch {arch!r} is a pretrained encoder and needs its own tokenizer, but these "
                         f"TextDataLoaders use a word vocabulary: build them with tok={arch!r}, or use arch='lstm'")
    tok_source = getattr(dls.tokenizer, "source", None)
    if tok_source != arch:
        raise ValueError(f"arch {arch!r} does not match the tokenizer of the TextDataLoaders ({tok_source!r}): "
                         f"build them with tok={arch!r}")
    return arch


def text_classifier_learner(dls: TextDataLoaders, arch: str = "minilm", pretrained: bool = True,
                            drop_mult: float = 1.0, config: dict | None = None, metrics: Any = None,
                            loss_func: Callable | None = None, opt_func: Callable = Adam,
                            lr: LR = 1e-3, cbs: Callback | Sequence[Callback] | None = None, wd: float | None = None,
                            path: str | Path | None = None, model_dir: str = "models", cache_frozen: bool = True,
                            max_cache_mb: float = 2048, device: str | torch.device | None = None,
                            progress: bool = True, seq_len: int = 72, lin_ftrs: list[int] | None = None,
                            ps: list[float] | None = None) -> TextLearner:
    """A `TextLearner` for text classification on ``dls``.

    Args:
        arch: ``"minilm"`` (the pretrained all-MiniLM-L6-v2 encoder, loaded offline; ``dls`` must be built
            with ``tok="minilm"``), the folder of another local BERT-style encoder (with the same ``tok``),
            or ``"lstm"`` (from scratch, any tokenizer; best with ``tok="words"``), or `AWD_LSTM` (fastai's
            ULMFiT classifier: ``config`` overrides `awd_lstm_clas_config`; ``seq_len``, ``lin_ftrs``, ``ps`` as
            in fastai; load a language model's encoder with ``learn.load_encoder(name)``).
        pretrained: load the encoder's pretrained weights (``False``: random init, for tests). For `AWD_LSTM`,
            fastai's WikiText-103 weights, downloaded once (offline: pass ``False``).
        drop_mult: multiplies every dropout probability of the head (and of the LSTM).
        config: extra keyword arguments of the model builder (``emb_dim``, ``hidden``, ``n_layers`` for the
            LSTM; ``head_dropout`` and ``attn_dropout``, default the encoder's: see `transformer_classifier`, for the
            encoder); unknown names raise an error.
        cache_frozen / max_cache_mb: train on cached activations while the body is frozen (see `TextLearner`).
        The other arguments are `Learner`'s.

    A pretrained encoder is frozen (head only) at creation, as in fastai: ``fine_tune`` trains the head, then
    everything; ``fit_one_cycle`` right away trains the head only. The from-scratch LSTM starts unfrozen.

    >>> df = pd.DataFrame({"text": ["good film", "bad film", "great", "awful"], "label": ["pos", "neg", "pos", "neg"],
    ...                    "is_valid": [False, False, True, True]})
    >>> dls = TextDataLoaders.from_df(df, valid_col="is_valid", tok="words", min_freq=1, device="cpu")
    >>> learn = text_classifier_learner(dls, "lstm", config={"emb_dim": 16, "hidden": 8}, metrics=accuracy,
    ...                                 progress=False)
    >>> learn.model_spec["builder"], learn.model.embedding, learn.predict("a good film")[0] in dls.vocab
    ('text.lstm', Embedding(5, 16, padding_idx=0), True)
    """
    if not isinstance(dls, TextDataLoaders):
        raise TypeError(f"dls must be TextDataLoaders, got {type(dls).__name__}")
    if dls.is_lm:
        raise ValueError("these are a language model's TextDataLoaders (is_lm=True): a classifier needs labelled "
                         "texts; build them without is_lm, with text_vocab=dls_lm.vocab")
    if dls.vocab is None:
        raise ValueError("these TextDataLoaders have no classes (vocab)")
    check_number("drop_mult", drop_mult, low=0)
    arch = _check_arch(arch, dls)
    config = dict(config or {})
    n_out = len(dls.vocab)
    if arch is AWD_LSTM:
        return _awd_classifier(dls, config, drop_mult, pretrained, seq_len, lin_ftrs, ps, metrics=metrics,
                               loss_func=loss_func, opt_func=opt_func, lr=lr, cbs=cbs, wd=wd, path=path,
                               model_dir=model_dir, device=device, progress=progress)
    if arch == "lstm":
        kwargs = {"vocab_size": dls.tokenizer.vocab_size, "n_out": n_out, "pad_id": dls.tokenizer.pad_id,
                  "emb_dropout": 0.3 * drop_mult, "dropout": 0.3 * drop_mult, **config}
        model, builder, splitter = lstm_classifier(**kwargs), "text.lstm", lstm_splitter
        spec_kwargs = kwargs
    else:
        kwargs = {"n_out": n_out, "source": arch, "pad_id": dls.tokenizer.pad_id, "head_dropout": 0.1 * drop_mult,
                  **config}
        model = transformer_classifier(**{**kwargs, "pretrained": pretrained})
        builder, splitter = "text.transformer", staged_splitter
        spec_kwargs = {**kwargs, "pretrained": False}  # the export carries the weights
    cbs = list(cbs) if isinstance(cbs, (list, tuple)) else ([cbs] if cbs is not None else [])
    if cache_frozen:
        cbs.append(FrozenFeatureCache(StageStates(max_cache_mb)))
    learn = TextLearner(dls, model, loss_func=loss_func, opt_func=opt_func, lr=lr, splitter=splitter, cbs=cbs,
                        metrics=metrics, wd=wd, path=path, model_dir=model_dir, device=device, progress=progress)
    learn.cache_frozen, learn.max_cache_mb = cache_frozen, max_cache_mb
    learn.model_spec = {"builder": builder, "kwargs": spec_kwargs}
    if arch != "lstm" and pretrained:
        learn.freeze()
    return learn


def _awd_classifier(dls: TextDataLoaders, config: dict, drop_mult: float, pretrained: bool, seq_len: int,
                    lin_ftrs: list[int] | None, ps: list[float] | None, metrics: Any, loss_func: Callable | None,
                    opt_func: Callable, lr: LR, cbs: Any, wd: float | None, path: str | Path | None, model_dir: str,
                    device: str | torch.device | None, progress: bool) -> TextLearner:
    """The ULMFiT classifier: an `AWD_LSTM` (``awd_lstm_clas_config`` updated by ``config``) and a pooling head."""
    from .awdlstm import _config, awd_lstm_clas_config
    cfg = _config(awd_lstm_clas_config, config, drop_mult)
    kwargs = {"vocab_sz": dls.tokenizer.vocab_size, "n_class": len(dls.vocab), "seq_len": seq_len, "config": cfg,
              "lin_ftrs": lin_ftrs, "ps": ps, "pad_idx": dls.tokenizer.pad_id}
    learn = TextLearner(dls, awd_lstm_clas(**kwargs), loss_func=loss_func, opt_func=opt_func, lr=lr,
                        splitter=awd_lstm_clas_split, cbs=cbs, metrics=metrics, wd=wd, path=path, model_dir=model_dir,
                        device=device, progress=progress)
    learn.model_spec = {"builder": "text.awd_lstm_clas", "kwargs": kwargs}
    if pretrained:
        from .wt103 import load_wt103
        load_wt103(learn.encoder(), token_list(dls.tokenizer))
        learn.freeze()
    return learn
