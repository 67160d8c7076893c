"""fastai's pretrained WikiText-103 `AWD_LSTM` weights (``pretrained=True``), through the normal download path.

The archive (``URLs.WT103_FWD``) is fetched once by `untar_data` — atomic, resumable, cached under
``~/.learnkit/models/wt103-fwd`` (``$LEARNKIT_HOME``) — and holds ``lstm_fwd.pth`` (a state dict, read with
``weights_only=True``) and ``itos_wt103.pkl`` (the token list: a pickle of strings, read by an unpickler
that refuses anything else). Before extracting, the archive's size and md5 are checked against the published
ones (`WT103_CHECKS`); a mismatch removes it and raises `ChecksumError`. The embedding rows are matched to the
new vocabulary (`match_embeds`: a word WT103 knows keeps its vector, a new word gets the mean vector).
Offline, the download fails with a message that says to pass ``pretrained=False``.
"""
from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..datasets import ChecksumError, DownloadError, URLs, learnkit_home, untar_data

__all__ = ["WT103_FWD", "WT103_CHECKS", "match_embeds", "wt103_folder", "load_wt103"]

#: fastai's forward WikiText-103 AWD-LSTM language model
WT103_FWD = "https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz"

#: the published (size in bytes, md5) of each archive, checked before extracting. The WT103_FWD datum is the one
#: fastai's download checks list for that URL (the ``WT103_FWD`` entry of the ``fastdownload`` package's
#: ``fastdownload/urls.py``, version 0.0.8); it could not be verified here (no network).
WT103_CHECKS: dict[str, tuple[int, str]] = {WT103_FWD: (105067061, "7d1114cd9684bf9d1ca3c9f6a54da6f9")}


def wt103_folder(url: str = WT103_FWD) -> Path:
    """The local folder of the WT103 weights, downloaded on first use (an archive listed in `WT103_CHECKS` must
    have its published size and md5); a clear error when that fails.

    >>> wt103_folder("file:///nonexistent/wt103-fwd.tgz")
    Traceback (most recent call last):
    learnkit.datasets.DownloadError: the pretrained AWD_LSTM weights (WikiText-103) could not be downloaded ...
    """
    dest = learnkit_home() / "models" / URLs.local_name(url)
    size, md5 = WT103_CHECKS.get(url, (None, None))
    try:
        return untar_data(url, dest=dest, size=size, md5=md5)
    except ChecksumError:
        raise  # it names the file, both digests and what to do
    except (DownloadError, OSError) as e:
        reason = str(e).split(". Check the network")[0]
        raise DownloadError(f"the pretrained AWD_LSTM weights (WikiText-103) could not be downloaded from {url} "
                            f"({reason}). Offline, pass pretrained=False to start from random weights (the language model "
                            "then learns from your texts alone).") from None


class _ListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # a list of strings needs no class: refuse every one
        raise pickle.UnpicklingError(f"the token list may only hold strings, not {module}.{name}")


def _read_itos(path: Path) -> list[str]:
    itos = _ListUnpickler(io.BytesIO(path.read_bytes())).load()
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise ValueError(f"{path} does not hold a list of tokens")
    return itos


def match_embeds(old_wgts: dict[str, torch.Tensor], old_vocab: Sequence[str],
                 new_vocab: Sequence[str]) -> dict[str, torch.Tensor]:
    """``old_wgts`` with the embedding (and tied decoder) rows reordered for ``new_vocab``: a word of
    ``old_vocab`` keeps its row, a new one gets the mean row (fastai's ``match_embeds``).

    >>> w = {"0.encoder.weight": torch.tensor([[1.], [3.]]), "1.decoder.bias": torch.tensor([5., 7.])}
    >>> new = match_embeds(w, ["a", "b"], ["b", "c"])
    >>> new["0.encoder.weight"].tolist(), new["1.decoder.bias"].tolist()
    ([[3.0], [2.0]], [7.0, 6.0])
    """
    old_idx = {t: i for i, t in enumerate(old_vocab)}
    out = dict(old_wgts)
    for key in ("0.encoder.weight", "0.encoder_dp.emb.weight", "1.decoder.weight", "1.decoder.bias"):
        if key not in old_wgts:
            continue
        old = old_wgts[key]
        new = old.mean(0, keepdim=True).repeat(len(new_vocab), *([1] * (old.dim() - 1)))
        for i, t in enumerate(new_vocab):
            j = old_idx.get(t)
            if j is not None:
                new[i] = old[j]
        out[key] = new
    return out


def load_wt103(model: nn.Module, vocab: Sequence[str], url: str = WT103_FWD) -> None:
    """Load the WT103 weights into ``model``: a language model (``SequentialRNN(AWD_LSTM, LinearDecoder)``)
    or an `AWD_LSTM` encoder alone (the classifier's), matched to ``vocab``; a config other than fastai's
    (``emb_sz=400, n_hid=1152, n_layers=3``) is an error naming the parameter.

    >>> from learnkit.text import AWD_LSTM
    >>> load_wt103(AWD_LSTM(10, 4, 6, 1), ["xxpad"] * 10, url="file:///nonexistent/wt103-fwd.tgz")
    Traceback (most recent call last):
    learnkit.datasets.DownloadError: the pretrained AWD_LSTM weights (WikiText-103) ... pass pretrained=False ...
    """
    folder = wt103_folder(url)
    try:
        wgts = torch.load(folder / "lstm_fwd.pth", map_location="cpu", weights_only=True)
        itos = _read_itos(folder / "itos_wt103.pkl")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{folder} is not a complete WT103 download ({e.filename} is missing); delete the "
                                "folder to download it again") from None
    wgts = match_embeds(wgts, itos, vocab)
    encoder_only = not isinstance(model, nn.Sequential)
    if encoder_only:
        wgts = {k[2:]: v for k, v in wgts.items() if k.startswith("0.")}
    own = model.state_dict()
    for k, v in wgts.items():
        if k in own and own[k].shape != v.shape:
            raise ValueError(f"the WT103 weights do not fit this model: {k!r} is {tuple(v.shape)} there and "
                             f"{tuple(own[k].shape)} here; use fastai's config (emb_sz=400, n_hid=1152, n_layers=3)")
    missing = sorted(set(own) - set(wgts))
    if missing:
        raise ValueError(f"the WT103 weights lack {missing}: another architecture")
    model.load_state_dict({k: v for k, v in wgts.items() if k in own})
