"""Issue 19 item 3: inf in a continuous column or a regression target is refused where it enters, naming the
column and rows; predict/test_dl on a row with an infinite value names the column."""
from __future__ import annotations

import numpy as np
import pytest

from learnkit.tabular import TabularDataLoaders


def _dls(df, **kw):
    args = dict(cat_names=["color", "size"], cont_names=["x", "z"], y_names="y", na_values=["?"], bs=32, device="cpu")
    args.update(kw)
    return TabularDataLoaders.from_df(df, **args)


def test_inf_in_continuous_column_names_column_and_row(table):
    df = table.copy()
    df.loc[df.index[7], "z"] = np.inf
    with pytest.raises(ValueError, match=r"column 'z' has 1 infinite value\(s\).*row\(s\) \[7\]") as e:
        _dls(df)
    assert "add FillMissing" not in str(e.value)


def test_inf_in_regression_target_names_column(table):
    df = table.copy()
    df.loc[df.index[3], "target"] = -np.inf
    with pytest.raises(ValueError, match=r"column 'target' has 1 infinite.*\[3\]"):
        _dls(df, y_names="target", y_block="regression")


def test_test_dl_row_with_inf_names_column(table):
    dls = _dls(table)
    row = table.iloc[:1].copy()
    row["x"] = np.inf
    with pytest.raises(ValueError, match="column 'x'"):
        dls.test_dl(row)


def test_predict_on_a_row_with_inf_names_column(table):
    from learnkit.tabular import tabular_learner
    learn = tabular_learner(_dls(table), layers=[8], progress=False)
    row = table.iloc[0].copy()
    row["z"] = np.inf
    with pytest.raises(ValueError, match=r"column 'z' has 1 infinite value"):
        learn.predict(row)
