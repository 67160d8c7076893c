import subprocess
import sys

import pandas as pd
import pytest

from learnkit import (ColSplitter, FolderSplitter, FuncSplitter, GrandparentSplitter, IndexSplitter, RandomSplitter,
                      check_split)


@pytest.mark.parametrize("n", [10, 99, 100, 101, 940])
def test_random_split_is_20_percent(n):
    train, valid = RandomSplitter()(range(n))
    assert abs(len(valid) - 0.2 * n) <= 1
    assert sorted(train + valid) == list(range(n))
    assert not set(train) & set(valid)


def test_random_split_is_reproducible_across_runs_and_processes():
    a = RandomSplitter(0.2, seed=42)(range(500))
    b = RandomSplitter(0.2, seed=42)(range(500))
    assert a == b
    code = "from learnkit import RandomSplitter; print(RandomSplitter(0.2, seed=42)(range(500))[1])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(a[1])
    assert RandomSplitter(0.2, seed=7)(range(500)) != a


def test_random_split_zero_means_no_validation():
    train, valid = RandomSplitter(0.0)(range(10))
    assert valid == [] and len(train) == 10
    with pytest.raises(ValueError, match="valid_pct"):
        RandomSplitter(1.5)


def test_grandparent_and_folder_splitters():
    items = ["d/train/cat/1.jpg", "d/valid/dog/2.jpg", "d/train/dog/3.jpg", "d/other/x/4.jpg"]
    assert GrandparentSplitter()(items) == ([0, 2], [1])
    assert FolderSplitter()(["a/train/b/c/1.png", "a/valid/2.png"]) == ([0], [1])


def test_col_index_func_splitters():
    df = pd.DataFrame({"x": range(4), "is_valid": [False, True, False, True]})
    assert ColSplitter()(df) == ([0, 2], [1, 3])
    with pytest.raises(KeyError, match="is_valid.*columns"):
        ColSplitter()(df.drop(columns="is_valid"))
    assert IndexSplitter([1, 3])(range(5)) == ([0, 2, 4], [1, 3])
    with pytest.raises(IndexError, match="outside"):
        IndexSplitter([7])(range(5))
    assert FuncSplitter(lambda o: o % 2 == 0)(range(4)) == ([1, 3], [0, 2])


def test_check_split_reports_problems():
    with pytest.raises(ValueError, match="training set empty"):
        check_split([], [0, 1])
    with pytest.raises(ValueError, match="validation set empty"):
        check_split([0, 1], [])
    check_split([0, 1], [], allow_empty_valid=True)
    with pytest.raises(ValueError, match="only in the validation"):
        check_split([0, 1], [2], labels=["a", "a", "b"])
    with pytest.raises(ValueError, match="both"):
        check_split([0, 1], [1])
