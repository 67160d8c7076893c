"""What makes the MiniLM recipe fast on a CPU: no attention dropout by default (the fused attention kernel),
and bf16 autocast reaching both the caching pass and the unfrozen epochs when asked for."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from learnkit.text import TextDataLoaders, text_classifier_learner


@pytest.fixture
def bert_with_attn_dropout(tiny_bert, tmp_path) -> Path:
    """The tiny BERT with MiniLM's attention dropout (0.1) in its config."""
    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["attention_probs_dropout_prob"] = 0.1
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _dls(review_df, bert: Path) -> TextDataLoaders:
    return TextDataLoaders.from_df(review_df, valid_col="is_valid", tok=str(bert), max_len=16, bs=8, device="cpu")


def test_attention_dropout_is_the_encoders_by_default_and_can_be_turned_off(review_df, bert_with_attn_dropout):
    dls = _dls(review_df, bert_with_attn_dropout)
    default = text_classifier_learner(dls, str(bert_with_attn_dropout), progress=False).model
    assert [layer.attention.self.dropout.p for layer in default.encoder.encoder.layer] == [0.1, 0.1]
    off = text_classifier_learner(dls, str(bert_with_attn_dropout), config={"attn_dropout": 0.0},
                                  progress=False).model
    assert [layer.attention.self.dropout.p for layer in off.encoder.encoder.layer] == [0.0, 0.0]
    assert off.encoder.config.hidden_dropout_prob == 0.0 and off.head[0].p == pytest.approx(0.1)
    with pytest.raises(ValueError, match="attn_dropout"):
        text_classifier_learner(dls, str(bert_with_attn_dropout), config={"attn_dropout": 1.5}, progress=False)


@pytest.mark.parametrize("bf16", [True, False])
def test_bf16_reaches_the_caching_pass_and_the_unfrozen_epochs(review_df, tiny_bert, monkeypatch, bf16):
    monkeypatch.setenv("LEARNKIT_SMALL_DATA_WARNINGS", "0")  # 36 items: a few steps per phase, on purpose
    learn = text_classifier_learner(_dls(review_df, tiny_bert), str(tiny_bert), progress=False)
    if bf16:
        learn.to_bf16()
    seen: list[tuple[bool, bool, torch.dtype]] = []  # (grad enabled, autocast on, output dtype) of a top linear

    def hook(module, args, out):
        seen.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), out.dtype))
    learn.model.encoder.encoder.layer[-1].intermediate.dense.register_forward_hook(hook)
    learn.fine_tune(1, 1e-3, freeze_epochs=1, unfreeze_to=-2, head_lr=1e-2)
    caching = {s for s in seen if not s[0]}  # the frozen pass (no grad) and the unfrozen phase's validation
    training = {s for s in seen if s[0]}     # the last layer training on the cached states
    assert caching and training
    want = (True, torch.bfloat16) if bf16 else (False, torch.float32)
    assert {s[1:] for s in caching} == {want}
    assert {s[1:] for s in training} == {want}
