"""tabular_learner: training, predict on rows (unseen, missing, absent column), rebuild from the export spec."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from learnkit.core.registry import get_model_builder
from learnkit.tabular import (NA_CLASS, TabularDataLoaders, TabularLearner, TabularModel, emb_sizes, emb_sz_rule, get_emb_sz,
                              tabular_learner)


@pytest.fixture(scope="module")
def trained(table):
    dls = TabularDataLoaders.from_df(table, cat_names=["color", "size"], cont_names=["x", "z"], y_names="y",
                                     na_values=["?"], bs=32, device="cpu")
    learn = tabular_learner(dls, layers=[32, 16], progress=False)
    learn.fit_one_cycle(4, 2e-2)
    return learn


def test_learns_a_separable_table(trained):
    assert isinstance(trained, TabularLearner)
    loss, acc = trained.validate()
    assert acc > 0.85, acc


def test_predict_series_and_dict_agree_and_return_the_decoded_row(trained, table):
    row, idx, probs = trained.predict(table.iloc[1])
    row2, idx2, probs2 = trained.predict(table.iloc[1].to_dict())
    assert torch.allclose(probs, probs2) and idx == idx2
    assert isinstance(row, pd.Series) and row["y"] == trained.dls.vocab[idx]
    assert probs.shape == (2,) and math.isclose(float(probs.sum()), 1.0, rel_tol=1e-5)
    assert row["color"] in {"red", "blue", "green", NA_CLASS}
    assert row["z"] == pytest.approx(table.iloc[1]["z"], rel=1e-5)     # back in the column's units
    probs_batch = trained.get_preds(dl=trained.dls.test_dl(table.iloc[:3]))[0]
    assert torch.allclose(probs_batch[1], probs, atol=1e-6)


def test_predict_unseen_category_warns_once_and_predicts(trained):
    item = {"color": "purple", "size": "M", "x": 0.3, "z": 48.0}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        row, idx, probs = trained.predict(item)
    msgs = [str(x.message) for x in w if "never seen" in str(x.message)]
    assert len(msgs) == 1 and "purple" in msgs[0]
    assert row["color"] == NA_CLASS and 0 <= idx < 2


def test_predict_missing_value_is_filled_and_flagged(trained):
    row, _, probs = trained.predict({"color": "red", "size": "M", "x": np.nan, "z": 48.0})
    fill = next(p for p in trained.dls.procs.procs if type(p).__name__ == "FillMissing").fill_vals["x"]
    assert row["x"] == pytest.approx(fill, abs=1e-5) and row["x_na"] == True  # noqa: E712 - a numpy bool
    assert torch.isfinite(probs).all()
    row, _, _ = trained.predict({"color": None, "size": "M", "x": 1.0, "z": 48.0})
    assert row["color"] == NA_CLASS


def test_predict_missing_column_names_it(trained):
    with pytest.raises(KeyError, match=r"'size' \(in cat_names\) not found"):
        trained.predict({"color": "red", "x": 0.1, "z": 48.0})


def test_model_spec_and_config_rebuild_the_same_predictions(trained, table):
    spec = json.loads(json.dumps(trained.model_spec))
    model = get_model_builder(spec["builder"])(**spec["kwargs"])
    model.load_state_dict(trained.model.state_dict(), strict=True)
    dls = TabularDataLoaders.from_config(json.loads(json.dumps(trained.dls.export_config())), device="cpu")
    fresh = TabularLearner(dls, model, progress=False)
    a = trained.predict(table.iloc[7])
    b = fresh.predict(table.iloc[7])
    assert a[1] == b[1] and torch.allclose(a[2], b[2], atol=1e-6)
    pd.testing.assert_series_equal(a[0], b[0])


def test_show_results_has_target_and_prediction(trained, capsys):
    df = trained.show_results(max_n=6)
    assert len(df) == 6 and {"y", "y_pred"} <= set(df.columns)
    assert set(df["y_pred"]) <= {"high", "low"}
    assert "y_pred" in capsys.readouterr().out


def test_regression_with_y_range(table):
    dls = TabularDataLoaders.from_df(table, cat_names=["color", "size"], cont_names=["x", "z"], y_names="target",
                                     na_values=["?"], bs=32, device="cpu")
    learn = tabular_learner(dls, layers=[32], y_range=(-4.0, 5.0), progress=False)
    learn.fit_one_cycle(4, 1e-2)
    assert learn.metrics[0].name == "rmse"
    assert learn.validate()[1] < float(table["target"].std())          # better than predicting the mean
    row, value, out = learn.predict(table.iloc[0])
    assert -4.0 <= value <= 5.0 and row["target"] == value
    with pytest.raises(ValueError, match="y_range is for regression"):
        tabular_learner(TabularDataLoaders.from_df(table, cat_names=["color"], cont_names=["z"], y_names="y",
                                                   device="cpu"), y_range=(0, 1))


def test_embedding_size_rule_and_overrides():
    assert [emb_sz_rule(n) for n in (2, 3, 10, 100, 10**6)] == [2, 3, 6, 21, 600]
    assert emb_sizes([10, 3], ["a", "b"], {"b": 7}) == [(10, 6), (3, 7)]
    with pytest.raises(KeyError, match=r"\['c'\] that are not categorical"):
        emb_sizes([10], ["a"], {"c": 4})
    with pytest.raises(ValueError, match="positive integer"):
        emb_sizes([10], ["a"], {"a": 0})


def test_model_shapes_without_categorical_or_continuous_columns():
    assert TabularModel([], 3, 2, [8])(torch.zeros(4, 0, dtype=torch.long), torch.randn(4, 3)).shape == (4, 2)
    assert TabularModel([(5, 3)], 0, 1, [8])(torch.randint(0, 5, (4, 1)), torch.zeros(4, 0)).shape == (4, 1)
    with pytest.raises(ValueError, match="no inputs"):
        TabularModel([], 0, 1, [8])
    with pytest.raises(ValueError, match="dropout values"):
        TabularModel([], 2, 1, [8, 4], ps=[0.1])
