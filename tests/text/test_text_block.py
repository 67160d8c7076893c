"""TextBlock on the DataBlock pipeline: folders and tables, word and pretrained tokenizers, batched ids equal to
the per-text ids, get_text_files, and errors naming the bad file."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from learnkit.core import (CategoryBlock, ColReader, ColSplitter, DataBlock, DataBlockError, GrandparentSplitter,
                           parent_label)
from learnkit.core.export import load_learner
from learnkit.text import (PretrainedTokenizer, TextBlock, TextDataLoaders, WordTokenizer, accuracy,
                           get_text_files, text_classifier_learner, truncate)
from learnkit.text.vocab import Vocab

LSTM = {"emb_dim": 16, "hidden": 16, "head_hidden": 16}


def folder_block(path, **kw) -> DataBlock:
    return DataBlock(blocks=(TextBlock.from_folder(path, **kw), CategoryBlock), get_items=get_text_files,
                     get_y=parent_label, splitter=GrandparentSplitter(valid_name="valid"))


def test_get_text_files_lists_only_txt_files_sorted(review_folder):
    (review_folder / "train" / "pos" / "notes.csv").write_text("x")
    files = get_text_files(review_folder)
    assert len(files) == 32 and all(f.suffix == ".txt" for f in files) and files == sorted(files)
    assert len(get_text_files(review_folder, folders=["valid"])) == 8
    with pytest.raises(FileNotFoundError, match="nope"):
        get_text_files(review_folder, folders=["nope"])


def test_folder_datablock_words_trains_an_lstm_and_round_trips_export(review_folder, tmp_path):
    dls = folder_block(review_folder, tok="words", min_freq=1).dataloaders(review_folder, bs=8, device="cpu")
    assert isinstance(dls, TextDataLoaders) and dls.vocab == ["neg", "pos"]
    assert len(dls.train.dataset) == 24 and len(dls.valid.dataset) == 8
    assert all("/valid/" in s for s in dls.valid.dataset.sources)
    assert isinstance(dls.tokenizer, WordTokenizer) and "review" in dls.tokenizer.vocab
    assert "<br" not in dls.train.dataset.texts[0]
    ids, y = next(iter(dls.train))
    assert ids.dtype == torch.long and ids.shape[0] == y.shape[0] <= 8
    assert not dls.batch_table(max_n=2).empty
    torch.manual_seed(0)
    learn = text_classifier_learner(dls, "lstm", metrics=accuracy, progress=False, config=LSTM)
    learn.fit(1, lr=1e-2)
    preds, targs = learn.get_preds()
    assert preds.shape == (8, 2) and targs.shape == (8,)
    label, idx, probs = learn.predict("a great film")
    assert label in dls.vocab and abs(float(probs.sum()) - 1) < 1e-5
    loaded = load_learner(learn.export(tmp_path / "lstm.safetensors"))
    assert loaded.predict("a great film")[:2] == (label, idx)


def test_df_datablock_equals_the_from_df_factory(review_df):
    dblock = DataBlock(blocks=(TextBlock.from_df("text", tok="words", min_freq=1), CategoryBlock),
                       get_x=ColReader("text"), get_y=ColReader("label"), splitter=ColSplitter("is_valid"))
    dls = dblock.dataloaders(review_df, bs=8, device="cpu")
    ref = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok="words", min_freq=1, bs=8, device="cpu")
    assert dls.vocab == ref.vocab == ["negative", "positive"]
    assert dls.tokenizer.vocab.itos == ref.tokenizer.vocab.itos
    assert dls.train.dataset.ids == ref.train.dataset.ids and dls.valid.dataset.ids == ref.valid.dataset.ids
    # no get_x: the block reads its text column from the row itself
    rows = DataBlock(blocks=(TextBlock.from_df("text", tok="words", min_freq=1), CategoryBlock),
                     get_y=ColReader("label"), splitter=ColSplitter("is_valid")).dataloaders(review_df, bs=8,
                                                                                              device="cpu")
    assert rows.train.dataset.ids == ref.train.dataset.ids


def test_tiny_bert_datablocks_from_folder_and_df(review_folder, review_df, tiny_bert):
    dls = folder_block(review_folder, tok=str(tiny_bert), max_len=32).dataloaders(review_folder, bs=8, device="cpu")
    assert isinstance(dls.tokenizer, PretrainedTokenizer)
    ids = dls.train.dataset.ids
    assert all(i[0] == dls.tokenizer.cls_id and i[-1] == dls.tokenizer.sep_id and len(i) <= 32 for i in ids)
    learn = text_classifier_learner(dls, str(tiny_bert), progress=False)
    learn.fit(1, lr=1e-3)
    assert learn.get_preds()[0].shape == (8, 2)
    df_dls = DataBlock(blocks=(TextBlock.from_df("text", tok=str(tiny_bert), max_len=32), CategoryBlock),
                       get_x=ColReader("text"), get_y=ColReader("label"),
                       splitter=ColSplitter("is_valid")).dataloaders(review_df, bs=8, device="cpu")
    ref = TextDataLoaders.from_df(review_df, valid_col="is_valid", tok=str(tiny_bert), max_len=32, device="cpu")
    assert df_dls.train.dataset.ids == ref.train.dataset.ids


def test_batched_ids_equal_the_per_text_ids(review_df, tiny_bert):
    texts = [*review_df.text, "", "Don't!! 10/10 <br /> café " * 40, "x"]
    words = WordTokenizer.train(texts[:20], min_freq=1, max_len=16)
    per_text = [truncate(words.vocab.numericalize(WordTokenizer.split(t)), 16, "head_tail") or [1] for t in texts]
    assert words.encode_batch(texts) == per_text
    assert WordTokenizer.split_batch(texts, n_workers=2) == [WordTokenizer.split(t) for t in texts]  # the pool
    assert WordTokenizer.from_tokens(WordTokenizer.split_batch(texts[:20]), min_freq=1).vocab.itos == \
        Vocab.build([WordTokenizer.split(t) for t in texts[:20]], min_freq=1).itos
    bert = PretrainedTokenizer(tiny_bert, max_len=24)
    one_by_one = [[bert.cls_id, *truncate(bert.hf(t, add_special_tokens=False)["input_ids"], 22, "head_tail"),
                   bert.sep_id] for t in texts]
    bert.CHUNK = 3  # several chunks
    assert bert.encode_batch(texts) == one_by_one


def test_badly_encoded_file_is_named(review_folder):
    bad = review_folder / "train" / "neg" / "latin.txt"
    bad.write_bytes("caf\xe9 awful".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt.*not valid utf-8"):
        folder_block(review_folder, tok="words", min_freq=1).dataloaders(review_folder, device="cpu")
    dls = folder_block(review_folder, tok="words", min_freq=1, encoding="latin-1").dataloaders(review_folder,
                                                                                               device="cpu")
    assert any("café awful" == t for t in dls.train.dataset.texts)


def test_wrong_blocks_and_values_are_refused(review_df):
    with pytest.raises(DataBlockError, match="TextBlock, CategoryBlock"):
        DataBlock(blocks=(TextBlock(tok="words"), TextBlock(tok="words"), CategoryBlock), n_inp=2,
                  get_x=[ColReader("text"), ColReader("text")], get_y=ColReader("label"),
                  splitter=ColSplitter("is_valid")).dataloaders(review_df, device="cpu")
    with pytest.raises(DataBlockError, match="name its text column"):
        DataBlock(blocks=(TextBlock(tok="words"), CategoryBlock), get_y=ColReader("label"),
                  splitter=ColSplitter("is_valid")).dataloaders(review_df, device="cpu")
    df = pd.DataFrame({"t": ["good", "bad"] * 4, "y": ["p", "n"] * 4})
    plain = DataBlock(blocks=(TextBlock(tok="words", min_freq=1), CategoryBlock), get_x=ColReader("t"),
                      get_y=ColReader("y")).dataloaders(df, bs=2, device="cpu")
    assert plain.tokenizer.vocab.itos[2:] == ["bad", "good"]


def test_summary_walks_a_text_item_and_subclasses_are_kept(review_df, tiny_bert, capsys):
    dblock = DataBlock(blocks=(TextBlock.from_df("text", tok=str(tiny_bert), max_len=32), CategoryBlock),
                       get_x=ColReader("text"), get_y=ColReader("label"), splitter=ColSplitter("is_valid"))
    dblock.summary(review_df)
    out = capsys.readouterr().out
    assert "TextBlock.encode" in out and "CategoryBlock.encode" in out

    class MyTextDataLoaders(TextDataLoaders):
        pass
    dls = MyTextDataLoaders.from_df(review_df, valid_col="is_valid", tok="words", min_freq=1, device="cpu")
    assert type(dls) is MyTextDataLoaders
