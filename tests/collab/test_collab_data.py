"""CollabDataLoaders, IdMap and TensorLoader on tiny generated ratings."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from learnkit.collab import (CollabDataLoaders, ColSplitter, IdMap, IndexSplitter, TensorLoader, UnknownIdError)


# --- IdMap -------------------------------------------------------------------------------------------
def test_idmap_reserves_index_zero_and_sorts():
    m = IdMap([30, 10, 20, 10], "user")
    assert m.ids == [10, 20, 30] and len(m) == 4
    assert m.classes == ["#na#", 10, 20, 30]
    assert m.encode([10, 30]).tolist() == [1, 3]
    assert m.decode(torch.tensor([0, 2])) == ["#na#", 20]


def test_idmap_numpy_ids_become_plain_python_and_round_trip_json():
    m = IdMap(np.array([5, 3], dtype=np.int64), "user")
    assert all(type(v) is int for v in m.ids)
    again = IdMap(json.loads(json.dumps(m.ids)), "user")
    assert again.ids == m.ids and again.encode([3, 5]).tolist() == [1, 2]
    s = IdMap(["b", "a"], "item")
    assert IdMap(json.loads(json.dumps(s.ids))).ids == ["a", "b"]


def test_idmap_unknown_ids_error_or_fallback():
    m = IdMap([1, 2, 3], "user")
    with pytest.raises(UnknownIdError, match=r"'7' \(str\).*ints such as \[1, 2, 3\]"):
        m.encode(["7"])
    assert m.encode([2, 99], unknown="fallback").tolist() == [2, 0]
    with pytest.raises(ValueError, match="unknown must be"):
        m.encode([1], unknown="ignore")


def test_idmap_rejects_float_ids_with_advice():
    with pytest.raises(TypeError, match=r"column 'movie' holds float ids.*astype\(int\)"):
        IdMap([1.5, 2.0], "movie")


# --- TensorLoader --------------------------------------------------------------------------------------
def test_tensor_loader_batches_are_aligned_slices_and_seeded():
    x, y = torch.arange(100), torch.arange(100) * 10.0
    dl = TensorLoader(x, y, bs=32, shuffle=True, seed=1)
    batches = list(dl)
    assert len(dl) == len(batches) == 4 and [len(b[0]) for b in batches] == [32, 32, 32, 4]
    assert all(torch.equal(yb, xb * 10.0) for xb, yb in batches)
    assert sorted(torch.cat([b[0] for b in batches]).tolist()) == list(range(100))
    first = torch.cat([b[0] for b in TensorLoader(x, y, bs=32, shuffle=True, seed=1)])
    assert torch.equal(first, torch.cat([b[0] for b in batches]))  # same seed, same order
    assert not torch.equal(torch.cat([b[0] for b in dl]), first)  # a new permutation each epoch
    assert len(TensorLoader(x, bs=32, drop_last=True)) == 3


def test_tensor_loader_checks_its_input():
    with pytest.raises(ValueError, match="same number of rows"):
        TensorLoader(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="positive integer"):
        TensorLoader(torch.zeros(3), bs=0)


# --- from_df -------------------------------------------------------------------------------------------
def test_from_df_defaults_to_first_three_columns(ratings):
    df = ratings.assign(timestamp=1)
    dls = CollabDataLoaders.from_df(df, bs=16, device="cpu")
    assert (dls.user_name, dls.item_name, dls.rating_name) == ("user", "item", "rating")
    assert len(dls.train.dataset) + len(dls.valid.dataset) == len(df)
    assert len(dls.valid.dataset) == int(0.2 * len(df))
    x, y = dls.one_batch()
    assert x.dtype == torch.int64 and x.shape == (16, 2) and y.dtype == torch.float32 and y.shape == (16,)
    assert dls.classes["item"][0] == "#na#" and dls.n_items == len(dls.items.ids) + 1
    assert dls.loss_func is not None and dls.rating_range == (1.0, 5.0)


def test_from_df_named_columns_and_batches_match_the_table(ratings):
    df = ratings.rename(columns={"user": "u", "item": "movie", "rating": "stars"})[["stars", "movie", "u"]]
    dls = CollabDataLoaders.from_df(df, user_name="u", item_name="movie", rating_name="stars", bs=8, device="cpu")
    shown = dls.show_batch(max_n=5)
    assert list(shown.columns) == ["u", "movie", "stars"] and len(shown) == 5
    lookup = {(r.u, r.movie): r.stars for r in df.itertuples()}
    assert all(lookup[(r.u, r.movie)] == r.stars for r in shown.itertuples())


def test_same_seed_same_split_and_order(ratings):
    a = CollabDataLoaders.from_df(ratings, seed=3, bs=16, device="cpu")
    b = CollabDataLoaders.from_df(ratings, seed=3, bs=16, device="cpu")
    c = CollabDataLoaders.from_df(ratings, seed=4, bs=16, device="cpu")
    assert torch.equal(a.valid.tensors[0], b.valid.tensors[0])
    assert torch.equal(a.one_batch()[0], b.one_batch()[0])
    assert not torch.equal(a.valid.tensors[1], c.valid.tensors[1])


def test_ids_are_indexed_from_training_rows_only():
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": ["a", "b", "a", "b", "new"], "rating": [1., 2., 3., 4., 5.]})
    dls = CollabDataLoaders.from_df(df, splitter=IndexSplitter([4]), bs=2, device="cpu")
    assert dls.items.ids == ["a", "b"] and dls.users.ids == [1, 2]
    assert dls.valid.tensors[0].tolist() == [[0, 0]]  # both unseen: the unknown index
    assert dls.summary()["valid ratings with an unseen user/item"] == 1


def test_col_splitter_and_no_validation(ratings):
    df = ratings.assign(is_valid=[i % 5 == 0 for i in range(len(ratings))])
    dls = CollabDataLoaders.from_df(df, splitter=ColSplitter("is_valid"), device="cpu")
    assert len(dls.valid.dataset) == int(df["is_valid"].sum())
    none = CollabDataLoaders.from_df(ratings, valid_pct=0, device="cpu")
    assert none.valid is None and len(none.train.dataset) == len(ratings)


def test_from_csv_reads_movielens_layout(tmp_path, ratings):
    f = tmp_path / "u.data"
    ratings.assign(ts=0).to_csv(f, sep="\t", header=False, index=False)
    dls = CollabDataLoaders.from_csv(f, sep="\t", header=None, names=["user", "item", "rating", "ts"], device="cpu")
    assert dls.rating_name == "rating" and len(dls.users.ids) == ratings["user"].nunique()
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        CollabDataLoaders.from_csv(tmp_path / "nope.csv")


# --- bad input -----------------------------------------------------------------------------------------
def test_non_numeric_rating_column_names_the_column_and_value(ratings):
    df = ratings.astype({"rating": object})
    df.loc[3, "rating"] = "great"
    with pytest.raises(TypeError, match=r"rating column 'rating' must be numeric.*'great' at row 3"):
        CollabDataLoaders.from_df(df, device="cpu")
    words = pd.DataFrame({"u": [1, 2], "i": [1, 2], "r": ["good", "bad"]})
    with pytest.raises(TypeError, match="rating column 'r'"):
        CollabDataLoaders.from_df(words, device="cpu")


def test_missing_ratings_and_ids_are_reported(ratings):
    df = ratings.copy()
    df.loc[5, "rating"] = np.nan
    with pytest.raises(ValueError, match=r"rating column 'rating' has 1 missing or infinite value\(s\), e.g. at row 5"):
        CollabDataLoaders.from_df(df, device="cpu")
    df = ratings.astype({"item": object})
    df.loc[2, "item"] = None
    with pytest.raises(ValueError, match=r"column 'item' has 1 missing id\(s\), e.g. at row 2"):
        CollabDataLoaders.from_df(df, device="cpu")


def test_bad_columns_and_tables(ratings):
    with pytest.raises(KeyError, match=r"item_name='movie' is not a column.*\['user', 'item', 'rating'\]"):
        CollabDataLoaders.from_df(ratings, item_name="movie", device="cpu")
    with pytest.raises(ValueError, match="needs user, item and rating columns"):
        CollabDataLoaders.from_df(ratings[["user", "item"]], device="cpu")
    with pytest.raises(ValueError, match="three different columns"):
        CollabDataLoaders.from_df(ratings, user_name="item", device="cpu")
    with pytest.raises(TypeError, match="pandas DataFrame"):
        CollabDataLoaders.from_df(ratings.to_numpy(), device="cpu")
    with pytest.raises(ValueError, match="validation set empty"):
        CollabDataLoaders.from_df(ratings, splitter=IndexSplitter([]), device="cpu")


# --- inference and export ------------------------------------------------------------------------------
def test_test_dl_accepts_pairs_dicts_series_and_frames(ratings):
    dls = CollabDataLoaders.from_df(ratings, device="cpu")
    u, i = ratings.iloc[0]["user"], ratings.iloc[0]["item"]
    expect = [[dls.users.encode([u])[0].item(), dls.items.encode([i])[0].item()]]
    for items in ([(u, i)], [[u, i]], [{"user": u, "item": i}], [ratings.iloc[0]], ratings.iloc[:1]):
        (x,), = list(dls.test_dl(items))
        assert x.tolist() == expect
    x, y = next(iter(dls.test_dl(ratings.iloc[:3], with_labels=True)))
    assert y.tolist() == ratings["rating"].iloc[:3].tolist()
    with pytest.raises(KeyError, match=r"no \['item'\] key"):
        dls.test_dl([{"user": u}])
    with pytest.raises(TypeError, match=r"pass a \(user, item\) pair"):
        dls.test_dl([u])


def test_test_dl_unknown_ids_raise_or_fall_back(ratings):
    dls = CollabDataLoaders.from_df(ratings, device="cpu")
    with pytest.raises(UnknownIdError, match="user id.*never seen in training, e.g. 999"):
        dls.test_dl([(999, "item1")])
    (x,), = list(dls.test_dl([(999, "item1")], unknown="fallback"))
    assert x[0, 0].item() == 0 and x[0, 1].item() > 0


def test_export_config_is_json_and_rebuilds_an_inference_dls(ratings):
    dls = CollabDataLoaders.from_df(ratings, bs=32, device="cpu")
    cfg = json.loads(json.dumps(dls.export_config()))
    new = CollabDataLoaders.from_config(cfg, device="cpu")
    assert new.train is None and new.valid is None
    assert new.users.ids == dls.users.ids and new.items.ids == dls.items.ids
    assert new.rating_range == dls.rating_range and new.default_bs == 32
    pairs = list(zip(ratings["user"][:5], ratings["item"][:5]))
    assert torch.equal(next(iter(new.test_dl(pairs)))[0], next(iter(dls.test_dl(pairs)))[0])
    with pytest.raises(ValueError, match="no ratings"):
        new.rated_items(pairs[0][0])
