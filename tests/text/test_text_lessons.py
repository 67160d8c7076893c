"""fastai lesson idioms on text learners: show_results, the core interpretation views."""
from __future__ import annotations

import torch

from learnkit.text import TextClassificationInterpretation, TextDataLoaders, accuracy, text_classifier_learner


def test_show_results_and_classification_report(review_df, capsys):
    dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok="words", min_freq=1, bs=8, device="cpu")
    torch.manual_seed(0)
    learn = text_classifier_learner(dls, "lstm", metrics=accuracy, progress=False,
                                    config={"emb_dim": 16, "hidden": 16, "head_hidden": 16})
    learn.fit_one_cycle(4, 1e-2)
    df = learn.show_results(max_n=3, max_chars=20)
    ds = dls.valid.dataset
    assert list(df.columns) == ["text", "label", "prediction"] and len(df) == 3
    assert df["label"].tolist() == [dls.vocab[i] for i in ds.labels[:3]]
    assert all(len(t) <= 20 for t in df["text"]) and df["text"][0][:10] == ds.texts[0][:10]
    preds = learn.get_preds(with_decoded=True)[2][:3]
    assert df["prediction"].tolist() == [dls.vocab[int(i)] for i in preds]
    assert "prediction" in capsys.readouterr().out
    report = TextClassificationInterpretation.from_learner(learn).print_classification_report(show=False)
    assert "positive" in report and "negative" in report
