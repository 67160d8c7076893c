"""Fine-tuning a local Hugging Face causal language model (GPT-2 style) on your texts, and sampling from it.

    dls = TextDataLoaders.from_folder(path, is_lm=True, tok=folder)       # the model's own tokenizer
    learn = language_model_learner(dls, folder, metrics=Perplexity())     # AutoModelForCausalLM, offline
    learn.fit_one_cycle(1, 1e-4); learn.predict("Once upon a time", n_words=20, top_p=0.9)

Everything loads from the folder with ``local_files_only=True`` (nothing is downloaded). An export holds the
model's config and the tokenizer's files in its header, so `load_learner` needs neither the folder nor a
download. Needs ``pip install "learnkit[text]"``.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.registry import register_learner, register_model, register_tokenizer
from .lmlearner import LMLearner
from .pretrained import _offline, _transformers

__all__ = ["CausalTokenizer", "CausalLM", "causal_lm", "CausalLMLearner", "causal_lm_model"]

_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")


def _folder(source: str | os.PathLike) -> Path:
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: arch/tok must be the folder of a Hugging Face causal "
                                "language model (config.json, weights and tokenizer files)")
    return folder


@register_tokenizer("causal")
class CausalTokenizer:
    """The tokenizer of a causal language model folder, with learnkit's tokenizer interface.

    A document becomes ``[bos] + ids`` (GPT-2: ``<|endoftext|>`` starts each text); padding, where needed, is
    the end-of-text token when the tokenizer has no pad token. ``files``: the tokenizer's files as text (what
    an export stores; `from_config` rebuilds it from them without the folder).

    >>> import tempfile, json, transformers, tokenizers
    >>> folder = tempfile.mkdtemp()
    >>> vocab = {"<|endoftext|>": 0, "a": 1, "b": 2, "Ġa": 3, "Ġb": 4}
    >>> bpe = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    >>> bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    >>> bpe.decoder = tokenizers.decoders.ByteLevel()
    >>> hf = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
    ...                                           eos_token="<|endoftext|>")
    >>> _ = hf.save_pretrained(folder)
    >>> tok = CausalTokenizer(folder)
    >>> tok.encode_docs(["a", "b"]), tok.decode([1, 4]), tok.pad_id
    ([[0, 1], [0, 2]], 'a b', 0)
    """

    def __init__(self, source: str | os.PathLike | None = None, max_len: int = 1024,
                 files: dict[str, str] | None = None):
        tf = _transformers()
        self.max_len = max_len
        if files is not None:
            self.source = str(source) if source is not None else None
            with tempfile.TemporaryDirectory() as tmp:
                for name, text in files.items():
                    (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
                with _offline():
                    self.hf = tf.AutoTokenizer.from_pretrained(tmp, local_files_only=True)
            self.files = dict(files)
            return
        folder = _folder(source)
        if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
            raise FileNotFoundError(f"{folder} has no tokenizer (none of {list(_TOKENIZER_FILES)}): save the model's "
                                    "tokenizer there with tokenizer.save_pretrained(folder)")
        self.source = str(folder)
        with _offline():
            self.hf = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        with tempfile.TemporaryDirectory() as tmp:  # the files as the tokenizer writes them: what an export holds
            self.hf.save_pretrained(tmp)
            self.files = {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(tmp).iterdir())
                          if p.is_file() and p.suffix in (".json", ".txt")}

    @property
    def pad_id(self) -> int:
        for i in (self.hf.pad_token_id, self.hf.eos_token_id, self.hf.bos_token_id):
            if i is not None:
                return int(i)
        return 0

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of each text (no special token), at most ``max_len`` (the last ones)."""
        ids = self.hf(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [i[-self.max_len:] for i in ids]

    def encode_docs(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of whole documents for a language model, each after the beginning-of-text token."""
        start = self.hf.bos_token_id if self.hf.bos_token_id is not None else self.hf.eos_token_id
        ids = self.hf(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [([start] if start is not None else []) + i for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)

    def tokens(self) -> list[str]:
        return self.hf.convert_ids_to_tokens(list(range(len(self.hf))))

    def export_config(self) -> dict:
        return {"type": "causal", "source": self.source, "max_len": self.max_len, "files": self.files}

    @classmethod
    def from_config(cls, config: dict) -> "CausalTokenizer":
        return cls(config.get("source"), max_len=int(config.get("max_len", 1024)), files=config["files"])

    def __repr__(self) -> str:
        return f"CausalTokenizer({self.source!r}, {len(self.hf)} tokens)"


class CausalLM(nn.Module):
    """A Hugging Face ``AutoModelForCausalLM`` that maps ids ``[B, L]`` to logits ``[B, L, V]``.

    >>> import transformers
    >>> cfg = transformers.GPT2Config(vocab_size=20, n_positions=16, n_embd=8, n_layer=1, n_head=2, bos_token_id=0,
    ...                               eos_token_id=0)
    >>> CausalLM(transformers.GPT2LMHeadModel(cfg))(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 20])
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits

    @property
    def max_positions(self) -> int | None:
        cfg = self.model.config
        return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)


