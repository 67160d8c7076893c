"""Integration: the real Adult table (skipped when the data folder is absent)."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pandas as pd
import pytest

from learnkit.tabular import NA_CLASS, Categorify, TabularDataLoaders, accuracy, tabular_learner

REDUCED_CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race"]
REDUCED_CONT = ["age", "fnlwgt", "education-num"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "adult.py"


@pytest.fixture(scope="module")
def adult_csv(data_path) -> Path:
    p = data_path / "adult" / "adult.csv"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


@pytest.mark.integration
def test_adult_reduced_columns_procs_and_one_epoch(adult_csv):
    dls = TabularDataLoaders.from_csv(adult_csv, cat_names=REDUCED_CAT, cont_names=REDUCED_CONT,
                                      y_names="salary", na_values=["?"], bs=256, device="cpu")
    assert (len(dls.train.dataset), len(dls.valid.dataset)) == (26049, 6512)
    assert dls.vocab == ["<50k", ">=50k"]
    classes = next(p for p in dls.procs.procs if isinstance(p, Categorify)).classes
    assert classes["workclass"][:2] == [NA_CLASS, "Federal-gov"]           # stripped; " ?" became missing
    assert "?" not in classes["occupation"] and "education-num_na" in dls.cat_names
    # occupation: 512 empty cells + 1,820 " ?" → all #na# (code 0), in both splits
    occ = dls.cat_names.index("occupation")
    n_na = int((dls.train.dataset.cats[:, occ] == 0).sum() + (dls.valid.dataset.cats[:, occ] == 0).sum())
    assert n_na == 512 + 1820
    learn = tabular_learner(dls, metrics=accuracy, progress=False)
    learn.fit_one_cycle(1, 1e-2)
    assert learn.validate()[1] > 0.82
    row, idx, probs = learn.predict(pd.read_csv(adult_csv, skipinitialspace=True, nrows=1).iloc[0])
    assert row["salary"] in dls.vocab and probs.shape == (2,)


@pytest.mark.integration
def test_adult_example_fast_runs_and_learns(adult_csv, capsys):
    spec = importlib.util.spec_from_file_location("adult_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    t0 = time.perf_counter()
    acc = mod.main(["--data", str(adult_csv.parent.parent), "--fast", "--no-reference"])
    out = capsys.readouterr().out
    assert acc > 0.84, out
    assert "validation accuracy" in out and "predict(first row)" in out
    print(f"example --fast: {acc:.4f} in {time.perf_counter() - t0:.1f}s")
