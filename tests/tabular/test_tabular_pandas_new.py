"""`TabularPandas.new(df)` + `.process()`: new rows through the procs fitted on the training rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from learnkit.tabular import (NA_CLASS, Categorify, FillMissing, Normalize, RandomSplitter, TabularPandas,
                              UnseenCategoryWarning, range_of)

PROCS = [Categorify, FillMissing, Normalize]


@pytest.fixture(scope="module")
def fitted(table) -> TabularPandas:
    return TabularPandas(table, PROCS, cat_names=["color", "size"], cont_names=["x", "z"], y_names="y",
                         splits=(list(range(300)), list(range(300, 400))), na_values=["?"])


def _new_rows() -> pd.DataFrame:
    """Rows unlike the training ones: a colour and a size never seen, a shifted z, a missing x."""
    return pd.DataFrame({"color": [" red", " purple", " blue"], "size": ["XL", "S", "M"],
                         "x": [1.5, np.nan, -2.0], "z": [500.0, 510.0, 520.0], "y": ["low", "high", "low"]})


def test_unseen_categories_become_na_and_seen_keep_their_codes(fitted):
    new = fitted.new(_new_rows())
    with pytest.warns(UnseenCategoryWarning) as caught:
        new.process()
    said = " ".join(str(w.message) for w in caught)
    assert "'color'" in said and "purple" in said and "'size'" in said and "XL" in said
    xs, classes = new.xs, fitted.classes
    assert classes["color"][0] == NA_CLASS and "purple" not in classes["color"]
    assert xs["color"].tolist() == [classes["color"].o2i["red"], 0, classes["color"].o2i["blue"]]
    assert xs["size"].tolist() == [0, classes["size"].o2i["S"], classes["size"].o2i["M"]]
    assert list(xs.columns) == list(fitted.train.xs.columns)             # x_na too, from the training rows
    assert xs["x_na"].tolist() == [1, 2, 1]                               # codes of False / True


def test_continuous_columns_use_the_training_statistics(fitted, table):
    train = table.iloc[:300]
    x = train["x"].fillna(train["x"].median())
    z = train["z"]
    with pytest.warns(UnseenCategoryWarning):
        xs = fitted.new(_new_rows()).process().xs
    expected_z = (np.array([500.0, 510.0, 520.0]) - z.mean()) / z.std(ddof=0)
    expected_x = (np.array([1.5, train["x"].median(), -2.0]) - x.mean()) / x.std(ddof=0)
    np.testing.assert_allclose(xs["z"].to_numpy(), expected_z, rtol=1e-5)
    np.testing.assert_allclose(xs["x"].to_numpy(), expected_x, rtol=1e-5, atol=1e-6)
    assert xs["z"].mean() > 40                                            # not re-centred on the new rows


def test_nothing_is_refitted(fitted):
    before = fitted.procs.state()
    with pytest.warns(UnseenCategoryWarning):
        new = fitted.new(_new_rows()).process()
    assert new.procs is fitted.procs and fitted.procs.state() == before
    assert new.cat_names == fitted.cat_names and new.vocab == fitted.vocab


def test_new_on_the_validation_rows_gives_the_validation_split(fitted, table):
    new = fitted.new(table.iloc[300:400]).process()
    pd.testing.assert_frame_equal(new.xs, fitted.valid.xs)
    pd.testing.assert_frame_equal(new.ys, fitted.valid.ys)
    assert (len(new.train), len(new.valid), len(new)) == (100, 0, 100)


def test_labels_are_optional_and_checked(fitted):
    rows = _new_rows()
    with pytest.warns(UnseenCategoryWarning):
        labelled = fitted.new(rows).process()
        unlabelled = fitted.new(rows.drop(columns="y")).process()
        ignored = fitted.new(rows, with_labels=False).process()
    assert labelled.train.y.tolist() == [fitted.vocab.index(v) for v in rows["y"]]
    assert unlabelled.ys.shape == (3, 0) and ignored.ys.shape == (3, 0)
    pd.testing.assert_frame_equal(labelled.xs, unlabelled.xs)
    bad = rows.assign(y=["low", "medium", "low"])
    with pytest.raises(ValueError, match="medium"), pytest.warns(UnseenCategoryWarning):
        fitted.new(bad).process()
    with pytest.raises(KeyError, match="y"):
        fitted.new(rows.drop(columns="y"), with_labels=True)


def test_unprocessed_table_says_so_and_process_runs_once(fitted):
    new = fitted.new(pd.DataFrame({"color": [" red"], "size": ["S"], "x": [0.0], "z": [50.0]}))
    assert not new.processed and len(new) == 1 and "not processed" in repr(new)
    with pytest.raises(RuntimeError, match=r"process\(\)"):
        _ = new.xs
    assert new.process() is new and new.processed
    first = new.train
    assert new.process().train is first                                   # a second call changes nothing
    assert fitted.process() is fitted and fitted.train.tensors is fitted.train.tensors
    with pytest.raises(KeyError, match="'z'"):
        fitted.new(pd.DataFrame({"color": [" red"], "size": ["S"], "x": [0.0]}))
    with pytest.raises(TypeError, match="DataFrame"):
        fitted.new([[1, 2]])


def test_dataloaders_of_new_rows(fitted, table):
    dls = fitted.new(table.iloc[:64]).process().dataloaders(bs=16, device="cpu")
    cats, conts, _ = dls.one_batch()
    assert cats.shape == (16, 3) and conts.shape == (16, 2) and dls.valid is None


@pytest.mark.integration
def test_adult_new_then_process(data_path):
    csv = data_path / "adult" / "adult.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} not found")
    df = pd.read_csv(csv)
    cat, cont = ["workclass", "education", "occupation"], ["age", "fnlwgt", "education-num"]
    splits = RandomSplitter(0.2, seed=42)(range_of(df))
    to = TabularPandas(df, PROCS, cat, cont, y_names="salary", splits=splits, na_values=["?"])
    new = to.new(df.iloc[splits[1]]).process()                            # fastbook: to.new(valid_df)
    pd.testing.assert_frame_equal(new.xs, to.valid.xs)
    pd.testing.assert_frame_equal(new.ys, to.valid.ys)
    odd = df.iloc[:2].copy()
    odd["workclass"] = ["Astronaut", " Private"]                          # never seen / seen, UCI-spaced
    odd["age"] = [1000.0, np.nan]
    with pytest.warns(UnseenCategoryWarning, match="Astronaut"):
        xs = to.new(odd.drop(columns="salary")).process().xs
    assert xs["workclass"].tolist() == [0, to.classes["workclass"].o2i["Private"]]
    train_age = df["age"].iloc[splits[0]].astype(float)
    assert xs["age"].iloc[0] == pytest.approx((1000 - train_age.mean()) / train_age.std(ddof=0), rel=1e-4)


def test_ys_of_a_table_without_validation_rows(table):
    """``to.ys`` joins the (empty) validation targets: it used to fail reshaping an empty array."""
    to = TabularPandas(table, PROCS, cat_names=["size"], cont_names=["z"], y_names="y")
    assert to.ys.shape == (len(table), 1) and len(to.valid.ys) == 0
