"""TabularPandas and the fastai table helpers (cont_cat_split, add_datepart, range_of, tabular_config)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from learnkit.tabular import (Categorify, CategoryMap, FillMissing, L1LossFlat, MSELossFlat, Normalize,
                              RandomSplitter, TabularDataLoaders, TabularPandas, accuracy, add_datepart,
                              cont_cat_split, get_emb_sz, range_of, rmse, tabular_config, tabular_learner)

PROCS = [Categorify, FillMissing, Normalize]


def test_star_import_gives_the_fastai_names():
    ns: dict = {}
    exec("from learnkit.tabular import *", ns)
    for name in ("TabularPandas", "cont_cat_split", "add_datepart", "tabular_config", "range_of", "get_emb_sz",
                 "CategoryMap"):
        assert name in ns, name


def test_tabular_pandas_splits_xs_ys_and_classes(table):
    splits = RandomSplitter(0.25, seed=1)(range_of(table))
    to = TabularPandas(table, PROCS, cat_names=["color", "size"], cont_names=["x", "z"], y_names="y",
                       splits=splits, na_values=["?"])
    assert (len(to.train), len(to.valid)) == (300, 100)
    assert list(to.train.xs.columns) == ["color", "size", "x_na", "x", "z"]
    assert list(to.train.xs.index) == list(table.index[splits[0]])
    assert abs(float(to.train.xs["z"].mean())) < 1e-5                     # normalised on the training rows
    assert set(to.train.y.unique()) == {0, 1} and to.vocab == ["high", "low"]
    vocab = to.classes["color"]
    assert isinstance(vocab, CategoryMap) and vocab.o2i["red"] == vocab.index("red") and vocab[0] == "#na#"
    assert to.train.xs["color"].max() < len(vocab)
    shown = to.train.show(3, show=False)
    assert shown["color"].isin(["#na#", "red", "blue", "green"]).all() and shown["y"].isin(["high", "low"]).all()


def test_from_df_is_tabular_pandas_dataloaders(table):
    splits = RandomSplitter(0.2, seed=42)(range_of(table))
    to = TabularPandas(table, None, ["color", "size"], ["x", "z"], "y", splits=splits)
    a = to.dataloaders(bs=32, device="cpu")
    b = TabularDataLoaders.from_df(table, cat_names=["color", "size"], cont_names=["x", "z"], y_names="y", bs=32,
                                   device="cpu")
    for x, y in zip(a.valid.dataset.tensors(), b.valid.dataset.tensors()):
        assert torch.equal(x, y)
    assert a.classes["size"] == b.classes["size"] == ["#na#", "L", "M", "S"]


def test_regression_targets_are_b_by_1_and_fastai_mse_matches(table):
    to = TabularPandas(table, PROCS, ["color"], ["x", "z"], "target", y_block="regression",
                       splits=(list(range(300)), list(range(300, 400))))
    dls = to.dataloaders(bs=16, device="cpu")
    cats, conts, y = dls.one_batch()
    assert y.shape == (16, 1) and y.dtype == torch.float32
    learn = tabular_learner(dls, layers=[8], loss_func=F.mse_loss, metrics=rmse, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                           # broadcasting [B,1] vs [B] would warn
        learn.fit(1, 1e-2)
    assert learn.validate()[0] == pytest.approx(learn.validate()[1] ** 2, rel=1e-4)   # mse == rmse²


@pytest.mark.parametrize("loss", [MSELossFlat(), L1LossFlat()])
def test_flat_regression_losses_refuse_a_count_mismatch(loss):
    assert float(loss(torch.ones(4, 1), torch.ones(4))) == 0.0        # same count, other shape: fine
    with pytest.raises(ValueError, match=r"outputs 3 values per item but the targets have 1.*\(4, 3\).*\(4, 1\)"):
        loss(torch.ones(4, 3), torch.ones(4, 1))


def test_tabular_pandas_errors_name_the_problem(table):
    with pytest.raises(IndexError, match="positions"):
        TabularPandas(table, None, ["color"], ["x"], "y", splits=([0, 1], [10_000]))
    with pytest.raises(ValueError, match="y_block"):
        TabularPandas(table, None, ["color"], ["x"], "y", y_block="ordinal")
    to = TabularPandas(table, None, ["color"], ["x"], y_block="regression")          # unlabelled, no split
    assert len(to.valid) == 0 and to.train.ys.shape == (400, 0)
    with pytest.raises(ValueError, match="no target"):
        to.dataloaders()


def test_y_block_accepts_fastai_block_objects(table):
    class RegressionBlock:  # stands in for fastai's / learnkit's block: matched by class name
        pass
    to = TabularPandas(table, None, ["color"], ["x"], "target", y_block=RegressionBlock())
    assert to.procs.y_block == "regression"


def test_get_emb_sz_and_tabular_config(table):
    to = TabularPandas(table, PROCS, ["color", "size"], ["x"], "y", splits=(range(300), range(300, 400)))
    dls = to.dataloaders(bs=32, device="cpu")
    assert get_emb_sz(to) == get_emb_sz(dls) == [(5, 4), (4, 3), (3, 3)]     # color (with "?"), size, x_na
    assert get_emb_sz(dls, {"color": 7})[0] == (5, 7)
    with pytest.raises(TypeError, match="TabularPandas"):
        get_emb_sz([4, 3])
    learn = tabular_learner(dls, layers=[8, 4], config=tabular_config(ps=[0.1, 0.2], embed_p=0.05), progress=False)
    drops = [m.p for m in learn.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.05, 0.1, 0.2]
    with pytest.raises(KeyError, match="act_cls"):
        tabular_learner(dls, config={"act_cls": None}, progress=False)


def test_cont_cat_split_follows_fastai_rule():
    df = pd.DataFrame({"id": range(30), "small": [1, 2, 3] * 10, "f": np.linspace(0, 1, 30), "s": ["a"] * 30,
                       "b": [True, False] * 15, "y": np.arange(30.0)})
    assert cont_cat_split(df, max_card=20, dep_var="y") == (["id", "f"], ["small", "s", "b"])
    assert cont_cat_split(df, max_card=40, dep_var="y")[0] == ["f"]
    with pytest.raises(KeyError, match="'price'"):
        cont_cat_split(df, dep_var="price")


def test_add_datepart_parts_elapsed_and_time():
    df = pd.DataFrame({"saledate": ["2011-03-31 10:20:30", None], "v": [1, 2]})
    out = add_datepart(df, "saledate", time=True)
    assert out is df and "saledate" not in df.columns                  # in place, as fastai
    row = df.iloc[0]
    assert (row.saleYear, row.saleMonth, row.saleDay, row.saleDayofweek, row.saleHour) == (2011, 3, 31, 3, 10)
    assert bool(row.saleIs_month_end) and bool(row.saleIs_quarter_end) and not bool(row.saleIs_year_end)
    assert row.saleWeek == 13 and row.saleElapsed == pd.Timestamp("2011-03-31 10:20:30").timestamp()
    assert np.isnan(df.iloc[1].saleElapsed)
    kept = add_datepart(pd.DataFrame({"when": pd.to_datetime(["2020-01-01"])}), "when", prefix="w_", drop=False)
    assert "when" in kept.columns and kept["w_Dayofyear"].tolist() == [1]
    with pytest.raises(ValueError, match="'v'"):
        add_datepart(pd.DataFrame({"v": ["not a date"]}), "v")


# --- integration: the real Adult table ----------------------------------------------------------------
CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
CONT = ["age", "fnlwgt", "education-num"]


@pytest.fixture(scope="module")
def adult(data_path) -> pd.DataFrame:
    p = data_path / "adult" / "adult.csv"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return pd.read_csv(p, skipinitialspace=True)


@pytest.mark.integration
def test_adult_tabular_pandas_explicit_splits_reaches_083(adult):
    splits = RandomSplitter(valid_pct=0.2, seed=42)(range_of(adult))
    to = TabularPandas(adult, PROCS, cat_names=CAT, cont_names=CONT, y_names="salary", splits=splits,
                       na_values=["?"])
    assert (len(to.train), len(to.valid)) == (26049, 6512)
    dls = to.dataloaders(bs=256, device="cpu")
    learn = tabular_learner(dls, metrics=accuracy, progress=False)
    learn.fit_one_cycle(2, 1e-2)
    acc = learn.validate()[1]
    print(f"Adult TabularPandas accuracy {acc:.4f}")
    assert acc >= 0.83


@pytest.mark.integration
def test_adult_age_regression_with_rmse_beats_std(adult):
    splits = RandomSplitter(valid_pct=0.2, seed=42)(range_of(adult))
    cont = ["fnlwgt", "education-num", "hours-per-week"]
    to = TabularPandas(adult, PROCS, cat_names=CAT + ["sex"], cont_names=cont, y_names="age",
                       y_block="regression", splits=splits, na_values=["?"])
    dls = to.dataloaders(bs=256, device="cpu")
    learn = tabular_learner(dls, y_range=(15, 95), metrics=rmse, progress=False)
    learn.fit_one_cycle(2, 1e-2)
    valid_rmse = learn.validate()[1]
    std = float(adult["age"].iloc[splits[1]].std())
    print(f"Adult age regression: rmse {valid_rmse:.2f} vs std {std:.2f}")
    assert valid_rmse < 0.9 * std


def test_load_learner_cpu_true_and_regression_export(table, tmp_path):
    from learnkit.tabular import load_learner
    to = TabularPandas(table, PROCS, ["color"], ["x", "z"], "target", splits=(range(300), range(300, 400)))
    learn = tabular_learner(to.dataloaders(bs=32, device="cpu"), layers=[8], progress=False, path=tmp_path)
    learn.fit(1, 1e-2)
    path = learn.export()
    new = load_learner(path, cpu=True)
    assert new.device.type == "cpu" and new.dls.procs.y_block == "regression"
    row = table.iloc[0].to_dict()
    assert new.predict(row)[1] == pytest.approx(learn.predict(row)[1], abs=1e-5)
    with pytest.raises(TypeError, match="cpu must be True or False"):
        load_learner(path, "cpu")
    with pytest.raises(ValueError, match="pass one of them"):
        load_learner(path, cpu=True, device="cuda")