@register_model("text.causal_lm")
def causal_lm(config: dict) -> CausalLM:
    """Registered builder: the architecture of a causal LM from its config dict (random weights; an export
    loads its own).

    >>> import transformers
    >>> cfg = transformers.GPT2Config(vocab_size=20, n_positions=16, n_embd=8, n_layer=1, n_head=2, bos_token_id=0,
    ...                               eos_token_id=0).to_dict()
    >>> type(causal_lm(cfg).model).__name__
    'GPT2LMHeadModel'
    """
    tf = _transformers()
    config = dict(config)
    hf_config = tf.AutoConfig.for_model(config.pop("model_type"), **config)
    return CausalLM(tf.AutoModelForCausalLM.from_config(hf_config))


def causal_lm_model(arch: str | os.PathLike, dls: Any, pretrained: bool = True,
                    config: dict | None = None) -> tuple[CausalLM, dict]:
    """The `CausalLM` of the folder ``arch`` (its weights when ``pretrained``) and the builder's kwargs.

    >>> causal_lm_model("/nonexistent", None)
    Traceback (most recent call last):
    FileNotFoundError: /nonexistent is not a folder: arch/tok must be the folder of a Hugging Face causal ...
    """
    folder = _folder(arch)
    if not isinstance(dls.tokenizer, CausalTokenizer):
        raise ValueError(f"arch {str(arch)!r} is a causal language model with its own tokenizer, but these loaders use "
                         f"{dls.tokenizer!r}: build them with tok={str(arch)!r}")
    if config:
        raise ValueError(f"config={config!r} is for AWD_LSTM; a causal language model's config is its config.json")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: it is not a Hugging Face model folder")
    tf = _transformers()
    with _offline():
        hf_config = tf.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        model = (tf.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True) if pretrained
                 else tf.AutoModelForCausalLM.from_config(hf_config))
    if dls.tokenizer.vocab_size > model.get_input_embeddings().num_embeddings:
        raise ValueError(f"the tokenizer has {dls.tokenizer.vocab_size} tokens but the model only "
                         f"{model.get_input_embeddings().num_embeddings} embeddings")
    return CausalLM(model), {"config": json.loads(model.config.to_json_string(use_diff=False))}


@register_learner
class CausalLMLearner(LMLearner):
    """An `LMLearner` for a Hugging Face causal LM: generation reuses the model's key/value cache.

    >>> CausalLMLearner.__mro__[1].__name__
    'LMLearner'
    """

    def _prompt_ids(self, text: str) -> list[int]:
        ids = self.dls.tokenizer.encode_docs([text])[0]
        limit = getattr(self.model, "max_positions", None)
        if limit is not None and len(ids) >= limit:
            raise ValueError(f"the prompt has {len(ids)} tokens; the model reads at most {limit}")
        return ids

    def _pad_is_eos(self) -> bool:
        return self.dls.tokenizer.hf.pad_token_id is None

    def _stepper(self) -> Callable[[torch.Tensor], torch.Tensor]:
        state: dict[str, Any] = {"past": None, "n": 0}
        limit = getattr(self.model, "max_positions", None)

        def step(ids: torch.Tensor) -> torch.Tensor:
            state["n"] += ids.shape[1]
            if limit is not None and state["n"] > limit:
                raise ValueError(f"the prompt and the generated tokens exceed the model's {limit} positions: "
                                 "generate fewer n_words")
            out = self.model.model(input_ids=ids, past_key_values=state["past"], use_cache=True)
            state["past"] = out.past_key_values
            return out.logits[0, -1]
        return step

    def _decode_continuation(self, text: str, new: list[int]) -> str:
        return text + self.dls.tokenizer.decode(new)
