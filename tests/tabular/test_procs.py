"""Procs: fitted on the training rows only, JSON state, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from learnkit.tabular import NA_CLASS, Categorify, Discretize, FillMissing, Normalize, TabularProcessor
from learnkit.tabular.procs import proc_from_state


def test_categorify_codes_and_unknown_values_warn():
    train = pd.DataFrame({"c": ["b", "a", "b", None]})
    cat = Categorify()
    cat.setup(train, cat_names=["c"], cont_names=[])
    assert cat.classes["c"] == [NA_CLASS, "a", "b"]
    with pytest.warns(UserWarning, match=r"column 'c'.*never seen.*'zebra'"):
        out = cat.encode(pd.DataFrame({"c": ["a", "zebra", None, "b"]}))
    assert out["c"].tolist() == [1, 0, 0, 2]
    assert cat.decode(out)["c"].tolist() == ["a", NA_CLASS, NA_CLASS, "b"]


def test_fill_missing_median_flag_and_inference_only_missing():
    train = pd.DataFrame({"a": [1.0, np.nan, 3.0, 10.0], "b": [1.0, 2.0, 3.0, 4.0]})
    fm = FillMissing()
    fm.setup(train, cat_names=[], cont_names=["a", "b"])
    assert fm.fill_vals == {"a": 3.0, "b": 2.5}
    assert fm.new_cat_names == ["a_na"]            # b had no missing values in training: no flag column
    out = fm.encode(pd.DataFrame({"a": [np.nan, 5.0], "b": [np.nan, 1.0]}))
    assert out["a"].tolist() == [3.0, 5.0] and out["a_na"].tolist() == [True, False]
    assert out["b"].tolist() == [2.5, 1.0]         # filled all the same
    assert "b_na" not in out


def test_fill_missing_strategies_and_bad_strategy():
    train = pd.DataFrame({"a": [1.0, 1.0, 5.0, np.nan]})
    for strategy, expected in (("mean", 7 / 3), ("mode", 1.0), ("constant", -1.0)):
        fm = FillMissing(fill_strategy=strategy, fill_value=-1.0)
        fm.setup(train, [], ["a"])
        assert fm.fill_vals["a"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="fill_strategy must be one of"):
        FillMissing(fill_strategy="average")


def test_normalize_uses_training_stats_and_handles_constant_column():
    train = pd.DataFrame({"a": [0.0, 2.0, 4.0], "k": [5.0, 5.0, 5.0]})
    norm = Normalize()
    norm.setup(train, [], ["a", "k"])
    out = norm.encode(pd.DataFrame({"a": [2.0, 6.0], "k": [5.0, 7.0]}))
    std = np.std([0.0, 2.0, 4.0])
    assert out["a"].tolist() == pytest.approx([0.0, 4.0 / std])
    assert out["k"].tolist() == [0.0, 2.0]          # zero spread: centred, not divided by 0
    assert norm.decode(out)["a"].tolist() == pytest.approx([2.0, 6.0])


def test_proc_state_is_json_and_rebuilds_identically():
    train = pd.DataFrame({"c": ["x", "y", None], "n": [1.0, np.nan, 3.0]})
    for proc in (Categorify(), FillMissing(), Normalize()):
        proc.setup(train, ["c"], ["n"])
        state = json.loads(json.dumps(proc.state()))
        clone = proc_from_state(type(proc).__name__, state)
        test = pd.DataFrame({"c": ["y", "x"], "n": [np.nan, 2.0]})
        if isinstance(proc, Normalize):
            test["n"] = [0.5, 2.0]
        pd.testing.assert_frame_equal(proc.encode(test), clone.encode(test))


def test_unfitted_proc_and_unknown_proc_name():
    with pytest.raises(RuntimeError, match="not fitted"):
        Normalize().encode(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(KeyError, match="unknown tabular proc 'Magic'"):
        proc_from_state("Magic", {})


def test_processor_cleans_markers_spaces_and_fits_on_train_only(table):
    train, valid = table.iloc[:300], table.iloc[300:].copy()
    valid.iloc[0, valid.columns.get_loc("color")] = " purple"     # only in the validation rows
    tp = TabularProcessor(["color", "size"], ["x", "z"], "y", na_values=["?"])
    tp.fit(train)
    cat = next(p for p in tp.procs if isinstance(p, Categorify))
    assert cat.classes["color"] == [NA_CLASS, "blue", "green", "red"]   # stripped, "?" is missing
    assert tp.cat_names == ["color", "size", "x_na"]
    with pytest.warns(UserWarning, match="purple"):
        t = tp.process(valid, with_labels=True)
    assert t.cats[0, 0].item() == 0
    norm = next(p for p in tp.procs if isinstance(p, Normalize))
    assert norm.means["z"] == pytest.approx(train["z"].mean())      # statistics of the training rows only
    assert t.conts.dtype == torch.float32 and t.cats.dtype == torch.int64 and t.ys.dtype == torch.int64


def test_processor_unknown_column_lists_real_columns(table):
    tp = TabularProcessor(["colour"], ["x"], "y")
    with pytest.raises(KeyError, match=r"'colour' \(in cat_names\) not found; the table's columns are \['color'"):
        tp.fit(table)


def test_processor_column_in_two_roles():
    with pytest.raises(ValueError, match="column 'x' is in both cat_names and cont_names"):
        TabularProcessor(["x"], ["x"], "y")


def test_processor_non_numeric_continuous_value_names_column_row_and_value():
    df = pd.DataFrame({"n": ["1", "2", "abc", "4"], "y": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match=r"continuous column 'n' has a non-numeric value 'abc' \(row 2"):
        TabularProcessor([], ["n"], "y").fit(df)
    t = TabularProcessor([], ["n"], "y", na_values=["abc"]).fit(df)   # declared missing: filled instead
    assert not torch.isnan(t.conts).any()


def test_processor_needs_categorify_and_fill_missing():
    df = pd.DataFrame({"c": ["a", "b"], "n": [1.0, np.nan], "y": [0, 1]})
    with pytest.raises(ValueError, match="need the Categorify proc"):
        TabularProcessor(["c"], ["n"], "y", procs=[FillMissing, Normalize]).fit(df)
    with pytest.raises(ValueError, match=r"\['n'\] still have missing values.*add FillMissing"):
        TabularProcessor(["c"], ["n"], "y", procs=[Categorify, Normalize]).fit(df)


def test_procs_run_in_their_order_whatever_the_list_order():
    tp = TabularProcessor(["c"], ["n"], "y", procs=[Normalize(), Categorify, FillMissing])
    assert [type(p).__name__ for p in tp.procs] == ["FillMissing", "Categorify", "Normalize"]
    with pytest.raises(TypeError, match="procs must be TabularProc"):
        TabularProcessor(["c"], ["n"], "y", procs=["Categorify"])


def test_processor_state_roundtrip_gives_same_tensors(table):
    tp = TabularProcessor(["color", "size"], ["x", "z"], "y", na_values=["?"])
    tp.fit(table.iloc[:300])
    clone = TabularProcessor.from_state(json.loads(json.dumps(tp.state())))
    a, b = tp.process(table.iloc[300:], with_labels=True), clone.process(table.iloc[300:], with_labels=True)
    for x, y in zip(a.tensors(), b.tensors()):
        assert torch.equal(x, y)


def test_target_type_detection_and_forcing():
    df = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0], "yi": [1, 2, 1, 2], "yf": [0.5, 1.5, 2.5, 3.5]})
    assert TabularProcessor([], ["n"], "yi").fit(df).ys.dtype == torch.int64          # ints → classes
    tp = TabularProcessor([], ["n"], "yf")
    assert tp.fit(df).ys.dtype == torch.float32 and tp.y_block == "regression"
    tp = TabularProcessor([], ["n"], "yi", y_block="regression")
    assert tp.fit(df).ys.tolist() == [[1.0], [2.0], [1.0], [2.0]]            # [N, 1], as fastai
    with pytest.raises(ValueError, match="y_block must be one of"):
        TabularProcessor([], ["n"], "yi", y_block="category")
    with pytest.raises(ValueError, match="single class"):
        TabularProcessor([], ["n"], "yi").fit(df.assign(yi=1))


def test_discretize_one_category_per_value_or_quantile_bins():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"gain": rng.choice([0.0, 0.0, 0.0, 7688.0, 15024.0], 200),
                          "w": rng.normal(size=200), "y": rng.integers(0, 2, 200)})
    d = Discretize(max_card=10, n_bins=4)
    d.setup(train, [], ["gain", "w"])
    assert d.values == {"gain": [0.0, 7688.0, 15024.0]} and len(d.edges["w"]) == 3
    assert d.new_cat_names == ["gain_bin", "w_bin"]
    out = d.encode(pd.DataFrame({"gain": [7688.0, 1234.0, np.nan], "w": [-10.0, 10.0, np.nan]}))
    assert out["gain_bin"].tolist()[0] == 7688.0 and out["gain_bin"].isna().tolist() == [False, True, True]
    assert out["w_bin"].tolist()[:2] == [0.0, 3.0] and np.isnan(out["w_bin"].iloc[2])
    clone = proc_from_state("Discretize", json.loads(json.dumps(d.state())))
    pd.testing.assert_frame_equal(clone.encode(train), d.encode(train))
    with pytest.raises(KeyError, match=r"\['age'\] are not continuous columns"):
        Discretize(cols=["age"]).setup(train, [], ["gain"])


def test_discretize_columns_are_categorified_and_unseen_values_are_silent():
    train = pd.DataFrame({"gain": [0.0, 0.0, 5.0, 9.0] * 10, "y": ["a", "b"] * 20})
    tp = TabularProcessor([], ["gain"], "y", procs=[Categorify, FillMissing, Normalize, Discretize])
    t = tp.fit(train)
    assert tp.cat_names == ["gain_bin"] and t.cats[:4, 0].tolist() == [1, 1, 2, 3]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no "never seen" warning for a new amount
        assert tp.process(pd.DataFrame({"gain": [7.0]})).cats.tolist() == [[0]]
