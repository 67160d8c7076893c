"""TextDataLoaders: folders and tables, splits, bad files, padding per batch, bucketing, test_dl, display."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch

from learnkit.text import BucketBatchSampler, PadCollate, TextDataLoaders, TextDataset, WordTokenizer
from learnkit.core.registry import get_dls_class


def words(**kw):
    return dict(tok="words", min_freq=1, device="cpu", **kw)


def test_from_folder_labels_from_parent_folder_and_split_from_folders(review_folder):
    dls = TextDataLoaders.from_folder(review_folder, **words(bs=4))
    assert dls.vocab == ["neg", "pos"] and dls.c == 2
    tr, va = dls.train.dataset, dls.valid.dataset
    assert len(tr) == 24 and len(va) == 8
    assert all("/train/" in s for s in tr.sources) and all("/valid/" in s for s in va.sources)
    for src, y in zip(tr.sources, tr.labels):
        assert dls.vocab[y] in src.split("/")[-2]
    assert all("<br" not in t and "  " not in t for t in tr.texts)  # cleaned
    assert isinstance(dls.tokenizer, WordTokenizer)


def test_from_folder_automatic_split_without_valid_folder(tmp_path):
    root = tmp_path / "only_train"
    for label in ("pos", "neg"):
        (root / "train" / label).mkdir(parents=True)
        for i in range(10):
            (root / "train" / label / f"{i}.txt").write_text(f"{label} text number {i}")
    dls = TextDataLoaders.from_folder(root, **words())
    assert len(dls.valid.dataset) == 4 and len(dls.train.dataset) == 16  # 20 % of 20
    again = TextDataLoaders.from_folder(root, **words())
    assert sorted(again.valid.dataset.sources) == sorted(dls.valid.dataset.sources)  # seeded


def test_from_folder_skips_unsup_and_honours_vocab(review_folder):
    (review_folder / "train" / "unsup").mkdir()
    (review_folder / "train" / "unsup" / "0_0.txt").write_text("no label here")
    assert TextDataLoaders.from_folder(review_folder, **words()).vocab == ["neg", "pos"]
    dls = TextDataLoaders.from_folder(review_folder, vocab=["pos", "neg"], **words())
    assert dls.vocab == ["pos", "neg"]
    assert all(dls.vocab[y] in s for s, y in zip(dls.train.dataset.sources, dls.train.dataset.labels))


def test_non_utf8_file_gives_an_error_naming_it_and_encoding_reads_it(review_folder):
    bad = review_folder / "train" / "pos" / "latin.txt"
    bad.write_bytes("Un film tr\xe8s beau, g\xe9nial".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt.*not valid utf-8.*encoding='latin-1'"):
        TextDataLoaders.from_folder(review_folder, **words())
    dls = TextDataLoaders.from_folder(review_folder, encoding="latin-1", **words())
    i = [k for k, s in enumerate(dls.train.dataset.sources) if s.endswith("latin.txt")][0]
    assert dls.train.dataset.texts[i] == "Un film très beau, génial"


def test_empty_text_file_is_skipped_with_a_warning_naming_it(review_folder):
    (review_folder / "train" / "neg" / "empty.txt").write_text("  <br /> \n")
    with pytest.warns(UserWarning, match=r"skipping 1 empty text.*empty\.txt"):
        dls = TextDataLoaders.from_folder(review_folder, **words())
    assert len(dls.train.dataset) == 24
    assert not any(s.endswith("empty.txt") for s in dls.train.dataset.sources)


def test_missing_folders_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training folder"):
        TextDataLoaders.from_folder(tmp_path, **words())
    (tmp_path / "train" / "pos").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no \.txt files"):
        TextDataLoaders.from_folder(tmp_path, **words())


def test_from_df_and_from_csv_split_by_valid_column(review_df, tmp_path):
    dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", **words())
    assert len(dls.valid.dataset) == int(review_df.is_valid.sum())
    assert dls.vocab == ["negative", "positive"]
    review_df.to_csv(tmp_path / "texts.csv", index=False)
    dls2 = TextDataLoaders.from_csv(tmp_path, "texts.csv", valid_col="is_valid", **words())
    assert sorted(dls2.valid.dataset.texts) == sorted(dls.valid.dataset.texts)
    dls3 = TextDataLoaders.from_df(review_df, valid_pct=0.25, **words())  # random split
    assert len(dls3.valid.dataset) == len(review_df) // 4


def test_from_df_bad_columns_and_values(review_df, tmp_path):
    with pytest.raises(KeyError, match="text_col='review'"):
        TextDataLoaders.from_df(review_df, text_col="review", **words())
    df = review_df.copy()
    df.loc[3, "label"] = None
    with pytest.raises(ValueError, match="missing label in row 3"):
        TextDataLoaders.from_df(df, **words())
    df = review_df.copy().astype({"text": object})
    df.loc[5, "text"] = 42
    with pytest.raises(ValueError, match="row 5 holds 42"):
        TextDataLoaders.from_df(df, **words())
    (tmp_path / "bad.csv").write_bytes("text,label\ncaf\xe9,pos\nth\xe9,neg\n".encode("latin-1"))  # two classes
    with pytest.raises(ValueError, match=r"bad\.csv.*encoding"):
        TextDataLoaders.from_csv(tmp_path, "bad.csv", **words())
    assert TextDataLoaders.from_csv(tmp_path, "bad.csv", encoding="latin-1", valid_pct=0.0, **words()).valid is None


def test_class_only_in_validation_is_refused(review_df):
    df = review_df.copy()
    df.loc[df.is_valid & (df.label == "negative"), "label"] = "neutral"
    with pytest.raises(ValueError, match="only in the validation set"):
        TextDataLoaders.from_df(df, valid_col="is_valid", **words())


def test_vocabulary_is_built_from_training_texts_only():
    df = pd.DataFrame({"text": ["good film"] * 4 + ["zyzzyva film"] * 2, "label": ["a", "b"] * 3,
                       "is_valid": [False] * 4 + [True] * 2})
    dls = TextDataLoaders.from_df(df, valid_col="is_valid", **words())
    assert "zyzzyva" not in dls.tokenizer.vocab and "good" in dls.tokenizer.vocab
    valid_ids = dls.valid.dataset.ids[0]
    assert valid_ids[0] == dls.tokenizer.vocab.unk_id  # the valid-only word is unknown to the model


def test_padding_is_per_batch_up_to_the_longest_item(review_df):
    df = review_df.copy()
    df["text"] = [t + " word" * (i % 13) for i, t in enumerate(df.text)]
    dls = TextDataLoaders.from_df(df, valid_col="is_valid", bs=4, **words())
    pad = dls.tokenizer.pad_id
    widths = set()
    for dl in (dls.train, dls.valid):
        for ids, y in dl:
            lengths = (ids != pad).sum(1)
            assert ids.shape[1] == int(lengths.max())  # exactly the longest real item, not a global maximum
            widths.add(ids.shape[1])
            assert all(bool((row[n:] == pad).all()) for row, n in zip(ids, lengths.tolist()))  # right padded
    assert len(widths) > 1


def test_bucket_sampler_covers_everything_once_groups_lengths_and_is_seeded():
    lengths = [(i * 37) % 101 for i in range(300)]
    s = BucketBatchSampler(lengths, bs=10, seed=1, pool_batches=5)
    epoch1, epoch2 = list(s), list(s)
    assert sorted(i for b in epoch1 for i in b) == list(range(300)) and len(epoch1) == len(s) == 30
    assert epoch1 != epoch2  # a new order every epoch
    assert [list(b) for b in BucketBatchSampler(lengths, bs=10, seed=1, pool_batches=5)] == epoch1  # same seed
    assert max(lengths[i] for i in epoch1[0]) == max(lengths)  # the longest batch first
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch1) / len(epoch1)
    assert spread < 25  # random batches would spread over ~90
    assert len(BucketBatchSampler(lengths, bs=7, drop_last=True)) == len(list(BucketBatchSampler(lengths, 7, drop_last=True)))


def test_validation_set_is_sorted_longest_first_and_aligned_with_its_texts(review_df):
    dls = TextDataLoaders.from_df(review_df, valid_col="is_valid", **words())
    va = dls.valid.dataset
    assert va.lengths == sorted(va.lengths, reverse=True)
    ids, y = next(iter(dls.valid))
    assert dls.decode_text(ids[0]) == dls.tokenizer.decode(va.ids[0]) and int(y[0]) == va.labels[0]


def test_test_dl_keeps_order_labels_and_rejects_bad_items(review_folder):
    dls = TextDataLoaders.from_folder(review_folder, **words(bs=2))
    texts = ["great film", "an awful, awful movie with terrible acting", "", "loved it"]
    batches = list(dls.test_dl(texts))
    ids = [row for b in batches for row in b[0]]
    assert [dls.decode_text(r) for r in ids] == ["great film", "an awful , awful movie with terrible acting",
                                                "xxunk", "loved it"]
    (ids_l, y), = list(dls.test_dl([("great", "pos"), ("awful", "neg")], with_labels=True))
    assert y.tolist() == [1, 0]
    with pytest.raises(ValueError, match="'meh' is not one of the classes"):
        dls.test_dl([("ok", "meh")], with_labels=True)
    with pytest.raises(TypeError, match="list of texts"):
        dls.test_dl("just one string")
    with pytest.raises(TypeError, match="expected a text"):
        dls.test_dl([3.5])
    f = review_folder / "new.txt"
    f.write_text("a great<br />film")
    assert dls.decode_text(next(iter(dls.test_dl([f])))[0][0]) == "a great film"


def test_show_batch_prints_decoded_texts_and_labels(review_folder, capsys):
    dls = TextDataLoaders.from_folder(review_folder, **words(bs=4))
    table = dls.batch_table(max_n=3, max_chars=20)
    assert list(table.columns) == ["text", "label"] and len(table) == 3
    assert set(table.label) <= {"pos", "neg"} and all(len(t) <= 20 for t in table.text)
    dls.show_batch(max_n=2, split=1)
    out = capsys.readouterr().out
    assert "review xxunk" in out and ("pos" in out or "neg" in out)  # 'valid' never occurs in training texts
    assert "tokenizer=WordTokenizer" in repr(dls) and "<table>" in dls._repr_html_()


def test_export_config_rebuilds_an_inference_only_dataloaders(review_folder):
    import json
    dls = TextDataLoaders.from_folder(review_folder, **words())
    cfg = json.loads(json.dumps(dls.export_config()))  # JSON-able
    new = get_dls_class("TextDataLoaders").from_config(cfg, device="cpu")
    assert new.train is None and new.valid is None and new.vocab == dls.vocab
    a, b = next(iter(dls.test_dl(["great acting, awful story"])))[0], next(iter(new.test_dl(["great acting, awful story"])))[0]
    assert torch.equal(a, b)
    assert new.decode_pred(torch.tensor(1), torch.tensor([0.2, 0.8]))[:2] == ("pos", 1)


def test_pad_collate_and_dataset_validation():
    ds = TextDataset(["a", "b c"], [[4], [5, 6]], labels=[1, 0])
    ids, y = PadCollate(pad_id=9)([ds[0], ds[1]])
    assert ids.tolist() == [[4, 9], [5, 6]] and y.tolist() == [1, 0]
    with pytest.raises(ValueError, match="must match"):
        TextDataset(["a"], [[1], [2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ds.subset([1])) == 1


def test_an_empty_validation_folder_is_an_error_but_valid_pct_0_is_allowed(review_folder):
    for f in (review_folder / "valid").glob("*/*.txt"):
        f.unlink()
    with pytest.raises(ValueError, match="validation set empty"):
        TextDataLoaders.from_folder(review_folder, **words())
    assert TextDataLoaders.from_folder(review_folder, valid_pct=0, **words()).valid is None


def test_integer_labels_sort_numerically():
    df = pd.DataFrame({"text": [f"text {i}" for i in range(12)], "label": [2, 10, 1] * 4})
    assert TextDataLoaders.from_df(df, valid_pct=0.25, seed=0, **words()).vocab == [1, 2, 10]
