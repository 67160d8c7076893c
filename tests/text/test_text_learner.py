"""text_classifier_learner: training, predict, interpretation, argument errors, export in a fresh process."""
from __future__ import annotations

import json

import pytest
import torch

from learnkit.text import (TextClassificationInterpretation, TextDataLoaders, TextLearner, accuracy,
                           SmallDataWarning, text_classifier_learner)


@pytest.fixture
def word_dls(review_df):
    return TextDataLoaders.from_df(review_df, valid_col="is_valid", tok="words", min_freq=1, bs=8, device="cpu")


def small_lstm(dls, **kw):
    return text_classifier_learner(dls, "lstm", metrics=accuracy, progress=False,
                                   config={"emb_dim": 16, "hidden": 16, "head_hidden": 16}, **kw)


def test_lstm_learns_a_separable_task_and_predicts_a_single_string(word_dls):
    torch.manual_seed(0)
    learn = small_lstm(word_dls)
    assert isinstance(learn, TextLearner) and all(p.requires_grad for p in learn.model.parameters())  # from scratch
    learn.fit_one_cycle(8, 1e-2)
    assert learn.validate()[1] == 1.0
    label, idx, probs = learn.predict("This movie was wonderful, I loved it")
    assert (label, idx) == ("positive", 1)
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-5 and float(probs[1]) > 0.5
    assert learn.model_spec["builder"] == "text.lstm"
    assert json.loads(json.dumps(learn.model_spec))["kwargs"]["vocab_size"] == word_dls.tokenizer.vocab_size


def test_interpretation_lists_the_most_confidently_wrong_texts(word_dls):
    learn = small_lstm(word_dls)
    learn.fit(1, lr=1e-3)
    interp = TextClassificationInterpretation.from_learner(learn)
    n = len(word_dls.valid.dataset)
    losses, idx = interp.top_losses()
    assert len(losses) == n and bool((losses[:-1] >= losses[1:]).all())
    table = interp.top_losses_table(3)
    assert list(table.columns) == ["text", "actual", "predicted", "probability", "loss", "source"]
    assert table.loss.tolist() == sorted(table.loss.tolist(), reverse=True)
    first = int(idx[0])
    assert table.text[0] == word_dls.valid.dataset.texts[first]  # the original text of that loss
    expected = torch.nn.functional.cross_entropy(interp.probs[first].log()[None], interp.targs[first][None])
    assert abs(float(expected) - table.loss[0]) < 1e-3
    cm = interp.confusion_matrix()
    assert int(cm.values.sum()) == n and list(cm.index) == word_dls.vocab
    with pytest.raises(ValueError, match="dataset order"):
        TextClassificationInterpretation.from_learner(learn, ds_idx=0)


def test_interpretation_on_a_labelled_test_dl(word_dls, capsys):
    learn = small_lstm(word_dls)
    dl = word_dls.test_dl([("great fun", "positive"), ("awful mess", "negative")], with_labels=True)
    interp = TextClassificationInterpretation.from_learner(learn, dl=dl)
    interp.show_top_losses(2)
    out = capsys.readouterr().out
    assert "great fun" in out and "awful mess" in out
    with pytest.raises(ValueError, match="no labels"):
        TextClassificationInterpretation.from_learner(learn, dl=word_dls.test_dl(["great"]))


def test_argument_errors_are_clear(word_dls, review_df, tiny_bert):
    with pytest.raises(ValueError, match="tok='minilm'"):
        text_classifier_learner(word_dls, "minilm")
    with pytest.raises(TypeError, match="arch must be"):
        text_classifier_learner(word_dls, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'hiden'"):
        text_classifier_learner(word_dls, "lstm", config={"hiden": 8})
    with pytest.raises(TypeError, match="TextDataLoaders"):
        text_classifier_learner(object(), "lstm")
    with pytest.raises(ValueError, match="drop_mult"):
        text_classifier_learner(word_dls, "lstm", drop_mult=-1)
    bert_dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok=str(tiny_bert), device="cpu")
    with pytest.raises(ValueError, match="does not match the tokenizer"):
        text_classifier_learner(bert_dls, "minilm")
    lstm_on_wordpieces = text_classifier_learner(bert_dls, "lstm", progress=False)  # any tokenizer's ids
    assert lstm_on_wordpieces.model.embedding.num_embeddings == bert_dls.tokenizer.vocab_size


def test_pretrained_learner_starts_frozen_with_discriminative_groups(review_df, tiny_bert):
    dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok=str(tiny_bert), device="cpu")
    learn = text_classifier_learner(dls, str(tiny_bert), drop_mult=0.5, progress=False)
    assert learn.model.head[0].p == pytest.approx(0.05)
    groups = learn.param_groups()
    assert len(groups) == 4
    assert [all(p.requires_grad for p in g) for g in groups] == [False, False, False, True]
    assert learn.model_spec == {"builder": "text.transformer",
                                "kwargs": {"n_out": 2, "source": str(tiny_bert), "pad_id": 0, "head_dropout": 0.05,
                                           "pretrained": False}}


def test_pretrained_style_learner_predicts_after_export_in_a_fresh_process(review_df, tiny_bert, fresh_process):
    """The word-LSTM twin of this test is tests/core/test_export_tasks.py's text test."""
    dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok=str(tiny_bert), max_len=32, device="cpu")
    learn = text_classifier_learner(dls, str(tiny_bert), progress=False)
    with pytest.warns(SmallDataWarning, match="unfrozen phase made only 2 optimizer steps"):  # 36 items
        learn.fine_tune(1, base_lr=1e-3, freeze_epochs=2, head_lr=1e-2)
    res = fresh_process(learn, ["This movie was wonderful", "awful, boring and far too long", "ok"])
    assert res["label"] in dls.vocab
