"""TabularDataLoaders and the tensor loader: splits, train-only procs, batches, inference rows, export."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from learnkit.core.split import RandomSplitter
from learnkit.tabular import NA_CLASS, TabularDataLoaders, TabularLoader, TabularTensors


def _dls(df, **kw):
    args = dict(cat_names=["color", "size"], cont_names=["x", "z"], y_names="y", na_values=["?"], bs=32,
                device="cpu")
    args.update(kw)
    return TabularDataLoaders.from_df(df, **args)


def test_automatic_split_is_random_splitter_20pct_seed_42(table):
    dls = _dls(table)
    _, valid_idx = RandomSplitter(0.2, 42)(range(len(table)))
    assert len(dls.valid.dataset) == len(valid_idx) == 80 and len(dls.train.dataset) == 320
    expected = dls.test_dl(table.iloc[valid_idx], with_labels=True).dataset
    assert torch.equal(dls.valid.dataset.conts, expected.conts)
    assert torch.equal(dls.valid.dataset.ys, expected.ys)


def test_valid_idx_and_value_only_in_valid_stays_unknown(table):
    df = table.copy()
    valid_idx = list(range(350, 400))
    df.loc[df.index[360], "size"] = "XXL"                       # a size that only a validation row has
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # expected in a split: no warning to scroll past
        dls = _dls(df, valid_idx=valid_idx)
    assert len(dls.valid.dataset) == 50
    size_classes = next(p for p in dls.procs.procs if type(p).__name__ == "Categorify").classes["size"]
    assert "XXL" not in size_classes and size_classes[0] == NA_CLASS
    assert dls.valid.dataset.cats[10, 1].item() == 0            # row 360 → #na#


def test_nan_target_rows_are_dropped_with_a_count(table):
    df = table.copy()
    df.loc[df.index[[3, 5, 390]], "y"] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 3 of 400 rows whose target \['y'\] is missing"):
        dls = _dls(df)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == 397


def test_class_only_in_validation_is_a_clear_error(table):
    df = table.copy()
    df.loc[df.index[399], "y"] = "medium"
    with pytest.raises(ValueError, match=r"\['medium'\] appear only in the validation set"):
        _dls(df, valid_idx=[399])


def test_bad_arguments_give_clear_errors(table):
    with pytest.raises(KeyError, match=r"'colour' \(in cat_names\) not found; the table's columns are"):
        _dls(table, cat_names=["colour"])
    with pytest.raises(ValueError, match="y_names is required"):
        _dls(table, y_names=None)
    with pytest.raises(TypeError, match="df must be a pandas DataFrame"):
        TabularDataLoaders.from_df(table.to_dict(), y_names="y")
    with pytest.raises(FileNotFoundError, match="no CSV file at"):
        TabularDataLoaders.from_csv("/nonexistent/adult.csv", y_names="y")


def test_batches_dtypes_shapes_and_decoded_show_batch(table, capsys):
    dls = _dls(table)
    cats, conts, y = dls.one_batch()
    assert cats.shape == (32, 3) and cats.dtype == torch.int64          # color, size, x_na
    assert conts.shape == (32, 2) and conts.dtype == torch.float32
    assert y.shape == (32,) and dls.c == 2 and dls.vocab == ["high", "low"]
    assert dls.n_inp == 2 and type(dls.loss_func).__name__ == "CrossEntropyLossFlat"
    shown = dls.show_batch(max_n=5)
    assert list(shown.columns) == ["color", "size", "x_na", "x", "z", "y"]
    assert len(shown) == 5 and set(shown["color"]) <= {"red", "blue", "green", NA_CLASS}
    assert set(shown["y"]) <= {"high", "low"}
    assert "color" in capsys.readouterr().out


def test_decoded_valid_rows_match_the_original_values(table):
    dls = _dls(table, valid_idx=list(range(300, 400)))
    dec = dls.decode_batch(dls.valid.dataset.tensors())
    orig = table.iloc[300:400]
    np.testing.assert_allclose(dec["z"].to_numpy(), orig["z"].to_numpy(), rtol=1e-5)
    assert dec["y"].tolist() == orig["y"].tolist()
    assert dec["color"].tolist() == [c.strip() if c != " ?" else NA_CLASS for c in orig["color"]]


def test_loader_shuffles_with_its_own_seed_and_sees_every_row_once():
    n = 103
    t = TabularTensors(torch.arange(n).reshape(n, 1), torch.zeros(n, 0), torch.arange(n))
    a, b = TabularLoader(t, 10, shuffle=True, seed=1), TabularLoader(t, 10, shuffle=True, seed=1)
    torch.manual_seed(123)                           # the global RNG does not matter
    ep1 = torch.cat([batch[2] for batch in a])
    torch.manual_seed(999)
    assert torch.equal(ep1, torch.cat([batch[2] for batch in b]))
    assert sorted(ep1.tolist()) == list(range(n)) and ep1.tolist() != list(range(n))
    assert not torch.equal(ep1, torch.cat([batch[2] for batch in a]))    # a new order each epoch
    assert len(TabularLoader(t, 10, drop_last=True)) == 10
    assert len(TabularLoader(t, 200, drop_last=True)) == 1                # never zero batches
    assert [len(x[0]) for x in TabularLoader(t, 50)] == [50, 50, 3]
    with pytest.raises(ValueError, match="bs"):
        TabularLoader(t, 0)


def test_regression_target_is_float_and_forced_classification_of_ints(table):
    dls = _dls(table, y_names="target")
    assert dls.procs.y_block == "regression" and dls.vocab is None and dls.c == 1
    assert dls.one_batch()[2].dtype == torch.float32
    assert type(dls.loss_func).__name__ == "MSELossFlat"
    df = table.assign(k=(table["x"].fillna(0) > 0).astype(int))
    assert _dls(df, y_names="k").vocab == [0, 1]


def test_test_dl_accepts_frames_dicts_and_series(table):
    dls = _dls(table)
    row = table.iloc[0]
    a = dls.test_dl(table.iloc[:1]).dataset
    b = dls.test_dl([row.to_dict()]).dataset
    c = dls.test_dl(row).dataset
    for x in (b, c):
        assert torch.equal(a.cats, x.cats) and torch.allclose(a.conts, x.conts)
    assert a.ys is None
    with pytest.raises(KeyError, match=r"'z' \(in cont_names\) not found"):
        dls.test_dl({"color": "red", "size": "S", "x": 0.1})
    with pytest.raises(TypeError, match="a tabular row must be a dict or a pandas Series"):
        dls.test_dl([[1, 2, 3]])


def test_export_config_is_json_and_rebuilds_inference_dls(table):
    dls = _dls(table)
    cfg = json.loads(json.dumps(dls.export_config()))
    inf = TabularDataLoaders.from_config(cfg, device="cpu")
    assert inf.train is None and inf.valid is None and inf.vocab == dls.vocab
    a, b = dls.test_dl(table.iloc[:50]).dataset, inf.test_dl(table.iloc[:50]).dataset
    assert torch.equal(a.cats, b.cats) and torch.equal(a.conts, b.conts)


def test_from_csv_strips_spaces_and_reads_markers(tmp_path, table):
    p = tmp_path / "t.csv"
    table.to_csv(p, index=False)
    dls = TabularDataLoaders.from_csv(p, cat_names=["color", "size"], cont_names=["x", "z"], y_names="y",
                                      na_values=["?"], bs=16, device="cpu")
    classes = next(p for p in dls.procs.procs if type(p).__name__ == "Categorify").classes["color"]
    assert classes == [NA_CLASS, "blue", "green", "red"]
    assert dls.path == Path(".")                                        # models go to the cwd, not the data
    assert sorted(x.name for x in tmp_path.iterdir()) == ["t.csv"]       # nothing written beside the data


def test_inferred_column_roles(table):
    dls = TabularDataLoaders.from_df(table.drop(columns="target"), y_names="y", na_values=["?"], device="cpu")
    assert dls.procs.cont_names == ["x", "z"] and dls.cat_names[:2] == ["color", "size"]
