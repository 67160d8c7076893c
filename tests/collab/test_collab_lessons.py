"""fastai lesson 8 (ch. 8) idioms: ``dls.classes[name].o2i``, ``learn.show_results()``, titles as item ids."""
from __future__ import annotations

import pandas as pd
import pytest

from learnkit.collab import CategoryMap, CollabDataLoaders, collab_learner


def test_classes_are_category_maps_with_o2i(ratings):
    dls = CollabDataLoaders.from_df(ratings, bs=32, device="cpu")
    items = dls.classes["item"]
    assert isinstance(items, CategoryMap) and items[0] == "#na#"
    assert all(items[items.o2i[i]] == i for i in items)
    assert items.o2i["item3"] == int(dls.items.encode(["item3"])[0])          # o2i is the embedding row
    assert dls.classes["user"].o2i[1] == 1 and dls.classes["item"] is items    # built once


def test_show_results_puts_prediction_beside_rating(ratings, capsys):
    dls = CollabDataLoaders.from_df(ratings, bs=32, device="cpu")
    learn = collab_learner(dls, n_factors=4, progress=False)
    learn.fit_one_cycle(1)
    df = learn.show_results(max_n=5)
    assert list(df.columns) == ["user", "item", "rating", "rating_pred"] and len(df) == 5
    assert df["item"].isin(dls.items.ids).all() and df["rating_pred"].between(0, 5.5).all()
    x, y = dls.valid.tensors[0][:5], dls.valid.tensors[1][:5]
    assert df["rating"].tolist() == y.tolist()
    assert df["rating_pred"].iloc[0] == pytest.approx(learn.predict((df["user"].iloc[0], df["item"].iloc[0]))[0],
                                                      abs=1e-5)
    assert "rating_pred" in capsys.readouterr().out                           # printed in a terminal


@pytest.mark.integration
def test_movielens_titles_round_trip_o2i(ml100k):
    ratings = pd.read_csv(ml100k / "u.data", sep="\t", header=None, names=["user", "movie", "rating", "timestamp"])
    movies = pd.read_csv(ml100k / "u.item", sep="|", header=None, encoding="latin-1", usecols=(0, 1),
                         names=("movie", "title"))
    ratings = ratings.merge(movies)
    with pytest.warns(UserWarning, match="duplicate"):  # one title for several movie ids: fastbook ch. 8's merge
        dls = CollabDataLoaders.from_df(ratings, user_name="user", item_name="title", rating_name="rating", bs=64,
                                        device="cpu")
    titles = dls.classes["title"]
    idx = titles.o2i["Silence of the Lambs, The (1991)"]
    assert titles[idx] == "Silence of the Lambs, The (1991)"
    assert all(titles[titles.o2i[t]] == t for t in titles)
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), progress=False)
    learn.fit_one_cycle(1, 5e-3, wd=0.1)
    movie_bias = learn.model.i_bias.weight.squeeze()
    best = [titles[i] for i in movie_bias.argsort(descending=True)[:5].tolist()]
    assert all(isinstance(t, str) and t != "#na#" for t in best)
    assert learn.model.i_weight.weight[idx].shape == (50,)
    assert learn.validate()[0] < 1.0


def test_get_emb_sz_of_collab_dls_feeds_a_ch8_style_model(ratings):
    from learnkit.collab import get_emb_sz
    dls = CollabDataLoaders.from_df(ratings, bs=32, device="cpu")
    embs = get_emb_sz(dls)
    assert embs == [(41, 13), (31, 11)] and dls.cat_names == ["user", "item"]   # 40 users / 30 items + #na#
    assert get_emb_sz(dls, {"item": 4})[1] == (31, 4)
