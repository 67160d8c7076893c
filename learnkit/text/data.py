"""`TextDataLoaders`: text classification data from folders of ``.txt`` files or a table.

Texts are read as UTF-8 (or ``encoding=``), cleaned (`clean_text`: ``<br />`` and extra whitespace),
tokenised once, and served in batches padded to their own longest text. The tokenizer is chosen by
``tok``: ``"minilm"`` (the pretrained encoder's WordPiece tokenizer; needs ``learnkit[text]``), a local
Hugging Face folder, ``"words"`` (a `WordTokenizer` whose vocabulary is built from the *training* texts
only: ``min_freq``, ``max_vocab``), or a tokenizer object.

Empty texts (empty files, blank cells) are skipped with a warning that names them.

>>> import pandas as pd
>>> df = pd.DataFrame({"text": ["good film", "bad film", "great", "awful"], "label": ["pos", "neg", "pos", "neg"],
...                    "is_valid": [False, False, True, True]})
>>> dls = TextDataLoaders.from_df(df, valid_col="is_valid", tok="words", min_freq=1, device="cpu")
>>> dls.vocab, dls.tokenizer.vocab.itos
(['neg', 'pos'], ['xxpad', 'xxunk', 'film', 'bad', 'good'])
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..core.data import DataLoaders
from ..core.device import default_device
from ..core.display import display_df
from ..core.losses import CrossEntropyLossFlat
from ..core.registry import register_dls
from ..core.block import CategoryBlock
from ..core.items import make_vocab, py_value
from ..core.split import ColSplitter, FuncSplitter, GrandparentSplitter, RandomSplitter, check_split
from .batching import BucketBatchSampler, PadCollate, TextDataset
from .lmdata import _as_vocab, lm_loaders, token_list
from .tokenize import WordTokenizer, clean_text, make_tokenizer, read_text, tokenizer_config, tokenizer_from_config
from ..core.paths import expand_path
from .vocab import Vocab

__all__ = ["TextDataLoaders"]


@register_dls
class TextDataLoaders(DataLoaders):
    """Training and validation loaders of tokenised texts; ``vocab`` holds the class names.

    Build with `from_folder`, `from_df` or `from_csv` (each a `DataBlock` with a `learnkit.text.TextBlock`
    input, which calls `from_texts`), or a DataBlock of your own. ``dls.tokenizer`` turns texts into ids (and back);
    ``test_dl(texts)`` prepares new texts exactly as the validation set was prepared.

    >>> df = pd.DataFrame({"text": ["good film", "bad film", "great", "awful"], "label": ["pos", "neg", "pos", "neg"],
    ...                    "is_valid": [False, False, True, True]})
    >>> dls = TextDataLoaders.from_df(df, valid_col="is_valid", tok="words", min_freq=1, device="cpu")
    >>> ids, = next(iter(dls.test_dl(["A good, good film!"])))
    >>> ids.tolist(), dls.decode_text(ids[0])            # words never seen in training become xxunk
    ([[1, 4, 1, 4, 2, 1]], 'xxunk good xxunk good film xxunk')
    """

    def __init__(self, train: Any, valid: Any, tokenizer: Any, vocab: Sequence[str] | None,
                 device: str | torch.device | None = None, bs: int = 32, is_lm: bool = False, seq_len: int = 72):
        #: a language model's loaders (`LMDataLoader`): ``vocab`` is then the token list, not classes
        self.is_lm, self.seq_len = is_lm, seq_len
        super().__init__(train, valid, device=device, n_inp=1, vocab=token_list(tokenizer) if is_lm else vocab)
        self.tokenizer, self.bs = tokenizer, bs
        self.loss_func = CrossEntropyLossFlat(axis=-1) if is_lm else CrossEntropyLossFlat()

    # --- building ------------------------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Sequence[str], labels: Sequence[Any], train_idx: Sequence[int],
                   valid_idx: Sequence[int], sources: Sequence[Any] | None = None, vocab: Sequence[Any] | None = None,
                   tok: Any = "minilm", max_len: int | None = None, min_freq: int = 3, max_vocab: int = 30_000,
                   truncation: str = "head_tail", bs: int = 32, seed: int | None = 42,
                   device: str | torch.device | None = None, allow_empty_valid: bool = False, is_lm: bool = False,
                   seq_len: int = 72, text_vocab: Sequence[str] | None = None) -> "TextDataLoaders":
        """The loaders of raw ``texts`` with ``labels`` split by index (what the other constructors call).

        ``is_lm=True``: a language model's loaders (`LMDataLoader`, ``labels`` unused, texts never truncated).
        ``text_vocab``: the token list of a word tokenizer to reuse (a language model's ``dls_lm.vocab``)
        instead of learning one from the training texts."""
        if is_lm:
            return cls._lm_from_texts(texts, train_idx, valid_idx, sources, tok, min_freq, max_vocab, bs, seed,
                                      device, seq_len, text_vocab)
        sources = list(sources) if sources is not None else list(range(len(texts)))
        texts = [clean_text(t) for t in texts]
        empty = [i for i, t in enumerate(texts) if not t]
        if empty:
            warnings.warn(f"skipping {len(empty)} empty text(s), e.g. {sources[empty[0]]}", stacklevel=3)
            drop = set(empty)
            train_idx = [i for i in train_idx if i not in drop]
            valid_idx = [i for i in valid_idx if i not in drop]
        check_split(train_idx, valid_idx, labels=list(labels), allow_empty_valid=allow_empty_valid, what="texts")
        classes = make_vocab([labels[i] for i in [*train_idx, *valid_idx]], vocab, what="texts")
        cidx = {c: i for i, c in enumerate(classes)}
        unknown = [labels[i] for i in [*train_idx, *valid_idx] if labels[i] not in cidx]
        if unknown:
            raise ValueError(f"label {unknown[0]!r} is not in vocab {classes}")
        # the vocabulary of a word tokenizer is learnt from the training texts only
        # each text is tokenised once: the word tokenizer splits all texts, learns its vocabulary on the training
        # ones and numericalises the same token lists; a pretrained tokenizer encodes them in batches
        if isinstance(tok, str) and tok == "words":
            tokens = WordTokenizer.split_batch(texts)
            if text_vocab is not None:
                tokenizer = WordTokenizer(_as_vocab(text_vocab), max_len=512 if max_len is None else max_len,
                                          truncation=truncation)
            else:
                tokenizer = WordTokenizer.from_tokens([tokens[i] for i in train_idx], min_freq=min_freq,
                                                      max_vocab=max_vocab, max_len=512 if max_len is None else max_len,
                                                      truncation=truncation)
            ids = tokenizer.encode_tokens(tokens)
        else:
            tokenizer = make_tokenizer(tok, [], max_len, min_freq, max_vocab, truncation)
            ids = tokenizer.encode_batch(texts)
        ds = TextDataset(texts, ids, [cidx.get(v, -1) for v in labels], sources)
        return cls.from_datasets(ds.subset(train_idx), ds.subset(valid_idx) if valid_idx else None, tokenizer,
                                 classes, bs=bs, seed=seed, device=device)

    @classmethod
    def _lm_from_texts(cls, texts: Sequence[str], train_idx: Sequence[int], valid_idx: Sequence[int],
                       sources: Sequence[Any] | None, tok: Any, min_freq: int, max_vocab: int, bs: int,
                       seed: int | None, device: str | torch.device | None, seq_len: int,
                       text_vocab: Sequence[str] | None) -> "TextDataLoaders":
        """A language model's loaders (`lm_loaders`: texts tokenised whole, the training ones shuffled)."""
        texts = [clean_text(t) for t in texts]
        train, valid, tokenizer = lm_loaders(texts, train_idx, valid_idx, sources, tok, min_freq, max_vocab, bs,
                                             seed, seq_len, text_vocab)
        return cls(train, valid, tokenizer, None, device=device, bs=bs, is_lm=True, seq_len=seq_len)


    @classmethod
    def from_datasets(cls, train_ds: TextDataset, valid_ds: TextDataset | None, tokenizer: Any,
                      vocab: Sequence[str], bs: int = 32, seed: int | None = 42,
                      device: str | torch.device | None = None) -> "TextDataLoaders":
        """Loaders over tokenised datasets: training bucketed by length; validation sorted longest first."""
        pin = default_device(device).type == "cuda"  # the device batches go to, not whether a GPU exists
        collate = PadCollate(tokenizer.pad_id)
        train = DataLoader(train_ds, batch_sampler=BucketBatchSampler(train_ds.lengths, bs, shuffle=True, seed=seed),
                           collate_fn=collate, pin_memory=pin)
        valid = None
        if valid_ds is not None:
            valid = DataLoader(valid_ds.sorted_by_length(), batch_size=bs * 2, shuffle=False, collate_fn=collate,
                               pin_memory=pin)
        return cls(train, valid, tokenizer, vocab, device=device, bs=bs)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, train: str = "train", valid: str = "valid",
                    valid_pct: float | None = None, seed: int | None = 42, vocab: Sequence[str] | None = None,
                    tok: Any = "minilm", max_len: int | None = None, min_freq: int = 3, max_vocab: int = 30_000,
                    truncation: str = "head_tail", bs: int = 32, encoding: str = "utf-8",
                    device: str | torch.device | None = None, is_lm: bool = False, seq_len: int = 72,
                    text_vocab: Sequence[str] | None = None) -> "TextDataLoaders":
        """``path/train/<label>/*.txt`` and ``path/valid/<label>/*.txt``; the label is the parent folder.

        No ``valid`` folder: a random 20 % of the training files (``valid_pct``, ``seed``). ``valid_pct``
        given: a random split of the files of both folders (fastai's rule). ``vocab`` picks and orders the
        label folders; by default every folder with ``.txt`` files except aclImdb's unlabelled ``unsup``.

        ``is_lm=True``: a language model's loaders over every ``.txt`` file under ``train`` and ``valid``
        (``unsup`` included; no labels), ``bs`` rows of ``seq_len`` tokens (see `LMDataLoader`).
        ``text_vocab``: a language model's ``dls_lm.vocab``, so that a classifier reads the same word ids.
        """
        from ..core.datablock import DataBlock
        from ..core.items import get_text_files, parent_label
        from .blocks import TextBlock
        path = expand_path(path)
        if not (path / train).is_dir():
            raise FileNotFoundError(f"no training folder {path / train}; expected {path}/{train}/<label>/*.txt")
        has_valid = (path / valid).is_dir()
        if is_lm:
            files = get_text_files(path, folders=[train, valid] if has_valid else [train])
            if not files:
                raise FileNotFoundError(f"no .txt files under {path / train}")
            splitter = (GrandparentSplitter(train, valid) if valid_pct is None and has_valid
                        else RandomSplitter(0.1 if valid_pct is None else valid_pct, seed))
            if isinstance(splitter, GrandparentSplitter):  # the split folder may be any level up: the top one
                splitter = FuncSplitter(lambda f: Path(f).relative_to(path).parts[0] == valid)
            block = TextBlock.from_folder(path, tok=tok, min_freq=min_freq, max_vocab=max_vocab, encoding=encoding,
                                          is_lm=True, seq_len=seq_len, vocab=text_vocab)
            block.dls_type = cls
            return DataBlock(blocks=(block,), splitter=splitter).dataloaders(files, bs=bs, seed=seed, device=device)
        files = [f for f in get_text_files(path, folders=[train, valid] if has_valid else [train])
                 if f.parent.parent.parent == path
                 and (f.parent.name in vocab if vocab is not None else f.parent.name != "unsup")]
        if not files:
            raise FileNotFoundError(f"no .txt files in {path / train}/<label>/ (label folders: "
                                    f"{sorted(p.name for p in (path / train).iterdir() if p.is_dir())})")
        splitter = (GrandparentSplitter(train, valid) if valid_pct is None and has_valid
                    else RandomSplitter(0.2 if valid_pct is None else valid_pct, seed))
        block = TextBlock.from_folder(path, tok=tok, max_len=max_len, min_freq=min_freq, max_vocab=max_vocab,
                                      truncation=truncation, encoding=encoding, vocab=text_vocab)
        block.dls_type = cls
        classes = make_vocab([f.parent.name for f in files], vocab, example=files[0].parent, what="texts")
        dblock = DataBlock(blocks=(block, CategoryBlock(classes)), get_y=parent_label, splitter=splitter)
        return _checked(dblock.dataloaders(files, bs=bs, seed=seed, device=device), valid_pct == 0)

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | os.PathLike = ".", text_col: str = "text",
                label_col: str = "label", valid_col: str | None = None, valid_pct: float = 0.2,
                seed: int | None = 42, vocab: Sequence[Any] | None = None, tok: Any = "minilm",
                max_len: int | None = None, min_freq: int = 3, max_vocab: int = 30_000, truncation: str = "head_tail",
                bs: int = 32, device: str | torch.device | None = None, is_lm: bool = False, seq_len: int = 72,
                text_vocab: Sequence[str] | None = None) -> "TextDataLoaders":
        """A DataFrame with a text column and a label column; split by ``valid_col`` (booleans) when given,
        else randomly (``valid_pct``, ``seed``). ``path`` is accepted for fastai compatibility (unused).

        ``is_lm=True``: a language model's loaders over the text column (no labels: ``label_col`` must be left
        out); ``text_vocab``: a language model's ``dls_lm.vocab`` for a classifier (see `from_folder`)."""
        if is_lm:
            if label_col not in (None, "label"):
                raise ValueError(f"is_lm=True builds a language model, which reads no labels, but "
                                 f"label_col={label_col!r} was given: drop label_col (or set is_lm=False for a classifier)")
            label_col = None
        for name, col in (("text_col", text_col), ("label_col", label_col), ("valid_col", valid_col)):
            if col is not None and col not in df.columns:
                raise KeyError(f"{name}={col!r} is not a column; the columns are {list(df.columns)}")
        texts = df[text_col]
        bad = texts[~texts.map(lambda v: isinstance(v, str) or pd.isna(v))]
        if len(bad):
            raise ValueError(f"column {text_col!r} must hold text; row {bad.index[0]!r} holds {bad.iloc[0]!r}")
        from ..core.datablock import DataBlock
        from ..core.items import ColReader
        from .blocks import TextBlock
        splitter = ColSplitter(valid_col) if valid_col is not None else RandomSplitter(valid_pct, seed)
        if is_lm:
            block = TextBlock.from_df(text_col, tok=tok, min_freq=min_freq, max_vocab=max_vocab, is_lm=True,
                                      seq_len=seq_len, vocab=text_vocab)
            block.dls_type = cls
            return DataBlock(blocks=(block,), splitter=splitter).dataloaders(df, bs=bs, seed=seed, device=device)
        labels = df[label_col]
        if labels.isna().any():
            raise ValueError(f"column {label_col!r} has a missing label in row {labels[labels.isna()].index[0]!r}; "
                             "drop or fill the unlabelled rows first")
        block = TextBlock.from_df(text_col, tok=tok, max_len=max_len, min_freq=min_freq, max_vocab=max_vocab,
                                  truncation=truncation, vocab=text_vocab)
        block.dls_type = cls
        # all the labels are the classes (as before): a class seen only in validation gets check_split's error;
        # one class, or numbers mixed with strings (1 and '1'), are refused as by the other tasks
        classes = make_vocab(list(labels.map(py_value)), vocab, example=f"row {labels.index[0]!r}", what="texts",
                             fix=f", e.g. df[{label_col!r}] = df[{label_col!r}].astype(str)")
        dblock = DataBlock(blocks=(block, CategoryBlock(classes)), get_y=ColReader(label_col), splitter=splitter)
        return _checked(dblock.dataloaders(df, bs=bs, seed=seed, device=device), valid_col is None and valid_pct == 0)

    @classmethod
    def from_csv(cls, path: str | os.PathLike, csv_fname: str = "texts.csv", text_col: str = "text",
                 label_col: str = "label", valid_col: str | None = None, valid_pct: float = 0.2,
                 seed: int | None = 42, vocab: Sequence[Any] | None = None, tok: Any = "minilm",
                 max_len: int | None = None, min_freq: int = 3, max_vocab: int = 30_000, truncation: str = "head_tail",
                 bs: int = 32, encoding: str = "utf-8", delimiter: str = ",",
                 device: str | torch.device | None = None, is_lm: bool = False, seq_len: int = 72,
                 text_vocab: Sequence[str] | None = None) -> "TextDataLoaders":
        """`from_df` on ``path/csv_fname`` (read as ``encoding``; a clear error names the file otherwise)."""
        fname = expand_path(path) / csv_fname
        if not fname.is_file():
            raise FileNotFoundError(f"no CSV file at {fname}")
        try:
            df = pd.read_csv(fname, encoding=encoding, sep=delimiter)
        except UnicodeDecodeError as e:
            raise ValueError(f"{fname}: byte at position {e.start} is not valid {encoding} text; "
                             "pass encoding='latin-1' (or the file's real encoding)") from None
        return cls.from_df(df, path=path, text_col=text_col, label_col=label_col, valid_col=valid_col,
                           valid_pct=valid_pct, seed=seed, vocab=vocab, tok=tok, max_len=max_len, min_freq=min_freq,
                           max_vocab=max_vocab, truncation=truncation, bs=bs, device=device, is_lm=is_lm,
                           seq_len=seq_len, text_vocab=text_vocab)

    # --- inference -----------------------------------------------------------------------------------
    def test_dl(self, items: Sequence[Any], with_labels: bool = False, bs: int | None = None) -> DataLoader:
        """A loader over new texts (strings, or paths of ``.txt`` files), in the given order; with
        ``with_labels``, items are ``(text, label)`` pairs."""
        if isinstance(items, (str, Path)):
            raise TypeError("test_dl takes a list of texts; wrap a single text in a list: dls.test_dl([text])")
        pairs = list(items) if with_labels else [(o, None) for o in items]
        texts = [clean_text(read_text(t) if isinstance(t, Path) else _as_text(t)) for t, _ in pairs]
        labels = None
        if with_labels:
            cidx = {c: i for i, c in enumerate(self.vocab)}
            missing = [y for _, y in pairs if y not in cidx]
            if missing:
                raise ValueError(f"label {missing[0]!r} is not one of the classes {self.vocab}")
            labels = [cidx[y] for _, y in pairs]
        ds = TextDataset(texts, self.tokenizer.encode_batch(texts), labels)
        return DataLoader(ds, batch_size=bs or self.bs * 2, shuffle=False, collate_fn=PadCollate(self.tokenizer.pad_id))

    def decode_pred(self, decoded: torch.Tensor, probs: torch.Tensor) -> tuple:
        idx = int(decoded)
        return self.vocab[idx], idx, probs

    def decode_text(self, ids: torch.Tensor) -> str:
        """The text the model sees for one row of ids (padding dropped; truncation and unknown words visible)."""
        return self.tokenizer.decode([int(i) for i in ids if int(i) != self.tokenizer.pad_id])

    # --- display -------------------------------------------------------------------------------------
    def batch_table(self, max_n: int = 9, split: int = 0, max_chars: int = 300) -> pd.DataFrame:
        """The first ``max_n`` texts of a batch as the model sees them, with their labels."""
        ids, *ys = next(iter(self[split]))
        rows = []
        if self.is_lm:  # fastai's columns: the text and the same text one token later (the targets)
            for r in range(min(max_n, ids.shape[0])):
                text, text_ = self.decode_text(ids[r]), self.decode_text(ys[0][r])
                rows.append({k: v if len(v) <= max_chars else v[: max_chars - 1] + "…"
                             for k, v in (("text", text), ("text_", text_))})
            return pd.DataFrame(rows)
        for r in range(min(max_n, ids.shape[0])):
            text = self.decode_text(ids[r])
            rows.append({"text": text if len(text) <= max_chars else text[: max_chars - 1] + "…",
                         "label": self.vocab[int(ys[0][r])] if ys else None})
        return pd.DataFrame(rows)

    def show_batch(self, max_n: int = 9, split: int = 0, max_chars: int = 300) -> None:
        """Show decoded texts and labels of a batch (an HTML table in notebooks, text otherwise)."""
        display_df(self.batch_table(max_n, split, max_chars), max_colwidth=max_chars)

    def summary(self) -> dict[str, Any]:
        if self.is_lm:
            out = {"type": type(self).__name__, "language model": f"bs={self.bs}, seq_len={self.seq_len}"}
            for name, dl in (("train", self.train), ("valid", self.valid)):
                if dl is not None:
                    out[name] = f"{dl.n_docs} texts, {dl.n_tokens} tokens, {len(dl)} batches"
            out.update({"device": str(self.device), "vocab": f"{len(self.vocab)} tokens"})
        else:
            out = super().summary()
        out["tokenizer"] = repr(self.tokenizer)
        return out

    # --- export --------------------------------------------------------------------------------------
    def onnx_spec(self) -> Any:
        """The ONNX graph's inputs: ``input_ids`` and ``attention_mask``, ``int64 [B, L]`` (any ``L``), as the
        tokenizer in the sidecar makes them (ids where the mask is 0 count as padding); see
        `learnkit.core.onnx`."""
        from ..core.onnx import OnnxSpec
        pad = int(self.tokenizer.pad_id)
        vocab_size = int(getattr(self.tokenizer, "vocab_size", 0) or pad + 2)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab_size, (2, 7), generator=g)
        mask = torch.ones(2, 7, dtype=torch.int64)
        mask[1, 4:] = 0  # padded, so the traced graph takes the masked path
        ids[1, 4:] = pad

        def prepare(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
            return (torch.where(attention_mask.bool(), input_ids, torch.full_like(input_ids, pad)),)
        return OnnxSpec(["input_ids", "attention_mask"], (ids, mask), prepare,
                        dynamic={"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"}},
                        sidecar={"input": "input_ids, attention_mask: int64 [batch, length] from the tokenizer in "
                                          "dls_config['tokenizer'] (pad the batch with pad_id, mask 0)",
                                 "pad_id": pad})

    def export_config(self) -> dict:
        if self.is_lm:  # the token list is the tokenizer's
            return {"tokenizer": tokenizer_config(self.tokenizer), "bs": self.bs, "is_lm": True,
                    "seq_len": self.seq_len}
        return {"tokenizer": tokenizer_config(self.tokenizer), "vocab": list(self.vocab), "bs": self.bs}

    @classmethod
    def from_config(cls, config: dict, device: str | torch.device | None = None) -> "TextDataLoaders":
        """An inference-only `TextDataLoaders` (no data) whose `test_dl` and `decode_pred` work."""
        is_lm = bool(config.get("is_lm", False))
        return cls(None, None, tokenizer_from_config(config["tokenizer"]), None if is_lm else config["vocab"],
                   device=device, bs=int(config.get("bs", 32)), is_lm=is_lm, seq_len=int(config.get("seq_len", 72)))


def _checked(dls: "TextDataLoaders", allow_empty_valid: bool) -> "TextDataLoaders":
    """``dls``, or the error of an empty validation set where the caller did not ask for one (``valid_pct=0``)."""
    if dls.valid is None and not allow_empty_valid:
        check_split(range(len(dls.train.dataset)), [], what="texts")
    return dls


def _as_text(o: Any) -> str:
    if not isinstance(o, str):
        raise TypeError(f"expected a text (str) or a pathlib.Path of a .txt file, got {type(o).__name__}: {o!r}")
    return o
